//! HTTP/2 CONNECT (`--h2`): a client nobody here wrote (Node's `http2` module, Debian's nodejs) tunnels through
//! the reference proxy over TLS (ALPN h2) and over h2c with prior knowledge; the `h2` crate's client checks a
//! refusal on a stream, and that one stalled tunnel does not hold back another on the same connection.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use reference_proxy::RunningProxy;
use tokio::net::{TcpListener, TcpStream};

use crate::support::*;

async fn h2_proxy() -> RunningProxy {
    let mut cfg = config();
    cfg.http2.enabled = true;
    cfg.http2.max_concurrent_streams = 8;
    start(cfg).await
}

/// Node, if installed; with CONNECT_HARNESS_REQUIRE_NODE=1 (as in .ci/run) its absence fails the test.
fn node() -> Option<PathBuf> {
    for name in ["node", "nodejs"] {
        for dir in std::env::var("PATH").unwrap_or_default().split(':') {
            let p = PathBuf::from(dir).join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    assert!(std::env::var("CONNECT_HARNESS_REQUIRE_NODE").is_err(), "node is required (apt install nodejs)");
    eprintln!("node not installed: the Node HTTP/2 client test is skipped");
    None
}

/// A CONNECT stream with Node's http2 client: sends SIZE bytes, ends its side, expects them back, then END_STREAM.
const CLIENT_JS: &str = r#"
const http2 = require('http2');
const fs = require('fs');
const [url, ca, target, size] = process.argv.slice(2);
const opts = ca === '-' ? {} : { ca: fs.readFileSync(ca), servername: 'proxy.test' };
const client = http2.connect(url, opts);
client.on('error', (e) => { console.log('client error ' + e.message); process.exit(3); });
const req = client.request({ ':method': 'CONNECT', ':authority': target });
const payload = Buffer.alloc(Number(size));
for (let i = 0; i < payload.length; i++) payload[i] = i % 251;
const chunks = [];
req.on('response', (h) => { if (h[':status'] !== 200) { console.log('status ' + h[':status']); process.exit(2); } });
req.on('data', (d) => chunks.push(d));
req.on('end', () => {
  const got = Buffer.concat(chunks);
  console.log(got.equals(payload) ? 'ok ' + got.length : 'mismatch ' + got.length);
  client.close();
});
req.on('error', (e) => { console.log('stream error ' + e.message); process.exit(4); });
req.end(payload);
"#;

/// Runs the Node client with a deadline; returns its stdout.
fn run_node(node: &PathBuf, script: &std::path::Path, args: &[&str]) -> String {
    let mut child = std::process::Command::new(node)
        .arg(script)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("node starts");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(_status) = child.try_wait().unwrap() {
            break;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("node did not finish within 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_tunnels_over_h2_with_alpn_and_over_h2c() {
    let Some(node) = node() else { return };
    let proxy = h2_proxy().await;
    let echo = echo_server().await;
    let dir = std::env::temp_dir().join(format!("h2-node-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("client.js");
    std::fs::write(&script, CLIENT_JS).unwrap();
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, proxy.ca_cert_pem().unwrap()).unwrap();
    let tls_url = format!("https://127.0.0.1:{}", proxy.tls_addrs()[0].port());
    let plain_url = format!("http://127.0.0.1:{}", proxy.plain_addrs()[0].port());
    let (target, ca_s) = (echo.to_string(), ca.display().to_string());
    let out = tokio::task::spawn_blocking({
        let (node, script) = (node.clone(), script.clone());
        move || {
            let tls = run_node(&node, &script, &[&tls_url, &ca_s, &target, "300000"]);
            let h2c = run_node(&node, &script, &[&plain_url, "-", &target, "300000"]);
            (tls, h2c)
        }
    })
    .await
    .unwrap();
    assert_eq!(out.0.trim(), "ok 300000", "Node over TLS (ALPN h2): {}", out.0);
    assert_eq!(out.1.trim(), "ok 300000", "Node over h2c: {}", out.1);
    let _ = std::fs::remove_dir_all(&dir);
    proxy.shutdown().await;
}

/// An h2c client connection (prior knowledge) to the proxy's plain listener.
async fn h2c(proxy: &RunningProxy) -> h2::client::SendRequest<Bytes> {
    let tcp = within("connect", TcpStream::connect(proxy.plain_addrs()[0])).await.unwrap();
    let (send, conn) = within("h2 handshake", h2::client::handshake(tcp)).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    send
}

fn connect_request(target: &str) -> http::Request<()> {
    http::Request::builder().method(http::Method::CONNECT).uri(target).body(()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_stream_gets_a_status_with_proxy_status_and_the_connection_lives_on() {
    let proxy = h2_proxy().await;
    let mut send = h2c(&proxy).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let (resp, _body) = send.send_request(connect_request(&closed.to_string()), false).unwrap();
    let resp = within("refusal", resp).await.unwrap();
    assert_eq!(resp.status(), 502);
    let ps = resp.headers()["proxy-status"].to_str().unwrap();
    assert!(ps.contains("error=connection_refused"), "{ps}");
    // A second CONNECT on the same connection after the refused one.
    let echo = echo_server().await;
    let mut send = within("ready", send.ready()).await.unwrap();
    let (resp, mut body_tx) = send.send_request(connect_request(&echo.to_string()), false).unwrap();
    let resp = within("tunnel", resp).await.unwrap();
    assert_eq!(resp.status(), 200);
    body_tx.send_data(Bytes::from_static(b"ping"), true).unwrap();
    let mut body = resp.into_body();
    let mut got = Vec::new();
    while let Some(chunk) = within("echo", body.data()).await {
        let chunk = chunk.unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
        got.extend_from_slice(&chunk);
    }
    assert_eq!(got, b"ping", "the echo came back and END_STREAM followed the origin's FIN");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_whose_via_has_32_hops_is_a_loop() {
    let proxy = h2_proxy().await;
    let mut send = h2c(&proxy).await;
    let echo = echo_server().await;
    let mut req = connect_request(&echo.to_string());
    let hops: Vec<String> = (0..32).map(|i| format!("1.1 hop{i}")).collect();
    req.headers_mut().insert("via", hops.join(", ").parse().unwrap());
    let (resp, _body) = send.send_request(req, false).unwrap();
    let resp = within("refusal", resp).await.unwrap();
    assert_eq!(resp.status(), 502);
    let ps = resp.headers()["proxy-status"].to_str().unwrap();
    assert!(ps.contains("error=proxy_loop_detected"), "{ps}");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_tunnel_does_not_hold_back_another_on_the_same_connection() {
    let proxy = h2_proxy().await;
    // A sink that accepts and never reads: the tunnel to it stalls once the kernel buffers are full.
    let sink = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sink_addr = sink.local_addr().unwrap();
    let _held = tokio::spawn(async move {
        let mut kept = Vec::new();
        while let Ok((s, _)) = sink.accept().await {
            kept.push(s);
        }
    });
    let mut send = h2c(&proxy).await;
    let (resp, mut stalled) = send.send_request(connect_request(&sink_addr.to_string()), false).unwrap();
    assert_eq!(within("stalled tunnel", resp).await.unwrap().status(), 200);
    // 16 MiB queued on the stalled stream: far more than the sink's buffers and the stream's window.
    stalled.reserve_capacity(16 << 20);
    for _ in 0..256 {
        stalled.send_data(Bytes::from(vec![7u8; 64 * 1024]), false).unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let echo = echo_server().await;
    let mut send = within("ready", send.ready()).await.unwrap();
    let (resp, mut tx) = send.send_request(connect_request(&echo.to_string()), false).unwrap();
    let resp = within("second tunnel while the first is stalled", resp).await.unwrap();
    assert_eq!(resp.status(), 200);
    let data = vec![3u8; 200_000];
    tx.reserve_capacity(data.len());
    tx.send_data(Bytes::from(data.clone()), true).unwrap();
    let mut body = resp.into_body();
    let mut got = Vec::new();
    while let Some(chunk) = within("echo beside a stalled tunnel", body.data()).await {
        let chunk = chunk.unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
        got.extend_from_slice(&chunk);
    }
    assert!(got == data, "the second tunnel's bytes came back ({} of {})", got.len(), data.len());
    proxy.shutdown().await;
}
