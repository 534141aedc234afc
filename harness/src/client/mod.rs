//! The client side of a scenario: a connection to the proxy (plain or TLS, possibly with TLS nested inside
//! the tunnel), where every read and write has a deadline and everything is written to a transcript.

pub mod h2;
pub mod h2_frames;
pub mod head;
pub mod tls;
pub mod transcript;

use std::{
    io,
    net::SocketAddr,
    os::fd::{AsFd, OwnedFd},
    sync::Arc,
};

use rustls::pki_types::ServerName;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::TcpStream,
    time::{Instant, timeout_at},
};

use self::{
    head::{ResponseHead, find_head_end, parse_head},
    transcript::{Direction, Transcript},
};

/// Anything the client can talk through.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Why a TCP connection to the proxy could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("connecting to the proxy at {0} timed out")]
    Timeout(SocketAddr),
    #[error("could not connect to the proxy at {0}: {1}")]
    Io(SocketAddr, io::Error),
}

impl ConnectError {
    /// The proxy accepted the connection and then reset it: the proxy failing, not the proxy being unreachable.
    pub fn accepted_then_reset(&self) -> bool {
        matches!(self, ConnectError::Io(_, e) if e.kind() == io::ErrorKind::ConnectionReset)
    }
}

pub async fn connect_tcp(addr: SocketAddr, deadline: Instant) -> Result<TcpStream, ConnectError> {
    match timeout_at(deadline, TcpStream::connect(addr)).await {
        Err(_) => Err(ConnectError::Timeout(addr)),
        Ok(Err(e)) => Err(ConnectError::Io(addr, e)),
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            Ok(s)
        }
    }
}

/// Why a TLS handshake did not complete.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    #[error("TLS handshake timed out")]
    TimedOut,
    #[error("TLS handshake failed: {0}")]
    Failed(String),
    #[error("{0} unexpected bytes arrived before the TLS handshake")]
    BytesBefore(usize),
}

/// One read attempt.
#[derive(Debug)]
pub enum ReadEvent {
    Data(usize),
    Eof,
    Error(io::Error),
    Timeout,
}

/// The result of reading a response head.
#[derive(Debug)]
pub enum HeadRead {
    Head(ResponseHead),
    /// Bytes that do not parse as a response head.
    Garbage(String),
    /// No end of head within the size bound.
    TooLarge(usize),
    /// The connection ended (cleanly, or with an error) before a complete head; `partial` is what came.
    Closed {
        partial: Vec<u8>,
        error: Option<String>,
    },
    Timeout {
        partial: Vec<u8>,
    },
}

pub struct Conn {
    io: Box<dyn Io>,
    /// Bytes read but not yet consumed (for example tunnel data that followed a 2xx head).
    pub buf: Vec<u8>,
    pub eof: bool,
    /// A duplicate of the TCP socket, to abort with RST.
    tcp_fd: Option<OwnedFd>,
    pub transcript: Transcript,
    /// On the `h2` and `h2c` transports: the HTTP/2 connection; `io` is then the current CONNECT stream.
    h2: Option<H2>,
}

/// An HTTP/2 connection: through the `h2` crate, or through the harness's own frames for scenarios that send
/// HEADERS the crate refuses to send (`h2_headers` steps).
enum H2 {
    Crate(h2::H2Session),
    Frames(h2_frames::FrameSession),
}

impl H2 {
    fn notes(&self) -> &h2::Notes {
        match self {
            H2::Crate(s) => &s.notes,
            H2::Frames(s) => &s.notes,
        }
    }

    fn close(&self) {
        match self {
            H2::Crate(s) => s.close(),
            H2::Frames(s) => s.close(),
        }
    }
}

impl Conn {
    pub fn new(tcp: TcpStream, transcript: Transcript) -> Self {
        let tcp_fd = tcp.as_fd().try_clone_to_owned().ok();
        Self { io: Box::new(tcp), buf: Vec::new(), eof: false, tcp_fd, transcript, h2: None }
    }

    /// TLS handshake over the current stream (to the proxy, or through the tunnel); consumes the stream.
    /// Returns the negotiated ALPN protocol.
    pub async fn start_tls(
        &mut self,
        config: Arc<rustls::ClientConfig>,
        name: ServerName<'static>,
        deadline: Instant,
    ) -> Result<Option<String>, TlsError> {
        if !self.buf.is_empty() {
            return Err(TlsError::BytesBefore(self.buf.len()));
        }
        let connector = tokio_rustls::TlsConnector::from(config);
        let inner = std::mem::replace(&mut self.io, Box::new(tokio::io::empty()));
        match timeout_at(deadline, connector.connect(name, inner)).await {
            Err(_) => Err(TlsError::TimedOut),
            Ok(Err(e)) => Err(TlsError::Failed(e.to_string())),
            Ok(Ok(tls)) => {
                let (_, conn) = tls.get_ref();
                let alpn = conn.alpn_protocol().map(|a| String::from_utf8_lossy(a).into_owned());
                let version = conn.protocol_version().map(|v| format!("{v:?}")).unwrap_or_default();
                self.transcript.event(format!("TLS established ({version}, ALPN {alpn:?})"));
                self.io = Box::new(tls);
                Ok(alpn)
            }
        }
    }

    /// Starts HTTP/2 over the current stream (TLS with ALPN h2, or plain for h2c); from now on the steps talk
    /// to CONNECT streams opened by [`Conn::h2_connect`] and [`Conn::h2_headers`]. `frames`: through the
    /// harness's own frame writer instead of the `h2` crate.
    pub async fn start_h2(&mut self, frames: bool, deadline: Instant) -> Result<(), h2::H2Error> {
        let inner = std::mem::replace(&mut self.io, Box::new(tokio::io::empty()));
        let session = if frames {
            H2::Frames(h2_frames::FrameSession::handshake(inner, deadline).await?)
        } else {
            H2::Crate(h2::H2Session::handshake(inner, deadline).await?)
        };
        self.transcript.event(if frames {
            "HTTP/2 connection established (preface and SETTINGS exchanged; the harness's own frame writer)"
        } else {
            "HTTP/2 connection established (preface and SETTINGS exchanged)"
        });
        self.h2 = Some(session);
        // A client reset is RST_STREAM on the stream, not a TCP reset of the whole connection.
        self.tcp_fd = None;
        Ok(())
    }

    /// Whether this connection speaks HTTP/2.
    pub fn is_h2(&self) -> bool {
        self.h2.is_some()
    }

    /// Opens a CONNECT stream; it becomes the stream the steps read and write.
    pub async fn h2_connect(
        &mut self,
        authority: &str,
        fields: &[(String, Vec<u8>)],
        early: Vec<u8>,
        deadline: Instant,
    ) -> Result<(), h2::H2Error> {
        let stream: Box<dyn Io> = match self.h2.as_mut() {
            None => return Err(h2::H2Error::Request("not an HTTP/2 connection".into())),
            Some(H2::Crate(session)) => {
                let stream = session.connect(authority, fields, early, deadline).await;
                self.drain_notes();
                Box::new(stream?)
            }
            Some(H2::Frames(session)) => {
                let stream = session.connect(authority, fields, deadline).await;
                self.drain_notes();
                let mut stream = stream?;
                if !early.is_empty() {
                    stream.write_all(&early).await.map_err(|e| h2::H2Error::NotReady(e.to_string()))?;
                }
                Box::new(stream)
            }
        };
        self.io = stream;
        self.eof = false;
        self.buf.clear();
        Ok(())
    }

    /// Opens one more CONNECT stream on the HTTP/2 connection and hands it out, leaving the current stream as it
    /// is (the `h2_parallel` step).
    pub async fn h2_extra_stream(
        &mut self,
        authority: &str,
        fields: &[(String, Vec<u8>)],
        deadline: Instant,
    ) -> Result<Box<dyn Io>, h2::H2Error> {
        let stream: Box<dyn Io> = match self.h2.as_mut() {
            None => return Err(h2::H2Error::Request("not an HTTP/2 connection".into())),
            Some(H2::Crate(session)) => Box::new(session.connect(authority, fields, Vec::new(), deadline).await?),
            Some(H2::Frames(session)) => Box::new(session.connect(authority, fields, deadline).await?),
        };
        self.drain_notes();
        Ok(stream)
    }

    /// Announces a stream receive window for the streams opened from now on (the harness's own frame writer),
    /// once the proxy acknowledged it.
    pub async fn h2_stream_window(&mut self, size: u32, deadline: Instant) -> Result<(), h2::H2Error> {
        let Some(H2::Frames(session)) = self.h2.as_mut() else {
            return Err(h2::H2Error::Request("not an HTTP/2 connection of the harness's own frame writer".into()));
        };
        let r = session.stream_window(size, deadline).await;
        self.drain_notes();
        r
    }

    /// Sends a HEADERS frame with exactly these fields (the harness's own frame writer; the connection must
    /// have been started with `frames`): on a new stream, which becomes the one the steps read and write, or on
    /// the current stream.
    pub async fn h2_headers(
        &mut self,
        fields: Vec<(Vec<u8>, Vec<u8>)>,
        on_current: bool,
        end_stream: bool,
        deadline: Instant,
    ) -> Result<(), h2::H2Error> {
        let Some(H2::Frames(session)) = self.h2.as_mut() else {
            return Err(h2::H2Error::Request("not an HTTP/2 connection of the harness's own frame writer".into()));
        };
        let stream = session.headers(fields, on_current, end_stream, deadline).await;
        self.drain_notes();
        if let Some(stream) = stream? {
            self.io = Box::new(stream);
            self.eof = false;
            self.buf.clear();
        }
        Ok(())
    }

    /// Moves what the HTTP/2 tasks noted into the transcript.
    fn drain_notes(&mut self) {
        if let Some(session) = &self.h2 {
            for note in session.notes().take() {
                self.transcript.event(note);
            }
        }
    }

    pub async fn write(&mut self, data: &[u8], deadline: Instant) -> Result<(), String> {
        self.drain_notes();
        self.transcript.bytes(Direction::Sent, data);
        match timeout_at(deadline, async {
            self.io.write_all(data).await?;
            self.io.flush().await
        })
        .await
        {
            Err(_) => Err("write timed out (the proxy stopped reading)".into()),
            Ok(Err(e)) => Err(format!("write failed: {e}")),
            Ok(Ok(())) => Ok(()),
        }
    }

    /// Reads once more into `buf`, at most `max` bytes.
    pub async fn read_more(&mut self, max: usize, deadline: Instant) -> ReadEvent {
        if self.eof {
            return ReadEvent::Eof;
        }
        let mut chunk = vec![0u8; max.clamp(1, 64 * 1024)];
        let read = timeout_at(deadline, self.io.read(&mut chunk)).await;
        self.drain_notes();
        match read {
            Err(_) => ReadEvent::Timeout,
            Ok(Ok(0)) => {
                self.eof = true;
                self.transcript.event("EOF from the proxy");
                ReadEvent::Eof
            }
            Ok(Ok(n)) => {
                self.transcript.bytes(Direction::Received, &chunk[..n]);
                self.buf.extend_from_slice(&chunk[..n]);
                ReadEvent::Data(n)
            }
            Ok(Err(e)) => {
                self.eof = true;
                self.transcript.event(format!("read error: {e}"));
                ReadEvent::Error(e)
            }
        }
    }

    /// Reads a response head of at most `max` bytes; bytes after it stay in `buf`.
    pub async fn read_head(&mut self, max: usize, deadline: Instant) -> HeadRead {
        loop {
            if let Some(end) = find_head_end(&self.buf) {
                let head: Vec<u8> = self.buf.drain(..end).collect();
                return match parse_head(&head) {
                    Ok(h) => HeadRead::Head(h),
                    Err(e) => HeadRead::Garbage(e),
                };
            }
            if self.buf.len() > max {
                return HeadRead::TooLarge(self.buf.len());
            }
            // A status line that cannot be HTTP is garbage at once; no need to wait for more.
            if self.buf.len() >= 5 && !self.buf.starts_with(b"HTTP/") {
                let line_end = self.buf.iter().position(|&b| b == b'\n').unwrap_or(self.buf.len());
                return HeadRead::Garbage(format!(
                    "not an HTTP response: {}",
                    crate::escape::escape(&self.buf[..line_end], 80)
                ));
            }
            match self.read_more(max + 1 - self.buf.len(), deadline).await {
                ReadEvent::Data(_) => {}
                ReadEvent::Eof => {
                    return HeadRead::Closed { partial: std::mem::take(&mut self.buf), error: None };
                }
                ReadEvent::Error(e) => {
                    return HeadRead::Closed { partial: std::mem::take(&mut self.buf), error: Some(e.to_string()) };
                }
                ReadEvent::Timeout => {
                    return HeadRead::Timeout { partial: self.buf.clone() };
                }
            }
        }
    }

    /// Reads until `buf` holds at least `n` bytes.
    pub async fn fill(&mut self, n: usize, deadline: Instant) -> ReadEvent {
        while self.buf.len() < n {
            match self.read_more(n - self.buf.len(), deadline).await {
                ReadEvent::Data(_) => {}
                other => return other,
            }
        }
        ReadEvent::Data(self.buf.len())
    }

    /// Reads and discards until EOF; returns how many bytes came, or the event that stopped it.
    pub async fn drain_to_eof(&mut self, limit: usize, deadline: Instant) -> (usize, ReadEvent) {
        let mut total = std::mem::take(&mut self.buf).len();
        loop {
            match self.read_more(64 * 1024, deadline).await {
                ReadEvent::Data(n) => {
                    total += n;
                    self.buf.clear();
                    if total > limit {
                        return (total, ReadEvent::Data(total));
                    }
                }
                other => return (total, other),
            }
        }
    }

    /// Half-close: FIN (over TLS, close_notify then FIN); reading goes on.
    pub async fn shutdown_write(&mut self, deadline: Instant) -> Result<(), String> {
        self.transcript.event("client half-close (shutdown write)");
        match timeout_at(deadline, self.io.shutdown()).await {
            Err(_) => Err("shutdown timed out".into()),
            Ok(Err(e)) => Err(format!("shutdown failed: {e}")),
            Ok(Ok(())) => Ok(()),
        }
    }

    /// Abortive close: RST on the TCP connection.
    pub fn reset(&mut self) {
        self.transcript.event(if self.h2.is_some() {
            "client reset (RST_STREAM(CANCEL) on the stream)"
        } else {
            "client reset (RST)"
        });
        if let Some(fd) = self.tcp_fd.take() {
            let _ = socket2::SockRef::from(&fd).set_linger(Some(std::time::Duration::ZERO));
        }
        self.io = Box::new(tokio::io::empty());
        self.eof = true;
    }

    /// Full close (FIN both ways, after close_notify over TLS).
    pub async fn close(&mut self, deadline: Instant) {
        self.transcript.event("client close");
        let _ = timeout_at(deadline, self.io.shutdown()).await;
        self.io = Box::new(tokio::io::empty());
        if let Some(session) = self.h2.take() {
            // Over HTTP/2, a close ends the whole connection (as an HTTP/1.1 close ends the TCP connection).
            session.close();
        }
        self.tcp_fd = None;
        self.eof = true;
    }

    /// The raw stream, for bulk transfers.
    pub fn io(&mut self) -> &mut Box<dyn Io> {
        &mut self.io
    }
}

impl Conn {
    /// Ends the connection at the end of a scenario without waiting for anything.
    pub fn reset_quietly(&mut self) {
        self.io = Box::new(tokio::io::empty());
        self.drain_notes();
        self.h2 = None;
        self.tcp_fd = None;
    }
}
