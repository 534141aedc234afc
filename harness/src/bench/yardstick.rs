//! The yardstick: a bare splice relay with no HTTP at all (accept, connect to one fixed origin, splice both
//! ways through a pipe, one thread per direction). It is what moving bytes between two loopback sockets costs on
//! this machine, so a proxy's throughput can be read as a fraction of it.

use std::{
    net::{SocketAddr, TcpListener, TcpStream},
    sync::atomic::{AtomicU64, AtomicUsize, Ordering},
    time::Duration,
};

/// CPU time (user + system, ns) of the finished pump threads, and how many are running: the yardstick's cost,
/// the floor for any relay of these bytes on this machine.
static CPU_NS: AtomicU64 = AtomicU64::new(0);
static ACTIVE: AtomicUsize = AtomicUsize::new(0);

/// CPU seconds the yardstick's pumps have used, once the running ones have finished (waits at most 2 s).
pub fn cpu_seconds() -> f64 {
    let until = std::time::Instant::now() + Duration::from_secs(2);
    while ACTIVE.load(Ordering::Acquire) > 0 && std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_millis(2));
    }
    CPU_NS.load(Ordering::Acquire) as f64 / 1e9
}

/// This thread's CPU time so far, in ns.
fn thread_cpu_ns() -> u64 {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage fills the struct we own.
    if unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) } != 0 {
        return 0;
    }
    let us = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    (us(ru.ru_utime) + us(ru.ru_stime)) * 1000
}

/// Starts a relay in front of `upstream`; returns where it listens. The threads live as long as the process.
pub fn start(upstream: SocketAddr) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(SocketAddr::new(upstream.ip(), 0))?;
    let addr = listener.local_addr()?;
    std::thread::Builder::new().name("bench-yardstick".into()).spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { continue };
            let Ok(server) = TcpStream::connect(upstream) else { continue };
            let _ = (client.set_nodelay(true), server.set_nodelay(true));
            let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else { continue };
            for (from, to) in [(client, server), (s2, c2)] {
                ACTIVE.fetch_add(1, Ordering::AcqRel);
                let spawned = std::thread::Builder::new().spawn(move || {
                    reference_proxy::yardstick::splice_pump(from, to);
                    CPU_NS.fetch_add(thread_cpu_ns(), Ordering::AcqRel);
                    ACTIVE.fetch_sub(1, Ordering::AcqRel);
                });
                if spawned.is_err() {
                    ACTIVE.fetch_sub(1, Ordering::AcqRel);
                }
            }
        }
    })?;
    Ok(addr)
}
