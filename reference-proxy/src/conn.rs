//! One client connection: read and check the CONNECT request, open the upstream connection, answer, relay.
//!
//! Order of checks: parse (400/414/431/505) → method (501) → authentication (407) → port policy (403) →
//! resolution (502/504) → address policy (403) → connect (502/504) → 200. Nothing is answered 2xx before the
//! upstream connection exists, and every refusal closes the connection, so bytes after a refused request are
//! never acted on.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout, timeout_at};

use crate::auth::AuthCheck;
use crate::config::{FaultKind as F, ProxyConfig};
use crate::policy::Denial;
use crate::relay::{self, CloseReason, RelayFaults, Traffic};
use crate::resolve::{ResolveError, Resolver};
use crate::response::{ESTABLISHED, ErrorResponse, ErrorType};
use crate::stream::ClientStream;
use crate::wire::{HeadParser, Host, Progress, WireError};

/// What every connection task shares.
pub(crate) struct Shared {
    pub config: ProxyConfig,
    pub resolver: Resolver,
    /// The proxy's own listening addresses, so that a tunnel to itself is refused (RFC 9110 §7.6 loops).
    pub own_addrs: Vec<SocketAddr>,
}

impl Shared {
    /// Whether connecting to `addr` would reach one of this proxy's listeners. A listener on an unspecified
    /// address is matched on loopback only (other local addresses are not enumerated).
    fn is_self(&self, addr: SocketAddr) -> bool {
        let ip = match addr.ip() {
            IpAddr::V6(v6) => v6.to_canonical(),
            v4 => v4,
        };
        self.own_addrs
            .iter()
            .any(|own| own.port() == addr.port() && (own.ip() == ip || (own.ip().is_unspecified() && ip.is_loopback())))
    }
}

/// The facts of one connection, logged as one line when it ends.
#[derive(Debug, Default)]
pub(crate) struct ConnLog {
    pub sni: Option<String>,
    pub target: Option<String>,
    pub status: Option<u16>,
    pub up: u64,
    pub down: u64,
    pub reason: String,
}

/// The parts of a request head the proxy acts on, copied out of the read buffer.
struct Request {
    method: String,
    /// The request-target as sent, for the log.
    target: String,
    host: OwnedHost,
    port: u16,
    host_field: Option<(OwnedHost, Option<u16>)>,
    auth: Option<AuthCheck>,
    /// What some faults look at (see `request_faults`).
    #[allow(dead_code)]
    version: crate::wire::Version,
    #[allow(dead_code)]
    leading_empty_line: bool,
    #[allow(dead_code)]
    upgrade: bool,
    #[allow(dead_code)]
    expect_100: bool,
    /// Every Proxy-Authorization value starts with exactly `Basic `.
    #[allow(dead_code)]
    auth_scheme_exact: bool,
}

#[derive(Debug, Clone)]
enum OwnedHost {
    Name(String),
    Ip(IpAddr),
}

impl OwnedHost {
    fn from(h: &Host<'_>) -> Self {
        match h {
            Host::Name(n) => OwnedHost::Name((*n).to_owned()),
            Host::Ipv4(a) => OwnedHost::Ip(IpAddr::V4(*a)),
            Host::Ipv6(a) => OwnedHost::Ip(IpAddr::V6(*a)),
        }
    }

    fn as_host(&self) -> Host<'_> {
        match self {
            OwnedHost::Name(n) => Host::Name(n),
            OwnedHost::Ip(IpAddr::V4(a)) => Host::Ipv4(*a),
            OwnedHost::Ip(IpAddr::V6(a)) => Host::Ipv6(*a),
        }
    }

    /// For comparisons with SNI (faults only): names without a trailing dot, case-folded.
    #[allow(dead_code)]
    fn name_key(&self) -> String {
        match self {
            OwnedHost::Name(n) => n.trim_end_matches('.').to_ascii_lowercase(),
            OwnedHost::Ip(ip) => ip.to_string(),
        }
    }
}

enum HeadOutcome {
    Complete(usize),
    Closed,
    TimedOut,
    Io(std::io::Error),
    Invalid(WireError),
}

/// Serves one connection to its end. `deadline` bounds the (TLS handshake and) request head.
pub(crate) async fn serve(mut client: ClientStream, shared: &Shared, deadline: Instant, log: &mut ConnLog) {
    let config = &shared.config;
    let mut parser = HeadParser::new(parser_limits(config));
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    loop {
        let head_len = match read_head(&mut client, &mut buf, &mut parser, deadline, config).await {
            HeadOutcome::Complete(n) => n,
            HeadOutcome::Closed => {
                log.reason = if buf.is_empty() { "client-closed" } else { "client-closed-mid-head" }.into();
                return;
            }
            HeadOutcome::Io(e) => {
                log.reason = format!("client-error: {e}");
                return;
            }
            HeadOutcome::TimedOut => {
                let details = format!("request head not received within {:?}", config.limits.header_timeout);
                let resp = ErrorResponse::new(408, ErrorType::HttpRequestError, details);
                reject(&mut client, resp, config, log, "header-timeout").await;
                return;
            }
            HeadOutcome::Invalid(e) => {
                let details = format!("{}: {} ({})", e.kind(), e, e.rule());
                let resp = ErrorResponse::new(e.status(), ErrorType::HttpRequestError, details);
                let resp = match replaced_rejection(config, &e) {
                    None => resp,
                    Some(None) => {
                        log.reason = "invalid-request-silent-close".into();
                        return;
                    }
                    Some(Some(other)) => other,
                };
                if config.has_fault(F::NoCloseAfterReject) {
                    write_response(&mut client, &resp.to_bytes(&config.name), config).await;
                    log.status = Some(resp.status);
                    match memchr::memmem::find(&buf, b"\r\n\r\n") {
                        Some(end) => drop(buf.drain(..end + 4)),
                        None => buf.clear(),
                    }
                    parser.reset();
                    continue;
                }
                reject(&mut client, resp, config, log, "invalid-request").await;
                return;
            }
        };
        let mut request = extract(&parser, &buf, config);
        request.leading_empty_line = buf.starts_with(b"\r\n");
        log.target = Some(request.target.clone());
        match connect_request(&mut client, shared, &request, log).await {
            Ok(upstream) => {
                // The head and parser are not needed any more: idle tunnels keep no request buffers.
                let early = buf.split_off(head_len);
                drop(buf);
                drop(parser);
                tunnel(client, upstream, early, config, log).await;
                return;
            }
            Err(Some(resp)) => {
                if config.has_fault(F::NoCloseAfterReject) {
                    write_response(&mut client, &resp.to_bytes(&config.name), config).await;
                    log.status = Some(resp.status);
                    buf.drain(..head_len);
                    parser.reset();
                    continue;
                }
                reject(&mut client, resp, config, log, "refused").await;
                return;
            }
            Err(None) => return,
        }
    }
}

/// Reads until the parser has a complete head, the deadline passes, or the input is refused.
async fn read_head(
    client: &mut ClientStream,
    buf: &mut Vec<u8>,
    parser: &mut HeadParser,
    deadline: Instant,
    config: &ProxyConfig,
) -> HeadOutcome {
    // With a parser-relaxing fault, a refused head is read to its end, rewritten, and parsed again.
    let mut pending_error: Option<WireError> = None;
    loop {
        if let Some(err) = &pending_error {
            if let Some(end) = memchr::memmem::find(buf, b"\r\n\r\n") {
                return relax(buf, end + 4, parser, err.clone(), config);
            }
            if buf.len() > config.limits.wire.max_head {
                return HeadOutcome::Invalid(err.clone());
            }
        } else if !buf.is_empty() {
            match parser.advance(buf) {
                Ok(Progress::Complete(n)) => return HeadOutcome::Complete(n),
                Ok(Progress::Partial) => {}
                Err(e) if may_relax(&e, config) => {
                    pending_error = Some(e);
                    continue;
                }
                Err(e) => return HeadOutcome::Invalid(e),
            }
        }
        // Straight into the buffer's spare capacity (no stack scratch, which would enlarge every task's future).
        // The parser refuses a head over its limit, so the buffer stays bounded.
        buf.reserve(4096);
        match timeout_at(deadline, client.read_buf(buf)).await {
            Err(_) => return HeadOutcome::TimedOut,
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return HeadOutcome::Closed,
            Ok(Err(e)) => return HeadOutcome::Io(e),
            Ok(Ok(0)) => return HeadOutcome::Closed,
            Ok(Ok(_)) => {}
        }
    }
}

#[cfg(feature = "faults")]
fn may_relax(e: &WireError, config: &ProxyConfig) -> bool {
    crate::faults::relaxes(&config.faults, e)
}

#[cfg(not(feature = "faults"))]
fn may_relax(_: &WireError, _: &ProxyConfig) -> bool {
    false
}

#[cfg(feature = "faults")]
fn relax(buf: &mut Vec<u8>, end: usize, parser: &mut HeadParser, err: WireError, config: &ProxyConfig) -> HeadOutcome {
    let Some(mut rewritten) = crate::faults::relax_head(&config.faults, &buf[..end], &err) else {
        return HeadOutcome::Invalid(err);
    };
    rewritten.extend_from_slice(&buf[end..]);
    *buf = rewritten;
    parser.reset();
    match parser.advance(buf) {
        Ok(Progress::Complete(n)) => HeadOutcome::Complete(n),
        Ok(Progress::Partial) => HeadOutcome::Invalid(err),
        // Another relaxable error in the same head: relax again.
        Err(e) if may_relax(&e, config) && e != err => {
            let end = memchr::memmem::find(buf, b"\r\n\r\n").map_or(buf.len(), |e| e + 4);
            relax(buf, end, parser, e, config)
        }
        Err(e) => HeadOutcome::Invalid(e),
    }
}

#[cfg(not(feature = "faults"))]
fn relax(_: &mut Vec<u8>, _: usize, _: &mut HeadParser, err: WireError, _: &ProxyConfig) -> HeadOutcome {
    HeadOutcome::Invalid(err)
}

fn extract(parser: &HeadParser, buf: &[u8], config: &ProxyConfig) -> Request {
    let head = parser.head(buf);
    let (host, port) = match head.authority() {
        Some(a) => (OwnedHost::from(&a.host), a.port),
        // Not a CONNECT: the target is not used.
        None => (OwnedHost::Name(String::new()), 0),
    };
    let host_field = head.host().map(|h| (OwnedHost::from(&h.host), h.port));
    let auth = config.auth.as_ref().map(|auth| {
        auth.check(head.fields().filter(|f| f.name.eq_ignore_ascii_case("proxy-authorization")).map(|f| f.value))
    });
    let named = |name: &'static str| head.fields().filter(move |f| f.name.eq_ignore_ascii_case(name));
    Request {
        method: head.method().to_owned(),
        target: head.target().to_owned(),
        host,
        port,
        host_field,
        auth,
        version: head.version(),
        leading_empty_line: false,
        upgrade: named("upgrade").next().is_some(),
        expect_100: named("expect").any(|f| f.value.eq_ignore_ascii_case(b"100-continue")),
        auth_scheme_exact: named("proxy-authorization").all(|f| f.value.starts_with(b"Basic ")),
    }
}

/// Checks the request and connects upstream. `Err(Some(response))` refuses; `Err(None)` means the connection
/// is already answered (only under a fault) and should just close.
async fn connect_request(
    client: &mut ClientStream,
    shared: &Shared,
    req: &Request,
    log: &mut ConnLog,
) -> Result<TcpStream, Option<ErrorResponse>> {
    let config = &shared.config;
    if req.method != "CONNECT" {
        let details = format!("method {} is not supported; this proxy only implements CONNECT", req.method);
        return Err(Some(
            ErrorResponse::new(501, ErrorType::ProxyInternalResponse, details).with_field("Allow", "CONNECT"),
        ));
    }
    request_faults(client, req, config).await?;
    let auth_check = req.auth.map(|check| auth_faults(req, check, config));
    if let (Some(auth), Some(check)) = (&config.auth, auth_check)
        && check != AuthCheck::Ok
    {
        if config.has_fault(F::Auth401) {
            return Err(Some(
                ErrorResponse::new(401, ErrorType::ProxyInternalResponse, "authentication required")
                    .with_field("WWW-Authenticate", auth.challenge()),
            ));
        }
        let details = match check {
            AuthCheck::Missing => "proxy authentication required",
            _ => "invalid proxy credentials",
        };
        let refusal = ErrorResponse::new(407, ErrorType::ProxyInternalResponse, details);
        if config.has_fault(F::ProxyAuthenticateMissing) {
            return Err(Some(refusal));
        }
        return Err(Some(refusal.with_field("Proxy-Authenticate", auth.challenge())));
    }
    sni_faults(req, config, log)?;
    let (host, port) = match (&req.host_field, config.has_fault(F::RouteByHost)) {
        (Some((h, p)), true) => (h.clone(), p.unwrap_or(req.port)),
        _ => (req.host.clone(), req.port),
    };
    let enforce = !config.has_fault(F::IgnorePolicy);
    if config.has_fault(F::SslPortsOnly) && !matches!(port, 443 | 563) {
        return Err(Some(ErrorResponse::new(
            403,
            ErrorType::HttpRequestDenied,
            format!("port {port} is not an SSL port"),
        )));
    }
    if enforce && let Err(denial) = config.policy.check_port(port) {
        return Err(Some(ErrorResponse::new(403, ErrorType::HttpRequestDenied, denial.to_string())));
    }
    if enforce && config.policy.ip_literals_only && matches!(host, OwnedHost::Name(_)) {
        return Err(Some(ErrorResponse::new(403, ErrorType::DestinationIpProhibited, Denial::Name.to_string())));
    }
    let early_200 = config.has_fault(F::RespondBeforeConnect);
    if early_200 {
        write_response(client, &success_bytes(config), config).await;
        log.status = Some(200);
    }
    let fail = |resp: ErrorResponse| if early_200 { None } else { Some(resp) };
    let ips = match shared.resolver.resolve(&host.as_host()).await {
        Ok(ips) => ips,
        Err(e @ ResolveError::Timeout(..)) => {
            return Err(fail(ErrorResponse::new(504, ErrorType::DnsTimeout, e.to_string())));
        }
        Err(e) => return Err(fail(ErrorResponse::new(502, ErrorType::DnsError, e.to_string()))),
    };
    let mut first_denial: Option<Denial> = None;
    let allowed: Vec<SocketAddr> = ips
        .iter()
        .filter(|ip| match config.policy.check_addr(**ip) {
            Ok(()) => true,
            Err(_) if !enforce => true,
            Err(d) => {
                first_denial.get_or_insert(d);
                false
            }
        })
        .map(|ip| SocketAddr::new(*ip, port))
        .collect();
    if allowed.is_empty() {
        let details = first_denial.map_or_else(|| "no address".to_owned(), |d| d.to_string());
        return Err(fail(ErrorResponse::new(403, ErrorType::DestinationIpProhibited, details)));
    }
    if let Some(own) = allowed.iter().find(|a| shared.is_self(**a))
        && !config.has_fault(F::NoLoopDetection)
    {
        let details = format!("{own} is this proxy");
        return Err(fail(ErrorResponse::new(502, ErrorType::ProxyLoopDetected, details)));
    }
    match connect_any(&allowed, config.limits.connect_timeout).await {
        Ok(stream) => {
            let _ = stream.set_nodelay(true);
            if !early_200 {
                log.status = Some(200);
            }
            Ok(stream)
        }
        Err(resp) => Err(fail(resp)),
    }
}

#[cfg(feature = "faults")]
fn sni_faults(req: &Request, config: &ProxyConfig, log: &ConnLog) -> Result<(), Option<ErrorResponse>> {
    let Some(sni) = &log.sni else {
        return Ok(());
    };
    let mismatch = sni.trim_end_matches('.').to_ascii_lowercase() != req.host.name_key();
    if mismatch && config.has_fault(F::SniMustMatchTarget) {
        let details = format!(
            "Hostname {sni} provided via SNI and hostname {} provided via HTTP are different",
            req.host.as_host()
        );
        return Err(Some(ErrorResponse::new(400, ErrorType::HttpRequestError, details)));
    }
    if mismatch && config.has_fault(F::Answer421OnSniMismatch) {
        return Err(Some(ErrorResponse::new(421, ErrorType::HttpRequestError, "SNI does not match the request")));
    }
    Ok(())
}

#[cfg(not(feature = "faults"))]
fn sni_faults(_: &Request, _: &ProxyConfig, _: &ConnLog) -> Result<(), Option<ErrorResponse>> {
    Ok(())
}

/// The parser limits, widened or narrowed by the limit faults.
fn parser_limits(config: &ProxyConfig) -> crate::wire::Limits {
    let mut limits = config.limits.wire;
    if config.has_fault(F::NoHeadLimit) {
        limits = crate::wire::Limits { max_request_line: 1 << 20, max_head: 16 << 20, max_fields: 1 << 20 };
    }
    if config.has_fault(F::SmallHeadLimit) {
        limits.max_head = limits.max_head.min(4096);
    }
    limits
}

/// The faults that replace the parser's rejection: `None` keeps it, `Some(None)` closes silently.
#[cfg(feature = "faults")]
fn replaced_rejection(config: &ProxyConfig, e: &WireError) -> Option<Option<ErrorResponse>> {
    use crate::faults::Rejection;
    Some(match crate::faults::replace_rejection(&config.faults, e)? {
        Rejection::Silent => None,
        Rejection::Answer(status, error, details) => Some(ErrorResponse::new(status, error, details)),
    })
}

#[cfg(not(feature = "faults"))]
fn replaced_rejection(_: &ProxyConfig, _: &WireError) -> Option<Option<ErrorResponse>> {
    None
}

/// Faults that refuse (or mis-answer) a request the strict parser accepted.
async fn request_faults(
    client: &mut ClientStream,
    req: &Request,
    config: &ProxyConfig,
) -> Result<(), Option<ErrorResponse>> {
    let refuse = |status: u16, details: &str| {
        Err(Some(ErrorResponse::new(status, ErrorType::HttpRequestError, details.to_owned())))
    };
    if config.has_fault(F::RejectLeadingEmptyLine) && req.leading_empty_line {
        return refuse(400, "empty line before the request-line");
    }
    if config.has_fault(F::SplitAtFirstColon) && req.target.starts_with('[') {
        return refuse(400, "invalid port");
    }
    if config.has_fault(F::RejectUnknownMinorVersion) && req.version.minor > 1 {
        return refuse(505, "HTTP version not supported");
    }
    if config.has_fault(F::HostRequiredForHttp10) && req.host_field.is_none() {
        return refuse(400, "no Host");
    }
    if config.has_fault(F::HostPortRequired) && matches!(req.host_field, Some((_, None))) {
        return refuse(400, "Host without a port");
    }
    if config.has_fault(F::SwitchProtocolsOnUpgrade) && req.upgrade {
        write_response(client, b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\r\n", config).await;
        return Err(None);
    }
    if config.has_fault(F::Expect100Stalls) && req.expect_100 {
        write_response(client, b"HTTP/1.1 100 Continue\r\n\r\n", config).await;
        tokio::time::sleep(config.limits.header_timeout).await;
        return Err(None);
    }
    Ok(())
}

/// The authentication faults: any credentials pass, or only the exact spelling `Basic` does.
fn auth_faults(req: &Request, check: AuthCheck, config: &ProxyConfig) -> AuthCheck {
    if config.has_fault(F::AcceptAnyCredentials) && check == AuthCheck::Invalid {
        return AuthCheck::Ok;
    }
    if config.has_fault(F::BasicSchemeCaseSensitive) && check == AuthCheck::Ok && !req.auth_scheme_exact {
        return AuthCheck::Invalid;
    }
    check
}

/// Tries each address in order within one overall deadline.
async fn connect_any(addrs: &[SocketAddr], limit: Duration) -> Result<TcpStream, ErrorResponse> {
    let deadline = Instant::now() + limit;
    let mut last: Option<(SocketAddr, std::io::Error)> = None;
    for addr in addrs {
        match timeout_at(deadline, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(e)) => last = Some((*addr, e)),
            Err(_) => {
                let details = format!("connecting to {addr} took longer than {limit:?}");
                return Err(ErrorResponse::new(504, ErrorType::ConnectionTimeout, details));
            }
        }
    }
    let (addr, e) = last.expect("at least one address");
    let details = format!("connecting to {addr}: {e}");
    use std::io::ErrorKind as K;
    // Out of descriptors, buffers or local ports: the proxy's fault, not the destination's.
    if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::EADDRNOTAVAIL)) {
        return Err(ErrorResponse::new(503, ErrorType::ProxyInternalError, details));
    }
    Err(match e.kind() {
        K::ConnectionRefused => ErrorResponse::new(502, ErrorType::ConnectionRefused, details),
        K::TimedOut => ErrorResponse::new(504, ErrorType::ConnectionTimeout, details),
        K::HostUnreachable | K::NetworkUnreachable => {
            ErrorResponse::new(502, ErrorType::DestinationIpUnroutable, details)
        }
        _ => ErrorResponse::new(502, ErrorType::DestinationUnavailable, details),
    })
}

fn success_bytes(config: &ProxyConfig) -> Vec<u8> {
    if config.has_fault(F::NoSpaceAfterStatus) {
        return b"HTTP/1.1 200\r\n\r\n".to_vec();
    }
    if config.has_fault(F::ExtraCrlfAfter2xx) {
        return b"HTTP/1.1 200 Connection Established\r\n\r\n\r\n".to_vec();
    }
    if config.has_fault(F::Http10StatusLine) {
        return b"HTTP/1.0 200 Connection Established\r\nProxy-agent: reference-proxy\r\n\r\n".to_vec();
    }
    if config.has_fault(F::ContentLengthIn2xx) {
        return b"HTTP/1.1 200 Connection Established\r\nContent-Length: 0\r\n\r\n".to_vec();
    }
    if config.has_fault(F::TransferEncodingIn2xx) {
        return b"HTTP/1.1 200 Connection Established\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    }
    ESTABLISHED.to_vec()
}

/// Answers 200, forwards the early data, and relays until the tunnel ends.
async fn tunnel(
    mut client: ClientStream,
    mut upstream: TcpStream,
    early: Vec<u8>,
    config: &ProxyConfig,
    log: &mut ConnLog,
) {
    let write_limit = config.limits.idle_timeout;
    if !config.has_fault(F::RespondBeforeConnect) {
        let ok = timeout(write_limit, async {
            client.write_all(&success_bytes(config)).await?;
            client.flush().await
        })
        .await;
        if !matches!(ok, Ok(Ok(()))) {
            log.reason = "client-gone-before-200".into();
            return;
        }
    }
    let traffic = Traffic::new();
    if !early.is_empty() && !config.has_fault(F::DropEarlyData) {
        match timeout(write_limit, upstream.write_all(&early)).await {
            Ok(Ok(())) => {
                traffic.up.fetch_add(early.len() as u64, std::sync::atomic::Ordering::Relaxed);
            }
            _ => {
                log.reason = "upstream-write-failed".into();
                return;
            }
        }
    }
    drop(early);
    let faults = RelayFaults {
        lose_last_upstream_bytes: config.has_fault(F::LoseLastUpstreamBytes),
        lose_last_client_bytes: config.has_fault(F::LoseLastClientBytes),
        corrupt: config.has_fault(F::CorruptTunnelBytes),
        half_close_closes_both: config.has_fault(F::HalfCloseClosesBoth),
        no_close_notify: config.has_fault(F::NoCloseNotify),
    };
    let idle = config.limits.idle_timeout;
    let reason = match client {
        ClientStream::Plain(tcp) => relay::relay_tcp(tcp, upstream, traffic.clone(), idle, faults).await,
        ClientStream::Tls(tls) => {
            let (tls, _upstream, reason) = relay::relay_stream(tls, upstream, traffic.clone(), idle, faults).await;
            if reason != CloseReason::Done {
                relay::reset_on_close(tls.get_ref().0);
            }
            reason
        }
    };
    log.up = traffic.up.load(std::sync::atomic::Ordering::Relaxed);
    log.down = traffic.down.load(std::sync::atomic::Ordering::Relaxed);
    log.reason = reason.to_string();
}

/// Writes a response with a bounded deadline, ignoring failures (the client may be gone).
async fn write_response(client: &mut ClientStream, bytes: &[u8], config: &ProxyConfig) {
    let _ = timeout(config.limits.header_timeout, async {
        client.write_all(bytes).await?;
        client.flush().await
    })
    .await;
}

/// Sends an error response and closes lingeringly: the write side is shut down, then the client's input is read
/// and discarded for a bounded time, so the close does not turn into a reset that destroys the response.
pub(crate) async fn reject(
    client: &mut ClientStream,
    resp: ErrorResponse,
    config: &ProxyConfig,
    log: &mut ConnLog,
    reason: &str,
) {
    log.status = Some(resp.status);
    log.reason = reason.to_owned();
    let mut resp = resp;
    if config.has_fault(F::ProxyStatusGeneric) {
        resp.error = ErrorType::ProxyInternalError;
    }
    let bytes = resp.to_bytes(&config.name);
    let linger = config.limits.linger;
    let written = timeout(config.limits.header_timeout, async {
        client.write_all(&bytes).await?;
        client.flush().await?;
        client.shutdown().await
    })
    .await;
    if !matches!(written, Ok(Ok(()))) {
        return;
    }
    let deadline = Instant::now() + linger;
    let mut scratch = vec![0u8; 4096];
    let mut drained = 0usize;
    while drained < 1 << 20 {
        match timeout_at(deadline, client.read(&mut scratch)).await {
            Ok(Ok(n)) if n > 0 => drained += n,
            _ => break,
        }
    }
}
