//! The bench's origins: a sink, a source and an echo on loopback (or `--origin-addr`), served by one
//! single-threaded tokio runtime on its own thread so they cost the client's runtime nothing.
//!
//! Sink and source read an 8-byte big-endian length first: the sink then reads that many bytes and answers one
//! byte (so an upload ends without relying on half-close, which some proxies turn into a full close); the source
//! writes that many bytes. The echo returns what it reads.

use std::net::{IpAddr, SocketAddr};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// Buffer size of the origins' reads and writes.
pub const CHUNK: usize = 256 * 1024;

/// The three origins' addresses; dropping it stops them.
pub struct Origins {
    pub sink: SocketAddr,
    pub source: SocketAddr,
    pub echo: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Origins {
    /// Starts the origins on `ip`: on ports `first`, `first + 1` and `first + 2` (sink, source, echo), or on
    /// ephemeral ports when `first` is 0 (a proxy with a port allow-list needs the fixed ones).
    pub fn start(ip: IpAddr, first: u16) -> std::io::Result<Origins> {
        let std_listener = |k: u16| -> std::io::Result<std::net::TcpListener> {
            let port = if first == 0 { 0 } else { first.checked_add(k).unwrap_or(0) };
            // A deep accept queue: hundreds of clients connect at once in the setup-rate phase.
            let addr = SocketAddr::new(ip, port);
            let s = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None)?;
            s.set_reuse_address(true)?;
            s.bind(&addr.into())?;
            s.listen(4096)?;
            s.set_nonblocking(true)?;
            Ok(s.into())
        };
        let (sink, source, echo) = (std_listener(0)?, std_listener(1)?, std_listener(2)?);
        let addrs = (sink.local_addr()?, source.local_addr()?, echo.local_addr()?);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new().name("bench-origins".into()).spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("origin runtime");
            rt.block_on(async move {
                let serve = |l: std::net::TcpListener, kind: Kind| {
                    let l = TcpListener::from_std(l).expect("listener");
                    tokio::spawn(accept_loop(l, kind))
                };
                let tasks = [serve(sink, Kind::Sink), serve(source, Kind::Source), serve(echo, Kind::Echo)];
                let _ = stopped.await;
                for t in tasks {
                    t.abort();
                }
            });
        })?;
        Ok(Origins { sink: addrs.0, source: addrs.1, echo: addrs.2, stop: Some(stop), thread: Some(thread) })
    }
}

impl Drop for Origins {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Sink,
    Source,
    Echo,
}

async fn accept_loop(l: TcpListener, kind: Kind) {
    loop {
        let Ok((s, _)) = l.accept().await else {
            // Out of descriptors, for example: back off instead of spinning.
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        };
        let _ = s.set_nodelay(true);
        tokio::spawn(async move {
            let _ = match kind {
                Kind::Sink => sink(s).await,
                Kind::Source => source(s).await,
                Kind::Echo => echo(s).await,
            };
        });
    }
}

async fn sink(mut s: TcpStream) -> std::io::Result<()> {
    let mut left = s.read_u64().await?;
    let mut buf = vec![0u8; CHUNK];
    while left > 0 {
        let n = s.read(&mut buf[..CHUNK.min(left as usize)]).await?;
        if n == 0 {
            return Ok(());
        }
        left -= n as u64;
    }
    s.write_all(b"k").await
}

async fn source(mut s: TcpStream) -> std::io::Result<()> {
    let mut left = s.read_u64().await?;
    let buf = vec![0x5au8; CHUNK];
    while left > 0 {
        let n = CHUNK.min(left as usize);
        s.write_all(&buf[..n]).await?;
        left -= n as u64;
    }
    // Wait for the client to close, so the last bytes are not lost to an early close.
    let mut one = [0u8; 1];
    let _ = s.read(&mut one).await;
    Ok(())
}

async fn echo(mut s: TcpStream) -> std::io::Result<()> {
    // Small until the connection carries bulk data: thousands of idle tunnels each hold one.
    let mut buf = vec![0u8; 4096];
    loop {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        s.write_all(&buf[..n]).await?;
        if n == buf.len() && buf.len() < CHUNK {
            buf = vec![0u8; CHUNK];
        }
    }
}
