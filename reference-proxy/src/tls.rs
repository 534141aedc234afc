//! The TLS identity of the TLS listeners: PEM files, or a CA and leaf made by rcgen at start-up.
//!
//! The server name the client sends (SNI) is only recorded for logs: it is never compared with the CONNECT
//! target or the Host field, and never required (RFC 9110 §9.3.6; the Apache bug behind this project).

use std::path::PathBuf;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use thiserror::Error;

/// Where the TLS certificate and key come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsIdentitySource {
    /// A PEM certificate chain (leaf first) and a PEM private key.
    Pem { cert: PathBuf, key: PathBuf },
    /// A fresh CA and a leaf it signs for these names (DNS names or IP addresses), made at start-up.
    SelfSigned { names: Vec<String> },
}

#[derive(Debug, Error)]
pub enum TlsError {
    #[error("reading certificates from {path}: {source}")]
    Cert { path: String, source: rustls_pki_types::pem::Error },
    #[error("no certificate in {0}")]
    NoCert(String),
    #[error("reading the private key from {path}: {source}")]
    Key { path: String, source: rustls_pki_types::pem::Error },
    #[error("generating the self-signed identity: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("a self-signed identity needs at least one name")]
    NoNames,
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("the upstream CA: {0}")]
    UpstreamCa(String),
}

/// A ready TLS server configuration, and the CA certificate when the identity was generated.
pub struct TlsIdentity {
    pub config: Arc<ServerConfig>,
    pub ca_cert_pem: Option<String>,
}

impl TlsIdentity {
    pub fn load(source: &TlsIdentitySource) -> Result<Self, TlsError> {
        let (chain, key, ca_cert_pem) = match source {
            TlsIdentitySource::Pem { cert, key } => {
                let shown = cert.display().to_string();
                let chain = CertificateDer::pem_file_iter(cert)
                    .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                    .map_err(|source| TlsError::Cert { path: shown.clone(), source })?;
                if chain.is_empty() {
                    return Err(TlsError::NoCert(shown));
                }
                let key = PrivateKeyDer::from_pem_file(key)
                    .map_err(|source| TlsError::Key { path: key.display().to_string(), source })?;
                (chain, key, None)
            }
            TlsIdentitySource::SelfSigned { names } => {
                let generated = generate(names)?;
                (vec![generated.leaf], generated.key, Some(generated.ca_pem))
            }
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsIdentity { config: Arc::new(config), ca_cert_pem })
    }
}

/// A generated leaf, its key, and the PEM of the CA that signed it.
pub struct Generated {
    pub leaf: CertificateDer<'static>,
    pub key: PrivateKeyDer<'static>,
    pub ca_pem: String,
}

/// Makes a CA and a leaf for `names`; IP addresses become IP SANs.
pub fn generate(names: &[String]) -> Result<Generated, TlsError> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    if names.is_empty() {
        return Err(TlsError::NoNames);
    }
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.distinguished_name.push(DnType::CommonName, "reference-proxy CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key)?;

    let leaf_key = KeyPair::generate()?;
    let mut leaf_params = CertificateParams::new(names.to_vec())?;
    leaf_params.distinguished_name.push(DnType::CommonName, names[0].clone());
    leaf_params.use_authority_key_identifier_extension = true;
    leaf_params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let leaf = leaf_params.signed_by(&leaf_key, &ca)?;
    let key = PrivateKeyDer::try_from(leaf_key.serialize_der()).map_err(|e| rcgen::Error::PemError(e.to_owned()))?;
    Ok(Generated { leaf: leaf.der().clone(), key, ca_pem: ca.pem() })
}

/// The TLS client toward a parent proxy: its certificate is verified against these PEM trust anchors only.
pub fn upstream_connector(ca_pem: &str) -> Result<tokio_rustls::TlsConnector, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let cert = cert.map_err(|source| TlsError::Cert { path: "upstream CA".into(), source })?;
        roots.add(cert)?;
    }
    if roots.is_empty() {
        return Err(TlsError::UpstreamCa("no certificate in it".into()));
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}
