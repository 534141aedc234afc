//! Relay buffers borrowed from a per-thread pool only while they hold data, so idle tunnels cost none.

use std::cell::RefCell;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::Poll;

use tokio::io::{AsyncRead, ReadBuf};

/// Large enough to amortize syscalls and TLS records (16 KiB each), small enough to stay in cache.
const BUF_SIZE: usize = 64 * 1024;
/// Buffers kept per thread for reuse; more are freed when returned.
const POOL_MAX: usize = 64;

thread_local! {
    static POOL: RefCell<Vec<Box<[u8]>>> = const { RefCell::new(Vec::new()) };
}

fn take() -> Box<[u8]> {
    POOL.with(|p| p.borrow_mut().pop()).unwrap_or_else(|| vec![0u8; BUF_SIZE].into_boxed_slice())
}

fn give(buf: Box<[u8]>) {
    POOL.with(|p| {
        let mut p = p.borrow_mut();
        if p.len() < POOL_MAX {
            p.push(buf);
        }
    });
}

/// Bytes read into a pooled buffer; the buffer returns to the pool when dropped.
pub(crate) struct Chunk {
    buf: Option<Box<[u8]>>,
    len: usize,
}

impl Chunk {
    pub(crate) fn data(&self) -> &[u8] {
        &self.buf.as_ref().expect("present until drop")[..self.len]
    }

    pub(crate) fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buf.as_mut().expect("present until drop")[..self.len]
    }
}

impl Drop for Chunk {
    fn drop(&mut self) {
        if let Some(buf) = self.buf.take() {
            give(buf);
        }
    }
}

/// Reads once; `None` at EOF. While the read is pending no buffer is held.
pub(crate) async fn read<R: AsyncRead + Unpin>(r: &mut R) -> io::Result<Option<Chunk>> {
    poll_fn(|cx| {
        let mut buf = take();
        let mut rb = ReadBuf::new(&mut buf);
        match Pin::new(&mut *r).poll_read(cx, &mut rb) {
            Poll::Pending => {
                give(buf);
                Poll::Pending
            }
            Poll::Ready(Err(e)) => {
                give(buf);
                Poll::Ready(Err(e))
            }
            Poll::Ready(Ok(())) => {
                let len = rb.filled().len();
                if len == 0 {
                    give(buf);
                    Poll::Ready(Ok(None))
                } else {
                    Poll::Ready(Ok(Some(Chunk { buf: Some(buf), len })))
                }
            }
        }
    })
    .await
}
