//! The one seam through which deliberate misbehaviours reach the connection handler.
//!
//! The connection handler ([`crate::conn`]) and the request decision ([`crate::decision`]) ask a [`Hooks`] at
//! each point where a proxy can go wrong. Every method's default is the correct behaviour, and the only
//! implementation that overrides anything is [`crate::faults::FaultHooks`], compiled with the `faults` feature
//! for negative controls. So the production path has no fault branches: it calls these defaults.
//! A new fault is a variant in `faults!` plus an override here, never a branch in `conn.rs`.

use std::sync::Arc;

use crate::auth::AuthCheck;
use crate::config::ProxyConfig;
use crate::decision::{Destination, Request};
use crate::relay::RelayFaults;
use crate::response::{ESTABLISHED, ErrorResponse};
use crate::upstream::ParentRequest;
use crate::wire::{Limits, WireError};

/// Something a hook does in place of the decision: refuse, or write raw bytes and end the connection.
#[derive(Debug)]
#[cfg_attr(not(feature = "faults"), allow(dead_code))]
pub(crate) enum Interjection {
    /// Answer with this refusal (and close, as for any refusal).
    Refuse(ErrorResponse),
    /// Write these bytes; when `stall`, keep the connection open for the request-head timeout (reading
    /// nothing); then close.
    WriteAndClose { bytes: &'static [u8], stall: bool },
}

/// An HTTP/2 client connection as the `h2` crate reads it (see [`Hooks::h2_client_io`]).
pub(crate) type H2Io = Box<dyn H2IoTrait>;

/// What an [`H2Io`] is: a byte stream, both ways.
pub(crate) trait H2IoTrait: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}

impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> H2IoTrait for T {}

/// Decision points of one connection. Defaults are correct; see the module documentation.
pub(crate) trait Hooks: Send + Sync {
    /// The parser limits to use.
    fn parser_limits(&self, limits: Limits) -> Limits {
        limits
    }

    /// Whether a head the strict parser refused with `err` should be read to its end and rewritten.
    fn relaxes(&self, _err: &WireError) -> bool {
        false
    }

    /// The rewritten head (which the strict parser then accepts), or `None` to keep the refusal.
    fn relax_head(&self, _head: &[u8], _err: &WireError) -> Option<Vec<u8>> {
        None
    }

    /// The answer to a head the parser refused: `Some(response)` (by default the parser's own), or `None` to
    /// close without answering.
    fn invalid_head(&self, _err: &WireError, response: ErrorResponse) -> Option<ErrorResponse> {
        Some(response)
    }

    /// Whether the connection stays open for another request after a refusal (never, by default: bytes after a
    /// refused request must not be acted on).
    fn keep_reading_after_refusal(&self) -> bool {
        false
    }

    /// Called before the request decision with the parsed request and the TLS SNI, if any.
    fn before_decision(&self, _req: &Request, _sni: Option<&str>) -> Option<Interjection> {
        None
    }

    /// The outcome of the credentials check.
    fn auth_check(&self, _req: &Request, check: AuthCheck) -> AuthCheck {
        check
    }

    /// The 407 for failed credentials (the default carries the challenge, RFC 9110 §11.7.1).
    fn auth_refusal(&self, refusal: ErrorResponse, challenge: String) -> ErrorResponse {
        refusal.with_field("Proxy-Authenticate", challenge)
    }

    /// Where the tunnel goes: by default, the request-target.
    fn destination(&self, _req: &Request, _sni: Option<&str>, target: Destination) -> Destination {
        target
    }

    /// An extra port refusal on top of the configured policy.
    fn refuse_port(&self, _port: u16) -> Option<ErrorResponse> {
        None
    }

    /// Whether the configured destination policy is enforced.
    fn enforce_policy(&self) -> bool {
        true
    }

    /// Whether a tunnel to the proxy's own listening address is refused.
    fn detect_loops(&self) -> bool {
        true
    }

    /// Whether the 2xx is sent before the upstream connection exists.
    fn respond_before_connect(&self) -> bool {
        false
    }

    /// The 2xx head.
    fn success_head(&self) -> &'static [u8] {
        ESTABLISHED
    }

    /// Whether bytes that came with the request head are forwarded once the tunnel opens.
    fn forward_early_data(&self) -> bool {
        true
    }

    /// Misbehaviours of the relay (none by default; any of them turns splice off, which is logged).
    fn relay(&self) -> RelayFaults {
        RelayFaults::default()
    }

    /// The refusal as it is finally sent.
    fn refusal(&self, response: ErrorResponse) -> ErrorResponse {
        response
    }

    /// The TLS configuration of the TLS listeners.
    fn tls_config(&self, tls: Arc<rustls::ServerConfig>) -> Arc<rustls::ServerConfig> {
        tls
    }

    /// Whether the TLS listener reads the ClientHello and never answers.
    fn stall_tls_handshake(&self) -> bool {
        false
    }

    /// After this request, stop serving every connection for this long (never, by default).
    fn stall_everyone(&self, _req: &Request) -> Option<std::time::Duration> {
        None
    }

    /// Whether a TLS client that offered no ALPN is disconnected after the handshake.
    fn refuse_without_alpn(&self) -> bool {
        false
    }

    /// The CONNECT sent to a parent proxy, as built by [`crate::upstream::parent_request`].
    fn parent_request(&self, _req: &Request, request: ParentRequest) -> ParentRequest {
        request
    }

    /// Whether a name target is resolved here and sent to the parent as an address (never, by default: the
    /// parent resolves).
    fn resolve_before_parent(&self) -> bool {
        false
    }

    /// Whether a CONNECT the parent did not answer is sent again (never: RFC 9110 §9.2.2).
    fn retry_parent(&self) -> bool {
        false
    }

    /// Whether any answer of the parent is relayed to the client as it came and the tunnel opened anyway.
    fn blind_parent_answer(&self) -> bool {
        false
    }

    /// Whether the parent's Proxy-Status members are kept in a refusal (RFC 9209 §2).
    fn keep_parent_proxy_status(&self) -> bool {
        true
    }

    /// HTTP/2 stream misbehaviours (none by default).
    fn h2(&self) -> H2Faults {
        H2Faults::default()
    }

    /// The client's HTTP/2 byte stream before the `h2` crate reads it: unchanged. (The crate itself refuses some
    /// malformed requests; the faults that accept them rewrite the client's HEADERS here.)
    fn h2_client_io(&self, io: H2Io) -> H2Io {
        io
    }
}

/// What an HTTP/2 CONNECT stream does wrong (see the `h2-*` faults); all false is correct.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct H2Faults {
    pub drop_end_stream: bool,
    pub reset_as_end_stream: bool,
    pub client_reset_as_fin: bool,
    pub close_after_refusal: bool,
    /// A connection-level receive window no larger than one stream's, so one stream whose upstream stopped
    /// reading holds the window of all.
    pub shared_window: bool,
    /// HEADERS (trailers) from the client on a connected stream taken as END_STREAM (a FIN upstream).
    pub trailers_as_end_stream: bool,
}

/// The correct proxy: every default.
pub(crate) struct Correct;

impl Hooks for Correct {}

/// The hooks for a configuration: the faults it enables (feature `faults`), else [`Correct`].
pub(crate) fn for_config(config: &ProxyConfig) -> Box<dyn Hooks> {
    #[cfg(feature = "faults")]
    if !config.faults.is_empty() {
        return Box::new(crate::faults::FaultHooks::new(config.faults.clone()));
    }
    let _ = config;
    Box::new(Correct)
}
