//! Hostile proxies: the run must end with fail/error verdicts, never hang, and keep its memory bounded.
//! The outer timeouts are hang guards (a hung run would otherwise block the test suite), not speed checks.

use std::time::Duration;

use harness::exit;
use serde_json::Value;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::support::{self, TempDir, TestProxy};

const HANG_GUARD: Duration = Duration::from_secs(120);

async fn run_against(url: &str, extra: &[&str]) -> (u8, String, Value, usize) {
    let dir = TempDir::new("hostile");
    let report = dir.path("r.json");
    let mut args = vec!["--proxy", url, "--timeout", "0.5", "--report", &report];
    args.extend_from_slice(extra);
    let (code, out) = tokio::time::timeout(HANG_GUARD, support::run(&args)).await.expect("the run hung");
    let text = std::fs::read_to_string(&report).unwrap_or_else(|e| panic!("no report ({e}): {out}"));
    let size = text.len();
    (code, out, serde_json::from_str(&text).unwrap(), size)
}

fn verdicts(r: &Value) -> Vec<(String, String, String)> {
    r["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (x["id"].as_str().unwrap().to_string(), x["verdict"].as_str().unwrap().to_string(), x["reason"].to_string())
        })
        .collect()
}

/// Every must-level scenario that ran failed; nothing passed.
fn assert_all_failed(r: &Value, out: &str) {
    let v = verdicts(r);
    assert!(v.iter().any(|(_, verdict, _)| verdict == "fail"), "{out}");
    for (id, verdict, reason) in &v {
        // Its requirement is "no 2xx before the connection exists", and a timeout is an acceptable outcome:
        // silence meets it.
        if id == "rfc9110/9.3.6/2xx-after-connect-silent-target" {
            continue;
        }
        assert!(verdict != "pass", "{id} passed against a hostile proxy: {reason}");
        assert!(verdict != "error", "{id}: a hostile proxy is the proxy failing, not the harness: {reason}");
    }
}

async fn drain(mut s: TcpStream) {
    let mut buf = [0u8; 4096];
    while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(30), s.read(&mut buf)).await {
        if n == 0 {
            break;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_that_never_answers() {
    let p = TestProxy::start(drain).await;
    let (code, out, r, _) = run_against(&p.url(), &[]).await;
    assert_eq!(code, exit::FAILURES, "{out}");
    assert_all_failed(&r, &out);
    assert!(out.contains("timed out"), "a deadline stop names the step: {out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_proxy_that_never_handshakes() {
    let p = TestProxy::start(drain).await;
    let url = format!("https://{}", p.addr);
    let (code, out, r, _) = run_against(&url, &["--proxy-insecure"]).await;
    assert_eq!(code, exit::FAILURES, "{out}");
    assert_all_failed(&r, &out);
    assert!(out.contains("setup (proxy_tls) timed out"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_that_floods_an_endless_head() {
    let p = TestProxy::start(|mut s: TcpStream| async move {
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\n").await;
        let line = b"X-Flood: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n".repeat(512);
        while s.write_all(&line).await.is_ok() {}
    })
    .await;
    let (code, out, r, size) = run_against(&p.url(), &[]).await;
    assert_eq!(code, exit::FAILURES, "{out}");
    assert_all_failed(&r, &out);
    assert!(out.contains("response head too large"), "the head size bound stopped the read: {out}");
    // Transcripts are bounded: the report stays small however much the proxy sent.
    assert!(size < 4 << 20, "report of {size} bytes");
    let truncated = r["results"].as_array().unwrap().iter().any(|x| x["transcript"]["truncated"] == true);
    assert!(truncated);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_that_floods_inside_the_tunnel() {
    // A 2xx, then endless bytes that are not from the target.
    let p = TestProxy::start(|mut s: TcpStream| async move {
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf).await;
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await;
        let junk = vec![b'z'; 64 * 1024];
        while s.write_all(&junk).await.is_ok() {}
    })
    .await;
    let (code, out, _, size) = run_against(&p.url(), &["--only", "rfc9110/9.3.6/*"]).await;
    assert_eq!(code, exit::FAILURES, "{out}");
    assert!(out.contains("differ"), "{out}");
    assert!(size < 4 << 20, "report of {size} bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_that_resets() {
    let p = TestProxy::start(|s: TcpStream| async move {
        let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
        drop(s);
    })
    .await;
    let (code, out, r, _) = run_against(&p.url(), &[]).await;
    assert_eq!(code, exit::FAILURES, "{out}");
    assert_all_failed(&r, &out);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_that_sends_garbage() {
    let p = TestProxy::start(|mut s: TcpStream| async move {
        let _ = s.write_all(b"SSH-2.0-OpenSSH_9.6\r\n\x00\xff\xfe garbage\r\n\r\n").await;
        drain(s).await;
    })
    .await;
    let (code, out, r, _) = run_against(&p.url(), &[]).await;
    assert_eq!(code, exit::FAILURES, "{out}");
    assert_all_failed(&r, &out);
    assert!(out.contains("not an HTTP response"), "{out}");
}
