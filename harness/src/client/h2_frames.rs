//! HTTP/2 through the harness's own frame writer, for the requests the `h2` crate refuses to send (RFC 9113
//! §8.5 `:scheme`/`:path` on a CONNECT, a missing or userinfo `:authority`, connection-specific fields,
//! uppercase names, HEADERS on a connected stream): h2spec works the same way. The fields of a HEADERS frame go
//! out exactly as a step lists them, in order, HPACK-encoded by `loona-hpack`; the proxy's HEADERS are decoded
//! by it too.
//!
//! A stream looks to the steps as an [`super::h2::H2Stream`] does: reads yield the response HEADERS rendered
//! as an HTTP/1.1-style head, then DATA; END_STREAM is EOF; RST_STREAM or GOAWAY is a read error naming the
//! code (the same words as the `h2` crate path, so `expect_eof.error` reads both). Writes are DATA frames
//! within the proxy's flow-control windows, a write shutdown is END_STREAM, a dropped stream RST_STREAM(CANCEL).
//!
//! One task owns the connection: it reads frames (bounded: [`MAX_FRAME`], header lists [`MAX_HEADER_LIST`]),
//! answers SETTINGS and PING, and writes what the steps queue. Flow control both ways: window goes back to the
//! proxy as a stream's reader consumes its DATA (so one stream nobody reads holds only its own window, and a
//! proxy that sends beyond a window ends the connection instead of growing memory), and a stream's writes wait
//! once [`SEND_BUFFER`] bytes are queued beyond the proxy's windows. It ends with the session.

use std::{
    collections::{HashMap, VecDeque},
    io,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
};

use bytes::{Buf, Bytes, BytesMut};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf, ReadHalf, WriteHalf},
    sync::{Semaphore, mpsc},
    task::JoinHandle,
    time::{Instant, timeout_at},
};
use tokio_util::sync::{PollSemaphore, PollSender};

use super::{Io, h2::H2Error, h2::Notes};

/// The client connection preface (RFC 9113 §3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Largest frame payload accepted from the proxy: the default SETTINGS_MAX_FRAME_SIZE, which the harness
/// never raises (RFC 9113 §4.2). A larger frame ends the connection (a FRAME_SIZE_ERROR).
const MAX_FRAME: usize = 16_384;
/// A header block spread over CONTINUATION frames is bounded too, and so is what it decodes to (announced as
/// SETTINGS_MAX_HEADER_LIST_SIZE; the HPACK dynamic table the proxy may use is bounded by the default 4096).
const MAX_BLOCK: usize = 64 * 1024;
const MAX_HEADER_LIST: usize = 64 * 1024;
const MAX_TABLE: usize = 4096;
/// Receive window the harness grants per stream and for the connection (never the slow side).
const WINDOW: u32 = 4 * 1024 * 1024;
/// Bytes a stream may have queued beyond the proxy's windows before its writes wait.
const SEND_BUFFER: usize = 1024 * 1024;
const QUEUE: usize = 16;

mod kind {
    pub const DATA: u8 = 0x0;
    pub const HEADERS: u8 = 0x1;
    pub const RST_STREAM: u8 = 0x3;
    pub const SETTINGS: u8 = 0x4;
    pub const PING: u8 = 0x6;
    pub const GOAWAY: u8 = 0x7;
    pub const WINDOW_UPDATE: u8 = 0x8;
    pub const CONTINUATION: u8 = 0x9;
}

mod flag {
    pub const END_STREAM: u8 = 0x1;
    pub const ACK: u8 = 0x1;
    pub const END_HEADERS: u8 = 0x4;
    pub const PADDED: u8 = 0x8;
    pub const PRIORITY: u8 = 0x20;
}

/// The name of an HTTP/2 error code (RFC 9113 §7), as the transcript and `expect_eof.error` spell it.
pub fn code_name(code: u32) -> String {
    let name = match code {
        0x0 => "NO_ERROR",
        0x1 => "PROTOCOL_ERROR",
        0x2 => "INTERNAL_ERROR",
        0x3 => "FLOW_CONTROL_ERROR",
        0x4 => "SETTINGS_TIMEOUT",
        0x5 => "STREAM_CLOSED",
        0x6 => "FRAME_SIZE_ERROR",
        0x7 => "REFUSED_STREAM",
        0x8 => "CANCEL",
        0x9 => "COMPRESSION_ERROR",
        0xa => "CONNECT_ERROR",
        0xb => "ENHANCE_YOUR_CALM",
        0xc => "INADEQUATE_SECURITY",
        0xd => "HTTP_1_1_REQUIRED",
        other => return format!("0x{other:x}"),
    };
    name.to_string()
}

/// One frame: the 9-octet header and the payload (RFC 9113 §4.1).
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = Vec::with_capacity(9 + payload.len());
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// A frame read from the proxy.
#[derive(Debug)]
struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Bytes,
}

/// Takes one whole frame off the front of `buf`, if there is one; an oversized frame is an error.
fn take_frame(buf: &mut BytesMut) -> Result<Option<Frame>, String> {
    if buf.len() < 9 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([0, buf[0], buf[1], buf[2]]) as usize;
    if len > MAX_FRAME {
        return Err(format!("a frame of {len} octets, larger than SETTINGS_MAX_FRAME_SIZE ({MAX_FRAME})"));
    }
    if buf.len() < 9 + len {
        return Ok(None);
    }
    let head = buf.split_to(9);
    let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
    Ok(Some(Frame { kind: head[3], flags: head[4], stream, payload: buf.split_to(len).freeze() }))
}

/// The payload without its padding (and without the priority fields of a HEADERS frame).
fn unpad(f: &Frame) -> Result<Bytes, String> {
    let mut p = f.payload.clone();
    let mut pad = 0;
    if f.flags & flag::PADDED != 0 {
        if p.is_empty() {
            return Err("a PADDED frame without its Pad Length".into());
        }
        pad = p.get_u8() as usize;
    }
    if f.kind == kind::HEADERS && f.flags & flag::PRIORITY != 0 {
        if p.len() < 5 {
            return Err("a HEADERS frame too short for its priority fields".into());
        }
        p.advance(5);
    }
    if pad > p.len() {
        return Err("padding longer than the frame".into());
    }
    p.truncate(p.len() - pad);
    Ok(p)
}

/// What the steps ask of the connection task.
enum Cmd {
    /// A HEADERS frame with these fields on this stream; `reply` registers a new stream's reader.
    Headers {
        stream: u32,
        fields: Vec<(Vec<u8>, Vec<u8>)>,
        end_stream: bool,
        reply: Option<Reader>,
    },
    /// DATA (its bytes already taken from the stream's send credit).
    Data(u32, Bytes),
    End(u32),
    Reset(u32),
    /// SETTINGS_INITIAL_WINDOW_SIZE for the streams opened after the proxy acknowledged it; `ack` hears of that.
    Window {
        size: u32,
        ack: tokio::sync::oneshot::Sender<()>,
    },
}

/// A new stream's ends inside the connection task: where its bytes go, where its terminal error is left (so it
/// is never lost to a full queue), and the send credit that DATA frames give back.
struct Reader {
    tx: mpsc::UnboundedSender<Item>,
    end: Arc<Mutex<Option<String>>>,
    credit: Arc<Semaphore>,
}

/// What a stream's reader gets: the rendered response head, or DATA (whose window goes back once read).
enum Item {
    Head(Bytes),
    Data(Bytes),
}

/// One HTTP/2 connection to the proxy, driven by the harness's own frames.
pub struct FrameSession {
    cmd: mpsc::Sender<Cmd>,
    driver: JoinHandle<()>,
    pub notes: Notes,
    next_stream: u32,
    /// The stream the steps talk to (the last one opened).
    current: Option<u32>,
    /// Where streams report the DATA their readers consumed (the window to give back).
    consumed: mpsc::UnboundedSender<(u32, u32)>,
}

impl FrameSession {
    /// Writes the preface and SETTINGS, and waits for the proxy's SETTINGS (its first frame, RFC 9113 §3.4).
    pub async fn handshake(io: Box<dyn Io>, deadline: Instant) -> Result<FrameSession, H2Error> {
        let (mut rd, mut wr) = tokio::io::split(io);
        let mut hello = PREFACE.to_vec();
        // SETTINGS_ENABLE_PUSH 0, SETTINGS_INITIAL_WINDOW_SIZE WINDOW, SETTINGS_MAX_HEADER_LIST_SIZE; then the
        // connection window.
        let mut settings = Vec::new();
        settings.extend_from_slice(&[0, 2, 0, 0, 0, 0]);
        settings.extend_from_slice(&[0, 4]);
        settings.extend_from_slice(&WINDOW.to_be_bytes());
        settings.extend_from_slice(&[0, 6]);
        settings.extend_from_slice(&(MAX_HEADER_LIST as u32).to_be_bytes());
        hello.extend(frame(kind::SETTINGS, 0, 0, &settings));
        hello.extend(frame(kind::WINDOW_UPDATE, 0, 0, &(WINDOW - 65_535).to_be_bytes()));
        let io_err = |e: io::Error| H2Error::Handshake(e.to_string());
        match timeout_at(deadline, wr.write_all(&hello)).await {
            Err(_) => return Err(H2Error::HandshakeTimeout),
            Ok(r) => r.map_err(io_err)?,
        }
        let mut buf = BytesMut::new();
        let first = loop {
            if let Some(f) = take_frame(&mut buf).map_err(H2Error::Handshake)? {
                break f;
            }
            match timeout_at(deadline, rd.read_buf(&mut buf)).await {
                Err(_) => return Err(H2Error::HandshakeTimeout),
                Ok(Err(e)) => return Err(io_err(e)),
                Ok(Ok(0)) => return Err(H2Error::Handshake("the proxy closed the connection".into())),
                Ok(Ok(_)) => {}
            }
        };
        if first.kind != kind::SETTINGS || first.flags & flag::ACK != 0 {
            return Err(H2Error::Handshake(format!(
                "the proxy's first frame is of type 0x{:x}, not SETTINGS (RFC 9113 §3.4)",
                first.kind
            )));
        }
        let notes = Notes::default();
        let (cmd, rx) = mpsc::channel(QUEUE);
        let (consumed, consumed_rx) = mpsc::unbounded_channel();
        let mut driver = Driver::new(wr, notes.clone());
        driver.settings(&first.payload);
        let _ = driver.write(frame(kind::SETTINGS, flag::ACK, 0, &[])).await;
        let driver = tokio::spawn(driver.run(rd, buf, rx, consumed_rx));
        Ok(FrameSession { cmd, driver, notes, next_stream: 1, current: None, consumed })
    }

    /// Sends a HEADERS frame with exactly these fields: on a new stream, which becomes the one the steps read
    /// and write (returned), or on the current stream (`None` returned; e.g. trailers on a connected stream).
    pub async fn headers(
        &mut self,
        fields: Vec<(Vec<u8>, Vec<u8>)>,
        on_current: bool,
        end_stream: bool,
        deadline: Instant,
    ) -> Result<Option<FrameStream>, H2Error> {
        let summary = summarize(&fields);
        let (stream, reply, rx) = if on_current {
            let Some(id) = self.current else {
                return Err(H2Error::Request("HEADERS on the current stream, but no stream is open".into()));
            };
            (id, None, None)
        } else {
            let id = self.next_stream;
            self.next_stream += 2;
            self.current = Some(id);
            let (tx, rx) = mpsc::unbounded_channel();
            let end = Arc::new(Mutex::new(None));
            let credit = Arc::new(Semaphore::new(SEND_BUFFER));
            (id, Some(Reader { tx, end: end.clone(), credit: credit.clone() }), Some((rx, end, credit)))
        };
        let sent = timeout_at(deadline, self.cmd.send(Cmd::Headers { stream, fields, end_stream, reply })).await;
        match sent {
            Err(_) => return Err(H2Error::ReadyTimeout),
            Ok(Err(_)) => return Err(H2Error::NotReady("the HTTP/2 connection has ended".into())),
            Ok(Ok(())) => {}
        }
        self.notes.push(format!(
            "h2 frames: HEADERS (stream #{stream}{}): {summary}",
            if end_stream { ", END_STREAM" } else { "" }
        ));
        Ok(rx.map(|(rx, end, credit)| FrameStream {
            id: stream,
            rx,
            end,
            consumed: self.consumed.clone(),
            pending: Bytes::new(),
            tx: PollSender::new(self.cmd.clone()),
            credit: PollSemaphore::new(credit),
            ended: false,
            reset_on_drop: Some(self.cmd.clone()),
        }))
    }

    /// Announces SETTINGS_INITIAL_WINDOW_SIZE `size` for the streams opened from now on and waits until the proxy
    /// acknowledged it; from then a stream's DATA beyond `size` unread bytes ends the connection (the proxy broke
    /// flow control, RFC 9113 §6.9.1).
    pub async fn stream_window(&mut self, size: u32, deadline: Instant) -> Result<(), H2Error> {
        let (ack, acked) = tokio::sync::oneshot::channel();
        match timeout_at(deadline, self.cmd.send(Cmd::Window { size, ack })).await {
            Err(_) => return Err(H2Error::ReadyTimeout),
            Ok(Err(_)) => return Err(H2Error::NotReady("the HTTP/2 connection has ended".into())),
            Ok(Ok(())) => {}
        }
        match timeout_at(deadline, acked).await {
            Err(_) => Err(H2Error::NotReady("the proxy did not acknowledge the SETTINGS before the deadline".into())),
            Ok(Err(_)) => Err(H2Error::NotReady("the HTTP/2 connection ended before the SETTINGS ACK".into())),
            Ok(Ok(())) => Ok(()),
        }
    }

    /// A well-formed CONNECT stream, the request the `h2` crate would send: `:method`, `:authority`, then the
    /// fields.
    pub async fn connect(
        &mut self,
        authority: &str,
        fields: &[(String, Vec<u8>)],
        deadline: Instant,
    ) -> Result<FrameStream, H2Error> {
        let mut all =
            vec![(b":method".to_vec(), b"CONNECT".to_vec()), (b":authority".to_vec(), authority.as_bytes().to_vec())];
        all.extend(fields.iter().map(|(n, v)| (n.as_bytes().to_vec(), v.clone())));
        self.headers(all, false, false, deadline).await?.ok_or_else(|| H2Error::Request("no stream opened".into()))
    }

    /// Ends the whole connection (no GOAWAY, like an HTTP/1.1 close).
    pub fn close(&self) {
        self.driver.abort();
    }
}

impl Drop for FrameSession {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// The fields as the transcript shows them: `name: value`, in order, values shortened.
fn summarize(fields: &[(Vec<u8>, Vec<u8>)]) -> String {
    let shown: Vec<String> = fields
        .iter()
        .map(|(n, v)| format!("{}: {}", crate::escape::escape(n, 40), crate::escape::escape(v, 80)))
        .collect();
    shown.join(", ")
}

/// What the connection task keeps per stream.
struct StreamState {
    /// Where the stream's reads go; `None` once the stream ended from the proxy's side.
    tx: Option<mpsc::UnboundedSender<Item>>,
    end: Arc<Mutex<Option<String>>>,
    credit: Arc<Semaphore>,
    responded: bool,
    send_window: i64,
    /// DATA waiting for window; then END_STREAM if `end_after`, or the frames in `trailers`.
    queued: VecDeque<Bytes>,
    end_after: bool,
    trailers: Option<Vec<u8>>,
    /// DATA delivered to the reader and not yet consumed (what the proxy may still send is `window` minus this).
    unconsumed: u64,
    /// This stream's receive window.
    window: u32,
}

impl StreamState {
    /// Ends the stream from the proxy's side: with `error` (its reader gets it after the bytes already queued),
    /// or cleanly.
    fn finish(&mut self, error: Option<String>) -> bool {
        if let (Some(e), Ok(mut slot)) = (error, self.end.lock())
            && self.tx.is_some()
        {
            *slot = Some(e);
        }
        self.tx.take().is_some()
    }
}

struct Driver {
    wr: WriteHalf<Box<dyn Io>>,
    notes: Notes,
    encoder: loona_hpack::Encoder<'static>,
    decoder: loona_hpack::Decoder<'static>,
    streams: HashMap<u32, StreamState>,
    conn_window: i64,
    initial_window: i64,
    peer_max_frame: usize,
    /// DATA delivered on all streams and not yet consumed.
    conn_unconsumed: u64,
    /// The receive window of a new stream (SETTINGS_INITIAL_WINDOW_SIZE, once acknowledged), and one sent and not
    /// yet acknowledged with who waits for it.
    stream_window: u32,
    window_pending: Option<(u32, tokio::sync::oneshot::Sender<()>)>,
    /// A header block being continued: its stream, END_STREAM, and the fragments so far.
    continuing: Option<(u32, bool, Vec<u8>)>,
}

impl Driver {
    fn new(wr: WriteHalf<Box<dyn Io>>, notes: Notes) -> Self {
        let mut encoder = loona_hpack::Encoder::new();
        // Never refer to the dynamic table: whatever SETTINGS_HEADER_TABLE_SIZE the proxy announces, no entry of
        // ours can be missing from its table.
        encoder.set_max_table_size(0);
        let mut decoder = loona_hpack::Decoder::new();
        decoder.set_max_allowed_table_size(MAX_TABLE);
        Driver {
            wr,
            notes,
            encoder,
            decoder,
            streams: HashMap::new(),
            conn_window: 65_535,
            initial_window: 65_535,
            peer_max_frame: 16_384,
            conn_unconsumed: 0,
            stream_window: WINDOW,
            window_pending: None,
            continuing: None,
        }
    }

    async fn write(&mut self, bytes: Vec<u8>) -> io::Result<()> {
        self.wr.write_all(&bytes).await?;
        self.wr.flush().await
    }

    /// Applies the proxy's SETTINGS (the initial window moves every open stream's window, RFC 9113 §6.9.2).
    fn settings(&mut self, payload: &[u8]) {
        for s in payload.chunks_exact(6) {
            let id = u16::from_be_bytes([s[0], s[1]]);
            let value = u32::from_be_bytes([s[2], s[3], s[4], s[5]]);
            match id {
                0x4 => {
                    let delta = i64::from(value) - self.initial_window;
                    self.initial_window = i64::from(value);
                    for st in self.streams.values_mut() {
                        st.send_window += delta;
                    }
                }
                0x5 => self.peer_max_frame = (value as usize).clamp(16_384, 1 << 20),
                _ => {}
            }
        }
    }

    async fn run(
        mut self,
        mut rd: ReadHalf<Box<dyn Io>>,
        mut buf: BytesMut,
        mut rx: mpsc::Receiver<Cmd>,
        mut consumed: mpsc::UnboundedReceiver<(u32, u32)>,
    ) {
        let why = 'conn: loop {
            loop {
                match take_frame(&mut buf) {
                    Ok(Some(f)) => {
                        if let Err(e) = self.on_frame(f).await {
                            break 'conn if e.starts_with("connection failed") {
                                e
                            } else {
                                format!("connection failed: {e}")
                            };
                        }
                    }
                    Ok(None) => break,
                    Err(e) => break 'conn format!("connection failed: {e}"),
                }
            }
            if let Err(e) = self.flush_queued().await {
                break format!("connection failed: {e}");
            }
            tokio::select! {
                read = rd.read_buf(&mut buf) => match read {
                    Ok(0) => break "connection failed: the proxy closed the connection".to_string(),
                    Ok(_) => {}
                    Err(e) => break format!("connection failed: {e}"),
                },
                cmd = rx.recv() => match cmd {
                    None => return,
                    Some(cmd) => if let Err(e) = self.on_cmd(cmd).await {
                        break format!("connection failed: {e}");
                    },
                },
                Some((id, n)) = consumed.recv() => {
                    if let Err(e) = self.give_back(id, n).await {
                        break format!("connection failed: {e}");
                    }
                }
            }
        };
        self.notes.push(format!("h2 frames: {why}"));
        self.fail_all(&why);
    }

    /// Every stream still open ends with this error.
    fn fail_all(&mut self, why: &str) {
        for st in self.streams.values_mut() {
            st.finish(Some(why.to_string()));
        }
    }

    /// A reader consumed `n` bytes of stream `id`: that much window goes back, for the stream and the connection.
    async fn give_back(&mut self, id: u32, n: u32) -> io::Result<()> {
        self.conn_unconsumed = self.conn_unconsumed.saturating_sub(u64::from(n));
        let mut out = frame(kind::WINDOW_UPDATE, 0, 0, &n.to_be_bytes());
        if let Some(st) = self.streams.get_mut(&id) {
            st.unconsumed = st.unconsumed.saturating_sub(u64::from(n));
            if st.tx.is_some() {
                out.extend(frame(kind::WINDOW_UPDATE, 0, id, &n.to_be_bytes()));
            }
        }
        self.write(out).await
    }

    async fn on_cmd(&mut self, cmd: Cmd) -> io::Result<()> {
        match cmd {
            Cmd::Headers { stream, fields, end_stream, reply } => {
                let block = self.encoder.encode(fields.iter().map(|(n, v)| (n.as_slice(), v.as_slice())));
                if let Some(r) = reply {
                    self.streams.insert(
                        stream,
                        StreamState {
                            tx: Some(r.tx),
                            end: r.end,
                            credit: r.credit,
                            responded: false,
                            send_window: self.initial_window,
                            queued: VecDeque::new(),
                            end_after: false,
                            trailers: None,
                            unconsumed: 0,
                            // Before the proxy acknowledged a new size, it may still use the larger of the two.
                            window: self
                                .window_pending
                                .as_ref()
                                .map_or(self.stream_window, |(n, _)| (*n).max(self.stream_window)),
                        },
                    );
                }
                let mut out = Vec::new();
                let mut chunks = block.chunks(self.peer_max_frame).peekable();
                let first = chunks.next().unwrap_or_default();
                let last = chunks.peek().is_none();
                let flags = if end_stream { flag::END_STREAM } else { 0 } | if last { flag::END_HEADERS } else { 0 };
                out.extend(frame(kind::HEADERS, flags, stream, first));
                while let Some(chunk) = chunks.next() {
                    let flags = if chunks.peek().is_none() { flag::END_HEADERS } else { 0 };
                    out.extend(frame(kind::CONTINUATION, flags, stream, chunk));
                }
                // HEADERS on a stream with DATA still waiting for window go after that DATA, in order.
                if let Some(st) = self.streams.get_mut(&stream)
                    && !st.queued.is_empty()
                {
                    st.trailers = Some(out);
                    return Ok(());
                }
                self.write(out).await
            }
            Cmd::Data(stream, data) => {
                match self.streams.get_mut(&stream) {
                    Some(st) => st.queued.push_back(data),
                    None => self.notes.push(format!("h2 frames: DATA for stream #{stream} dropped (it was reset)")),
                }
                Ok(())
            }
            Cmd::End(stream) => {
                if let Some(st) = self.streams.get_mut(&stream) {
                    st.end_after = true;
                }
                Ok(())
            }
            Cmd::Window { size, ack } => {
                let mut payload = vec![0, 4];
                payload.extend_from_slice(&size.to_be_bytes());
                self.notes.push(format!("h2 frames: SETTINGS sent: SETTINGS_INITIAL_WINDOW_SIZE {size}"));
                self.window_pending = Some((size, ack));
                self.write(frame(kind::SETTINGS, 0, 0, &payload)).await
            }
            Cmd::Reset(stream) => {
                // Not on a stream the proxy already reset (RFC 9113 §5.1: nothing but PRIORITY on a closed stream).
                if self.streams.remove(&stream).is_none() {
                    return Ok(());
                }
                self.notes.push(format!("h2 frames: RST_STREAM(CANCEL) sent on stream #{stream} (client reset)"));
                self.write(frame(kind::RST_STREAM, 0, stream, &8u32.to_be_bytes())).await
            }
        }
    }

    /// Sends queued DATA as the windows allow (giving the bytes back to the stream's send credit), then
    /// END_STREAM or the waiting HEADERS where asked.
    async fn flush_queued(&mut self) -> io::Result<()> {
        let mut out = Vec::new();
        for (&id, st) in self.streams.iter_mut() {
            while let Some(data) = st.queued.front_mut() {
                let room = st.send_window.min(self.conn_window).min(self.peer_max_frame as i64);
                if room <= 0 {
                    break;
                }
                let n = (room as usize).min(data.len());
                let chunk = data.split_to(n);
                if data.is_empty() {
                    st.queued.pop_front();
                }
                st.send_window -= n as i64;
                self.conn_window -= n as i64;
                st.credit.add_permits(n);
                out.extend(frame(kind::DATA, 0, id, &chunk));
            }
            if !st.queued.is_empty() {
                continue;
            }
            if let Some(trailers) = st.trailers.take() {
                out.extend(trailers);
            }
            if st.end_after {
                st.end_after = false;
                out.extend(frame(kind::DATA, flag::END_STREAM, id, &[]));
                self.notes.push(format!("h2 frames: END_STREAM sent on stream #{id} (half-close)"));
            }
        }
        if out.is_empty() { Ok(()) } else { self.write(out).await }
    }

    /// Handles one frame from the proxy; an error ends the connection with this description.
    async fn on_frame(&mut self, f: Frame) -> Result<(), String> {
        if let Some((stream, _, _)) = &self.continuing
            && (f.kind != kind::CONTINUATION || f.stream != *stream)
        {
            return Err("connection failed: a header block interrupted before END_HEADERS (RFC 9113 §6.10)".into());
        }
        match f.kind {
            kind::DATA => {
                let data = unpad(&f)?;
                // The padding is never read: its window goes back at once (RFC 9113 §6.9.1: padding counts).
                let padding = (f.payload.len() - data.len()) as u32;
                let mut out = Vec::new();
                let open = self.streams.get(&f.stream).is_some_and(|s| s.tx.is_some());
                if !open {
                    // DATA on a stream nobody reads any more: the connection's window goes back at once.
                    let n = f.payload.len() as u32;
                    if n > 0 {
                        out.extend(frame(kind::WINDOW_UPDATE, 0, 0, &n.to_be_bytes()));
                    }
                } else if padding > 0 {
                    out.extend(frame(kind::WINDOW_UPDATE, 0, 0, &padding.to_be_bytes()));
                    out.extend(frame(kind::WINDOW_UPDATE, 0, f.stream, &padding.to_be_bytes()));
                }
                if !out.is_empty() {
                    self.write(out).await.map_err(|e| format!("connection failed: {e}"))?;
                }
                if let Some(st) = self.streams.get_mut(&f.stream)
                    && let Some(tx) = &st.tx
                    && !data.is_empty()
                {
                    st.unconsumed += data.len() as u64;
                    self.conn_unconsumed += data.len() as u64;
                    if st.unconsumed > u64::from(st.window) || self.conn_unconsumed > u64::from(WINDOW) {
                        return Err(format!(
                            "connection failed: the proxy sent DATA beyond the flow-control window it was given \
                             (stream #{}; RFC 9113 §6.9.1: a FLOW_CONTROL_ERROR)",
                            f.stream
                        ));
                    }
                    let _ = tx.send(Item::Data(data));
                }
                if f.flags & flag::END_STREAM != 0 {
                    self.end_stream(f.stream);
                }
            }
            kind::HEADERS => {
                let block = unpad(&f)?;
                let end_stream = f.flags & flag::END_STREAM != 0;
                if f.flags & flag::END_HEADERS != 0 {
                    self.on_headers(f.stream, end_stream, &block)?;
                } else {
                    self.continuing = Some((f.stream, end_stream, block.to_vec()));
                }
            }
            kind::CONTINUATION => {
                let Some((stream, end_stream, mut block)) = self.continuing.take() else {
                    return Err("connection failed: CONTINUATION without a header block (RFC 9113 §6.10)".into());
                };
                block.extend_from_slice(&f.payload);
                if block.len() > MAX_BLOCK {
                    return Err(format!("connection failed: a header block over {MAX_BLOCK} octets"));
                }
                if f.flags & flag::END_HEADERS != 0 {
                    self.on_headers(stream, end_stream, &block)?;
                } else {
                    self.continuing = Some((stream, end_stream, block));
                }
            }
            kind::RST_STREAM => {
                let code = f.payload.get(..4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]])).unwrap_or(0);
                let what = format!("RST_STREAM({}) received", code_name(code));
                self.notes.push(format!("h2 frames: {what} on stream #{}", f.stream));
                if let Some(mut st) = self.streams.remove(&f.stream) {
                    st.finish(Some(what));
                }
            }
            kind::SETTINGS if f.flags & flag::ACK == 0 => {
                self.settings(&f.payload);
                self.write(frame(kind::SETTINGS, flag::ACK, 0, &[])).await.map_err(|e| e.to_string())?;
            }
            kind::SETTINGS => {
                if let Some((size, ack)) = self.window_pending.take() {
                    self.stream_window = size;
                    self.notes.push(format!("h2 frames: the proxy acknowledged SETTINGS_INITIAL_WINDOW_SIZE {size}"));
                    let _ = ack.send(());
                }
            }
            kind::PING if f.flags & flag::ACK == 0 => {
                self.write(frame(kind::PING, flag::ACK, 0, &f.payload)).await.map_err(|e| e.to_string())?;
            }
            kind::GOAWAY => {
                let word = |i: usize| {
                    f.payload.get(i..i + 4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]])).unwrap_or(0)
                };
                let last = word(0) & 0x7fff_ffff;
                let code = word(4);
                self.notes.push(format!("h2 frames: GOAWAY({}), last stream #{last}", code_name(code)));
                let what = format!("GOAWAY({})", code_name(code));
                // A GOAWAY with an error code is a connection error: no stream of it goes on (RFC 9113 §5.4.1).
                // With NO_ERROR, only the streams it never processed end.
                for (id, st) in self.streams.iter_mut() {
                    if code != 0 || *id > last {
                        st.finish(Some(what.clone()));
                    }
                }
            }
            kind::WINDOW_UPDATE => {
                let inc = f.payload.get(..4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]])).unwrap_or(0);
                let inc = i64::from(inc & 0x7fff_ffff);
                if f.stream == 0 {
                    self.conn_window += inc;
                } else if let Some(st) = self.streams.get_mut(&f.stream) {
                    st.send_window += inc;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// A decoded header block: the response (rendered as a head), an interim response (noted), or trailers.
    fn on_headers(&mut self, stream: u32, end_stream: bool, block: &[u8]) -> Result<(), String> {
        // Decoded with a bound: a proxy's block of small references to large table entries would otherwise
        // expand without limit.
        let mut fields = Vec::new();
        let mut size = 0usize;
        self.decoder
            .decode_with_cb(block, |n, v| {
                size += n.len() + v.len() + 32;
                if size <= MAX_HEADER_LIST {
                    fields.push((n.into_owned(), v.into_owned()));
                }
            })
            .map_err(|e| format!("connection failed: the proxy's header block does not decode (HPACK): {e:?}"))?;
        if size > MAX_HEADER_LIST {
            return Err(format!(
                "connection failed: the proxy's header list is over {MAX_HEADER_LIST} octets \
                 (SETTINGS_MAX_HEADER_LIST_SIZE)"
            ));
        }
        let status = fields.iter().find(|(n, _)| n == b":status").map(|(_, v)| String::from_utf8_lossy(v).into_owned());
        let Some(st) = self.streams.get_mut(&stream) else {
            return Ok(());
        };
        let interim = status.as_deref().is_some_and(|s| s.starts_with('1'));
        if st.responded || interim {
            self.notes.push(format!("h2 frames: HEADERS on stream #{stream} ({})", summarize(&fields)));
        } else {
            st.responded = true;
            let code = status.unwrap_or_else(|| "(no :status)".into());
            self.notes.push(format!(
                "h2 frames: response HEADERS on stream #{stream}: :status {code}{} (rendered below as an \
                 HTTP/1.1-style head)",
                if end_stream { " with END_STREAM" } else { "" }
            ));
            let reason = code.parse::<u16>().ok().and_then(|c| http::StatusCode::from_u16(c).ok());
            let reason = reason.and_then(|c| c.canonical_reason()).unwrap_or("");
            let mut head = format!("HTTP/2.0 {code} {reason}\r\n").into_bytes();
            for (name, value) in fields.iter().filter(|(n, _)| !n.starts_with(b":")) {
                head.extend_from_slice(name);
                head.extend_from_slice(b": ");
                head.extend_from_slice(value);
                head.extend_from_slice(b"\r\n");
            }
            head.extend_from_slice(b"\r\n");
            if let Some(tx) = &st.tx {
                let _ = tx.send(Item::Head(Bytes::from(head)));
            }
        }
        if end_stream {
            self.end_stream(stream);
        }
        Ok(())
    }

    fn end_stream(&mut self, stream: u32) {
        if let Some(st) = self.streams.get_mut(&stream)
            && st.finish(None)
        {
            self.notes.push(format!("h2 frames: END_STREAM received on stream #{stream}"));
        }
    }
}

/// One stream of a [`FrameSession`] as a byte stream (see the module documentation).
pub struct FrameStream {
    id: u32,
    rx: mpsc::UnboundedReceiver<Item>,
    /// The error the stream ended with, read once its queued bytes are.
    end: Arc<Mutex<Option<String>>>,
    consumed: mpsc::UnboundedSender<(u32, u32)>,
    pending: Bytes,
    tx: PollSender<Cmd>,
    /// Bytes this stream may still queue for sending (given back as DATA goes out).
    credit: PollSemaphore,
    ended: bool,
    /// Where a RST_STREAM(CANCEL) goes when the stream is dropped without END_STREAM.
    reset_on_drop: Option<mpsc::Sender<Cmd>>,
}

impl Drop for FrameStream {
    fn drop(&mut self) {
        if !self.ended
            && let Some(cmd) = self.reset_on_drop.take()
        {
            let _ = cmd.try_send(Cmd::Reset(self.id));
        }
    }
}

impl AsyncRead for FrameStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        loop {
            if super::h2::take_pending(&mut self.pending, buf) {
                return Poll::Ready(Ok(()));
            }
            match self.rx.poll_recv(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => {
                    let error = self.end.lock().ok().and_then(|mut e| e.take());
                    return Poll::Ready(match error {
                        Some(e) => Err(io::Error::new(io::ErrorKind::ConnectionReset, e)),
                        None => Ok(()),
                    });
                }
                Poll::Ready(Some(Item::Head(head))) => self.pending = head,
                Poll::Ready(Some(Item::Data(data))) => {
                    let _ = self.consumed.send((self.id, data.len() as u32));
                    self.pending = data;
                }
            }
        }
    }
}

impl AsyncWrite for FrameStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if self.ended {
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::BrokenPipe, "END_STREAM already sent")));
        }
        let closed = || io::Error::new(io::ErrorKind::BrokenPipe, "the HTTP/2 connection ended");
        let n = buf.len().min(MAX_FRAME);
        match self.tx.poll_reserve(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(_)) => return Poll::Ready(Err(closed())),
            Poll::Ready(Ok(())) => {}
        }
        // Wait while this stream has SEND_BUFFER bytes queued beyond the proxy's windows.
        match self.credit.poll_acquire_many(cx, n as u32) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(None) => return Poll::Ready(Err(closed())),
            Poll::Ready(Some(permit)) => permit.forget(),
        }
        let id = self.id;
        match self.tx.send_item(Cmd::Data(id, Bytes::copy_from_slice(&buf[..n]))) {
            Ok(()) => Poll::Ready(Ok(n)),
            Err(_) => Poll::Ready(Err(closed())),
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
            Poll::Ready(Err(_)) => {
                Poll::Ready(Err(io::Error::new(io::ErrorKind::BrokenPipe, "the HTTP/2 connection ended")))
            }
            Poll::Ready(Ok(())) => {
                let id = self.id;
                let _ = self.tx.send_item(Cmd::End(id));
                self.ended = true;
                Poll::Ready(Ok(()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_oversize_is_refused() {
        let mut buf = BytesMut::from(&frame(kind::RST_STREAM, 0, 3, &[0, 0, 0, 1])[..]);
        buf.extend_from_slice(&[0, 0]);
        let f = take_frame(&mut buf).unwrap().unwrap();
        assert_eq!((f.kind, f.stream, &f.payload[..]), (kind::RST_STREAM, 3, &[0u8, 0, 0, 1][..]));
        assert!(take_frame(&mut buf).unwrap().is_none(), "a partial header is not a frame");
        let mut big = BytesMut::from(&[0x01u8, 0, 0, 0, 0, 0, 0, 0, 1][..]);
        assert!(take_frame(&mut big).is_err());
    }

    #[test]
    fn padding_and_priority_are_removed() {
        let f = Frame {
            kind: kind::HEADERS,
            flags: flag::PADDED | flag::PRIORITY,
            stream: 1,
            payload: Bytes::from_static(&[2, 0, 0, 0, 0, 16, b'h', b'i', 0, 0]),
        };
        assert_eq!(&unpad(&f).unwrap()[..], b"hi");
        let bad = Frame { kind: kind::DATA, flags: flag::PADDED, stream: 1, payload: Bytes::from_static(&[9, 1]) };
        assert!(unpad(&bad).is_err());
    }

    #[test]
    fn code_names_follow_rfc_9113_section_7() {
        assert_eq!(code_name(1), "PROTOCOL_ERROR");
        assert_eq!(code_name(0xa), "CONNECT_ERROR");
        assert_eq!(code_name(0x42), "0x42");
    }
}
