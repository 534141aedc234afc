//! A path from the client to an origin: straight to it, through the yardstick relay, or through a proxy (plain
//! or TLS, with a CONNECT; or HTTP/2 over TLS or h2c, with a CONNECT stream). Opening one gives a byte stream
//! that reaches the origin, or says why not.

use std::{net::SocketAddr, sync::Arc};

use rustls_pki_types::ServerName;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    time::{Instant, timeout_at},
};

use crate::{
    client::{self, Io},
    exec::ProxyEndpoint,
    scenario::Transport,
};

/// Which origin a stream goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum To {
    Sink,
    Source,
    Echo,
}

/// How a path reaches the origins.
#[derive(Clone)]
pub enum Route {
    /// Straight to the origin.
    Direct,
    /// Through the yardstick relay: one relay address per origin (sink, source, echo).
    Yardstick([SocketAddr; 3]),
    /// Through a proxy.
    Proxy(Arc<ProxyPath>),
}

/// A proxy endpoint with what opening a tunnel through it needs, prepared once.
pub struct ProxyPath {
    pub ep: ProxyEndpoint,
    tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
    /// The `Proxy-Authorization` line (with CRLF), or empty.
    auth: String,
    /// On h2/h2c: CONNECT streams per HTTP/2 connection in a throughput run (1: each tunnel its own connection).
    pub streams: usize,
}

impl ProxyPath {
    pub fn new(ep: ProxyEndpoint, proxy_user: Option<&str>) -> Result<ProxyPath, String> {
        let tls_config = |alpn: &[String]| -> Result<_, String> {
            let name = ServerName::try_from(ep.host.clone()).map_err(|e| format!("{:?}: {e}", ep.host))?;
            let trust = ep.trust.clone().unwrap_or(client::tls::ProxyTrust::Insecure);
            let (config, _) = client::tls::proxy_client_config(&trust, name.clone(), true, alpn)?;
            Ok(Some((config, name)))
        };
        let tls = match ep.transport {
            Transport::Plain | Transport::H2c => None,
            Transport::Tls => tls_config(&[])?,
            Transport::H2 => tls_config(&["h2".to_string()])?,
        };
        let auth = match proxy_user {
            Some(u) => {
                use base64::Engine as _;
                format!("Proxy-Authorization: Basic {}\r\n", base64::engine::general_purpose::STANDARD.encode(u))
            }
            None => String::new(),
        };
        Ok(ProxyPath { ep, tls, auth, streams: 1 })
    }

    /// The same path with `n` CONNECT streams per HTTP/2 connection in throughput runs.
    pub fn with_streams(mut self, n: usize) -> ProxyPath {
        self.streams = n.max(1);
        self
    }

    /// The CONNECT stream's fields: Proxy-Authorization when configured.
    fn h2_fields(&self) -> Vec<(String, Vec<u8>)> {
        let line = self.auth.trim_end();
        crate::scenario::h2::split_field(line.as_bytes()).into_iter().collect()
    }

    /// A connection to the proxy: TCP, then TLS where the path has it (checking that ALPN selected h2 on the
    /// h2 transport).
    async fn connect(&self, deadline: Instant, reset: bool) -> Result<Box<dyn Io>, OpenError> {
        let s = tcp(self.ep.addr, deadline, reset).await?;
        let Some((config, name)) = &self.tls else {
            return Ok(Box::new(s));
        };
        let c = tokio_rustls::TlsConnector::from(config.clone());
        match timeout_at(deadline, c.connect(name.clone(), s)).await {
            Err(_) => Err(OpenError::Timeout),
            Ok(Err(e)) => Err(OpenError::Tls(e.to_string())),
            Ok(Ok(t)) if self.ep.transport == Transport::H2 && t.get_ref().1.alpn_protocol() != Some(b"h2") => {
                Err(OpenError::Tls("the proxy did not select h2 in ALPN".into()))
            }
            Ok(Ok(t)) => Ok(Box::new(t)),
        }
    }

    /// A new HTTP/2 connection to the proxy (TLS with ALPN h2, or h2c with prior knowledge).
    pub async fn h2_session(&self, deadline: Instant, reset: bool) -> Result<client::h2::H2Session, OpenError> {
        let io = self.connect(deadline, reset).await?;
        client::h2::H2Session::handshake(io, deadline).await.map_err(|e| match e {
            client::h2::H2Error::HandshakeTimeout => OpenError::Timeout,
            e => OpenError::H2(e.to_string()),
        })
    }

    /// A CONNECT stream to `target` on `session`, once the proxy answered 2xx.
    pub async fn h2_stream(
        &self,
        session: &mut client::h2::H2Session,
        target: SocketAddr,
        deadline: Instant,
    ) -> Result<Box<dyn Io>, OpenError> {
        let stream = session.connect(&target.to_string(), &self.h2_fields(), Vec::new(), deadline).await;
        let mut io: Box<dyn Io> = match stream {
            Ok(s) => Box::new(s),
            Err(client::h2::H2Error::ReadyTimeout) => return Err(OpenError::Timeout),
            Err(e) => return Err(OpenError::H2(e.to_string())),
        };
        read_2xx(&mut io, deadline).await?;
        Ok(io)
    }
}

/// One CONNECT stream with the HTTP/2 connection it lives on (which ends with it).
struct Owned {
    stream: Box<dyn Io>,
    _session: client::h2::H2Session,
}

impl tokio::io::AsyncRead for Owned {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Owned {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Why a stream could not be opened; the kinds are what the setup-rate phase counts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("TCP connect failed: {0}")]
    Connect(String),
    #[error("TLS handshake failed: {0}")]
    Tls(String),
    #[error("timed out")]
    Timeout,
    #[error("the proxy answered {0}")]
    Status(u16),
    #[error("the proxy closed the connection without an answer")]
    Closed,
    #[error("the answer is not HTTP: {0}")]
    Garbage(String),
    #[error("HTTP/2: {0}")]
    H2(String),
}

impl OpenError {
    /// A short name for counting errors by kind.
    pub fn kind(&self) -> String {
        match self {
            OpenError::Connect(_) => "connect".into(),
            OpenError::Tls(_) => "tls".into(),
            OpenError::Timeout => "timeout".into(),
            OpenError::Status(s) => format!("status-{s}"),
            OpenError::Closed => "closed".into(),
            OpenError::Garbage(_) => "garbage".into(),
            OpenError::H2(_) => "h2".into(),
        }
    }
}

/// The origins' addresses.
#[derive(Debug, Clone, Copy)]
pub struct OriginAddrs {
    pub sink: SocketAddr,
    pub source: SocketAddr,
    pub echo: SocketAddr,
}

impl OriginAddrs {
    pub fn of(&self, to: To) -> SocketAddr {
        match to {
            To::Sink => self.sink,
            To::Source => self.source,
            To::Echo => self.echo,
        }
    }
}

/// A TCP connection by `deadline`; with `reset`, closing it resets it (SO_LINGER 0) instead of TIME_WAIT.
async fn tcp(addr: SocketAddr, deadline: Instant, reset: bool) -> Result<tokio::net::TcpStream, OpenError> {
    match client::connect_tcp(addr, deadline).await {
        Ok(s) => {
            if reset {
                let _ = socket2::SockRef::from(&s).set_linger(Some(std::time::Duration::ZERO));
            }
            Ok(s)
        }
        Err(client::ConnectError::Timeout(_)) => Err(OpenError::Timeout),
        Err(e) => Err(OpenError::Connect(e.to_string())),
    }
}

/// Opens a stream to origin `to` along `route`, by `deadline`. With `reset`, closing the stream resets the
/// TCP connection (SO_LINGER 0) instead of leaving it in TIME_WAIT.
pub async fn open(
    route: &Route,
    origins: &OriginAddrs,
    to: To,
    deadline: Instant,
    reset: bool,
) -> Result<Box<dyn Io>, OpenError> {
    match route {
        Route::Direct => Ok(Box::new(tcp(origins.of(to), deadline, reset).await?)),
        Route::Yardstick(relays) => {
            let i = match to {
                To::Sink => 0,
                To::Source => 1,
                To::Echo => 2,
            };
            Ok(Box::new(tcp(relays[i], deadline, reset).await?))
        }
        Route::Proxy(p) if p.ep.transport.is_h2() => {
            // One tunnel, one HTTP/2 connection (the multi-stream throughput runs share one: see throughput.rs).
            let mut session = p.h2_session(deadline, reset).await?;
            let stream = p.h2_stream(&mut session, origins.of(to), deadline).await?;
            Ok(Box::new(Owned { stream, _session: session }))
        }
        Route::Proxy(p) => {
            let mut io = p.connect(deadline, reset).await?;
            let target = origins.of(to);
            let req = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n{}\r\n", p.auth);
            match timeout_at(deadline, io.write_all(req.as_bytes())).await {
                Err(_) => return Err(OpenError::Timeout),
                Ok(Err(_)) => return Err(OpenError::Closed),
                Ok(Ok(())) => {}
            }
            read_2xx(&mut io, deadline).await?;
            Ok(io)
        }
    }
}

/// Reads the proxy's answer up to the end of its head and accepts only a 2xx. The origins send nothing before
/// the client does, so bytes after the head are an error, not tunnel data to keep.
async fn read_2xx(io: &mut Box<dyn Io>, deadline: Instant) -> Result<(), OpenError> {
    let mut head = Vec::with_capacity(256);
    let mut chunk = [0u8; 1024];
    let end = loop {
        if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if head.len() > 16 * 1024 {
            return Err(OpenError::Garbage("a response head over 16 KiB".into()));
        }
        match timeout_at(deadline, io.read(&mut chunk)).await {
            Err(_) => return Err(OpenError::Timeout),
            Ok(Ok(0)) | Ok(Err(_)) => return Err(OpenError::Closed),
            Ok(Ok(n)) => head.extend_from_slice(&chunk[..n]),
        }
    };
    let h = client::head::parse_head(&head[..end]).map_err(OpenError::Garbage)?;
    if !(200..300).contains(&h.status) {
        return Err(OpenError::Status(h.status));
    }
    if head.len() > end {
        return Err(OpenError::Garbage(format!("{} bytes after the 2xx head before any was sent", head.len() - end)));
    }
    Ok(())
}
