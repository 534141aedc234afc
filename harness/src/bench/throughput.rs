//! One transfer through one tunnel: upload to the sink, download from the source, or a round trip through the
//! echo, timed from the first byte written (the tunnel is already open) to the last byte or the sink's answer.
//! Through an HTTP/2 proxy path with several streams per connection, the bytes are split over that many CONNECT
//! streams on one connection, moving at once.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    time::{Instant, timeout_at},
};

use super::{
    origins::CHUNK,
    path::{OpenError, OriginAddrs, ProxyPath, Route, To, open},
};

/// Which way the bytes go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Client → proxy → sink.
    Upload,
    /// Source → proxy → client.
    Download,
    /// Client → proxy → echo → proxy → client, both at once.
    Echo,
}

impl Direction {
    pub const ALL: [Direction; 3] = [Direction::Upload, Direction::Download, Direction::Echo];

    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Upload => "upload",
            Direction::Download => "download",
            Direction::Echo => "echo",
        }
    }

    fn origin(self) -> To {
        match self {
            Direction::Upload => To::Sink,
            Direction::Download => To::Source,
            Direction::Echo => To::Echo,
        }
    }
}

/// Why a transfer did not complete.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransferError {
    #[error("the tunnel did not open: {0}")]
    Open(#[from] OpenError),
    #[error("stalled: no byte moved for {secs} s ({done} of {total} bytes done)")]
    Stalled { done: u64, total: u64, secs: u64 },
    #[error("too slow: {done} of {total} bytes moved in the time allowed")]
    Overran { done: u64, total: u64 },
    #[error("the connection ended after {done} of {total} bytes")]
    Ended { done: u64, total: u64 },
}

/// How long a transfer may go without moving a byte before it is a stall.
pub const STALL: Duration = Duration::from_secs(5);

/// When an operation times out: a stall (nothing moved for `STALL`) or past the whole transfer's deadline.
#[derive(Clone, Copy)]
struct Limits {
    deadline: Instant,
}

impl Limits {
    fn next(&self) -> Instant {
        (Instant::now() + STALL).min(self.deadline)
    }

    fn timed_out(&self, done: u64, total: u64) -> TransferError {
        if Instant::now() >= self.deadline {
            TransferError::Overran { done, total }
        } else {
            TransferError::Stalled { done, total, secs: STALL.as_secs() }
        }
    }
}

/// Moves `bytes` along `route` in `dir`; the time the bytes took. A stall (no byte for [`STALL`]) or passing
/// `deadline` ends it with an error.
pub async fn transfer(
    route: &Route,
    origins: &OriginAddrs,
    dir: Direction,
    bytes: u64,
    open_timeout: Duration,
    deadline: Instant,
) -> Result<Duration, TransferError> {
    let lim = Limits { deadline };
    if let Route::Proxy(p) = route
        && p.ep.transport.is_h2()
        && p.streams > 1
    {
        return streams(p, origins, dir, bytes, open_timeout, lim).await;
    }
    let io = open(route, origins, dir.origin(), Instant::now() + open_timeout, false).await?;
    let started = Instant::now();
    move_bytes(io, dir, bytes, lim).await?;
    Ok(started.elapsed())
}

/// `bytes` split over `p.streams` CONNECT streams on one HTTP/2 connection, all at once; the time until the
/// last one finished.
async fn streams(
    p: &ProxyPath,
    origins: &OriginAddrs,
    dir: Direction,
    bytes: u64,
    open_timeout: Duration,
    lim: Limits,
) -> Result<Duration, TransferError> {
    let open_deadline = Instant::now() + open_timeout;
    let mut session = p.h2_session(open_deadline, false).await?;
    let mut ios = Vec::with_capacity(p.streams);
    for _ in 0..p.streams {
        ios.push(p.h2_stream(&mut session, origins.of(dir.origin()), open_deadline).await?);
    }
    let share = bytes / p.streams as u64;
    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for io in ios {
        set.spawn(move_bytes(io, dir, share, lim));
    }
    while let Some(r) = set.join_next().await {
        match r {
            Ok(r) => r?,
            Err(_) => return Err(TransferError::Ended { done: 0, total: share }),
        }
    }
    let elapsed = started.elapsed();
    drop(session);
    Ok(elapsed)
}

/// Moves `bytes` through an open tunnel in `dir` (the origins' protocol: an 8-byte count first for the sink and
/// the source).
async fn move_bytes(io: Io, dir: Direction, bytes: u64, lim: Limits) -> Result<(), TransferError> {
    let (mut rd, mut wr) = tokio::io::split(io);
    let data = vec![0xa5u8; CHUNK];
    let header = |n: u64| n.to_be_bytes();
    match dir {
        Direction::Upload => {
            if timeout_at(lim.next(), wr.write_all(&header(bytes))).await.map(|r| r.is_err()).unwrap_or(true) {
                return Err(TransferError::Ended { done: 0, total: bytes });
            }
            write_all(&mut wr, &data, bytes, lim).await?;
            read_n(&mut rd, 1, lim).await.map_err(|_| lim.timed_out(bytes, bytes))?;
        }
        Direction::Download => {
            if timeout_at(lim.next(), wr.write_all(&header(bytes))).await.map(|r| r.is_err()).unwrap_or(true) {
                return Err(TransferError::Ended { done: 0, total: bytes });
            }
            read_n(&mut rd, bytes, lim).await?;
        }
        Direction::Echo => {
            let (w, r) = tokio::join!(write_all(&mut wr, &data, bytes, lim), read_n(&mut rd, bytes, lim));
            w?;
            r?;
        }
    }
    Ok(())
}

type Io = Box<dyn crate::client::Io>;

/// Writes `n` bytes in chunks of `data`.
async fn write_all(wr: &mut tokio::io::WriteHalf<Io>, data: &[u8], n: u64, lim: Limits) -> Result<(), TransferError> {
    let mut left = n;
    while left > 0 {
        let k = data.len().min(left as usize);
        match timeout_at(lim.next(), wr.write_all(&data[..k])).await {
            Err(_) => return Err(lim.timed_out(n - left, n)),
            Ok(Err(_)) => return Err(TransferError::Ended { done: n - left, total: n }),
            Ok(Ok(())) => left -= k as u64,
        }
    }
    let _ = timeout_at(lim.next(), wr.flush()).await;
    Ok(())
}

/// Reads and discards `n` bytes.
async fn read_n(rd: &mut tokio::io::ReadHalf<Io>, n: u64, lim: Limits) -> Result<(), TransferError> {
    let mut buf = vec![0u8; CHUNK];
    let mut got = 0u64;
    while got < n {
        let k = CHUNK.min((n - got) as usize);
        match timeout_at(lim.next(), rd.read(&mut buf[..k])).await {
            Err(_) => return Err(lim.timed_out(got, n)),
            Ok(Ok(0)) | Ok(Err(_)) => return Err(TransferError::Ended { done: got, total: n }),
            Ok(Ok(m)) => got += m as u64,
        }
    }
    Ok(())
}
