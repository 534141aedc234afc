//! Opening a connection to the proxy (TCP, then TLS on the `tls` transport) with the SNI and ALPN a scenario
//! asks for, retried once: a proxy that drops one handshake is a setup problem of that moment, not a failure
//! of whatever the scenario was about. The caller decides what a failure that survives the retry means.

use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::time::Instant;

use super::{ProxyEndpoint, ProxyTls, Settings};
use crate::{
    client::{self, Conn, TlsError, tls::CertCheck, tls::ProxyTrust, transcript::Transcript},
    scenario::Transport,
};

/// The TLS settings of one connection to the proxy.
#[derive(Debug, Clone, Default)]
pub struct TlsChoice {
    /// The SNI to send (None: no server_name extension; an IP address is never sent, RFC 6066 §3).
    pub sni: Option<String>,
    pub alpn: Vec<String>,
    /// HTTP/2 through the harness's own frame writer instead of the `h2` crate (scenarios with `h2_headers`).
    pub h2_frames: bool,
}

/// Why the connection could not be opened (after the retry, where one applies).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// The proxy accepted the TCP connection and reset it: proxy behaviour, not unreachability.
    #[error("{0}")]
    AcceptedThenReset(String),
    /// No TCP connection, twice (or a failed handshake, then no TCP connection).
    #[error("{first}; retried: {second}")]
    Connect { first: String, second: String, timed_out: bool },
    /// The proxy URL's host is not a valid server name.
    #[error("{0:?} is not a valid server name")]
    BadName(String),
    /// The TLS configuration could not be built.
    #[error("{0}")]
    Config(String),
    /// The certificate chain is not trusted by the given CA: a setup mistake, not retried.
    #[error("the proxy's certificate chain is not trusted by the given CA: {0}")]
    Untrusted(TlsError),
    /// The handshake failed or timed out, twice.
    #[error("{first}; retried: {second}")]
    Handshake { first: TlsError, second: TlsError },
    /// On the `h2` transport, the proxy did not select h2 in ALPN (this is what it selected).
    #[error("the proxy did not select h2 in ALPN (selected {0:?}): it does not offer HTTP/2 on this listener")]
    NoH2(Option<String>),
    /// The HTTP/2 connection preface and SETTINGS exchange failed.
    #[error("no HTTP/2 connection with the proxy: {0}")]
    H2(crate::client::h2::H2Error),
}

impl OpenError {
    /// Whether the proxy stalled (no answer before a deadline) at least once.
    pub fn timed_out(&self) -> bool {
        match self {
            OpenError::Handshake { first, second } => *first == TlsError::TimedOut || *second == TlsError::TimedOut,
            OpenError::Connect { timed_out, .. } => *timed_out,
            _ => false,
        }
    }
}

/// What the SNI setting sends: rustls never sends an IP address as SNI.
pub fn sni_sent(name: Option<&str>) -> Option<String> {
    match name.and_then(|n| ServerName::try_from(n.to_string()).ok()) {
        Some(ServerName::DnsName(d)) => Some(d.as_ref().to_string()),
        _ => None,
    }
}

/// Pause before the retry, so a proxy that is busy for a moment gets the moment.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// How one attempt failed.
enum Failure {
    Tcp(client::ConnectError),
    Tls(TlsError),
}

impl Failure {
    fn timed_out(&self) -> bool {
        matches!(self, Failure::Tcp(client::ConnectError::Timeout(_)) | Failure::Tls(TlsError::TimedOut))
    }

    fn describe(&self) -> String {
        match self {
            Failure::Tcp(e) => e.to_string(),
            Failure::Tls(e) => e.to_string(),
        }
    }
}

/// Opens a connection to the proxy, retrying once after a failed TCP connect or TLS handshake. Returns the
/// connection and, on the `tls` transport, the TLS facts of the attempt that counted; on failure, the error,
/// the facts of the last attempt and the transcript.
pub async fn open(
    ep: &ProxyEndpoint,
    settings: &Settings,
    choice: &TlsChoice,
    mut transcript: Transcript,
) -> Result<(Conn, Option<ProxyTls>), (OpenError, Option<ProxyTls>, Transcript)> {
    let mut first: Option<Failure> = None;
    for _ in 0..2 {
        if let Some(f) = &first {
            transcript.event(format!("retrying once after: {}", f.describe()));
            tokio::time::sleep(RETRY_PAUSE).await;
        }
        let deadline = Instant::now() + settings.step_timeout;
        let (failure, facts) = match client::connect_tcp(ep.addr, deadline).await {
            Err(e) if e.accepted_then_reset() => {
                return Err((OpenError::AcceptedThenReset(e.to_string()), None, transcript));
            }
            Err(e) => (Failure::Tcp(e), None),
            Ok(tcp) => {
                transcript.event(format!("connected to the proxy at {} ({})", ep.addr, ep.transport.as_str()));
                let mut conn = Conn::new(tcp, transcript);
                if !ep.transport.is_tls() {
                    return start_http2(conn, ep, None, choice.h2_frames, deadline).await;
                }
                match handshake(&mut conn, ep, choice, deadline).await {
                    Ok(facts) => return start_http2(conn, ep, Some(facts), choice.h2_frames, deadline).await,
                    Err((HandshakeError::Fatal(e), facts)) => {
                        return Err((e, facts, std::mem::replace(&mut conn.transcript, Transcript::empty())));
                    }
                    Err((HandshakeError::Retry(e), facts)) => {
                        conn.reset_quietly();
                        transcript = std::mem::replace(&mut conn.transcript, Transcript::empty());
                        (Failure::Tls(e), facts)
                    }
                }
            }
        };
        let Some(earlier) = first.take() else {
            first = Some(failure);
            continue;
        };
        let error = match (earlier, failure) {
            (Failure::Tls(a), Failure::Tls(b)) => OpenError::Handshake { first: a, second: b },
            (a, b) => OpenError::Connect {
                timed_out: a.timed_out() || b.timed_out(),
                first: a.describe(),
                second: b.describe(),
            },
        };
        return Err((error, facts, transcript));
    }
    unreachable!("the second attempt always returns")
}

/// HTTP/2 on the h2 transports, and wherever ALPN selected h2 (a client that offered h2 must then speak it).
/// Not retried: a proxy without HTTP/2 on this listener will not grow it in 100 ms.
async fn start_http2(
    mut conn: Conn,
    ep: &ProxyEndpoint,
    facts: Option<ProxyTls>,
    frames: bool,
    deadline: Instant,
) -> Result<(Conn, Option<ProxyTls>), (OpenError, Option<ProxyTls>, Transcript)> {
    let selected = facts.as_ref().and_then(|f| f.alpn_selected.clone());
    let alpn_h2 = selected.as_deref() == Some("h2");
    let failed = if ep.transport == Transport::H2 && !alpn_h2 {
        Some(OpenError::NoH2(selected))
    } else if ep.transport.is_h2() || alpn_h2 {
        conn.start_h2(frames, deadline).await.err().map(OpenError::H2)
    } else {
        None
    };
    match failed {
        None => Ok((conn, facts)),
        Some(e) => Err((e, facts, std::mem::replace(&mut conn.transcript, Transcript::empty()))),
    }
}

enum HandshakeError {
    /// Not worth a retry (configuration, untrusted chain).
    Fatal(OpenError),
    /// The handshake failed or timed out.
    Retry(TlsError),
}

/// One TLS handshake with the proxy; the facts are returned whatever happened.
async fn handshake(
    conn: &mut Conn,
    ep: &ProxyEndpoint,
    choice: &TlsChoice,
    deadline: Instant,
) -> Result<ProxyTls, (HandshakeError, Option<ProxyTls>)> {
    let sni_sent = sni_sent(choice.sni.as_deref());
    // The h2 transport offers exactly h2.
    let alpn = if ep.transport == Transport::H2 { vec!["h2".to_string()] } else { choice.alpn.clone() };
    let mut facts = ProxyTls {
        sni_sent: sni_sent.clone(),
        alpn_offered: alpn.clone(),
        alpn_selected: None,
        cert: CertCheck::default(),
    };
    let Ok(proxy_name) = ServerName::try_from(ep.host.clone()) else {
        return Err((HandshakeError::Fatal(OpenError::BadName(ep.host.clone())), Some(facts)));
    };
    let trust = ep.trust.clone().unwrap_or(ProxyTrust::Insecure);
    let (config, cell) = match client::tls::proxy_client_config(&trust, proxy_name.clone(), sni_sent.is_some(), &alpn) {
        Ok(c) => c,
        Err(e) => return Err((HandshakeError::Fatal(OpenError::Config(e)), Some(facts))),
    };
    let connect_name = match &sni_sent {
        Some(n) => ServerName::try_from(n.clone()).unwrap_or(proxy_name),
        None => proxy_name,
    };
    let result = conn.start_tls(config, connect_name, deadline).await;
    facts.cert = cell.lock().expect("cert check lock").clone();
    match result {
        Ok(alpn) => {
            facts.alpn_selected = alpn;
            if facts.cert.valid_for_sni == Some(false) || facts.cert.valid_for_proxy_name == Some(false) {
                conn.transcript.event(format!(
                    "proxy certificate name check: valid for proxy name {:?}, for SNI {:?} (recorded, not fatal)",
                    facts.cert.valid_for_proxy_name, facts.cert.valid_for_sni
                ));
            }
            Ok(facts)
        }
        Err(e) if facts.cert.chain_trusted == Some(false) => {
            Err((HandshakeError::Fatal(OpenError::Untrusted(e)), Some(facts)))
        }
        Err(e) => {
            conn.transcript.event(e.to_string());
            Err((HandshakeError::Retry(e), Some(facts)))
        }
    }
}
