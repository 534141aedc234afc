//! The least work a relay can do, as a yardstick for the proxy in benchmarks (the relay bench and
//! `connect-harness bench --yardstick`): no HTTP, no event loop, one blocking `splice(2)` loop per direction
//! through a 1 MiB pipe. Not used by the proxy itself.

use std::{net::TcpStream, os::fd::AsRawFd};

/// Splices `from` into `to` until EOF or an error, then half-closes `to`. Blocks the calling thread.
pub fn splice_pump(from: TcpStream, to: TcpStream) {
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
