//! Each deliberate fault (feature `faults`) changes observable behaviour in the way it claims; the correct
//! behaviour for the same stimulus is asserted by the other test modules.

use reference_proxy::faults::Fault;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::support::*;

async fn with_fault(fault: Fault) -> reference_proxy::RunningProxy {
    let mut cfg = config();
    cfg.faults = vec![fault];
    start(cfg).await
}

async fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}

#[tokio::test]
async fn sni_faults() {
    let echo = echo_server().await;
    let target = format!("origin.test:{}", echo.port());
    for (fault, want) in [(Fault::SniMustMatchTarget, 400), (Fault::Answer421OnSniMismatch, 421)] {
        let proxy = with_fault(fault).await;
        let mut s = tls_to_proxy(&proxy, Some("proxy.test")).await;
        assert_eq!(connect(&mut s, &target).await.0, want, "{fault}");
        // Matching SNI, or none, still tunnels.
        let mut s = tls_to_proxy(&proxy, Some("origin.test")).await;
        assert_eq!(connect(&mut s, &target).await.0, 200, "{fault}");
        let mut s = tls_to_proxy(&proxy, None).await;
        assert_eq!(connect(&mut s, &target).await.0, 200, "{fault}");
    }
}

#[tokio::test]
async fn framing_in_2xx() {
    let echo = echo_server().await;
    let target = format!("origin.test:{}", echo.port());
    for (fault, field_name) in
        [(Fault::ContentLengthIn2xx, "content-length"), (Fault::TransferEncodingIn2xx, "transfer-encoding")]
    {
        let proxy = with_fault(fault).await;
        let mut s = plain_to_proxy(&proxy).await;
        let (status, head) = connect(&mut s, &target).await;
        assert_eq!(status, 200);
        assert!(field(&head, field_name).is_some(), "{fault}: {head}");
    }
}

#[tokio::test]
async fn route_by_host() {
    let (rec, mut got) = recording_server().await;
    let proxy = with_fault(Fault::RouteByHost).await;
    let mut s = plain_to_proxy(&proxy).await;
    let req = format!(
        "CONNECT origin.test:{} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n\r\nvia-host",
        closed_port().await,
        rec.port()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    assert_eq!(read_head(&mut s).await.0, 200);
    s.shutdown().await.unwrap();
    assert_eq!(within("recording", got.recv()).await.unwrap(), b"via-host");
}

#[tokio::test]
async fn drop_early_data() {
    let (rec, mut got) = recording_server().await;
    let proxy = with_fault(Fault::DropEarlyData).await;
    let mut s = plain_to_proxy(&proxy).await;
    let req = format!("CONNECT origin.test:{} HTTP/1.1\r\nHost: x\r\n\r\nEARLY", rec.port());
    s.write_all(req.as_bytes()).await.unwrap();
    assert_eq!(read_head(&mut s).await.0, 200);
    s.write_all(b"LATE").await.unwrap();
    s.shutdown().await.unwrap();
    assert_eq!(within("recording", got.recv()).await.unwrap(), b"LATE");
}

#[tokio::test]
async fn lose_last_upstream_bytes() {
    let banner = banner_server(b"220 last words\r\n").await;
    let proxy = with_fault(Fault::LoseLastUpstreamBytes).await;
    let mut s = plain_to_proxy(&proxy).await;
    assert_eq!(connect(&mut s, &format!("origin.test:{}", banner.port())).await.0, 200);
    let (got, _) = read_all(&mut s).await;
    assert_ne!(got, b"220 last words\r\n");
}

#[tokio::test]
async fn respond_before_connect() {
    let proxy = with_fault(Fault::RespondBeforeConnect).await;
    let mut s = plain_to_proxy(&proxy).await;
    // Nothing listens there, yet the client is told the tunnel exists.
    assert_eq!(connect(&mut s, &format!("origin.test:{}", closed_port().await)).await.0, 200);
}

#[tokio::test]
async fn parser_relaxations() {
    let echo = echo_server().await;
    let p = echo.port();
    let cases = [
        (Fault::AcceptWsBeforeColon, format!("CONNECT origin.test:{p} HTTP/1.1\r\nHost : origin.test\r\n\r\n")),
        (
            Fault::AcceptDuplicateHost,
            format!("CONNECT origin.test:{p} HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n"),
        ),
    ];
    for (fault, req) in cases {
        let proxy = with_fault(fault).await;
        let mut s = plain_to_proxy(&proxy).await;
        s.write_all(req.as_bytes()).await.unwrap();
        assert_eq!(read_head(&mut s).await.0, 200, "{fault}");
    }
    // A missing port becomes 443: not a 400 any more (the connection itself then fails or succeeds).
    let proxy = with_fault(Fault::AcceptMissingPort).await;
    let (status, head, _) = exchange(&proxy, b"CONNECT origin.test HTTP/1.1\r\nHost: origin.test\r\n\r\n").await;
    assert_ne!(status, 400, "{head}");
}

#[tokio::test]
async fn corrupt_tunnel_bytes() {
    let echo = echo_server().await;
    let proxy = with_fault(Fault::CorruptTunnelBytes).await;
    let mut s = plain_to_proxy(&proxy).await;
    assert_eq!(connect(&mut s, &format!("origin.test:{}", echo.port())).await.0, 200);
    s.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    within("echo", s.read_exact(&mut buf)).await.unwrap();
    assert_ne!(&buf, b"ping");
}

#[tokio::test]
async fn no_close_after_reject() {
    let (rec, mut got) = recording_server().await;
    let proxy = with_fault(Fault::NoCloseAfterReject).await;
    let mut s = plain_to_proxy(&proxy).await;
    let req = format!(
        "CONNECT origin.test HTTP/1.1\r\nHost: x\r\n\r\nCONNECT origin.test:{} HTTP/1.1\r\nHost: x\r\n\r\nSMUGGLED",
        rec.port()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    assert_eq!(read_head(&mut s).await.0, 400);
    // The body of the 400, then a second response: the smuggled request was acted on.
    let (_, first) = (0, read_body(&mut s).await);
    assert!(!first.is_empty());
    assert_eq!(read_head(&mut s).await.0, 200);
    s.shutdown().await.unwrap();
    assert_eq!(within("recording", got.recv()).await.unwrap(), b"SMUGGLED");
}

/// Reads a text/plain error body ending in a newline.
async fn read_body(s: &mut tokio::net::TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut b = [0u8; 1];
    while !out.ends_with(b"\n") {
        within("body", s.read_exact(&mut b)).await.unwrap();
        out.push(b[0]);
    }
    out
}

#[tokio::test]
async fn half_close_closes_both() {
    // The upstream answers only after the client's FIN; closing both sides loses that answer.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut got = Vec::new();
                let _ = within("upstream read", s.read_to_end(&mut got)).await;
                let _ = s.write_all(b"answer after FIN").await;
            });
        }
    });
    let proxy = with_fault(Fault::HalfCloseClosesBoth).await;
    let mut s = plain_to_proxy(&proxy).await;
    assert_eq!(connect(&mut s, &format!("origin.test:{port}")).await.0, 200);
    s.shutdown().await.unwrap();
    let (got, _) = read_all(&mut s).await;
    assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
}

#[tokio::test]
async fn ignore_policy() {
    let echo = echo_server().await;
    let mut cfg = config();
    cfg.policy = Default::default();
    cfg.faults = vec![Fault::IgnorePolicy];
    let proxy = start(cfg).await;
    let mut s = plain_to_proxy(&proxy).await;
    // Loopback and a port other than 443, both denied by the default policy.
    assert_eq!(connect(&mut s, &format!("127.0.0.1:{}", echo.port())).await.0, 200);
}
