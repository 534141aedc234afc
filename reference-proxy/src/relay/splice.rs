//! Zero-copy relay for plain↔plain tunnels: socket → pipe → socket with splice(2), so bytes never enter user
//! space. A direction borrows an (empty) pipe from a per-thread pool only while it moves a chunk, so an idle
//! tunnel holds no pipe: no descriptors and no kernel pipe buffers beyond its two sockets.

use std::cell::RefCell;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use tokio::io::Interest;
use tokio::net::TcpStream;

use super::{Dir, DirError, Side, Traffic};

/// Pipe capacity asked for: larger means fewer syscalls per byte. The kernel may grant less.
const PIPE_SIZE: libc::c_int = 1 << 20;

struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    capacity: usize,
}

impl Pipe {
    fn new() -> io::Result<Pipe> {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nobody else.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: fcntl on a descriptor we own; failure just leaves the default size.
        let granted = unsafe { libc::fcntl(write.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_SIZE) };
        let capacity = if granted > 0 {
            granted as usize
        } else {
            // SAFETY: as above.
            let current = unsafe { libc::fcntl(write.as_raw_fd(), libc::F_GETPIPE_SZ) };
            if current > 0 { current as usize } else { 64 * 1024 }
        };
        Ok(Pipe { read, write, capacity })
    }
}

/// Empty pipes kept per thread for reuse.
const POOL_MAX: usize = 16;

thread_local! {
    static PIPES: RefCell<Vec<Pipe>> = const { RefCell::new(Vec::new()) };
}

fn take_pipe() -> io::Result<Pipe> {
    match PIPES.with(|p| p.borrow_mut().pop()) {
        Some(pipe) => Ok(pipe),
        None => Pipe::new(),
    }
}

/// Returns a pipe that is known to be empty.
fn give_pipe(pipe: Pipe) {
    PIPES.with(|p| {
        let mut p = p.borrow_mut();
        if p.len() < POOL_MAX {
            p.push(pipe);
        }
    });
}

fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    // SAFETY: both descriptors are open for the duration of the call; null offsets mean "current position",
    // as required for sockets and pipes.
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    if n < 0 { Err(io::Error::last_os_error()) } else { Ok(n as usize) }
}

/// Moves bytes from `src` to `dst` until EOF, then shuts down `dst`'s write side.
///
/// While the pipe holds data the direction keeps it and pipelines: each turn tops the pipe up from `src` and
/// splices as much as `dst` takes, so reading never waits for the pipe to drain. Once the pipe is empty it goes
/// back to the pool before waiting for `src`, so an idle direction holds none.
///
/// Tokio's readiness is only cleared by a splice from `src` into an *empty* pipe: EAGAIN there can only mean the
/// socket has no data. Top-ups into a non-empty pipe bypass the readiness tracking, since EAGAIN there may just
/// mean the pipe is full.
pub(super) async fn pump(src: &TcpStream, dst: &TcpStream, dir: Dir, traffic: &Traffic) -> Result<(), DirError> {
    let (read_side, write_side) = match dir {
        Dir::Up => (Side::Client, Side::Upstream),
        Dir::Down => (Side::Upstream, Side::Client),
    };
    let rerr = |error| DirError { side: read_side, error };
    let werr = |error| DirError { side: write_side, error };
    let mut eof = false;
    while !eof {
        src.readable().await.map_err(rerr)?;
        let p = take_pipe().map_err(rerr)?;
        let mut held = match src.try_io(Interest::READABLE, || splice(src.as_raw_fd(), p.write.as_raw_fd(), p.capacity))
        {
            Ok(0) => {
                give_pipe(p);
                break;
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                give_pipe(p);
                continue;
            }
            Err(e) => {
                give_pipe(p);
                return Err(rerr(e));
            }
        };
        // On error the pipe may still hold data: it is dropped, not returned to the pool.
        while held > 0 {
            let sent = drain(dst, &p, held).await.map_err(werr)?;
            held -= sent;
            traffic.count(dir, sent);
            if !eof && held < p.capacity {
                match splice(src.as_raw_fd(), p.write.as_raw_fd(), p.capacity - held) {
                    Ok(0) => eof = true,
                    Ok(n) => held += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(rerr(e)),
                }
            }
        }
        give_pipe(p);
    }
    match socket2::SockRef::from(dst).shutdown(std::net::Shutdown::Write) {
        Err(e) if e.kind() != io::ErrorKind::NotConnected => Err(werr(e)),
        _ => Ok(()),
    }
}

/// Splices up to `len` bytes from the pipe into `dst`, waiting until it takes at least one.
async fn drain(dst: &TcpStream, p: &Pipe, len: usize) -> io::Result<usize> {
    loop {
        dst.writable().await?;
        match dst.try_io(Interest::WRITABLE, || splice(p.read.as_raw_fd(), dst.as_raw_fd(), len)) {
            Ok(m) => return Ok(m),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
}
