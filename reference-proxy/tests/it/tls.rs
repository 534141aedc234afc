//! The TLS listener: SNI is recorded, never compared with the target, never required; end-to-end TLS through
//! the tunnel reaches the origin with the client's own SNI.

use rustls::pki_types::ServerName;
use rustls::pki_types::pem::PemObject as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

#[tokio::test]
async fn every_sni_tunnels() {
    let echo = echo_server().await;
    let proxy = start(config()).await;
    let target = format!("origin.test:{}", echo.port());
    // Absent (by IP), the proxy's name, the target's name, and an unrelated name: RFC 9110 §9.3.6, M01.
    for sni in [None, Some("proxy.test"), Some("origin.test"), Some("unrelated.test")] {
        let mut s = tls_to_proxy(&proxy, sni).await;
        let (status, head) = connect(&mut s, &target).await;
        assert_eq!(head, "HTTP/1.1 200 Connection Established\r\n\r\n", "sni={sni:?} status={status}");
        s.write_all(b"hello").await.unwrap();
        let mut buf = [0u8; 5];
        within("echo", s.read_exact(&mut buf)).await.unwrap();
        assert_eq!(&buf, b"hello", "sni={sni:?}");
    }
    proxy.shutdown().await;
}

#[tokio::test]
async fn tls12_and_tls13_are_offered() {
    let proxy = start(config()).await;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(proxy.ca_cert_pem().unwrap().as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[version])
            .unwrap()
            .with_root_certificates(roots.clone())
            .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg));
        let tcp = tokio::net::TcpStream::connect(proxy.tls_addrs()[0]).await.unwrap();
        let tls = within("handshake", connector.connect(ServerName::try_from("proxy.test").unwrap(), tcp)).await;
        let tls = tls.unwrap_or_else(|e| panic!("{version:?}: {e}"));
        assert_eq!(tls.get_ref().1.protocol_version(), Some(version.version));
    }
}

#[tokio::test]
async fn alpn_is_http11() {
    let proxy = start(config()).await;
    let s = tls_to_proxy(&proxy, Some("proxy.test")).await;
    assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
}

#[tokio::test]
async fn end_to_end_tls_through_plain_and_tls_listeners() {
    let (origin, origin_ca, seen) = tls_origin(&["origin.test"]).await;
    let proxy = start(config()).await;
    let target = format!("origin.test:{}", origin.port());
    for via_tls in [false, true] {
        let mut tunnel: Box<dyn crate::tunnel::Stream> = if via_tls {
            Box::new(tls_to_proxy(&proxy, Some("proxy.test")).await)
        } else {
            Box::new(plain_to_proxy(&proxy).await)
        };
        let (status, _) = connect(&mut tunnel, &target).await;
        assert_eq!(status, 200);
        let connector = tls_connector(&origin_ca);
        let name = ServerName::try_from("origin.test").unwrap();
        let mut inner = within("TLS through the tunnel", connector.connect(name, tunnel)).await.unwrap();
        inner.write_all(b"GET / HTTP/1.1\r\nHost: origin.test\r\n\r\n").await.unwrap();
        let mut response = Vec::new();
        let _ = within("origin response", inner.read_to_end(&mut response)).await;
        let text = String::from_utf8_lossy(&response);
        assert!(text.starts_with("HTTP/1.1 200 OK") && text.ends_with("hello from origin\n"), "{text}");
    }
    // The origin saw the client's SNI: the proxy did not terminate the inner TLS.
    assert_eq!(*seen.lock().unwrap(), vec![Some("origin.test".to_owned()); 2]);
}

#[tokio::test]
async fn pem_identity_files() {
    let dir = std::env::temp_dir().join(format!("reference-proxy-pem-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let generated = reference_proxy::tls::generate(&["proxy.test".to_owned()]).unwrap();
    let cert_pem = pem_encode("CERTIFICATE", generated.leaf.as_ref());
    let key_pem = pem_encode("PRIVATE KEY", generated.key.secret_der());
    std::fs::write(dir.join("cert.pem"), cert_pem).unwrap();
    std::fs::write(dir.join("key.pem"), key_pem).unwrap();
    let mut cfg = config();
    cfg.tls =
        Some(reference_proxy::tls::TlsIdentitySource::Pem { cert: dir.join("cert.pem"), key: dir.join("key.pem") });
    let proxy = start(cfg).await;
    assert!(proxy.ca_cert_pem().is_none());
    let tcp = tokio::net::TcpStream::connect(proxy.tls_addrs()[0]).await.unwrap();
    let connector = tls_connector(&generated.ca_pem);
    let tls = within("handshake", connector.connect(ServerName::try_from("proxy.test").unwrap(), tcp)).await;
    assert!(tls.is_ok(), "{tls:?}");
    // A missing file is a start-up error, not a panic.
    let mut bad = config();
    bad.tls =
        Some(reference_proxy::tls::TlsIdentitySource::Pem { cert: dir.join("missing.pem"), key: dir.join("key.pem") });
    assert!(reference_proxy::start(bad).await.is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}
