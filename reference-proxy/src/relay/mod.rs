//! The tunnel relay: the hot path.
//!
//! Both directions run in one task until both are done. A FIN from one side becomes a write shutdown on the
//! other once everything that side sent has been delivered (half-close, RFC 9110 §9.3.6); a reset or error on
//! either side resets both. Idle tunnels hold no relay buffers: plain↔plain tunnels move data with splice(2)
//! through a pipe created on first use (Linux), other tunnels borrow a buffer from a per-thread pool only while a
//! read has returned data that is not yet written.

mod pool;
#[cfg(target_os = "linux")]
mod splice;

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// How a tunnel ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// Both sides finished (FIN each way).
    Done,
    /// One side reset or failed; both were reset.
    Reset(Side),
    Idle,
    /// The proxy was shutting down and the grace period ran out.
    Shutdown,
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CloseReason::Done => f.write_str("done"),
            CloseReason::Reset(Side::Client) => f.write_str("client-reset"),
            CloseReason::Reset(Side::Upstream) => f.write_str("upstream-reset"),
            CloseReason::Idle => f.write_str("idle-timeout"),
            CloseReason::Shutdown => f.write_str("shutdown"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Upstream,
}

/// Byte counters and the last-activity clock, shared by both directions and the idle watcher.
#[derive(Debug)]
pub struct Traffic {
    start: Instant,
    last_ms: AtomicU64,
    pub up: AtomicU64,
    pub down: AtomicU64,
}

impl Traffic {
    pub fn new() -> Arc<Self> {
        Arc::new(Traffic {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
            up: AtomicU64::new(0),
            down: AtomicU64::new(0),
        })
    }

    fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn count(&self, dir: Dir, n: usize) {
        let counter = match dir {
            Dir::Up => &self.up,
            Dir::Down => &self.down,
        };
        counter.fetch_add(n as u64, Ordering::Relaxed);
        self.touch();
    }

    /// Resolves once no byte moved for `idle`.
    async fn idle(&self, idle: Duration) {
        loop {
            let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let since = self.start.elapsed().saturating_sub(last);
            if since >= idle {
                return;
            }
            tokio::time::sleep(idle - since).await;
        }
    }
}

/// Direction of a byte stream: `Up` is client → upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dir {
    Up,
    Down,
}

/// Misbehaviours the relay can be asked to commit (feature `faults`); all false normally.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RelayFaults {
    pub lose_last_upstream_bytes: bool,
    pub lose_last_client_bytes: bool,
    pub corrupt: bool,
    pub half_close_closes_both: bool,
    /// When the upstream closes, close the client's connection without shutting its stream down first: over
    /// TLS, a TCP FIN with no close_notify alert (and, as under `half_close_closes_both`, both sides end).
    pub no_close_notify: bool,
}

impl RelayFaults {
    /// Whether any misbehaviour is asked for (splice is then off).
    pub(crate) fn any(&self) -> bool {
        self.lose_last_upstream_bytes
            || self.lose_last_client_bytes
            || self.corrupt
            || self.half_close_closes_both
            || self.no_close_notify
    }
}

/// Error from one direction: which side failed.
struct DirError {
    side: Side,
    #[allow(dead_code)]
    error: io::Error,
}

/// Relays between two plain TCP connections (splice on Linux).
pub(crate) async fn relay_tcp(
    client: TcpStream,
    upstream: TcpStream,
    traffic: Arc<Traffic>,
    idle: Duration,
    faults: RelayFaults,
) -> CloseReason {
    // The sockets keep the kernel's send-buffer autotuning: no TCP_NOTSENT_LOWAT. Measured with `connect-harness
    // bench --yardstick` (2 s runs, medians of 5, twice each): a 128 KiB or 1 MiB bound gave the same throughput
    // as none but cost the proxy 0.27-0.30 CPU-s/GiB against 0.22-0.26 without, from the extra writable wake-ups.
    #[cfg(target_os = "linux")]
    if !faults.any() {
        let result = {
            let up = splice::pump(&client, &upstream, Dir::Up, &traffic);
            let down = splice::pump(&upstream, &client, Dir::Down, &traffic);
            tokio::select! {
                r = async { tokio::try_join!(up, down) } => r.map(|_| ()),
                () = traffic.idle(idle) => return abort(&client, &upstream, CloseReason::Idle),
            }
        };
        return match result {
            Ok(()) => CloseReason::Done,
            Err(e) => abort(&client, &upstream, CloseReason::Reset(e.side)),
        };
    }
    let (mut cr, mut cw) = client.into_split();
    let (mut ur, mut uw) = upstream.into_split();
    let reason = relay_halves(&mut cr, &mut cw, &mut ur, &mut uw, &traffic, idle, faults).await;
    if reason != CloseReason::Done {
        let client = cr.reunite(cw).expect("halves of one stream");
        let upstream = ur.reunite(uw).expect("halves of one stream");
        return abort(&client, &upstream, reason);
    }
    reason
}

/// Relays between any two streams (a TLS client, or a parent proxy over TLS), copying through user space.
pub(crate) async fn relay_stream<C, U>(
    client: C,
    upstream: U,
    traffic: Arc<Traffic>,
    idle: Duration,
    faults: RelayFaults,
) -> (C, U, CloseReason)
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let (mut cr, mut cw) = tokio::io::split(client);
    let (mut ur, mut uw) = tokio::io::split(upstream);
    let reason = relay_halves(&mut cr, &mut cw, &mut ur, &mut uw, &traffic, idle, faults).await;
    (cr.unsplit(cw), ur.unsplit(uw), reason)
}

async fn relay_halves<CR, CW, UR, UW>(
    cr: &mut CR,
    cw: &mut CW,
    ur: &mut UR,
    uw: &mut UW,
    traffic: &Traffic,
    idle: Duration,
    faults: RelayFaults,
) -> CloseReason
where
    CR: AsyncRead + Unpin,
    CW: AsyncWrite + Unpin,
    UR: AsyncRead + Unpin,
    UW: AsyncWrite + Unpin,
{
    let up = pump(cr, uw, Dir::Up, traffic, faults);
    let down = pump(ur, cw, Dir::Down, traffic, faults);
    let both = async {
        if faults.half_close_closes_both || faults.no_close_notify {
            // Whichever side finishes first ends the tunnel.
            tokio::select! {
                r = up => r,
                r = down => r,
            }
        } else {
            tokio::try_join!(up, down).map(|_| ())
        }
    };
    tokio::select! {
        r = both => match r {
            Ok(()) => CloseReason::Done,
            Err(e) => CloseReason::Reset(e.side),
        },
        () = traffic.idle(idle) => CloseReason::Idle,
    }
}

/// Copies one direction until EOF, then shuts down the writer (after flushing everything read).
async fn pump<R, W>(r: &mut R, w: &mut W, dir: Dir, traffic: &Traffic, faults: RelayFaults) -> Result<(), DirError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (read_side, write_side) = match dir {
        Dir::Up => (Side::Client, Side::Upstream),
        Dir::Down => (Side::Upstream, Side::Client),
    };
    let hold_back =
        (faults.lose_last_upstream_bytes && dir == Dir::Down) || (faults.lose_last_client_bytes && dir == Dir::Up);
    let mut held: Option<pool::Chunk> = None;
    loop {
        let chunk = match pool::read(r).await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            // A TLS peer that closes TCP without close_notify: treated as EOF, since the data it sent is
            // complete at the TCP level and many clients do this.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
            Err(error) => return Err(DirError { side: read_side, error }),
        };
        let mut chunk = chunk;
        if faults.corrupt && dir == Dir::Down {
            chunk.data_mut()[0] ^= 0x01;
        }
        let chunk = if hold_back {
            match held.replace(chunk) {
                Some(previous) => previous,
                None => continue,
            }
        } else {
            chunk
        };
        // Flushed at once: a TLS writer keeps the records it could not send (the client's socket was full) until
        // flushed, and the upstream may send nothing more for a long time, so without it the tail of a burst would
        // wait for the next one (found by `connect-harness bench`: a TLS download stalled 75 KB short).
        w.write_all(chunk.data()).await.map_err(|error| DirError { side: write_side, error })?;
        w.flush().await.map_err(|error| DirError { side: write_side, error })?;
        traffic.count(dir, chunk.data().len());
    }
    // EOF: `held` (the upstream's last chunk) is dropped here under the fault.
    drop(held);
    if faults.no_close_notify && dir == Dir::Down {
        // Everything written goes out, but the stream is not shut down: the connection is then just dropped.
        return w.flush().await.map_err(|error| DirError { side: write_side, error });
    }
    match w.shutdown().await {
        Err(e) if e.kind() != io::ErrorKind::NotConnected => Err(DirError { side: write_side, error: e }),
        _ => Ok(()),
    }
}

/// Resets both connections (SO_LINGER 0 makes close send RST).
fn abort(client: &TcpStream, upstream: &TcpStream, reason: CloseReason) -> CloseReason {
    reset_on_close(client);
    reset_on_close(upstream);
    reason
}

/// SO_LINGER with a zero timeout: closing sends RST instead of FIN (and never blocks).
pub(crate) fn reset_on_close(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
}
