//! TLS client configurations: toward the proxy (chain verified against the CA; a name mismatch is recorded,
//! not fatal, so SNI variants can run) and through the tunnel toward the TLS origin (certificate pinned).

use std::sync::{Arc, Mutex};

use rustls::{
    CertificateError, DigitallySignedStruct, Error, RootCertStore, SignatureScheme,
    client::{
        WebPkiServerVerifier,
        danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    },
    crypto::{CryptoProvider, WebPkiSupportedAlgorithms, ring},
    pki_types::{CertificateDer, ServerName, UnixTime},
};
use schemars::JsonSchema;
use serde::Serialize;

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

/// How the client trusts the proxy's certificate.
#[derive(Clone)]
pub enum ProxyTrust {
    /// Verify the chain against these roots. `anchors` holds the DER of every certificate that made up `store`,
    /// so that a server presenting one of them byte for byte is trusted as is (see `RecordingVerifier`).
    Roots { store: Arc<RootCertStore>, anchors: Arc<Vec<CertificateDer<'static>>> },
    /// `--proxy-insecure`: accept any certificate (nothing is recorded about it).
    Insecure,
}

impl ProxyTrust {
    /// Roots from PEM text (a CA file or the embedded proxy's CA).
    pub fn from_pem(pem: &str) -> Result<Self, String> {
        let mut store = RootCertStore::empty();
        let mut anchors = Vec::new();
        for item in rustls_pki_types::pem::PemObject::pem_slice_iter(pem.as_bytes()) {
            let cert: CertificateDer<'static> = item.map_err(|e| format!("invalid PEM: {e}"))?;
            store.add(cert.clone()).map_err(|e| format!("unusable CA certificate: {e}"))?;
            anchors.push(cert);
        }
        if anchors.is_empty() {
            return Err("no CERTIFICATE found in the PEM".into());
        }
        Ok(ProxyTrust::Roots { store: Arc::new(store), anchors: Arc::new(anchors) })
    }
}

/// What the client learned about the proxy's certificate during one handshake.
#[derive(Debug, Clone, Default, Serialize, JsonSchema, PartialEq, Eq)]
pub struct CertCheck {
    /// The chain verified against the CA (None with `--proxy-insecure`).
    pub chain_trusted: Option<bool>,
    /// The certificate is valid for the proxy's name (from its URL).
    pub valid_for_proxy_name: Option<bool>,
    /// The certificate is valid for the SNI the client sent (None when no SNI was sent).
    pub valid_for_sni: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The three signature methods of a verifier that checks handshake signatures the provider's way, with the
/// algorithms in its `algs` field; both verifiers here only differ in how they judge the certificate.
macro_rules! signatures_by_provider {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.algs.supported_schemes()
        }
    };
}

/// Judges the proxy's certificate with webpki and records what it found; a name mismatch is not fatal.
///
/// One exception to plain webpki: a certificate that is byte for byte one of the trust anchors given with
/// `--proxy-cacert` is trusted even though it is a CA certificate (`CA:TRUE`, which `openssl req -x509` sets by
/// default). webpki refuses any CA certificate as an end entity (`CaUsedAsEndEntity`), whereas curl and OpenSSL
/// accept a self-signed leaf that is in the trust store (it is trusted by being there; curl also sets
/// `X509_V_FLAG_PARTIAL_CHAIN`), so `curl --proxy-cacert` tunnels where the harness would not. Only that
/// refusal is waived, and only for an anchor: everything webpki checks before the basic constraints still holds
/// (the certificate parses, and `now` is within its validity period: webpki checks the dates before the basic
/// constraints, a test below pins that order), the extended key usage, which webpki checks after them, is
/// checked here instead (see [`eku_allows_server_auth`]), and the handshake signature must still verify against
/// the certificate's key, so the server proves it holds that key. The anchor's own signature is not checked (it
/// is trusted by identity, not by signature), nor is any chain the server sends along with it.
#[derive(Debug)]
struct RecordingVerifier {
    inner: Option<Arc<WebPkiServerVerifier>>,
    /// The DER of every trust anchor (empty with `--proxy-insecure`).
    anchors: Arc<Vec<CertificateDer<'static>>>,
    proxy_name: ServerName<'static>,
    sni_sent: bool,
    algs: WebPkiSupportedAlgorithms,
    out: Arc<Mutex<CertCheck>>,
}

fn name_ok(end_entity: &CertificateDer<'_>, name: &ServerName<'_>) -> bool {
    rustls::server::ParsedCertificate::try_from(end_entity)
        .and_then(|c| rustls::client::verify_server_name(&c, name))
        .is_ok()
}

/// webpki's refusal of a CA certificate as end entity. rustls has no variant for it and wraps the webpki error,
/// whose text is its variant name.
fn is_ca_used_as_end_entity(e: &Error) -> bool {
    matches!(e, Error::InvalidCertificate(CertificateError::Other(other)) if other.to_string() == "CaUsedAsEndEntity")
}

impl RecordingVerifier {
    fn is_anchor(&self, end_entity: &CertificateDer<'_>) -> bool {
        self.anchors.iter().any(|a| a.as_ref() == end_entity.as_ref())
    }
}

/// The check webpki skips when it stops at `CaUsedAsEndEntity`: an end entity's extended key usage, if present,
/// must include TLS server authentication. Checks a certificate that webpki has already parsed.
fn anchor_as_end_entity(end_entity: &CertificateDer<'_>) -> Result<(), Error> {
    match eku_allows_server_auth(end_entity.as_ref()) {
        Some(true) => Ok(()),
        Some(false) => Err(Error::InvalidCertificate(CertificateError::InvalidPurpose)),
        None => Err(Error::InvalidCertificate(CertificateError::BadEncoding)),
    }
}

/// One DER element: tag, contents and what follows it (None if malformed). Definite lengths only, as in DER.
fn der_next(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let (bytes, after) = rest.split_at(n);
        rest = after;
        bytes.iter().fold(0, |acc, b| (acc << 8) | usize::from(*b))
    };
    (rest.len() >= len).then(|| rest.split_at(len)).map(|(contents, after)| (tag, contents, after))
}

/// Whether a certificate may serve TLS the way webpki judges an end entity: no extended key usage extension, or
/// one that lists id-kp-serverAuth (RFC 5280 §4.2.1.12). None if the DER is not a certificate.
fn eku_allows_server_auth(cert: &[u8]) -> Option<bool> {
    const SEQUENCE: u8 = 0x30;
    const OID: u8 = 0x06;
    const BOOLEAN: u8 = 0x01;
    const OCTET_STRING: u8 = 0x04;
    const EXTENSIONS: u8 = 0xa3; // [3] EXPLICIT in TBSCertificate
    const EKU: &[u8] = &[0x55, 0x1d, 0x25]; // 2.5.29.37
    const SERVER_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01]; // 1.3.6.1.5.5.7.3.1

    let expect = |input, tag| der_next(input).filter(|(t, ..)| *t == tag).map(|(_, contents, rest)| (contents, rest));
    let (cert, _) = expect(cert, SEQUENCE)?;
    let (mut tbs, _) = expect(cert, SEQUENCE)?;
    while !tbs.is_empty() {
        let (tag, contents, rest) = der_next(tbs)?;
        tbs = rest;
        if tag != EXTENSIONS {
            continue;
        }
        let (mut exts, _) = expect(contents, SEQUENCE)?;
        while !exts.is_empty() {
            let (ext, rest) = expect(exts, SEQUENCE)?;
            exts = rest;
            let (oid, ext) = expect(ext, OID)?;
            if oid != EKU {
                continue;
            }
            let ext = match der_next(ext)? {
                (BOOLEAN, _, rest) => rest,
                _ => ext,
            };
            let (value, _) = expect(ext, OCTET_STRING)?;
            let (mut purposes, _) = expect(value, SEQUENCE)?;
            while !purposes.is_empty() {
                let (purpose, rest) = expect(purposes, OID)?;
                if purpose == SERVER_AUTH {
                    return Some(true);
                }
                purposes = rest;
            }
            // Listed purposes without serverAuth, or an empty list (which webpki refuses too).
            return Some(false);
        }
    }
    Some(true)
}

impl ServerCertVerifier for RecordingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let mut check = CertCheck {
            valid_for_proxy_name: Some(name_ok(end_entity, &self.proxy_name)),
            valid_for_sni: self.sni_sent.then(|| name_ok(end_entity, server_name)),
            ..Default::default()
        };
        let result = match &self.inner {
            None => Ok(ServerCertVerified::assertion()),
            Some(v) => match v.verify_server_cert(end_entity, intermediates, &self.proxy_name, ocsp, now) {
                Ok(ok) => Ok(ok),
                // webpki checks the chain before the name, so a name error means the chain is trusted.
                Err(Error::InvalidCertificate(
                    CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
                )) => Ok(ServerCertVerified::assertion()),
                // A trust anchor presented as is (see the type's documentation).
                Err(e) if is_ca_used_as_end_entity(&e) && self.is_anchor(end_entity) => {
                    anchor_as_end_entity(end_entity).map(|()| ServerCertVerified::assertion())
                }
                Err(e) => Err(e),
            },
        };
        if self.inner.is_some() {
            check.chain_trusted = Some(result.is_ok());
            check.error = result.as_ref().err().map(Error::to_string);
        }
        *self.out.lock().expect("cert check lock") = check;
        result
    }

    signatures_by_provider!();
}

/// A client config for one connection to the proxy; the returned cell receives the certificate facts.
pub fn proxy_client_config(
    trust: &ProxyTrust,
    proxy_name: ServerName<'static>,
    send_sni: bool,
    alpn: &[String],
) -> Result<(Arc<rustls::ClientConfig>, Arc<Mutex<CertCheck>>), String> {
    let provider = provider();
    let (inner, anchors) = match trust {
        ProxyTrust::Insecure => (None, Arc::default()),
        ProxyTrust::Roots { store, anchors } => (
            Some(
                WebPkiServerVerifier::builder_with_provider(store.clone(), provider.clone())
                    .build()
                    .map_err(|e| e.to_string())?,
            ),
            anchors.clone(),
        ),
    };
    let out = Arc::new(Mutex::new(CertCheck::default()));
    let verifier = RecordingVerifier {
        inner,
        anchors,
        proxy_name,
        sni_sent: send_sni,
        algs: provider.signature_verification_algorithms,
        out: out.clone(),
    };
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    cfg.enable_sni = send_sni;
    cfg.alpn_protocols = alpn.iter().map(|a| a.as_bytes().to_vec()).collect();
    Ok((Arc::new(cfg), out))
}

/// Accepts exactly one certificate (the TLS origin's); anything else means someone terminated the TLS.
#[derive(Debug)]
struct PinnedVerifier {
    pinned: CertificateDer<'static>,
    algs: WebPkiSupportedAlgorithms,
    seen: Arc<Mutex<Option<bool>>>,
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let ok = end_entity.as_ref() == self.pinned.as_ref();
        *self.seen.lock().expect("pin lock") = Some(ok);
        if ok {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(Error::General("the certificate is not the TLS origin's (the tunnel was intercepted)".into()))
        }
    }

    signatures_by_provider!();
}

/// Set during the handshake: whether the presented certificate was the pinned one.
pub type PinCell = Arc<Mutex<Option<bool>>>;

/// A client config for the inner handshake to the TLS origin; the cell says whether the pin matched.
pub fn pinned_client_config(
    pinned: CertificateDer<'static>,
    alpn: &[String],
) -> Result<(Arc<rustls::ClientConfig>, PinCell), String> {
    let provider = provider();
    let seen = Arc::new(Mutex::new(None));
    let verifier = PinnedVerifier { pinned, algs: provider.signature_verification_algorithms, seen: seen.clone() };
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|a| a.as_bytes().to_vec()).collect();
    Ok((Arc::new(cfg), seen))
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, SocketAddr};

    use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair};
    use rustls::{
        server::{ClientHello, ResolvesServerCert},
        sign::CertifiedKey,
    };
    use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, pem::PemObject};
    use tokio::{
        io::AsyncWriteExt,
        net::{TcpListener, TcpStream},
    };

    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    /// A certificate (with its PEM) and its key.
    struct Identity {
        pem: String,
        der: CertificateDer<'static>,
        key: PrivateKeyDer<'static>,
    }

    fn params(name: &str, ca: bool, tweak: impl FnOnce(&mut CertificateParams)) -> CertificateParams {
        let mut params = CertificateParams::new(vec![name.to_string()]).expect("params");
        params.distinguished_name.push(DnType::CommonName, name);
        if ca {
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        }
        tweak(&mut params);
        params
    }

    fn identity(cert: rcgen::Certificate, key: &KeyPair) -> Identity {
        Identity { pem: cert.pem(), der: cert.der().clone(), key: PrivatePkcs8KeyDer::from(key.serialize_der()).into() }
    }

    /// A self-signed CA certificate for `name`, as `openssl req -x509` makes them.
    fn self_signed_ca(name: &str, tweak: impl FnOnce(&mut CertificateParams)) -> Identity {
        let key = KeyPair::generate().expect("key");
        let cert = params(name, true, tweak).self_signed(&key).expect("self-signed");
        identity(cert, &key)
    }

    /// Presents `certified` (whether or not its key matches the certificate).
    #[derive(Debug)]
    struct Fixed(Arc<CertifiedKey>);

    impl ResolvesServerCert for Fixed {
        fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
            Some(self.0.clone())
        }
    }

    /// A TLS server on loopback that presents `chain` signed with `key`, for one connection.
    async fn serve_once(chain: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> SocketAddr {
        let provider = provider();
        let signing_key = provider.key_provider.load_private_key(key).expect("server key");
        let cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Fixed(Arc::new(CertifiedKey::new(chain, signing_key)))));
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.expect("accept");
            if let Ok(mut tls) = tokio_rustls::TlsAcceptor::from(Arc::new(cfg)).accept(tcp).await {
                let _ = tls.shutdown().await;
            }
        });
        addr
    }

    /// Handshake toward `addr` as the harness does toward a proxy named "proxy.test", with SNI.
    async fn handshake(addr: SocketAddr, trust: &ProxyTrust) -> (Result<(), String>, CertCheck) {
        let (cfg, check) =
            proxy_client_config(trust, "proxy.test".try_into().expect("name"), true, &[]).expect("client config");
        let tcp = TcpStream::connect(addr).await.expect("connect loopback");
        let result = tokio_rustls::TlsConnector::from(cfg)
            .connect("proxy.test".try_into().expect("name"), tcp)
            .await
            .map(drop)
            .map_err(|e| e.to_string());
        let check = check.lock().expect("lock").clone();
        (result, check)
    }

    /// Serves `id` and checks that a client trusting `trust_pem` refuses its chain; returns the recorded error.
    async fn chain_refused(id: Identity, trust_pem: &str) -> Result<String, Box<dyn std::error::Error>> {
        let addr = serve_once(vec![id.der.clone()], id.key).await;
        let (result, check) = handshake(addr, &ProxyTrust::from_pem(trust_pem)?).await;
        assert!(result.is_err(), "handshake must fail: {check:?}");
        assert_eq!(check.chain_trusted, Some(false));
        Ok(check.error.unwrap_or_default())
    }

    #[tokio::test]
    async fn self_signed_ca_in_trust_file_is_accepted() -> TestResult {
        let id = self_signed_ca("proxy.test", |_| {});
        let addr = serve_once(vec![id.der.clone()], id.key).await;
        let (result, check) = handshake(addr, &ProxyTrust::from_pem(&id.pem)?).await;
        result?;
        assert_eq!(
            check,
            CertCheck {
                chain_trusted: Some(true),
                valid_for_proxy_name: Some(true),
                valid_for_sni: Some(true),
                error: None
            }
        );
        Ok(())
    }

    #[tokio::test]
    async fn anchor_name_mismatch_is_recorded_not_fatal() -> TestResult {
        let id = self_signed_ca("other.test", |_| {});
        let addr = serve_once(vec![id.der.clone()], id.key).await;
        let (result, check) = handshake(addr, &ProxyTrust::from_pem(&id.pem)?).await;
        result?;
        assert_eq!(check.chain_trusted, Some(true));
        assert_eq!(check.valid_for_proxy_name, Some(false));
        assert_eq!(check.valid_for_sni, Some(false));
        Ok(())
    }

    #[tokio::test]
    async fn self_signed_ca_not_in_trust_file_is_refused() -> TestResult {
        let id = self_signed_ca("proxy.test", |_| {});
        let other = self_signed_ca("unrelated.test", |_| {});
        let error = chain_refused(id, &other.pem).await?;
        assert!(!error.is_empty());
        Ok(())
    }

    #[tokio::test]
    async fn ca_signed_leaf_still_verified() -> TestResult {
        let ca_key = KeyPair::generate()?;
        let ca_params = params("Test CA", true, |_| {});
        let ca = identity(ca_params.self_signed(&ca_key)?, &ca_key);
        let issuer = Issuer::new(ca_params, ca_key);
        let leaf_key = KeyPair::generate()?;
        let leaf = identity(params("proxy.test", false, |_| {}).signed_by(&leaf_key, &issuer)?, &leaf_key);
        let addr = serve_once(vec![leaf.der.clone()], leaf.key).await;
        let (result, check) = handshake(addr, &ProxyTrust::from_pem(&ca.pem)?).await;
        result?;
        assert_eq!(check.chain_trusted, Some(true));
        assert_eq!(check.valid_for_proxy_name, Some(true));
        Ok(())
    }

    /// Pins webpki's order: it checks the validity period before refusing a CA as end entity, so an expired
    /// anchor never reaches the exception.
    #[tokio::test]
    async fn expired_anchor_is_refused() -> TestResult {
        let id = self_signed_ca("proxy.test", |p| {
            p.not_before = rcgen::date_time_ymd(2000, 1, 1);
            p.not_after = rcgen::date_time_ymd(2001, 1, 1);
        });
        let pem = id.pem.clone();
        let error = chain_refused(id, &pem).await?;
        assert!(error.contains("expired"), "{error}");
        Ok(())
    }

    #[tokio::test]
    async fn anchor_without_server_auth_purpose_is_refused() -> TestResult {
        let id = self_signed_ca("proxy.test", |p| p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth]);
        let pem = id.pem.clone();
        let error = chain_refused(id, &pem).await?;
        assert!(error.contains("InvalidPurpose"), "{error}");
        Ok(())
    }

    /// Presenting the anchor is not enough: the handshake signature must come from its key.
    #[tokio::test]
    async fn anchor_presented_without_its_key_is_refused() -> TestResult {
        let id = self_signed_ca("proxy.test", |_| {});
        let impostor_key = PrivatePkcs8KeyDer::from(KeyPair::generate()?.serialize_der()).into();
        let addr = serve_once(vec![id.der.clone()], impostor_key).await;
        let (result, check) = handshake(addr, &ProxyTrust::from_pem(&id.pem)?).await;
        let error = result.expect_err("handshake must fail");
        assert!(error.to_lowercase().contains("signature"), "{error}");
        // The certificate itself was the anchor; the proof of possession is what failed.
        assert_eq!(check.chain_trusted, Some(true));
        Ok(())
    }

    /// The certificate `openssl req -x509` makes (CA:TRUE, RSA), as users give to `--proxy-cacert`.
    #[tokio::test]
    async fn openssl_self_signed_cert_is_accepted() -> TestResult {
        let dir = std::env::temp_dir().join(format!("tls-anchor-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let (cert_path, key_path) = (dir.join("proxy.crt"), dir.join("proxy.key"));
        let run = std::process::Command::new("openssl")
            .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=proxy.test"])
            .args(["-addext", "subjectAltName=DNS:proxy.test", "-keyout"])
            .arg(&key_path)
            .arg("-out")
            .arg(&cert_path)
            .output();
        let output = match run {
            Ok(output) => output,
            Err(e) => {
                println!("note: skipped, openssl could not be run: {e}");
                let _ = std::fs::remove_dir_all(&dir);
                return Ok(());
            }
        };
        assert!(output.status.success(), "openssl failed: {}", String::from_utf8_lossy(&output.stderr));
        let pem = std::fs::read_to_string(&cert_path)?;
        let key = PrivateKeyDer::from_pem_file(&key_path)?;
        std::fs::remove_dir_all(&dir)?;
        let ProxyTrust::Roots { anchors, .. } = ProxyTrust::from_pem(&pem)? else { unreachable!() };
        let addr = serve_once(anchors.to_vec(), key).await;
        let (result, check) = handshake(addr, &ProxyTrust::from_pem(&pem)?).await;
        result?;
        assert_eq!(check.chain_trusted, Some(true));
        assert_eq!(check.valid_for_proxy_name, Some(true));
        Ok(())
    }

    #[test]
    fn eku_reading() {
        let with = |ekus: Vec<ExtendedKeyUsagePurpose>| {
            let id = self_signed_ca("proxy.test", |p| p.extended_key_usages = ekus);
            eku_allows_server_auth(id.der.as_ref())
        };
        assert_eq!(with(vec![]), Some(true));
        assert_eq!(with(vec![ExtendedKeyUsagePurpose::ServerAuth]), Some(true));
        assert_eq!(with(vec![ExtendedKeyUsagePurpose::ClientAuth, ExtendedKeyUsagePurpose::ServerAuth]), Some(true));
        assert_eq!(with(vec![ExtendedKeyUsagePurpose::ClientAuth]), Some(false));
        assert_eq!(eku_allows_server_auth(b"not a certificate"), None);
        assert_eq!(eku_allows_server_auth(&[0x30, 0x82, 0xff]), None);
    }

    #[test]
    fn from_pem_keeps_every_anchor() {
        let (a, b) = (self_signed_ca("a.test", |_| {}), self_signed_ca("b.test", |_| {}));
        let Ok(ProxyTrust::Roots { store, anchors }) = ProxyTrust::from_pem(&format!("{}{}", a.pem, b.pem)) else {
            panic!("two certificates must load");
        };
        assert_eq!(store.len(), 2);
        assert_eq!(*anchors, vec![a.der, b.der]);
        assert!(ProxyTrust::from_pem("").is_err());
    }
}
