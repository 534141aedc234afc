//! One client connection: read the request head, act on the decision ([`crate::decision`]), resolve, dial,
//! answer, relay. The I/O edge: what to do is decided elsewhere.
//!
//! Order: parse (400/414/431/505) → decision (501, 407, 403) → resolution (502/504) → address admission (403,
//! 502 loop) → connect (502/504) → 200. Nothing is answered 2xx before the upstream connection exists, and
//! every refusal closes the connection, so bytes after a refused request are never acted on.
//! Deliberate misbehaviours come in only through [`Shared::hooks`] (see [`crate::hooks`]).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout, timeout_at};

use crate::config::ProxyConfig;
use crate::decision::{self, Decision, Destination, OwnedHost, Request};
use crate::hooks::{Hooks, Interjection};
use crate::relay::{self, CloseReason, Traffic};
use crate::resolve::{ResolveError, Resolver};
use crate::response::{ErrorResponse, ErrorType};
use crate::stream::ClientStream;
use crate::upstream::{self, UpstreamStream, write_within};
use crate::wire::{HeadParser, Progress, WireError};

/// What every connection task shares.
pub(crate) struct Shared {
    pub config: ProxyConfig,
    pub resolver: Resolver,
    /// The proxy's own listening addresses, so that a tunnel to itself is refused (RFC 9110 §7.6 loops).
    pub own_addrs: Vec<SocketAddr>,
    /// Where faults hook in; [`crate::hooks::Correct`] unless the `faults` feature configured some.
    pub hooks: Box<dyn Hooks>,
    /// Until when every connection waits before being served (set only by a fault hook).
    pub stalled_until: std::sync::Mutex<Option<Instant>>,
    /// TLS to the parent proxy, when `--upstream https://…`.
    pub upstream_tls: Option<tokio_rustls::TlsConnector>,
    /// The comment of this process's Via member: seeing it in a request's Via is a loop.
    pub via_token: String,
}

impl Shared {
    /// Waits out a stall a fault hook asked for (returns at once normally).
    pub(crate) async fn wait_if_stalled(&self) {
        let until = *self.stalled_until.lock().expect("stall lock");
        if let Some(t) = until {
            tokio::time::sleep_until(t).await;
        }
    }

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
    let hooks = &*shared.hooks;
    let mut parser = HeadParser::new(hooks.parser_limits(config.limits.wire));
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    loop {
        let (head_len, refusal) = match read_head(&mut client, &mut buf, &mut parser, deadline, shared).await {
            HeadOutcome::Complete(n) => (n, None),
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
                reject(&mut client, resp, shared, log, "header-timeout").await;
                return;
            }
            HeadOutcome::Invalid(e) => {
                let details = format!("{}: {} ({})", e.kind(), e, e.rule());
                let resp = ErrorResponse::new(e.status(), ErrorType::HttpRequestError, details);
                let Some(resp) = hooks.invalid_head(&e, resp) else {
                    log.reason = "invalid-request-silent-close".into();
                    return;
                };
                let end = memchr::memmem::find(&buf, b"\r\n\r\n").map_or(buf.len(), |end| end + 4);
                (end, Some((resp, "invalid-request")))
            }
        };
        let refusal = match refusal {
            Some(r) => r,
            None => {
                let request = Request::from_head(&parser.head(&buf), &buf, config);
                log.target = Some(request.target.clone());
                if let Some(d) = hooks.stall_everyone(&request) {
                    *shared.stalled_until.lock().expect("stall lock") = Some(Instant::now() + d);
                }
                match connect_request(&mut client, shared, &request, log).await {
                    Ok(far) => {
                        // The head and parser are not needed any more: idle tunnels keep no request buffers.
                        let early = buf.split_off(head_len);
                        drop(buf);
                        drop(parser);
                        tunnel(client, far, early, shared, log).await;
                        return;
                    }
                    Err(Some(resp)) => (resp, "refused"),
                    Err(None) => return,
                }
            }
        };
        let (resp, reason) = refusal;
        if !hooks.keep_reading_after_refusal() {
            reject(&mut client, resp, shared, log, reason).await;
            return;
        }
        write_response(&mut client, &hooks.refusal(resp.clone()).to_bytes(&config.name), config).await;
        log.status = Some(resp.status);
        buf.drain(..head_len.min(buf.len()));
        parser.reset();
    }
}

/// Reads until the parser has a complete head, the deadline passes, or the input is refused.
async fn read_head(
    client: &mut ClientStream,
    buf: &mut Vec<u8>,
    parser: &mut HeadParser,
    deadline: Instant,
    shared: &Shared,
) -> HeadOutcome {
    let hooks = &*shared.hooks;
    let max_head = hooks.parser_limits(shared.config.limits.wire).max_head;
    // With a parser-relaxing fault, a refused head is read to its end, rewritten, and parsed again.
    let mut pending_error: Option<WireError> = None;
    loop {
        if let Some(err) = &pending_error {
            if let Some(end) = memchr::memmem::find(buf, b"\r\n\r\n") {
                return relax(buf, end + 4, parser, err.clone(), hooks);
            }
            if buf.len() > max_head {
                return HeadOutcome::Invalid(err.clone());
            }
        } else if !buf.is_empty() {
            match parser.advance(buf) {
                Ok(Progress::Complete(n)) => return HeadOutcome::Complete(n),
                Ok(Progress::Partial) => {}
                Err(e) if hooks.relaxes(&e) => {
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

/// A head the parser refused, rewritten by a fault hook and parsed again (the refusal stands otherwise).
fn relax(buf: &mut Vec<u8>, end: usize, parser: &mut HeadParser, err: WireError, hooks: &dyn Hooks) -> HeadOutcome {
    let Some(mut rewritten) = hooks.relax_head(&buf[..end], &err) else {
        return HeadOutcome::Invalid(err);
    };
    rewritten.extend_from_slice(&buf[end..]);
    *buf = rewritten;
    parser.reset();
    match parser.advance(buf) {
        Ok(Progress::Complete(n)) => HeadOutcome::Complete(n),
        Ok(Progress::Partial) => HeadOutcome::Invalid(err),
        // Another relaxable error in the same head: relax again.
        Err(e) if hooks.relaxes(&e) && e != err => {
            let end = memchr::memmem::find(buf, b"\r\n\r\n").map_or(buf.len(), |e| e + 4);
            relax(buf, end, parser, e, hooks)
        }
        Err(e) => HeadOutcome::Invalid(e),
    }
}

/// The far side of a tunnel: the destination, or a parent proxy that has agreed to tunnel.
pub(crate) struct FarSide {
    pub stream: UpstreamStream,
    /// Bytes from the parent after its 2xx head, for the client.
    pub early_down: Vec<u8>,
    /// Sent in place of this proxy's 2xx (a fault relaying the parent's answer).
    pub relay_head: Option<Vec<u8>>,
}

/// Acts on the decision, resolves (or asks the parent proxy) and connects. `Err(Some(response))` refuses;
/// `Err(None)` means the connection is already answered (only under a fault) and should just close.
async fn connect_request(
    client: &mut ClientStream,
    shared: &Shared,
    req: &Request,
    log: &mut ConnLog,
) -> Result<FarSide, Option<ErrorResponse>> {
    let config = &shared.config;
    let hooks = &*shared.hooks;
    let dest = match decision::decide(req, log.sni.as_deref(), config, hooks) {
        Decision::Connect(dest) => dest,
        Decision::Refuse(resp) | Decision::Interject(Interjection::Refuse(resp)) => return Err(Some(resp)),
        Decision::Interject(Interjection::WriteAndClose { bytes, stall }) => {
            write_response(client, bytes, config).await;
            if stall {
                tokio::time::sleep(config.limits.header_timeout).await;
            }
            return Err(None);
        }
    };
    let early_200 = hooks.respond_before_connect();
    if early_200 {
        write_response(client, hooks.success_head(), config).await;
        log.status = Some(200);
    }
    // Once a 2xx went out, a failure can only close the connection.
    let far = reach(shared, req, &dest).await.map_err(|resp| if early_200 { None } else { Some(resp) })?;
    if !early_200 {
        log.status = Some(200);
    }
    Ok(far)
}

/// Resolves and connects to the destination, or asks the parent proxy to: what a CONNECT needs once it is
/// decided, the same for an HTTP/1.1 request and an HTTP/2 stream.
pub(crate) async fn reach(shared: &Shared, req: &Request, dest: &Destination) -> Result<FarSide, ErrorResponse> {
    let (config, hooks) = (&shared.config, &*shared.hooks);
    // A Via that carries this process's own member: the request came round (RFC 9110 §7.6.3, RFC 9209 §2.3.32).
    // Here, where HTTP/1.1 and HTTP/2 requests both pass, so neither can skip it.
    if hooks.detect_loops() && upstream::is_loop(&req.via, &shared.via_token) {
        let details = format!("Via already carries this proxy's member ({}), or too many hops: a loop", config.name);
        return Err(ErrorResponse::new(502, ErrorType::ProxyLoopDetected, details));
    }
    if let Some(up) = &config.upstream
        && !up.goes_direct(&dest.host)
    {
        // The parent resolves names; an address target is still held to this proxy's address policy.
        if let OwnedHost::Ip(ip) = dest.host {
            decision::admit(&[ip], dest.port, config, hooks, |a| shared.is_self(a))?;
        }
        let dialed = upstream::dial(shared, up, req).await?;
        return Ok(FarSide { stream: dialed.stream, early_down: dialed.early, relay_head: dialed.relay_head });
    }
    let ips = match shared.resolver.resolve(&dest.host.as_host()).await {
        Ok(ips) => ips,
        Err(e @ ResolveError::Timeout(..)) => {
            return Err(ErrorResponse::new(504, ErrorType::DnsTimeout, e.to_string()));
        }
        Err(e) => return Err(ErrorResponse::new(502, ErrorType::DnsError, e.to_string())),
    };
    let allowed = decision::admit(&ips, dest.port, config, hooks, |a| shared.is_self(a))?;
    let stream = connect_any(&allowed, config.limits.connect_timeout).await?;
    let _ = stream.set_nodelay(true);
    Ok(FarSide { stream: UpstreamStream::Tcp(stream), early_down: Vec::new(), relay_head: None })
}

/// Tries each address in order within one overall deadline.
pub(crate) async fn connect_any(addrs: &[SocketAddr], limit: Duration) -> Result<TcpStream, ErrorResponse> {
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

/// Answers 200, forwards the early data both ways, and relays until the tunnel ends.
async fn tunnel(mut client: ClientStream, far: FarSide, early: Vec<u8>, shared: &Shared, log: &mut ConnLog) {
    let (config, hooks) = (&shared.config, &*shared.hooks);
    let FarSide { stream: mut upstream, early_down, relay_head } = far;
    let write_limit = config.limits.idle_timeout;
    if !hooks.respond_before_connect() {
        let head = relay_head.as_deref().unwrap_or(hooks.success_head());
        if write_within(&mut client, head, write_limit).await.is_err() {
            log.reason = "client-gone-before-200".into();
            return;
        }
    }
    let traffic = Traffic::new();
    if !early_down.is_empty() {
        if write_within(&mut client, &early_down, write_limit).await.is_err() {
            log.reason = "client-write-failed".into();
            return;
        }
        traffic.down.fetch_add(early_down.len() as u64, std::sync::atomic::Ordering::Relaxed);
    }
    drop(early_down);
    if !early.is_empty() && hooks.forward_early_data() {
        if write_within(&mut upstream, &early, write_limit).await.is_err() {
            log.reason = "upstream-write-failed".into();
            return;
        }
        traffic.up.fetch_add(early.len() as u64, std::sync::atomic::Ordering::Relaxed);
    }
    drop(early);
    let faults = hooks.relay();
    if faults.any() {
        // Said once per tunnel, so a measurement under a fault is never mistaken for the splice path's.
        tracing::warn!(?faults, "relay faults enabled: splice is off, bytes are copied through user space");
    }
    let idle = config.limits.idle_timeout;
    let reason = match (client, upstream) {
        (ClientStream::Plain(tcp), UpstreamStream::Tcp(up)) => {
            relay::relay_tcp(tcp, up, traffic.clone(), idle, faults).await
        }
        (client, upstream) => {
            let (client, upstream, reason) = relay::relay_stream(client, upstream, traffic.clone(), idle, faults).await;
            if reason != CloseReason::Done {
                relay::reset_on_close(client.tcp());
                relay::reset_on_close(upstream.tcp());
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
    shared: &Shared,
    log: &mut ConnLog,
    reason: &str,
) {
    let config = &shared.config;
    log.status = Some(resp.status);
    log.reason = reason.to_owned();
    let resp = shared.hooks.refusal(resp);
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
