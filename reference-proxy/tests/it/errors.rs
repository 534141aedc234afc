//! Refusals: each answered with the right status, Proxy-Status, Content-Length and Connection: close, then a
//! close, and nothing sent after the refused request is acted on.

use std::time::Duration;

use base64::Engine as _;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

use crate::support::*;

/// Checks the common shape of an error response and returns the Proxy-Status value.
fn check_error(status: u16, head: &str, body: &[u8], want: u16, error: &str) -> String {
    assert_eq!(status, want, "{head}");
    let ps = field(head, "proxy-status").unwrap_or_else(|| panic!("no Proxy-Status: {head}")).to_owned();
    assert!(ps.starts_with("reference-proxy; error="), "{ps}");
    assert!(ps.contains(&format!("error={error};")), "want {error}: {ps}");
    assert_eq!(field(head, "connection"), Some("close"), "{head}");
    let cl: usize = field(head, "content-length").unwrap().parse().unwrap();
    assert_eq!(cl, body.len(), "Content-Length matches the body, and nothing follows it");
    assert!(field(head, "content-type").unwrap().starts_with("text/plain"));
    ps
}

#[tokio::test]
async fn parse_errors_name_their_rule_and_close() {
    let (rec, mut got) = recording_server().await;
    let proxy = start(config()).await;
    let p = rec.port();
    let cases: Vec<(String, u16, &str)> = vec![
        ("CONNECT origin.test HTTP/1.1\r\nHost: origin.test\r\n\r\n".to_string(), 400, "missing-port"),
        (format!("CONNECT origin.test:{p} HTTP/1.1\r\n\r\n"), 400, "missing-host"),
        (format!("CONNECT origin.test:{p} HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), 400, "duplicate-host"),
        (format!("CONNECT origin.test:{p} HTTP/1.1\r\nHost : a\r\n\r\n"), 400, "whitespace-before-colon"),
        (format!("CONNECT origin.test:{p} HTTP/1.1\nHost: a\n\n"), 400, "bare-lf"),
        (
            format!("CONNECT origin.test:{p} HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n"),
            400,
            "content-on-connect",
        ),
        (format!("CONNECT origin.test:{p} HTTP/2.0\r\nHost: a\r\n\r\n"), 505, "version-not-supported"),
        (format!("CONNECT {}:{p} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(9000)), 414, "request-line-too-long"),
        (
            format!("CONNECT origin.test:{p} HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n", "v".repeat(40_000)),
            431,
            "head-too-large",
        ),
        (format!("GET origin.test:{p} HTTP/1.1\r\nHost: a\r\n\r\n"), 400, "authority-form-without-connect"),
    ];
    for (req, want, kind) in cases {
        // A smuggled request follows each refused one; it must never reach the upstream.
        let smuggle = format!("CONNECT origin.test:{p} HTTP/1.1\r\nHost: origin.test\r\n\r\nSMUGGLED");
        let all = [req.as_bytes(), smuggle.as_bytes()].concat();
        let (status, head, body) = exchange(&proxy, &all).await;
        let ps = check_error(status, &head, &body, want, "http_request_error");
        assert!(ps.contains(kind), "{kind}: {ps}");
    }
    proxy.shutdown().await;
    assert!(got.try_recv().is_err(), "the upstream was contacted");
}

#[tokio::test]
async fn other_methods_get_501() {
    let proxy = start(config()).await;
    for req in [
        "GET http://origin.test/ HTTP/1.1\r\nHost: origin.test\r\n\r\n",
        "connect origin.test:443 HTTP/1.1\r\nHost: a\r\n\r\n",
    ] {
        let (status, head, body) = exchange(&proxy, req.as_bytes()).await;
        if req.starts_with("connect") {
            // Lower-case `connect` is another method (RFC 9110 §9.1), and authority-form is only for CONNECT.
            check_error(status, &head, &body, 400, "http_request_error");
        } else {
            check_error(status, &head, &body, 501, "proxy_internal_response");
            assert_eq!(field(&head, "allow"), Some("CONNECT"));
        }
    }
}

#[tokio::test]
async fn refused_gives_502() {
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let proxy = start(config()).await;
    let req = format!("CONNECT origin.test:{port} HTTP/1.1\r\nHost: origin.test\r\n\r\n");
    let (status, head, body) = exchange(&proxy, req.as_bytes()).await;
    check_error(status, &head, &body, 502, "connection_refused");
}

#[tokio::test]
async fn dns_failure_gives_502() {
    let mut cfg = config();
    cfg.resolver.map_only = false;
    let proxy = start(cfg).await;
    // RFC 6761: names under .invalid never resolve; the proxy does not even ask the system resolver.
    let (status, head, body) =
        exchange(&proxy, b"CONNECT nx.invalid:443 HTTP/1.1\r\nHost: nx.invalid:443\r\n\r\n").await;
    check_error(status, &head, &body, 502, "dns_error");
    let mut cfg = config();
    cfg.resolver.map_only = true;
    let proxy = start(cfg).await;
    let (status, head, body) = exchange(&proxy, b"CONNECT unmapped.test:443 HTTP/1.1\r\nHost: x\r\n\r\n").await;
    check_error(status, &head, &body, 502, "dns_error");
}

/// A resolver that never answers, standing in for a DNS server that does not reply.
struct Silent;
impl reference_proxy::resolve::Resolve for Silent {
    fn resolve<'a>(&'a self, _: &'a str) -> reference_proxy::resolve::ResolveFuture<'a> {
        Box::pin(std::future::pending())
    }
}

#[tokio::test]
async fn dns_timeout_gives_504() {
    let mut cfg = config();
    cfg.resolver.map_only = false;
    cfg.resolver.fallback = Some(std::sync::Arc::new(Silent));
    cfg.resolver.timeout = Duration::from_millis(200);
    let proxy = start(cfg).await;
    let (status, head, body) = exchange(&proxy, b"CONNECT slow.test:443 HTTP/1.1\r\nHost: slow.test\r\n\r\n").await;
    check_error(status, &head, &body, 504, "dns_timeout");
}

#[tokio::test]
async fn connect_timeout_gives_504() {
    // A listener whose accept queue is full drops further SYNs: a black hole on loopback.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.bind(&"127.0.0.1:0".parse::<std::net::SocketAddr>().unwrap().into()).unwrap();
    socket.listen(0).unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..4 {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.set_nonblocking(true).unwrap();
        let _ = s.connect(&addr.into());
        fillers.push(s);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut cfg = config();
    cfg.limits.connect_timeout = Duration::from_millis(300);
    let proxy = start(cfg).await;
    let req = format!("CONNECT origin.test:{} HTTP/1.1\r\nHost: origin.test\r\n\r\n", addr.port());
    let (status, head, body) = exchange(&proxy, req.as_bytes()).await;
    check_error(status, &head, &body, 504, "connection_timeout");
    drop(fillers);
}

#[tokio::test]
async fn policy_denials_give_403() {
    let (rec, mut got) = recording_server().await;
    // Secure defaults: only port 443, loopback denied.
    let mut cfg = config();
    cfg.policy = Default::default();
    let proxy = start(cfg).await;
    let req = format!("CONNECT origin.test:{} HTTP/1.1\r\nHost: origin.test\r\n\r\n", rec.port());
    let (status, head, body) = exchange(&proxy, req.as_bytes()).await;
    check_error(status, &head, &body, 403, "http_request_denied");
    let (status, head, body) = exchange(&proxy, b"CONNECT origin.test:443 HTTP/1.1\r\nHost: origin.test\r\n\r\n").await;
    let ps = check_error(status, &head, &body, 403, "destination_ip_prohibited");
    assert!(ps.contains("loopback"), "{ps}");
    // Link-local, unspecified and multicast stay denied even when every network is allowed.
    let mut cfg = config();
    cfg.policy.allow.push("0.0.0.0/0".parse().unwrap());
    cfg.policy.allow.push("::/0".parse().unwrap());
    let proxy2 = start(cfg).await;
    for target in
        ["169.254.169.254:80", "0.0.0.0:443", "[::]:443", "224.0.0.1:443", "[fe80::1]:443", "[::ffff:169.254.1.1]:80"]
    {
        let req = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n");
        let (status, head, body) = exchange(&proxy2, req.as_bytes()).await;
        check_error(status, &head, &body, 403, "destination_ip_prohibited");
    }
    // A denied network wins over an allowed one, including through IPv4-mapped IPv6.
    let mut cfg = config();
    cfg.policy.deny.push("127.0.0.1/32".parse().unwrap());
    let proxy3 = start(cfg).await;
    let req = format!("CONNECT [::ffff:127.0.0.1]:{} HTTP/1.1\r\nHost: x\r\n\r\n", rec.port());
    let (status, head, body) = exchange(&proxy3, req.as_bytes()).await;
    check_error(status, &head, &body, 403, "destination_ip_prohibited");
    drop((proxy, proxy2, proxy3));
    assert!(got.try_recv().is_err(), "a denied destination was contacted");
}

#[tokio::test]
async fn tunnel_to_itself_is_a_loop() {
    let proxy = start(config()).await;
    for own in [proxy.plain_addrs()[0], proxy.tls_addrs()[0]] {
        let req = format!("CONNECT {own} HTTP/1.1\r\nHost: {own}\r\n\r\n");
        let (status, head, body) = exchange(&proxy, req.as_bytes()).await;
        check_error(status, &head, &body, 502, "proxy_loop_detected");
    }
}

#[tokio::test]
async fn tunnel_goes_to_the_target_never_the_host_field() {
    let (rec, mut got) = recording_server().await;
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let proxy = start(config()).await;
    let mut s = plain_to_proxy(&proxy).await;
    let req = format!("CONNECT origin.test:{} HTTP/1.1\r\nHost: 127.0.0.1:{closed_port}\r\n\r\nvia-target", rec.port());
    s.write_all(req.as_bytes()).await.unwrap();
    assert_eq!(read_head(&mut s).await.0, 200);
    s.shutdown().await.unwrap();
    assert_eq!(within("recording", got.recv()).await.unwrap(), b"via-target");
}

#[tokio::test]
async fn basic_auth() {
    let echo = echo_server().await;
    let mut cfg = config();
    let mut auth = reference_proxy::config::Auth::new("test realm");
    auth.add("alice:pa:ss").unwrap();
    cfg.auth = Some(auth);
    let proxy = start(cfg).await;
    let target = format!("origin.test:{}", echo.port());
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let with = |cred: Option<String>| {
        let extra = cred.map(|c| format!("Proxy-Authorization: {c}\r\n")).unwrap_or_default();
        format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n{extra}\r\n")
    };
    for cred in [
        None,
        Some(format!("Basic {}", b64("alice:wrong"))),
        Some(format!("Basic {}", b64("bob:pa:ss"))),
        Some("Basic !!".into()),
    ] {
        let (status, head, body) = exchange(&proxy, with(cred).as_bytes()).await;
        check_error(status, &head, &body, 407, "proxy_internal_response");
        assert_eq!(field(&head, "proxy-authenticate"), Some("Basic realm=\"test realm\", charset=\"UTF-8\""));
    }
    let mut s = plain_to_proxy(&proxy).await;
    s.write_all(with(Some(format!("bASIC {}", b64("alice:pa:ss")))).as_bytes()).await.unwrap();
    assert_eq!(read_head(&mut s).await.0, 200);
}

#[tokio::test]
async fn connection_limit_answers_503() {
    let mut cfg = config();
    cfg.limits.max_connections = 1;
    let proxy = start(cfg).await;
    // Hold the only slot with a connection that has sent nothing yet.
    let holder = plain_to_proxy(&proxy).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (status, head, body) = exchange(&proxy, b"CONNECT origin.test:443 HTTP/1.1\r\nHost: a\r\n\r\n").await;
    check_error(status, &head, &body, 503, "proxy_internal_response");
    drop(holder);
}

#[tokio::test]
async fn slowloris_gets_408() {
    let mut cfg = config();
    cfg.limits.header_timeout = Duration::from_millis(300);
    let proxy = start(cfg).await;
    let mut s = plain_to_proxy(&proxy).await;
    s.write_all(b"CONNECT origin.test:443 HTTP/1.1\r\nHost: a\r\nX-Slow: ").await.unwrap();
    // Keep trickling; the deadline covers the whole head, not each read.
    let (status, head) = tokio::select! {
        r = read_head(&mut s) => r,
        () = async { loop { tokio::time::sleep(Duration::from_millis(50)).await; } } => unreachable!(),
    };
    let (body, _) = read_all(&mut s).await;
    check_error(status, &head, &body, 408, "http_request_error");
}
