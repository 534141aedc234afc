//! Test helpers: running the harness in-process, and small proxies written for the tests.

use std::{
    io::Write,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use clap::Parser;
use harness::cli::{self, Cli, Command};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};

/// A `Write` that tests can read back.
#[derive(Clone, Default)]
pub struct Captured(pub Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Runs `connect-harness <args>` in-process (the `run` command); returns the exit code and terminal output.
pub async fn run(args: &[&str]) -> (u8, String) {
    let mut argv = vec!["connect-harness", "run", "--color", "never"];
    argv.extend_from_slice(args);
    let cli = Cli::try_parse_from(&argv).expect("valid arguments");
    let Command::Run(a) = cli.command else { panic!("not a run command") };
    let out = Captured::default();
    let code = match cli::run(&a, Box::new(out.clone()), false).await {
        Ok(c) => c,
        Err(e) => {
            writeln!(out.clone(), "error: {e}").unwrap();
            e.code
        }
    };
    (code, out.text())
}

/// A temporary directory removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!(
            "connect-harness-it-{tag}-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }
    pub fn file(&self, name: &str, text: &str) -> std::path::PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
    pub fn path(&self, name: &str) -> String {
        self.0.join(name).display().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A listener on 127.0.0.1 serving every connection with `handler`; aborted on drop.
pub struct TestProxy {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestProxy {
    pub async fn start<F, Fut>(handler: F) -> Self
    where
        F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let handler = Arc::new(handler);
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    Ok((s, _)) = l.accept() => { conns.spawn(handler(s)); }
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
        });
        Self { addr, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// A small, mostly correct CONNECT proxy; `extra_2xx_fields` are added to its 2xx and `drop_early` loses
/// the bytes sent with the request (to inject faults).
pub async fn simple_connect(mut s: TcpStream, extra_2xx_fields: &'static str, drop_early: bool) {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head.len() > 64 * 1024 {
            return;
        }
    }
    let end = head.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let early = head.split_off(end);
    let text = String::from_utf8_lossy(&head).into_owned();
    let target = text.split_whitespace().nth(1).unwrap_or_default().to_string();
    let Ok(mut up) = TcpStream::connect(target.as_str()).await else {
        let _ = s.write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").await;
        return;
    };
    let _ = s.write_all(format!("HTTP/1.1 200 Connection Established\r\n{extra_2xx_fields}\r\n").as_bytes()).await;
    if !drop_early {
        let _ = up.write_all(&early).await;
    }
    let _ = tokio::io::copy_bidirectional(&mut s, &mut up).await;
}

/// Runs the `connect-harness` binary: exit code, stdout, stderr.
pub fn bin(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_connect-harness")).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
