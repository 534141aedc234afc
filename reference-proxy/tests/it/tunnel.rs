//! Successful tunnels over the plain listener: data both ways, early data, half-close, server-first protocols,
//! resets and idle timeouts.

use std::time::Duration;

use rand::RngCore;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::support::*;

#[tokio::test]
async fn plain_tunnel_to_echo_by_name_and_by_address() {
    let echo = echo_server().await;
    let proxy = start(config()).await;
    for target in [format!("origin.test:{}", echo.port()), format!("127.0.0.1:{}", echo.port())] {
        let mut s = plain_to_proxy(&proxy).await;
        let (status, head) = connect(&mut s, &target).await;
        // RFC 9110 §9.3.6: no Content-Length or Transfer-Encoding in the 2xx.
        assert_eq!(head, "HTTP/1.1 200 Connection Established\r\n\r\n", "{status}");
        s.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        within("echo", s.read_exact(&mut buf)).await.unwrap();
        assert_eq!(&buf, b"ping");
        s.shutdown().await.unwrap();
        let (rest, r) = read_all(&mut s).await;
        assert!(rest.is_empty() && r.is_ok(), "{r:?}");
    }
    proxy.shutdown().await;
}

#[tokio::test]
async fn ipv6_literal_target() {
    let Ok(listener) = TcpListener::bind("[::1]:0").await else {
        eprintln!("no IPv6 loopback on this machine; the IPv6 target is covered by the policy unit tests");
        return;
    };
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        if let Ok((mut s, _)) = listener.accept().await {
            let _ = s.write_all(b"v6").await;
        }
    });
    let proxy = start(config()).await;
    let mut s = plain_to_proxy(&proxy).await;
    let (status, head) = connect(&mut s, &format!("[::1]:{port}")).await;
    assert_eq!(status, 200, "{head}");
    let (body, _) = read_all(&mut s).await;
    assert_eq!(body, b"v6");
}

#[tokio::test]
async fn http10_connect_works_without_host() {
    let echo = echo_server().await;
    let proxy = start(config()).await;
    let mut s = plain_to_proxy(&proxy).await;
    let req = format!("CONNECT origin.test:{} HTTP/1.0\r\n\r\n", echo.port());
    s.write_all(req.as_bytes()).await.unwrap();
    let (status, head) = read_head(&mut s).await;
    assert_eq!(status, 200, "{head}");
    s.write_all(b"x").await.unwrap();
    let mut b = [0u8; 1];
    within("echo", s.read_exact(&mut b)).await.unwrap();
    assert_eq!(&b, b"x");
}

#[tokio::test]
async fn early_data_is_forwarded_first() {
    let (rec, mut got) = recording_server().await;
    let proxy = start(config()).await;
    let mut s = plain_to_proxy(&proxy).await;
    // Head and tunnel bytes in one write, then more bytes after the 200.
    let req = format!("CONNECT origin.test:{} HTTP/1.1\r\nHost: origin.test\r\n\r\nEARLY-", rec.port());
    s.write_all(req.as_bytes()).await.unwrap();
    let (status, head) = read_head(&mut s).await;
    assert_eq!(status, 200, "{head}");
    s.write_all(b"LATE").await.unwrap();
    s.shutdown().await.unwrap();
    let received = within("recording", got.recv()).await.unwrap();
    assert_eq!(received, b"EARLY-LATE");
}

/// An upstream that reads until EOF, then answers with what it got and closes: the answer travels back after
/// the client's FIN (client → upstream half-close).
async fn answer_after_eof_server() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut got = Vec::new();
                if within("upstream read", s.read_to_end(&mut got)).await.is_ok() {
                    let _ = s.write_all(format!("got {} bytes after your FIN", got.len()).as_bytes()).await;
                    let _ = s.shutdown().await;
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn half_close_client_to_upstream() {
    let upstream = answer_after_eof_server().await;
    let proxy = start(config()).await;
    for tls in [false, true] {
        let target = format!("origin.test:{}", upstream.port());
        let mut s: Box<dyn Stream> = if tls {
            Box::new(tls_to_proxy(&proxy, Some("proxy.test")).await)
        } else {
            Box::new(plain_to_proxy(&proxy).await)
        };
        let (status, _) = connect(&mut s, &target).await;
        assert_eq!(status, 200);
        s.write_all(b"12345").await.unwrap();
        s.shutdown().await.unwrap();
        let (answer, r) = read_all(&mut s).await;
        assert!(r.is_ok(), "tls={tls}: {r:?}");
        assert_eq!(answer, b"got 5 bytes after your FIN", "tls={tls}");
    }
}

pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

#[tokio::test]
async fn half_close_upstream_to_client_and_server_first() {
    // The upstream sends a banner and shuts down its write side, then still reads what the client sends.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                s.write_all(b"220 banner\r\n").await.unwrap();
                s.shutdown().await.unwrap();
                let mut got = Vec::new();
                let _ = within("upstream read", s.read_to_end(&mut got)).await;
                let _ = tx.send(got);
            });
        }
    });
    let proxy = start(config()).await;
    for tls in [false, true] {
        let mut s: Box<dyn Stream> =
            if tls { Box::new(tls_to_proxy(&proxy, None).await) } else { Box::new(plain_to_proxy(&proxy).await) };
        let (status, _) = connect(&mut s, &format!("origin.test:{port}")).await;
        assert_eq!(status, 200);
        // Server-first: the banner, then EOF, while our direction stays open.
        let (banner, r) = read_all(&mut s).await;
        assert!(r.is_ok(), "{r:?}");
        assert_eq!(banner, b"220 banner\r\n");
        s.write_all(b"still open").await.unwrap();
        s.shutdown().await.unwrap();
        let got = within("upstream report", rx.recv()).await.unwrap();
        assert_eq!(got, b"still open", "tls={tls}");
    }
}

#[tokio::test]
async fn banner_then_close() {
    let banner = banner_server(b"SSH-2.0-test\r\n").await;
    let proxy = start(config()).await;
    let mut s = plain_to_proxy(&proxy).await;
    let (status, _) = connect(&mut s, &format!("origin.test:{}", banner.port())).await;
    assert_eq!(status, 200);
    let (got, r) = read_all(&mut s).await;
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(got, b"SSH-2.0-test\r\n");
}

/// Sends `len` random bytes through an echo tunnel while reading them back concurrently; checks them all.
async fn bulk<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(s: S, len: usize) {
    let mut data = vec![0u8; len];
    rand::rng().fill_bytes(&mut data);
    let data = std::sync::Arc::new(data);
    let (mut r, mut w) = tokio::io::split(s);
    let sent = data.clone();
    let writer = tokio::spawn(async move {
        for chunk in sent.chunks(100_000) {
            w.write_all(chunk).await.unwrap();
        }
        w.shutdown().await.unwrap();
    });
    let mut back = Vec::with_capacity(len);
    within("bulk echo", r.read_to_end(&mut back)).await.unwrap();
    within("writer", writer).await.unwrap();
    assert_eq!(back.len(), len);
    assert!(back == *data, "echoed bytes differ");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_mib_both_ways_plain_and_tls() {
    let echo = echo_server().await;
    let proxy = start(config()).await;
    let target = format!("origin.test:{}", echo.port());
    let mut s = plain_to_proxy(&proxy).await;
    assert_eq!(connect(&mut s, &target).await.0, 200);
    bulk(s, 16 << 20).await;
    let mut t = tls_to_proxy(&proxy, Some("proxy.test")).await;
    assert_eq!(connect(&mut t, &target).await.0, 200);
    bulk(t, 16 << 20).await;
}

/// An upstream that resets the connection as soon as it is accepted (SO_LINGER 0, then close).
async fn resetting_server() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let mut buf = [0u8; 1];
            let mut s = s;
            // Wait for the client's first byte so the tunnel surely exists, then reset.
            let _ = within("reset server read", s.read(&mut buf)).await;
            socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO)).unwrap();
            drop(s);
        }
    });
    addr
}

#[tokio::test]
async fn upstream_reset_resets_the_client() {
    let rst = resetting_server().await;
    let proxy = start(config()).await;
    let mut s = plain_to_proxy(&proxy).await;
    assert_eq!(connect(&mut s, &format!("origin.test:{}", rst.port())).await.0, 200);
    s.write_all(b"x").await.unwrap();
    let (got, r) = read_all(&mut s).await;
    assert!(got.is_empty());
    let err = r.expect_err("a reset, not a clean EOF");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");
}

#[tokio::test]
async fn client_reset_resets_the_upstream() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut got = Vec::new();
        let r = within("upstream read", s.read_to_end(&mut got)).await;
        let _ = tx.send(r.map(|_| got));
    });
    let proxy = start(config()).await;
    let mut s = plain_to_proxy(&proxy).await;
    assert_eq!(connect(&mut s, &format!("origin.test:{port}")).await.0, 200);
    s.write_all(b"x").await.unwrap();
    s.flush().await.unwrap();
    tokio::task::yield_now().await;
    socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO)).unwrap();
    drop(s);
    let r = within("upstream outcome", rx).await.unwrap();
    // The upstream may or may not have read the "x" first, but it must end with a reset, not a FIN.
    let err = r.expect_err("upstream should see a reset");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");
}

#[tokio::test]
async fn idle_tunnels_are_closed() {
    let echo = echo_server().await;
    let mut cfg = config();
    cfg.limits.idle_timeout = Duration::from_millis(300);
    let proxy = start(cfg).await;
    let mut s = plain_to_proxy(&proxy).await;
    assert_eq!(connect(&mut s, &format!("origin.test:{}", echo.port())).await.0, 200);
    // Nothing is sent: the proxy must end the tunnel by itself.
    let (got, _) = read_all(&mut s).await;
    assert!(got.is_empty());
}

#[tokio::test]
async fn addresses_are_tried_in_order() {
    // 127.0.0.2 has nothing on the echo's port (the echo is bound to 127.0.0.1 only), so the first address
    // is refused and the second one used.
    let echo = echo_server().await;
    let mut cfg = config();
    cfg.resolver.insert("multi.test", "127.0.0.2".parse().unwrap());
    cfg.resolver.insert("multi.test", "127.0.0.1".parse().unwrap());
    let proxy = start(cfg).await;
    let mut s = plain_to_proxy(&proxy).await;
    assert_eq!(connect(&mut s, &format!("multi.test:{}", echo.port())).await.0, 200);
    s.write_all(b"ok").await.unwrap();
    let mut b = [0u8; 2];
    within("echo", s.read_exact(&mut b)).await.unwrap();
    assert_eq!(&b, b"ok");
}

#[tokio::test]
async fn several_listeners_of_each_kind() {
    let echo = echo_server().await;
    let mut cfg = config();
    let any = "127.0.0.1:0".parse().unwrap();
    cfg.listen = vec![any, any];
    cfg.tls_listen = vec![any, any];
    let proxy = start(cfg).await;
    assert_eq!((proxy.plain_addrs().len(), proxy.tls_addrs().len()), (2, 2));
    for addr in proxy.plain_addrs() {
        let mut s = within("connect", tokio::net::TcpStream::connect(addr)).await.unwrap();
        assert_eq!(connect(&mut s, &format!("origin.test:{}", echo.port())).await.0, 200);
    }
    let connector = tls_connector(proxy.ca_cert_pem().unwrap());
    for addr in proxy.tls_addrs() {
        let tcp = within("connect", tokio::net::TcpStream::connect(addr)).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("proxy.test").unwrap();
        let mut s = within("handshake", connector.connect(name, tcp)).await.unwrap();
        assert_eq!(connect(&mut s, &format!("origin.test:{}", echo.port())).await.0, 200);
    }
}
