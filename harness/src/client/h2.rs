//! HTTP/2 to the proxy (transports `h2` and `h2c`, RFC 9113 §8.5), with the `h2` crate: one connection per
//! scenario, each CONNECT a stream. A stream is handed to the steps as a byte stream ([`H2Stream`]), so the
//! scenarios written for HTTP/1.1 run unchanged where they mean the same thing in HTTP/2:
//!
//! - reads yield the response HEADERS rendered as an HTTP/1.1-style head (`HTTP/2.0 200 OK` and the fields;
//!   the transcript says so), then the DATA of the stream; END_STREAM from the proxy is EOF; RST_STREAM from
//!   the proxy is a read error naming the error code (a CONNECT_ERROR is the HTTP/2 form of a TCP reset);
//! - writes are DATA frames (sent as the proxy's flow-control window allows; DATA before the response is
//!   allowed, RFC 9113 §8.5), a write shutdown is END_STREAM (the HTTP/2 form of a half-close), and dropping
//!   the stream without a shutdown resets it with RST_STREAM(CANCEL) (the form of a client's TCP reset).
//!
//! Each direction is its own task, so a proxy that stops granting window in one direction cannot stop the
//! other (the echo steps write and read at once). Malformed requests (`:scheme`/`:path`, connection-specific
//! fields), which the `h2` crate refuses to send, go through the harness's own frames ([`super::h2_frames`]).

use std::{
    io,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
};

use bytes::Bytes;
use h2::{Reason, RecvStream, SendStream, client::SendRequest};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    sync::mpsc,
    task::JoinHandle,
    time::{Instant, timeout_at},
};
use tokio_util::sync::PollSender;

use super::Io;

/// Receive window per stream and per connection: large, so the harness is never the slow side.
const STREAM_WINDOW: u32 = 4 * 1024 * 1024;
const CONNECTION_WINDOW: u32 = 16 * 1024 * 1024;
/// Chunks queued between the steps and a stream's tasks, each direction.
const QUEUE: usize = 16;
/// Largest DATA frame payload the harness writes.
const MAX_WRITE: usize = 16 * 1024;

/// Notes the stream tasks leave for the transcript (drained by [`super::Conn`] at its next read or write).
#[derive(Clone, Default)]
pub struct Notes(Arc<Mutex<Vec<String>>>);

impl Notes {
    pub fn push(&self, note: impl Into<String>) {
        if let Ok(mut v) = self.0.lock()
            && v.len() < 64
        {
            v.push(note.into());
        }
    }

    pub fn take(&self) -> Vec<String> {
        self.0.lock().map(|mut v| std::mem::take(&mut *v)).unwrap_or_default()
    }
}

/// One HTTP/2 connection to the proxy.
pub struct H2Session {
    send: SendRequest<Bytes>,
    driver: JoinHandle<()>,
    pub notes: Notes,
    streams: u32,
}

/// Why an HTTP/2 connection or stream could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum H2Error {
    #[error("the HTTP/2 connection preface and SETTINGS exchange did not complete before the deadline")]
    HandshakeTimeout,
    #[error("HTTP/2 handshake failed: {0}")]
    Handshake(String),
    #[error("the proxy's HTTP/2 connection cannot take another stream: {0}")]
    NotReady(String),
    #[error("no stream slot (SETTINGS_MAX_CONCURRENT_STREAMS) before the deadline")]
    ReadyTimeout,
    #[error("the request cannot be sent with the h2 crate: {0}")]
    Request(String),
}

impl H2Session {
    /// The client preface and SETTINGS over `io` (TLS with ALPN h2, or plain for h2c with prior knowledge).
    pub async fn handshake(io: Box<dyn Io>, deadline: Instant) -> Result<H2Session, H2Error> {
        let mut builder = h2::client::Builder::new();
        builder.initial_window_size(STREAM_WINDOW).initial_connection_window_size(CONNECTION_WINDOW);
        let (send, conn) = match timeout_at(deadline, builder.handshake::<_, Bytes>(io)).await {
            Err(_) => return Err(H2Error::HandshakeTimeout),
            Ok(Err(e)) => return Err(H2Error::Handshake(e.to_string())),
            Ok(Ok(pair)) => pair,
        };
        let notes = Notes::default();
        let driver_notes = notes.clone();
        let driver = tokio::spawn(async move {
            match conn.await {
                Ok(()) => driver_notes.push("h2: the connection ended"),
                Err(e) => driver_notes.push(format!("h2: connection error: {e}")),
            }
        });
        Ok(H2Session { send, driver, notes, streams: 0 })
    }

    /// Opens a CONNECT stream to `authority` with these fields (names lowercased by the caller), sending `early`
    /// as DATA right after the HEADERS. The returned stream's reads start with the rendered response head.
    pub async fn connect(
        &mut self,
        authority: &str,
        fields: &[(String, Vec<u8>)],
        early: Vec<u8>,
        deadline: Instant,
    ) -> Result<H2Stream, H2Error> {
        let mut req = http::Request::builder().method(http::Method::CONNECT).uri(authority);
        for (name, value) in fields {
            req = req.header(name.as_str(), value.as_slice());
        }
        let req = req.body(()).map_err(|e| H2Error::Request(e.to_string()))?;
        match timeout_at(deadline, self.send.clone().ready()).await {
            Err(_) => return Err(H2Error::ReadyTimeout),
            Ok(Err(e)) => return Err(H2Error::NotReady(e.to_string())),
            Ok(Ok(ready)) => self.send = ready,
        }
        let (response, send) = self.send.send_request(req, false).map_err(|e| H2Error::NotReady(e.to_string()))?;
        self.streams += 1;
        let n = self.streams;
        self.notes.push(format!(
            "h2: HEADERS (stream #{n}): :method CONNECT, :authority {authority}, {} fields",
            fields.len()
        ));
        let (up_tx, up_rx) = mpsc::channel::<Up>(QUEUE);
        let (down_tx, down_rx) = mpsc::channel::<io::Result<Bytes>>(QUEUE);
        if !early.is_empty() {
            let _ = up_tx.try_send(Up::Data(Bytes::from(early)));
        }
        tokio::spawn(upload(send, up_rx, self.notes.clone()));
        tokio::spawn(download(response, down_tx, self.notes.clone()));
        Ok(H2Stream { rx: down_rx, pending: Bytes::new(), tx: PollSender::new(up_tx), ended: false })
    }

    /// Closes the whole connection (GOAWAY is not sent: the TCP connection just ends, like an HTTP/1.1 close).
    pub fn close(&self) {
        self.driver.abort();
    }
}

impl Drop for H2Session {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// What the steps hand to a stream's upload task.
enum Up {
    Data(Bytes),
    /// END_STREAM (a half-close).
    End,
}

/// Client → proxy: DATA as the window allows; END_STREAM on shutdown; RST_STREAM(CANCEL) when the stream is
/// dropped without one.
async fn upload(mut send: SendStream<Bytes>, mut rx: mpsc::Receiver<Up>, notes: Notes) {
    loop {
        match rx.recv().await {
            Some(Up::Data(data)) => {
                if let Err(e) = send_all(&mut send, data).await {
                    notes.push(format!("h2: sending DATA failed: {e}"));
                    return;
                }
            }
            Some(Up::End) => {
                match send.send_data(Bytes::new(), true) {
                    Ok(()) => notes.push("h2: END_STREAM sent (half-close)"),
                    Err(e) => notes.push(format!("h2: END_STREAM not sent: {e}")),
                }
                return;
            }
            None => {
                send.send_reset(Reason::CANCEL);
                notes.push("h2: RST_STREAM(CANCEL) sent (client reset)");
                return;
            }
        }
    }
}

/// Sends `data` as the proxy's window allows.
async fn send_all(send: &mut SendStream<Bytes>, mut data: Bytes) -> Result<(), h2::Error> {
    while !data.is_empty() {
        send.reserve_capacity(data.len());
        let granted = match std::future::poll_fn(|cx| send.poll_capacity(cx)).await {
            Some(Ok(n)) => n,
            Some(Err(e)) => return Err(e),
            None => return Err(h2::Error::from(Reason::STREAM_CLOSED)),
        };
        if granted > 0 {
            send.send_data(data.split_to(granted.min(data.len())), false)?;
        }
    }
    Ok(())
}

/// Proxy → client: the response head, then DATA (window released once queued for the steps), END_STREAM as EOF,
/// RST_STREAM as a read error.
async fn download(response: h2::client::ResponseFuture, tx: mpsc::Sender<io::Result<Bytes>>, notes: Notes) {
    let response = match response.await {
        Ok(r) => r,
        Err(e) => {
            let what = describe_error(&e);
            notes.push(format!("h2: no response: {what}"));
            let _ = tx.send(Err(io::Error::new(io::ErrorKind::ConnectionReset, what))).await;
            return;
        }
    };
    let (parts, mut body) = response.into_parts();
    let head = render_head(&parts);
    notes.push(format!(
        "h2: response HEADERS: :status {}{} (rendered below as an HTTP/1.1-style head)",
        parts.status.as_u16(),
        if body.is_end_stream() { " with END_STREAM" } else { "" }
    ));
    if tx.send(Ok(Bytes::from(head))).await.is_err() {
        return;
    }
    relay_down(&mut body, &tx, &notes).await;
}

async fn relay_down(body: &mut RecvStream, tx: &mpsc::Sender<io::Result<Bytes>>, notes: &Notes) {
    loop {
        match body.data().await {
            Some(Ok(data)) => {
                let n = data.len();
                if tx.send(Ok(data)).await.is_err() {
                    return;
                }
                let _ = body.flow_control().release_capacity(n);
            }
            Some(Err(e)) => {
                let what = describe_error(&e);
                notes.push(format!("h2: {what}"));
                let _ = tx.send(Err(io::Error::new(io::ErrorKind::ConnectionReset, what))).await;
                return;
            }
            None => {
                notes.push("h2: END_STREAM received");
                return;
            }
        }
    }
}

/// An h2 error as the transcript says it: RST_STREAM with its code, GOAWAY, or the I/O failure.
pub fn describe_error(e: &h2::Error) -> String {
    match e.reason() {
        Some(r) if e.is_reset() && e.is_remote() => format!("RST_STREAM({r:?}) received"),
        Some(r) if e.is_go_away() => format!("GOAWAY({r:?})"),
        Some(r) => format!("stream error {r:?}"),
        None => format!("connection failed: {e}"),
    }
}

/// The response as an HTTP/1.1-style head, so the HTTP/1.1 response checks read it unchanged.
fn render_head(parts: &http::response::Parts) -> Vec<u8> {
    let mut out = format!("HTTP/2.0 {} {}\r\n", parts.status.as_u16(), parts.status.canonical_reason().unwrap_or(""))
        .into_bytes();
    for (name, value) in &parts.headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// One CONNECT stream as a byte stream (see the module documentation).
pub struct H2Stream {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    pending: Bytes,
    tx: PollSender<Up>,
    ended: bool,
}

/// Moves what fits of `pending` into `buf`; false when there was nothing pending.
pub(super) fn take_pending(pending: &mut Bytes, buf: &mut ReadBuf<'_>) -> bool {
    if pending.is_empty() {
        return false;
    }
    let n = pending.len().min(buf.remaining());
    buf.put_slice(&pending.split_to(n));
    true
}

impl AsyncRead for H2Stream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        loop {
            if take_pending(&mut self.pending, buf) {
                return Poll::Ready(Ok(()));
            }
            match self.rx.poll_recv(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e)),
                Poll::Ready(Some(Ok(data))) => self.pending = data,
            }
        }
    }
}

impl AsyncWrite for H2Stream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if self.ended {
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::BrokenPipe, "END_STREAM already sent")));
        }
        match self.tx.poll_reserve(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(_)) => Poll::Ready(Err(io::Error::new(io::ErrorKind::BrokenPipe, "the stream ended"))),
            Poll::Ready(Ok(())) => {
                let n = buf.len().min(MAX_WRITE);
                match self.tx.send_item(Up::Data(Bytes::copy_from_slice(&buf[..n]))) {
                    Ok(()) => Poll::Ready(Ok(n)),
                    Err(_) => Poll::Ready(Err(io::Error::new(io::ErrorKind::BrokenPipe, "the stream ended"))),
                }
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.ended {
            return Poll::Ready(Ok(()));
        }
        match self.tx.poll_reserve(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(_)) => Poll::Ready(Err(io::Error::new(io::ErrorKind::BrokenPipe, "the stream ended"))),
            Poll::Ready(Ok(())) => {
                let _ = self.tx.send_item(Up::End);
                self.ended = true;
                Poll::Ready(Ok(()))
            }
        }
    }
}
