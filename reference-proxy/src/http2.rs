//! HTTP/2 CONNECT (RFC 9113 §8.5), with the `h2` crate: each CONNECT stream is a tunnel, decided, resolved,
//! dialled and logged exactly as an HTTP/1.1 CONNECT ([`crate::decision`], [`crate::conn::reach`]).
//!
//! - A request with `:scheme` or `:path`, or without `:authority`, or with `content-length`, is refused as a
//!   stream error, RST_STREAM PROTOCOL_ERROR (§8.1.1, §8.5), before any connection. Extended CONNECT (RFC 8441,
//!   `:protocol`) is not offered (SETTINGS_ENABLE_CONNECT_PROTOCOL is never sent), so the h2 crate resets a
//!   request carrying it with PROTOCOL_ERROR (were the setting ever sent, the stream would get 501).
//! - Refusals are a response with Proxy-Status and a short body, then END_STREAM; never a 2xx before the
//!   upstream connection exists.
//! - Tunnel bytes travel in DATA frames. END_STREAM from the client is a FIN to the upstream and the upstream's
//!   FIN is END_STREAM; an upstream reset or error is RST_STREAM(CONNECT_ERROR), and the client's RST_STREAM
//!   resets the upstream connection (§8.5).
//! - Flow control per stream: client data is acknowledged (window released) only once written upstream, and
//!   upstream data is read only as the client's window allows, so one slow tunnel holds back only itself.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use h2::server::SendResponse;
use h2::{Reason, RecvStream, SendStream};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{Instant, timeout, timeout_at};

use crate::conn::{ConnLog, Shared};
use crate::decision::{self, Decision, Request};
use crate::hooks::Interjection;
use crate::response::{ErrorResponse, ErrorType};
use crate::upstream::UpstreamStream;

/// HTTP/2 settings of the listeners.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Http2Config {
    /// Offer `h2` in ALPN on the TLS listeners and accept HTTP/2 with prior knowledge (h2c) on the plain ones.
    pub enabled: bool,
    /// SETTINGS_MAX_CONCURRENT_STREAMS: tunnels one connection may have open at once.
    pub max_concurrent_streams: u32,
}

impl Default for Http2Config {
    fn default() -> Self {
        Http2Config { enabled: false, max_concurrent_streams: 100 }
    }
}

/// The receive window of one stream: what one slow tunnel may hold unacknowledged.
const STREAM_WINDOW: u32 = 256 * 1024;
/// The connection's receive window: room for every stream's window (bounded by the stream cap).
fn connection_window(max_streams: u32) -> u32 {
    STREAM_WINDOW.saturating_mul(max_streams.max(1)).min(64 * 1024 * 1024)
}
/// Largest DATA frame read from the upstream at once.
const READ_CHUNK: usize = 16 * 1024;

/// The HTTP/2 client connection preface (RFC 9113 §3.4), which tells h2c with prior knowledge from HTTP/1.
pub(crate) const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Whether a plain connection starts with the HTTP/2 preface (peeked, not consumed), within `deadline`.
pub(crate) async fn starts_with_preface(tcp: &tokio::net::TcpStream, deadline: Instant) -> bool {
    let mut buf = [0u8; PREFACE.len()];
    loop {
        let n = match timeout_at(deadline, tcp.peek(&mut buf)).await {
            Ok(Ok(n)) => n,
            _ => return false,
        };
        if n == 0 || buf[..n] != PREFACE[..n] {
            return false;
        }
        if n == PREFACE.len() {
            return true;
        }
        // A partial preface so far: wait for the rest.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Serves one HTTP/2 connection (after TLS with ALPN h2, or a plain connection that began with the preface) until
/// the client closes it or it is idle. `deadline` bounds the handshake.
pub(crate) async fn serve<T>(io: T, shared: Arc<Shared>, deadline: Instant, log: &mut ConnLog)
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let settings = shared.config.http2;
    let mut builder = h2::server::Builder::new();
    builder
        .max_concurrent_streams(settings.max_concurrent_streams)
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(if shared.hooks.h2().shared_window {
            STREAM_WINDOW
        } else {
            connection_window(settings.max_concurrent_streams)
        })
        .max_header_list_size(shared.hooks.parser_limits(shared.config.limits.wire).max_head as u32)
        .max_send_buffer_size(READ_CHUNK * 4);
    let io = shared.hooks.h2_client_io(Box::new(io));
    let mut conn = match timeout_at(deadline, builder.handshake::<_, Bytes>(io)).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            log.reason = format!("h2-handshake-failed: {e}");
            return;
        }
        Err(_) => {
            log.reason = "h2-handshake-timeout".into();
            return;
        }
    };
    let idle = shared.config.limits.idle_timeout;
    let mut streams = tokio::task::JoinSet::new();
    let mut served = 0u64;
    // Set by a stream that was refused, for the `h2-close-after-refusal` fault only.
    let refused = Arc::new(tokio::sync::Notify::new());
    let close_after_refusal = shared.hooks.h2().close_after_refusal;
    loop {
        while streams.try_join_next().is_some() {}
        // With no stream open, the connection may idle only so long.
        let idle_limit = streams.is_empty();
        let next = {
            let accept =
                async { if idle_limit { timeout(idle, conn.accept()).await.ok() } else { Some(conn.accept().await) } };
            tokio::select! {
                _ = refused.notified(), if close_after_refusal => Next::Refused,
                n = accept => match n {
                    Some(n) => Next::Stream(n),
                    None => Next::Idle,
                },
            }
        };
        let next = match next {
            Next::Stream(n) => n,
            Next::Idle => {
                conn.graceful_shutdown();
                log.reason = "h2-idle".into();
                break;
            }
            Next::Refused => {
                conn.abrupt_shutdown(Reason::NO_ERROR);
                log.reason = "h2-closed-after-refusal".into();
                while let Some(Ok(_)) = conn.accept().await {}
                break;
            }
        };
        match next {
            Some(Ok((req, respond))) => {
                served += 1;
                streams.spawn(stream(req, respond, shared.clone(), log.sni.clone(), refused.clone()));
            }
            Some(Err(e)) => {
                log.reason = format!("h2-error: {e}");
                break;
            }
            None => {
                log.reason = "h2-closed".into();
                break;
            }
        }
    }
    log.target = Some(format!("{served} HTTP/2 streams"));
    streams.abort_all();
}

/// What the connection loop waits for next.
enum Next<T> {
    Stream(Option<T>),
    /// No stream open for the idle timeout.
    Idle,
    /// A stream was refused (the `h2-close-after-refusal` fault only).
    Refused,
}

/// The request of one stream as the decision sees it, or why the stream is malformed.
fn request_of(req: &http::Request<RecvStream>, shared: &Shared) -> Result<Request, Malformed> {
    if req.extensions().get::<h2::ext::Protocol>().is_some() {
        return Err(Malformed::ExtendedConnect);
    }
    if req.method() != http::Method::CONNECT {
        return Err(Malformed::NotConnect(req.method().to_string()));
    }
    let uri = req.uri();
    if uri.scheme().is_some() || uri.path_and_query().is_some() {
        return Err(Malformed::SchemeOrPath);
    }
    let authority = uri.authority().ok_or(Malformed::NoAuthority)?.as_str();
    // The h2 crate holds a stream to its content-length, so tunnel DATA after a 2xx would then reset it: refuse
    // at once instead of connecting, answering 2xx and breaking the tunnel (RFC 9110 §9.3.6: "A CONNECT request
    // message does not have content"; whether it is malformed is disputed, httpwg/http2-spec#849).
    if req.headers().contains_key(http::header::CONTENT_LENGTH) {
        return Err(Malformed::ContentLength);
    }
    let fields: Vec<(&str, &[u8])> = req.headers().iter().map(|(n, v)| (n.as_str(), v.as_bytes())).collect();
    match Request::from_h2(authority, fields.iter().copied(), &shared.config) {
        Ok(r) => Ok(r),
        // A parser-relaxing fault rewrites the request as it would an HTTP/1.1 head (the same seam).
        Err(e) if shared.hooks.relaxes(&e) => {
            let head = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n");
            let rewritten =
                shared.hooks.relax_head(head.as_bytes(), &e).ok_or_else(|| Malformed::Authority(e.clone()))?;
            let target = rewritten.split(|b| *b == b' ').nth(1).unwrap_or_default();
            let target = String::from_utf8_lossy(target).into_owned();
            Request::from_h2(&target, fields.iter().copied(), &shared.config).map_err(Malformed::Authority)
        }
        Err(e) => Err(Malformed::Authority(e)),
    }
}

/// What is wrong with a stream's request.
#[derive(Debug)]
enum Malformed {
    /// `:scheme` or `:path` on a CONNECT without `:protocol` (RFC 9113 §8.5): a stream error.
    SchemeOrPath,
    /// No `:authority` (RFC 9113 §8.5): a stream error.
    NoAuthority,
    /// A `content-length` field on the CONNECT: a stream error before any connection.
    ContentLength,
    /// `:authority` that is not `host:port`: 400, as for HTTP/1.1.
    Authority(crate::wire::WireError),
    /// Another method: 501.
    NotConnect(String),
    /// RFC 8441 extended CONNECT, not implemented: 501.
    ExtendedConnect,
}

/// One CONNECT stream, from its request to the end of its tunnel; logged as one line.
async fn stream(
    req: http::Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
    shared: Arc<Shared>,
    sni: Option<String>,
    refused: Arc<tokio::sync::Notify>,
) {
    let started = std::time::Instant::now();
    let mut log = ConnLog { sni, ..ConnLog::default() };
    let config = &shared.config;
    let refusal = match request_of(&req, &shared) {
        Err(Malformed::SchemeOrPath | Malformed::NoAuthority | Malformed::ContentLength) => {
            respond.send_reset(Reason::PROTOCOL_ERROR);
            log.reason = "h2-malformed-request".into();
            None
        }
        Err(Malformed::Authority(e)) => {
            let details = format!("{}: {} ({})", e.kind(), e, e.rule());
            Some(ErrorResponse::new(400, ErrorType::HttpRequestError, details))
        }
        Err(Malformed::NotConnect(m)) => Some(
            ErrorResponse::new(501, ErrorType::ProxyInternalResponse, format!("method {m}: only CONNECT"))
                .with_field("Allow", "CONNECT"),
        ),
        Err(Malformed::ExtendedConnect) => Some(ErrorResponse::new(
            501,
            ErrorType::ProxyInternalResponse,
            "extended CONNECT (RFC 8441) is not supported",
        )),
        Ok(request) => {
            log.target = Some(request.target.clone());
            match decision::decide(&request, log.sni.as_deref(), config, &*shared.hooks) {
                Decision::Connect(dest) => {
                    // Under the `respond-before-connect` fault the 200 goes out first, whatever happens next.
                    let mut early = None;
                    if shared.hooks.respond_before_connect() {
                        match send_success(&mut respond, &shared, &mut log, None) {
                            Some(send) => early = Some(send),
                            None => return,
                        }
                    }
                    match crate::conn::reach(&shared, &request, &dest).await {
                        Ok(far) => {
                            tunnel(req.into_body(), &mut respond, early, far, &shared, &mut log).await;
                            None
                        }
                        Err(_) if early.is_some() => {
                            if let Some(mut send) = early {
                                send.send_reset(Reason::CONNECT_ERROR);
                            }
                            log.reason = "connect-failed-after-200".into();
                            None
                        }
                        Err(resp) => Some(resp),
                    }
                }
                Decision::Refuse(resp) | Decision::Interject(Interjection::Refuse(resp)) => Some(resp),
                Decision::Interject(Interjection::WriteAndClose { .. }) => {
                    respond.send_reset(Reason::INTERNAL_ERROR);
                    None
                }
            }
        }
    };
    if let Some(resp) = refusal {
        refuse(&mut respond, resp, &shared, &mut log);
        refused.notify_one();
    }
    tracing::info!(
        protocol = "h2",
        sni = log.sni.as_deref().unwrap_or(""),
        target = log.target.as_deref().unwrap_or(""),
        status = log.status.unwrap_or(0),
        up = log.up,
        down = log.down,
        ms = started.elapsed().as_millis() as u64,
        close = %log.reason,
        "stream"
    );
}

/// A refusal on a stream: the status, Proxy-Status and a short body, then END_STREAM.
fn refuse(respond: &mut SendResponse<Bytes>, resp: ErrorResponse, shared: &Shared, log: &mut ConnLog) {
    let resp = shared.hooks.refusal(resp);
    log.status = Some(resp.status);
    log.reason = "refused".into();
    let mut head = http::Response::builder()
        .status(resp.status)
        .header("proxy-status", resp.proxy_status(&shared.config.name))
        .header("content-type", "text/plain; charset=utf-8");
    for (name, value) in resp.field_values() {
        head = head.header(name, value);
    }
    let Ok(head) = head.body(()) else {
        respond.send_reset(Reason::INTERNAL_ERROR);
        return;
    };
    match respond.send_response(head, false) {
        Ok(mut send) => {
            let _ = send.send_data(Bytes::from(resp.body()), true);
        }
        Err(e) => log.reason = format!("refused (not sent: {e})"),
    }
}

/// Sends the 200 (with whatever a fault adds to the 2xx head: its fields, and bytes after it as DATA); `None`
/// when the client is gone.
fn send_success(
    respond: &mut SendResponse<Bytes>,
    shared: &Shared,
    log: &mut ConnLog,
    relay_head: Option<&[u8]>,
) -> Option<SendStream<Bytes>> {
    let (status, fields, after) = success_extras(relay_head.unwrap_or(shared.hooks.success_head()));
    let mut head = http::Response::builder().status(status);
    for (name, value) in &fields {
        head = head.header(name.as_str(), value.as_str());
    }
    let head = head.body(()).ok()?;
    match respond.send_response(head, false) {
        Ok(mut send) => {
            log.status = Some(status);
            if !after.is_empty() {
                let _ = send.send_data(Bytes::from(after), false);
            }
            Some(send)
        }
        Err(e) => {
            log.reason = format!("client-gone-before-200: {e}");
            None
        }
    }
}

/// The status and fields of the HTTP/1.1 2xx head the hooks give (200 and none by default; under the
/// `tunnel-parent-answer` fault, the parent's answer) and the bytes after its end, read with the proxy's own
/// response-head parser. A head it refuses (a fault's broken status line) is a plain 200.
fn success_extras(head: &[u8]) -> (u16, Vec<(String, String)>, Vec<u8>) {
    if head == crate::response::ESTABLISHED {
        return (200, Vec::new(), Vec::new());
    }
    match crate::wire::parse_response(head) {
        Ok(Some((h, used))) if h.status >= 200 => {
            let fields = h.fields.into_iter().map(|(n, v)| (n.to_ascii_lowercase(), v)).collect();
            (h.status, fields, head[used..].to_vec())
        }
        _ => (200, Vec::new(), Vec::new()),
    }
}

/// Answers 200 (unless it went out already) and relays between the stream and the upstream connection until
/// both directions end.
async fn tunnel(
    recv: RecvStream,
    respond: &mut SendResponse<Bytes>,
    sent: Option<SendStream<Bytes>>,
    far: crate::conn::FarSide,
    shared: &Shared,
    log: &mut ConnLog,
) {
    let mut send = match sent {
        Some(s) => s,
        None => match send_success(respond, shared, log, far.relay_head.as_deref()) {
            Some(s) => s,
            None => return,
        },
    };
    let mut recv = recv;
    if !shared.hooks.forward_early_data() {
        // `drop-early-data`: what the client sent with its request is discarded: the first DATA (awaited, so the
        // fault does not depend on whether it arrived before the 200), then whatever else is already here.
        if let Ok(Some(Ok(data))) = timeout(Duration::from_secs(1), recv.data()).await {
            let _ = recv.flow_control().release_capacity(data.len());
        }
        while let Some(Some(Ok(data))) = std::future::poll_fn(|cx| {
            std::task::Poll::Ready(match recv.poll_data(cx) {
                std::task::Poll::Ready(x) => Some(x),
                std::task::Poll::Pending => None,
            })
        })
        .await
        {
            let _ = recv.flow_control().release_capacity(data.len());
        }
    }
    let idle = shared.config.limits.idle_timeout;
    let faults = Faults { relay: shared.hooks.relay(), h2: shared.hooks.h2() };
    let (reason, up, down) = relay(recv, &mut send, far.stream, far.early_down, idle, faults).await;
    log.up = up;
    log.down = down;
    log.reason = reason.into();
}

/// The faults a stream's relay plays (none by default).
#[derive(Clone, Copy)]
struct Faults {
    relay: crate::relay::RelayFaults,
    h2: crate::hooks::H2Faults,
}

/// The two directions of one stream's tunnel. Returns why it ended and the bytes each way.
async fn relay(
    mut recv: RecvStream,
    send: &mut SendStream<Bytes>,
    far: UpstreamStream,
    early_down: Vec<u8>,
    idle: Duration,
    faults: Faults,
) -> (&'static str, u64, u64) {
    let (mut r, mut w) = tokio::io::split(far);
    let mut up_bytes = 0u64;
    let mut down_bytes = 0u64;
    // Client → upstream: DATA written upstream, then its window released; END_STREAM becomes FIN.
    let up = async {
        // `lose-last-client-bytes`: each chunk is held until the next, and the last one dropped at END_STREAM.
        let mut held: Option<Bytes> = None;
        loop {
            match timeout(idle, recv.data()).await {
                Err(_) => return Err("idle"),
                Ok(None) => {
                    // HEADERS (trailers) on a connected stream ends its data too, but is a stream error (RFC 9113
                    // §8.5: "MUST be treated as a stream error if received"), not a FIN.
                    if !faults.h2.trailers_as_end_stream && matches!(recv.trailers().await, Ok(Some(_))) {
                        return Err("client-headers-on-tunnel");
                    }
                    if faults.h2.drop_end_stream {
                        std::future::pending::<()>().await;
                    }
                    let _ = w.shutdown().await;
                    return Ok(());
                }
                Ok(Some(Ok(data))) => {
                    let n = data.len();
                    let data = if faults.relay.lose_last_client_bytes { held.replace(data) } else { Some(data) };
                    if let Some(data) = data {
                        if w.write_all(&data).await.is_err() {
                            return Err("upstream-write-failed");
                        }
                        up_bytes += data.len() as u64;
                    }
                    let _ = recv.flow_control().release_capacity(n);
                }
                Ok(Some(Err(_))) => return Err("client-reset-stream"),
            }
        }
    };
    // Upstream → client: read only as the client's window allows; FIN becomes END_STREAM, an error CONNECT_ERROR.
    let down = async {
        if !early_down.is_empty() {
            down_bytes += early_down.len() as u64;
            send_all(send, Bytes::from(early_down)).await.map_err(|_| "client-gone")?;
        }
        let mut buf = vec![0u8; READ_CHUNK];
        // `lose-last-upstream-bytes`: each chunk is held until the next, and the last one dropped at the FIN.
        let mut held: Option<Bytes> = None;
        loop {
            match timeout(idle, r.read(&mut buf)).await {
                Err(_) => return Err("idle"),
                Ok(Ok(0)) => {
                    if faults.h2.drop_end_stream {
                        std::future::pending::<()>().await;
                    }
                    let _ = send.send_data(Bytes::new(), true);
                    return Ok(());
                }
                Ok(Ok(n)) => {
                    if faults.relay.corrupt {
                        buf[0] ^= 0x01;
                    }
                    let data = Bytes::copy_from_slice(&buf[..n]);
                    let data = if faults.relay.lose_last_upstream_bytes { held.replace(data) } else { Some(data) };
                    if let Some(data) = data {
                        down_bytes += data.len() as u64;
                        send_all(send, data).await.map_err(|_| "client-gone")?;
                    }
                }
                Ok(Err(_)) if faults.h2.reset_as_end_stream => {
                    let _ = send.send_data(Bytes::new(), true);
                    return Ok(());
                }
                Ok(Err(_)) => {
                    send.send_reset(Reason::CONNECT_ERROR);
                    return Err("upstream-reset");
                }
            }
        }
    };
    let failure = {
        tokio::pin!(up, down);
        let (mut up_done, mut down_done) = (false, false);
        loop {
            tokio::select! {
                r = &mut up, if !up_done => {
                    if let Err(why) = r { break Some(why); }
                    up_done = true;
                }
                r = &mut down, if !down_done => {
                    if let Err(why) = r { break Some(why); }
                    down_done = true;
                }
            }
            if up_done && down_done {
                break None;
            }
        }
    };
    let far = r.unsplit(w);
    match failure {
        None => ("done", up_bytes, down_bytes),
        Some(why) => {
            // The client reset the stream, or the tunnel failed: the upstream connection is reset too (§8.5).
            if why != "upstream-reset" {
                if !(faults.h2.client_reset_as_fin && why == "client-reset-stream") {
                    let _ = socket2::SockRef::from(far.tcp()).set_linger(Some(Duration::ZERO));
                }
                send.send_reset(if why == "client-headers-on-tunnel" {
                    Reason::PROTOCOL_ERROR
                } else {
                    Reason::CONNECT_ERROR
                });
            }
            (why, up_bytes, down_bytes)
        }
    }
}

/// Sends `data` on the stream as the peer's flow-control window allows.
async fn send_all(send: &mut SendStream<Bytes>, mut data: Bytes) -> Result<(), h2::Error> {
    while !data.is_empty() {
        send.reserve_capacity(data.len());
        let granted = match std::future::poll_fn(|cx| send.poll_capacity(cx)).await {
            Some(Ok(n)) => n,
            Some(Err(e)) => return Err(e),
            None => return Err(h2::Error::from(Reason::STREAM_CLOSED)),
        };
        if granted == 0 {
            continue;
        }
        let chunk = data.split_to(granted.min(data.len()));
        send.send_data(chunk, false)?;
    }
    Ok(())
}
