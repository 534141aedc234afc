//! Loopback servers and clients shared by the integration tests. Every wait has a deadline.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reference_proxy::{ProxyConfig, RunningProxy};
use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use tokio_rustls::{TlsAcceptor, TlsConnector, client::TlsStream};

/// Generous deadline for any single network step on a loaded 2-core machine.
pub const STEP: Duration = Duration::from_secs(10);

pub async fn within<F: std::future::Future>(what: &str, f: F) -> F::Output {
    timeout(STEP, f).await.unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// The test configuration plus `origin.test` → 127.0.0.1 and a few names the TLS identity covers.
pub fn config() -> ProxyConfig {
    let mut cfg = ProxyConfig::for_testing();
    cfg.resolver.insert("origin.test", "127.0.0.1".parse().unwrap());
    cfg.resolver.map_only = true;
    cfg.tls = Some(reference_proxy::tls::TlsIdentitySource::SelfSigned {
        names: ["proxy.test", "origin.test", "unrelated.test", "127.0.0.1", "::1"].map(String::from).to_vec(),
    });
    cfg
}

pub async fn start(cfg: ProxyConfig) -> RunningProxy {
    reference_proxy::start(cfg).await.expect("proxy starts")
}

/// A TCP echo server: echoes until EOF, then half-closes. Returns its address.
pub async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
                // Keep the socket until the peer closes, so the client sees our FIN, not a reset.
                let mut rest = Vec::new();
                let _ = timeout(STEP, r.read_to_end(&mut rest)).await;
            });
        }
    });
    addr
}

/// A server that sends `banner` immediately and closes.
pub async fn banner_server(banner: &'static [u8]) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = s.write_all(banner).await;
                let _ = s.shutdown().await;
                let mut rest = Vec::new();
                let _ = timeout(STEP, s.read_to_end(&mut rest)).await;
            });
        }
    });
    addr
}

/// A server that records everything each connection sends (until EOF) and reports it on a channel.
pub async fn recording_server() -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                let _ = timeout(STEP, s.read_to_end(&mut got)).await;
                let _ = tx.send(got);
            });
        }
    });
    (addr, rx)
}

/// A TLS echo origin with its own CA; records the SNI of each handshake. Returns (addr, CA PEM, SNIs).
pub async fn tls_origin(names: &[&str]) -> (SocketAddr, String, Arc<Mutex<Vec<Option<String>>>>) {
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let generated = reference_proxy::tls::generate(&names).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![generated.leaf], generated.key)
        .unwrap();
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(server));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let seen = seen2.clone();
            tokio::spawn(async move {
                let Ok(Ok(mut tls)) = timeout(STEP, acceptor.accept(s)).await else {
                    return;
                };
                seen.lock().unwrap().push(tls.get_ref().1.server_name().map(String::from));
                // Answer like a tiny HTTP server: any request gets a fixed body, then close.
                let mut buf = vec![0u8; 4096];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match timeout(STEP, tls.read(&mut buf)).await {
                        Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
                        _ => return,
                    }
                }
                let body = b"hello from origin\n";
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = tls.write_all(head.as_bytes()).await;
                let _ = tls.write_all(body).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (addr, generated.ca_pem, seen)
}

pub fn tls_connector(ca_pem: &str) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    TlsConnector::from(Arc::new(cfg))
}

/// TLS to the proxy. `sni` None connects by IP address, which sends no SNI.
pub async fn tls_to_proxy(proxy: &RunningProxy, sni: Option<&str>) -> TlsStream<TcpStream> {
    let addr = proxy.tls_addrs()[0];
    let tcp = within("connect to proxy", TcpStream::connect(addr)).await.unwrap();
    let name = match sni {
        Some(n) => ServerName::try_from(n.to_owned()).unwrap(),
        None => ServerName::IpAddress(addr.ip().into()),
    };
    let connector = tls_connector(proxy.ca_cert_pem().unwrap());
    within("TLS handshake with proxy", connector.connect(name, tcp)).await.unwrap()
}

pub async fn plain_to_proxy(proxy: &RunningProxy) -> TcpStream {
    within("connect to proxy", TcpStream::connect(proxy.plain_addrs()[0])).await.unwrap()
}

/// Reads a response head byte by byte (so no tunnel byte is consumed). Returns (status, head text).
pub async fn read_head<S: AsyncRead + Unpin>(s: &mut S) -> (u16, String) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = within("response head", s.read(&mut byte)).await.expect("read response head");
        assert!(n > 0, "EOF inside the response head: {:?}", String::from_utf8_lossy(&head));
        head.push(byte[0]);
        assert!(head.len() < 64 * 1024, "response head too long");
    }
    let text = String::from_utf8(head).expect("ASCII head");
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("status line: {text}"));
    (status, text)
}

/// Sends a CONNECT and returns the response status and head.
pub async fn connect<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, target: &str) -> (u16, String) {
    let req = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n");
    within("send CONNECT", s.write_all(req.as_bytes())).await.unwrap();
    read_head(s).await
}

/// Reads to EOF and returns everything (and whether it ended with EOF rather than an error).
pub async fn read_all<S: AsyncRead + Unpin>(s: &mut S) -> (Vec<u8>, std::io::Result<()>) {
    let mut out = Vec::new();
    let r = within("read to EOF", s.read_to_end(&mut out)).await.map(|_| ());
    (out, r)
}

/// Writes `req` then returns the whole response up to EOF: (status, head, body).
pub async fn exchange(proxy: &RunningProxy, req: &[u8]) -> (u16, String, Vec<u8>) {
    let mut s = plain_to_proxy(proxy).await;
    within("send request", s.write_all(req)).await.unwrap();
    let (status, head) = read_head(&mut s).await;
    let (body, _) = read_all(&mut s).await;
    (status, head, body)
}

/// The value of a header field in a response head (first match, case-insensitive).
pub fn field<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.split("\r\n").skip(1).find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}
