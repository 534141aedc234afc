//! The seam of the HTTP/2 faults that accept malformed requests: the `h2` crate refuses some itself (`:scheme`
//! or `:path` on a CONNECT, connection-specific fields, no `:authority`), before the proxy's code sees them. A
//! proxy that accepts them is simulated by rewriting the client's HEADERS before the crate reads them into what
//! such a proxy acts on: without the fields it ignores, or with the `:authority` it takes from Host.
//!
//! The filter reads frames from the client's byte stream (after the 24-octet preface), decodes each header
//! block (HEADERS and its CONTINUATIONs) with its own HPACK decoder, rewrites the field list, and
//! re-encodes it with its own encoder as one HEADERS frame (the crate's decoder then follows this
//! encoder's dynamic table, not the client's). Every other frame passes unchanged; writes pass unchanged.

use std::{
    io,
    pin::Pin,
    task::{Context, Poll, ready},
};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Connection-specific field names (RFC 9113 §8.2.2), as they arrive (lowercase).
pub(super) const CONNECTION_SPECIFIC: [&[u8]; 5] =
    [b"connection", b"proxy-connection", b"keep-alive", b"transfer-encoding", b"upgrade"];

const PREFACE_LEN: usize = 24;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const SETTINGS: u8 = 0x4;
const ACK: u8 = 0x1;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// The frame size the crate accepts (SETTINGS_MAX_FRAME_SIZE default).
const MAX_FRAME: usize = 16_384;

/// A header block's fields, as decoded.
pub(super) type Fields = Vec<(Vec<u8>, Vec<u8>)>;

type Rewrite = Box<dyn Fn(Fields) -> Fields + Send + Sync>;

/// A client stream whose header blocks go through `rewrite` (see the module documentation).
pub(super) struct HeaderFilter<T> {
    inner: T,
    rewrite: Rewrite,
    raw: BytesMut,
    out: BytesMut,
    preface_done: bool,
    decoder: loona_hpack::Decoder<'static>,
    encoder: loona_hpack::Encoder<'static>,
    /// A header block waiting for END_HEADERS: its stream, END_STREAM and the fragments so far.
    block: Option<(u32, bool, Vec<u8>)>,
    /// The `h2-ignore-flow-control` fault: the client's SETTINGS_INITIAL_WINDOW_SIZE replaced by this, so the
    /// proxy sends as if the client had granted it.
    window: Option<u32>,
}

impl<T> HeaderFilter<T> {
    pub(super) fn new(inner: T, rewrite: impl Fn(Fields) -> Fields + Send + Sync + 'static) -> Self {
        HeaderFilter {
            inner,
            rewrite: Box::new(rewrite),
            raw: BytesMut::new(),
            out: BytesMut::new(),
            preface_done: false,
            decoder: {
                // Bounded as the client's SETTINGS let it be (the default 4096), not as the peer asks.
                let mut d = loona_hpack::Decoder::new();
                d.set_max_allowed_table_size(4096);
                d
            },
            encoder: {
                // Never refers to its dynamic table, so the crate's decoder cannot disagree with it.
                let mut e = loona_hpack::Encoder::new();
                e.set_max_table_size(0);
                e
            },
            block: None,
            window: None,
        }
    }

    /// Replaces the client's SETTINGS_INITIAL_WINDOW_SIZE with `window`.
    pub(super) fn with_window(mut self, window: Option<u32>) -> Self {
        self.window = window;
        self
    }

    /// Moves every whole frame from `raw` to `out`, rewriting header blocks.
    fn process(&mut self) -> io::Result<()> {
        if !self.preface_done {
            if self.raw.len() < PREFACE_LEN {
                return Ok(());
            }
            self.out.extend_from_slice(&self.raw.split_to(PREFACE_LEN));
            self.preface_done = true;
        }
        while self.raw.len() >= 9 {
            let len = u32::from_be_bytes([0, self.raw[0], self.raw[1], self.raw[2]]) as usize;
            if self.raw.len() < 9 + len {
                return Ok(());
            }
            let frame = self.raw.split_to(9 + len);
            let (kind, flags) = (frame[3], frame[4]);
            let stream = u32::from_be_bytes([frame[5], frame[6], frame[7], frame[8]]) & 0x7fff_ffff;
            let mut payload = &frame[9..];
            match kind {
                HEADERS => {
                    let mut pad = 0;
                    if flags & PADDED != 0 && !payload.is_empty() {
                        pad = payload[0] as usize;
                        payload = &payload[1..];
                    }
                    if flags & PRIORITY != 0 && payload.len() >= 5 {
                        payload = &payload[5..];
                    }
                    let payload = &payload[..payload.len().saturating_sub(pad)];
                    self.block = Some((stream, flags & END_STREAM != 0, payload.to_vec()));
                }
                CONTINUATION if self.block.is_some() => {
                    if let Some((_, _, b)) = self.block.as_mut() {
                        b.extend_from_slice(payload);
                    }
                }
                SETTINGS if flags & ACK == 0 && self.window.is_some() => {
                    let mut frame = frame.to_vec();
                    let big = self.window.unwrap_or_default().to_be_bytes();
                    for entry in frame[9..].chunks_exact_mut(6) {
                        if entry[..2] == [0, 4] {
                            entry[2..].copy_from_slice(&big);
                        }
                    }
                    self.out.extend_from_slice(&frame);
                    continue;
                }
                _ => {
                    self.out.extend_from_slice(&frame);
                    continue;
                }
            }
            if flags & END_HEADERS != 0
                && let Some((stream, end_stream, block)) = self.block.take()
            {
                let fields = self
                    .decoder
                    .decode(&block)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("HPACK: {e:?}")))?;
                let fields = (self.rewrite)(fields);
                let encoded = self.encoder.encode(fields.iter().map(|(n, v)| (&n[..], &v[..])));
                let pieces: Vec<&[u8]> =
                    if encoded.is_empty() { vec![&[]] } else { encoded.chunks(MAX_FRAME).collect() };
                for (i, chunk) in pieces.iter().enumerate() {
                    let mut f = if i == 0 && end_stream { END_STREAM } else { 0 };
                    if i + 1 == pieces.len() {
                        f |= END_HEADERS;
                    }
                    self.out.extend_from_slice(&(chunk.len() as u32).to_be_bytes()[1..]);
                    self.out.extend_from_slice(&[if i == 0 { HEADERS } else { CONTINUATION }, f]);
                    self.out.extend_from_slice(&stream.to_be_bytes());
                    self.out.extend_from_slice(chunk);
                }
            }
        }
        Ok(())
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for HeaderFilter<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.out.is_empty() {
                let n = this.out.len().min(buf.remaining());
                buf.put_slice(&this.out.split_to(n));
                return Poll::Ready(Ok(()));
            }
            let mut tmp = [0u8; 16 * 1024];
            let mut rb = ReadBuf::new(&mut tmp);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut rb))?;
            if rb.filled().is_empty() {
                // EOF: whatever is left goes as it came.
                let rest = this.raw.split();
                if rest.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                this.out.extend_from_slice(&rest);
                continue;
            }
            this.raw.extend_from_slice(rb.filled());
            this.process()?;
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for HeaderFilter<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    fn headers_frame(stream: u32, block: &[u8]) -> Vec<u8> {
        let mut f = (block.len() as u32).to_be_bytes()[1..].to_vec();
        f.extend_from_slice(&[HEADERS, END_HEADERS]);
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(block);
        f
    }

    #[tokio::test]
    async fn dropped_fields_are_gone_and_other_frames_pass() {
        let mut client = loona_hpack::Encoder::new();
        let block = client.encode([
            (&b":method"[..], &b"CONNECT"[..]),
            (b":scheme", b"https"),
            (b":authority", b"127.0.0.1:9"),
            (b":path", b"/"),
        ]);
        let mut input = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        input.extend(headers_frame(1, &block));
        let ping = [0, 0, 8, 6, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8];
        input.extend_from_slice(&ping);
        let mut filter = HeaderFilter::new(&input[..], |f: Fields| {
            f.into_iter().filter(|(n, _)| n != b":scheme" && n != b":path").collect()
        });
        let mut out = Vec::new();
        filter.read_to_end(&mut out).await.unwrap();
        assert_eq!(&out[..24], &input[..24]);
        let len = u32::from_be_bytes([0, out[24], out[25], out[26]]) as usize;
        assert_eq!(out[27], HEADERS);
        let fields = loona_hpack::Decoder::new().decode(&out[33..33 + len]).unwrap();
        let names: Vec<&[u8]> = fields.iter().map(|(n, _)| &n[..]).collect();
        assert_eq!(names, [&b":method"[..], b":authority"]);
        assert_eq!(&out[33 + len..], &ping);
    }
}
