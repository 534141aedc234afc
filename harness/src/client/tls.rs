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
    /// Verify the chain against these roots.
    Roots(Arc<RootCertStore>),
    /// `--proxy-insecure`: accept any certificate (nothing is recorded about it).
    Insecure,
}

impl ProxyTrust {
    /// Roots from PEM text (a CA file or the embedded proxy's CA).
    pub fn from_pem(pem: &str) -> Result<Self, String> {
        let mut roots = RootCertStore::empty();
        let mut n = 0;
        for item in rustls_pki_types::pem::PemObject::pem_slice_iter(pem.as_bytes()) {
            let cert: CertificateDer<'static> = item.map_err(|e| format!("invalid PEM: {e}"))?;
            roots.add(cert).map_err(|e| format!("unusable CA certificate: {e}"))?;
            n += 1;
        }
        if n == 0 {
            return Err("no CERTIFICATE found in the PEM".into());
        }
        Ok(ProxyTrust::Roots(Arc::new(roots)))
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

#[derive(Debug)]
struct RecordingVerifier {
    inner: Option<Arc<WebPkiServerVerifier>>,
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
                Ok(ok) => {
                    check.chain_trusted = Some(true);
                    Ok(ok)
                }
                // webpki checks the chain before the name, so a name error means the chain is trusted.
                Err(Error::InvalidCertificate(
                    CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
                )) => {
                    check.chain_trusted = Some(true);
                    Ok(ServerCertVerified::assertion())
                }
                Err(e) => {
                    check.chain_trusted = Some(false);
                    check.error = Some(e.to_string());
                    Err(e)
                }
            },
        };
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
    let inner = match trust {
        ProxyTrust::Insecure => None,
        ProxyTrust::Roots(roots) => Some(
            WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
                .build()
                .map_err(|e| e.to_string())?,
        ),
    };
    let out = Arc::new(Mutex::new(CertCheck::default()));
    let verifier = RecordingVerifier {
        inner,
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
