//! The I/O of chaining: connect to the parent (TCP, then TLS when configured), send our CONNECT, read its
//! answer within the deadlines, and hand back the stream for the relay.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout, timeout_at};

use super::{Answer, ParentRequest, Upstream, answer, failure, parent_request};
use crate::conn::Shared;
use crate::decision::{OwnedHost, Request};
use crate::response::{ErrorResponse, ErrorType};
use crate::wire::{ResponseError, parse_response};

/// The connection a tunnel's far side runs over: the destination itself, or a parent proxy (maybe over TLS).
pub(crate) enum UpstreamStream {
    Tcp(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl UpstreamStream {
    pub(crate) fn tcp(&self) -> &TcpStream {
        match self {
            UpstreamStream::Tcp(s) => s,
            UpstreamStream::Tls(s) => s.get_ref().0,
        }
    }
}

impl AsyncRead for UpstreamStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            UpstreamStream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            UpstreamStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for UpstreamStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            UpstreamStream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            UpstreamStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            UpstreamStream::Tcp(s) => Pin::new(s).poll_flush(cx),
            UpstreamStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            UpstreamStream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            UpstreamStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// A tunnel through the parent, ready to relay.
pub(crate) struct Dialed {
    pub stream: UpstreamStream,
    /// Bytes the parent sent after its 2xx head: tunnel data for the client.
    pub early: Vec<u8>,
    /// The parent's own head, sent to the client in place of this proxy's 200 (only under a fault).
    pub relay_head: Option<Vec<u8>>,
}

/// Why an attempt did not give a tunnel: answered (never retried), or the parent went away without answering.
enum Failed {
    Answered(ErrorResponse),
    NoAnswer(ErrorResponse),
}

/// Opens a tunnel to the request's target through the parent.
pub(crate) async fn dial(shared: &Shared, up: &Upstream, req: &Request) -> Result<Dialed, ErrorResponse> {
    let hooks = &*shared.hooks;
    let parent = up.url();
    let mut request = hooks.parent_request(req, parent_request(req, up, &shared.config.name, &shared.via_token));
    if hooks.resolve_before_parent()
        && let OwnedHost::Name(_) = req.host
        && let Ok(ips) = shared.resolver.resolve(&req.host.as_host()).await
        && let Some(ip) = ips.first()
    {
        let target = std::net::SocketAddr::new(*ip, req.port).to_string();
        request.target.clone_from(&target);
        request.fields.iter_mut().filter(|(n, _)| n == "Host").for_each(|(_, v)| v.clone_from(&target));
    }
    let attempts = if hooks.retry_parent() { 2 } else { 1 };
    let mut last = None;
    for _ in 0..attempts {
        match attempt(shared, up, &request, &parent).await {
            Ok(d) => return Ok(d),
            Err(Failed::Answered(resp)) => return Err(resp),
            Err(Failed::NoAnswer(resp)) => last = Some(resp),
        }
    }
    Err(last.expect("at least one attempt"))
}

async fn attempt(shared: &Shared, up: &Upstream, request: &ParentRequest, parent: &str) -> Result<Dialed, Failed> {
    let limits = &shared.config.limits;
    let hooks = &*shared.hooks;
    let answered = |status, error, details: String| Failed::Answered(failure(status, error, details, parent));
    let ips = match up.host.parse::<std::net::IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => shared
            .resolver
            .resolve(&crate::wire::Host::Name(&up.host))
            .await
            .map_err(|e| answered(502, ErrorType::DnsError, format!("resolving the parent proxy: {e}")))?,
    };
    let addrs: Vec<_> = ips.into_iter().map(|ip| std::net::SocketAddr::new(ip, up.port)).collect();
    if addrs.is_empty() {
        return Err(answered(502, ErrorType::DnsError, format!("the parent proxy's name {} has no address", up.host)));
    }
    let tcp = crate::conn::connect_any(&addrs, limits.connect_timeout).await.map_err(|mut resp| {
        resp.details = format!("parent proxy: {}", resp.details);
        resp.chain = failure(resp.status, resp.error, String::new(), parent).chain;
        Failed::Answered(resp)
    })?;
    let _ = tcp.set_nodelay(true);
    let deadline = Instant::now() + limits.header_timeout;
    let mut stream = match &shared.upstream_tls {
        None => UpstreamStream::Tcp(tcp),
        Some(connector) => {
            let name = rustls_pki_types::ServerName::try_from(up.host.clone())
                .map_err(|e| answered(502, ErrorType::ProxyConfigurationError, format!("parent name: {e}")))?;
            match timeout_at(deadline, connector.connect(name, tcp)).await {
                Ok(Ok(tls)) => UpstreamStream::Tls(Box::new(tls)),
                Ok(Err(e)) => {
                    let certificate = e
                        .get_ref()
                        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                        .is_some_and(|r| matches!(r, rustls::Error::InvalidCertificate(_)));
                    let error = if certificate { ErrorType::TlsCertificateError } else { ErrorType::TlsProtocolError };
                    return Err(answered(502, error, format!("TLS to the parent proxy: {e}")));
                }
                Err(_) => {
                    return Err(answered(
                        504,
                        ErrorType::ConnectionTimeout,
                        "TLS to the parent proxy timed out".into(),
                    ));
                }
            }
        }
    };
    let bytes = request.to_bytes();
    let sent = timeout_at(deadline, async {
        stream.write_all(&bytes).await?;
        stream.flush().await
    })
    .await;
    if !matches!(sent, Ok(Ok(()))) {
        let details = "the parent proxy's connection failed while sending the CONNECT".to_owned();
        return Err(Failed::NoAnswer(failure(502, ErrorType::ConnectionTerminated, details, parent)));
    }
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    loop {
        match parse_response(&buf) {
            Ok(Some((head, n))) if head.status < 200 && head.status != 101 => {
                // Interim responses (100, 103) carry nothing for a tunnel. (A 101 is final and wrong: no Upgrade was
                // sent; `answer` makes it a 502.)
                buf.drain(..n);
                continue;
            }
            Ok(Some((head, n))) => {
                let relay_head = hooks.blind_parent_answer().then(|| buf[..n].to_vec());
                return match (answer(&head, parent, &shared.config.name), relay_head) {
                    (Answer::Tunnel, relay_head) | (Answer::Refuse(_), relay_head @ Some(_)) => {
                        Ok(Dialed { stream, early: buf.split_off(n), relay_head })
                    }
                    (Answer::Refuse(mut resp), None) => {
                        if !hooks.keep_parent_proxy_status()
                            && let Some(chain) = resp.chain.as_mut()
                        {
                            chain.prior = None;
                        }
                        Err(Failed::Answered(resp))
                    }
                };
            }
            Ok(None) => {}
            Err(e) if hooks.blind_parent_answer() => {
                let _ = e;
                return Ok(Dialed { stream, early: Vec::new(), relay_head: Some(buf) });
            }
            Err(ResponseError::TooLarge) => {
                let details =
                    format!("the parent proxy's response head is larger than {} bytes", crate::wire::MAX_RESPONSE_HEAD);
                return Err(answered(502, ErrorType::HttpResponseHeaderSectionSize, details));
            }
            Err(e) => {
                return Err(answered(502, ErrorType::HttpProtocolError, format!("the parent proxy answered: {e}")));
            }
        }
        buf.reserve(4096);
        match timeout_at(deadline, stream.read_buf(&mut buf)).await {
            Err(_) => {
                let details = format!("the parent proxy did not answer within {:?}", limits.header_timeout);
                return Err(answered(504, ErrorType::HttpResponseTimeout, details));
            }
            Ok(Ok(n)) if n > 0 => {}
            Ok(result) => {
                let how = match result {
                    Err(e) => format!("failed ({e})"),
                    Ok(_) => "closed".to_owned(),
                };
                return Err(if buf.is_empty() {
                    let details = format!("the parent proxy's connection {how} before any response");
                    Failed::NoAnswer(failure(502, ErrorType::ConnectionTerminated, details, parent))
                } else {
                    let details = format!("the parent proxy's connection {how} in the middle of its response head");
                    Failed::Answered(failure(502, ErrorType::HttpResponseIncomplete, details, parent))
                });
            }
        }
    }
}

/// Writes with a deadline (used for the early data in either direction).
pub(crate) async fn write_within<W: AsyncWrite + Unpin>(
    w: &mut W,
    bytes: &[u8],
    limit: std::time::Duration,
) -> std::io::Result<()> {
    match timeout(limit, async {
        w.write_all(bytes).await?;
        w.flush().await
    })
    .await
    {
        Ok(r) => r,
        Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
    }
}
