//! The `reference-proxy` binary: flags, the CA file, one log line per connection, SIGTERM → drain → exit 0.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

#[tokio::test]
async fn binary_serves_logs_and_exits_cleanly_on_sigterm() {
    let echo = echo_server().await;
    let dir = std::env::temp_dir().join(format!("reference-proxy-bin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("ca.pem");
    let mut child = Command::new(env!("CARGO_BIN_EXE_reference-proxy"))
        .args(["--listen", "127.0.0.1:0", "--tls-listen", "127.0.0.1:0", "--tls-self-signed", "proxy.test"])
        .arg("--tls-ca-out")
        .arg(&ca)
        .args(["--resolve", "origin.test:127.0.0.1", "--resolve-only", "--allow-ports", "1-65535"])
        .args(["--allow-net", "127.0.0.0/8", "--auth", "u:secret-pw"])
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let plain = lines.next().unwrap().unwrap();
    let tls = lines.next().unwrap().unwrap();
    let plain: std::net::SocketAddr = plain.strip_prefix("listening plain ").unwrap().parse().unwrap();
    assert!(tls.starts_with("listening tls 127.0.0.1:"), "{tls}");
    assert!(std::fs::read_to_string(&ca).unwrap().contains("BEGIN CERTIFICATE"));

    let mut s = within("connect", tokio::net::TcpStream::connect(plain)).await.unwrap();
    let req = format!(
        "CONNECT origin.test:{} HTTP/1.1\r\nHost: origin.test\r\nProxy-Authorization: Basic dTpzZWNyZXQtcHc=\r\n\r\n",
        echo.port()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    assert_eq!(read_head(&mut s).await.0, 200);
    s.write_all(b"hi").await.unwrap();
    let mut b = [0u8; 2];
    within("echo", s.read_exact(&mut b)).await.unwrap();
    s.shutdown().await.unwrap();
    let _ = read_all(&mut s).await;

    // SAFETY: plain kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) }, 0);
    let status = tokio::task::spawn_blocking(move || {
        let mut err = String::new();
        child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        (child.wait().unwrap(), err)
    });
    let (status, stderr) = within("exit after SIGTERM", status).await.unwrap();
    assert!(status.success(), "{status:?}\n{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.contains("connection") && l.contains("target=origin.test"))
        .unwrap_or_else(|| panic!("no connection log line:\n{stderr}"));
    for part in ["status=200", "up=2", "down=2", "close=done", "client=127.0.0.1:", "sni=-"] {
        assert!(line.contains(part), "{part} missing in {line}");
    }
    assert!(!stderr.contains("secret-pw") && !stderr.contains("dTpzZWNyZXQtcHc"), "credentials logged");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn invalid_configuration_fails_at_startup() {
    for args in [&["--allow-ports", "70000"][..], &["--tls-listen", "127.0.0.1:0"], &["--resolve", "bad"]] {
        let out = Command::new(env!("CARGO_BIN_EXE_reference-proxy")).args(args).output().unwrap();
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(!out.stderr.is_empty(), "{args:?} should explain");
    }
}

#[test]
fn toml_config_file_is_read_and_checked() {
    let dir = std::env::temp_dir().join(format!("reference-proxy-toml-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "listen = [\"127.0.0.1:0\"]\nallow_portz = \"443\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_reference-proxy")).arg("--config").arg(&bad).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("allow_portz"), "{}", String::from_utf8_lossy(&out.stderr));

    let good = dir.join("good.toml");
    std::fs::write(&good, "listen = [\"127.0.0.1:0\"]\nallow_ports = \"443,8000-9000\"\nidle_timeout = 5\n").unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_reference-proxy"))
        .arg("--config")
        .arg(&good)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let line = BufReader::new(child.stdout.take().unwrap()).lines().next().unwrap().unwrap();
    assert!(line.starts_with("listening plain 127.0.0.1:"), "{line}");
    // SAFETY: kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) }, 0);
    assert!(child.wait().unwrap().success());
    let _ = std::fs::remove_dir_all(&dir);
}
