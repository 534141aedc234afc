//! The yardstick: a bare splice relay with no HTTP at all (accept, connect to one fixed origin, splice both
//! ways through a pipe, one thread per direction). It is what moving bytes between two loopback sockets costs on
//! this machine, so a proxy's throughput can be read as a fraction of it.

use std::{
    net::{SocketAddr, TcpListener, TcpStream},
    os::fd::AsRawFd,
};

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
            let _ = std::thread::Builder::new().spawn(move || pump(client, server));
            let _ = std::thread::Builder::new().spawn(move || pump(s2, c2));
        }
    })?;
    Ok(addr)
}

/// Splices `from` into `to` until EOF or an error, then half-closes `to`.
fn pump(from: TcpStream, to: TcpStream) {
    let mut fds = [0; 2];
    // SAFETY: pipe/fcntl/splice/close on descriptors this function owns (the pipe) or borrows from live streams.
    unsafe {
        if libc::pipe(fds.as_mut_ptr()) != 0 {
            return;
        }
        libc::fcntl(fds[1], libc::F_SETPIPE_SZ, 1 << 20);
        'outer: loop {
            let n = libc::splice(
                from.as_raw_fd(),
                std::ptr::null_mut(),
                fds[1],
                std::ptr::null_mut(),
                1 << 20,
                libc::SPLICE_F_MOVE,
            );
            if n <= 0 {
                break;
            }
            let mut left = n as usize;
            while left > 0 {
                let m = libc::splice(
                    fds[0],
                    std::ptr::null_mut(),
                    to.as_raw_fd(),
                    std::ptr::null_mut(),
                    left,
                    libc::SPLICE_F_MOVE,
                );
                if m <= 0 {
                    break 'outer;
                }
                left -= m as usize;
            }
        }
        libc::close(fds[0]);
        libc::close(fds[1]);
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}
