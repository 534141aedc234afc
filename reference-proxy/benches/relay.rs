//! Relay benchmark, loopback only, everything measured in one run so ratios compare like with like:
//! direct TCP throughput to a sink versus through the proxy (plain and TLS listener), CONNECT setup rate and
//! p50/p99 latency at concurrency 1 and 32, and resident memory per idle tunnel with 10 000 tunnels open.
//!
//! The proxy runs as its own process (the `reference-proxy` binary) so that its CPU time and RSS are its own.
//! Run with `cargo bench -p reference-proxy --bench relay`. Environment: `RELAY_BENCH_GIB` (default 1) GiB per
//! throughput run, `RELAY_BENCH_ROUNDS` (default 5), `RELAY_BENCH_TUNNELS` (default 10000) idle tunnels,
//! `RELAY_BENCH_THROUGHPUT_ONLY` to stop after the throughput table, `RELAY_BENCH_NO_TLS` to skip the TLS runs
//! (for profiling the plain relay), `RELAY_BENCH_VERBOSE` to print every round, `RELAY_BENCH_NO_PIN` to leave the
//! client and sink threads unpinned. Other load on the machine skews the figures: run it on a quiet machine.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const CHUNK: usize = 256 * 1024;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("relay: benchmark");
        return;
    }
    let gib: f64 = env_or("RELAY_BENCH_GIB", 1.0);
    let rounds = env_or("RELAY_BENCH_ROUNDS", 5.0).max(1.0) as usize;
    let tunnels: usize = env_or("RELAY_BENCH_TUNNELS", 10_000.0) as usize;
    let skip_tls = std::env::var_os("RELAY_BENCH_NO_TLS").is_some();
    let verbose = std::env::var_os("RELAY_BENCH_VERBOSE").is_some();
    let fd_limit = raise_fd_limit();
    let bytes = (gib * (1u64 << 30) as f64) as u64;

    let sink = start_sink();
    let bare = start_bare_relay(sink);
    let proxy = Proxy::spawn();
    println!("reference-proxy relay benchmark (loopback, {} CPUs)", num_cpus());
    println!();

    // Throughput: best of three runs each, direct first, then interleaved so drift affects all alike.
    // One unmeasured run of each path first: the first transfers after start-up (page allocator, socket buffer
    // autotuning, sink thread) are consistently slower and would skew whichever path happens to come first.
    pin_for_throughput(0);
    throughput(bytes, || TcpStream::connect(sink).map(Box::new).map(|b| b as Box<dyn Conn>));
    throughput(bytes, || proxy.plain_tunnel(sink).map(|s| Box::new(s) as Box<dyn Conn>));
    let mut direct = Vec::new();
    let mut plain = Vec::new();
    let mut tls = Vec::new();
    let mut plain_cpu = Vec::new();
    let mut tls_cpu = Vec::new();
    let mut bench_cpu = [Vec::new(), Vec::new(), Vec::new()];
    let mut bare_runs = Vec::new();
    for _ in 0..rounds {
        let cpu0 = own_cpu_seconds();
        direct.push(throughput(bytes, || TcpStream::connect(sink).map(Box::new).map(|b| b as Box<dyn Conn>)).0);
        bench_cpu[0].push((own_cpu_seconds() - cpu0) / gib);
        let own0 = own_cpu_seconds();
        let cpu0 = proxy.cpu_seconds();
        let (gbps, _) = throughput(bytes, || proxy.plain_tunnel(sink).map(|s| Box::new(s) as Box<dyn Conn>));
        plain_cpu.push((proxy.cpu_seconds() - cpu0) / gib);
        bench_cpu[1].push((own_cpu_seconds() - own0) / gib);
        plain.push(gbps);
        bare_runs.push(throughput(bytes, || TcpStream::connect(bare).map(|s| Box::new(s) as Box<dyn Conn>)).0);
        if verbose {
            println!(
                "  round: direct {:.2} plain {:.2} bare splice relay {:.2} Gbit/s",
                direct.last().unwrap(),
                plain.last().unwrap(),
                bare_runs.last().unwrap()
            );
        }
        if skip_tls {
            continue;
        }
        let cpu0 = proxy.cpu_seconds();
        let own0 = own_cpu_seconds();
        let (gbps, _) = throughput(bytes, || proxy.tls_tunnel(sink).map(|s| Box::new(s) as Box<dyn Conn>));
        tls_cpu.push((proxy.cpu_seconds() - cpu0) / gib);
        bench_cpu[2].push((own_cpu_seconds() - own0) / gib);
        tls.push(gbps);
    }
    let best = |v: &[f64]| v.iter().cloned().fold(0.0, f64::max);
    let median_ratio = |v: &[f64]| {
        let mut r: Vec<f64> = v.iter().zip(&direct).map(|(x, d)| x / d).collect();
        r.sort_by(f64::total_cmp);
        r[r.len() / 2]
    };
    let min = |v: &[f64]| v.iter().cloned().fold(f64::MAX, f64::min);
    let d = best(&direct);
    println!(
        "throughput ({gib} GiB per run, {rounds} rounds of direct/plain/TLS back to back, one stream client -> sink)"
    );
    println!("  ratio = median over rounds of (proxied / direct of the same round); Gbit/s = best; CPU in s/GiB");
    println!(
        "  direct TCP            {:8.2} Gbit/s   1.00 x direct                  client+sink CPU {:.3}",
        d,
        min(&bench_cpu[0])
    );
    println!(
        "  via proxy, plain      {:8.2} Gbit/s   {:.2} x direct   proxy CPU {:.3}   client+sink CPU {:.3}",
        best(&plain),
        median_ratio(&plain),
        min(&plain_cpu),
        min(&bench_cpu[1])
    );
    println!(
        "  bare splice relay     {:8.2} Gbit/s   {:.2} x direct   (yardstick: no HTTP, blocking splice, 2 threads)",
        best(&bare_runs),
        median_ratio(&bare_runs),
    );
    if !skip_tls {
        println!(
            "  via proxy, TLS        {:8.2} Gbit/s   {:.2} x direct   proxy CPU {:.3}   client+sink CPU {:.3}",
            best(&tls),
            median_ratio(&tls),
            min(&tls_cpu),
            min(&bench_cpu[2])
        );
    }
    println!();
    unpin();
    if std::env::var_os("RELAY_BENCH_THROUGHPUT_ONLY").is_some() {
        return;
    }

    println!("CONNECT setup (connect, CONNECT, 200 received, close); direct = TCP connect + 1-byte banner");
    for (concurrency, total) in [(1usize, 2000usize), (32, 8000)] {
        let base = setup(concurrency, total, |_| direct_setup());
        let via = setup(concurrency, total, |_| proxy.connect_setup(closer()));
        println!(
            "  c={concurrency:<3} direct {:8.0}/s p50 {:6.0} us p99 {:6.0} us | proxy {:8.0}/s p50 {:6.0} us p99 {:6.0} us | rate {:.2} x direct",
            base.rate,
            base.p50,
            base.p99,
            via.rate,
            via.p50,
            via.p99,
            via.rate / base.rate
        );
    }
    println!();

    // Two descriptors per tunnel on each side of the proxy, plus the proxy's own two.
    let possible = ((fd_limit.saturating_sub(500)) / 2) as usize;
    let n = tunnels.min(possible);
    if n < tunnels {
        println!(
            "  (open-file limit {fd_limit} allows only {n} tunnels; raising the hard limit needs CAP_SYS_RESOURCE)"
        );
    }
    drop(proxy);
    // A fresh proxy per measurement, so memory freed by earlier phases does not hide the growth.
    println!("idle memory (target <= 16 KiB per tunnel on the plain listener)");
    let proxy = Proxy::spawn();
    idle_memory(&proxy, n, "plain listener", |t| proxy.plain_tunnel(t));
    drop(proxy);
    let proxy = Proxy::spawn();
    idle_memory(&proxy, n.min(2000), "TLS listener", |t| proxy.tls_tunnel(t));
}

/// User + system CPU time of this process (client and sink threads).
fn own_cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the struct we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn env_or(name: &str, default: f64) -> f64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Raises RLIMIT_NOFILE as far as allowed (the hard limit too when privileged); children inherit it.
fn raise_fd_limit() -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit with a valid rlimit pointer.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        let want = 65_536.max(lim.rlim_max);
        let raised = libc::rlimit { rlim_cur: want, rlim_max: want };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
            return want;
        }
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        lim.rlim_cur
    }
}

/// A sink: every connection is read to EOF and discarded. Also sends nothing.
fn start_sink() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                pin_for_throughput(1);
                let mut buf = vec![0u8; CHUNK];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// The least work a relay can do, as a yardstick for the proxy: no HTTP, no event loop, one blocking
/// `splice(2)` loop per direction through a 1 MiB pipe, in this process. The proxy's ratio is best read against
/// this one's: the gap between this and 1.0 is the machine's (a third busy thread on the cores the client and
/// sink use, and the second loopback hop), not the proxy's.
fn start_bare_relay(upstream: SocketAddr) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { continue };
            let Ok(server) = TcpStream::connect(upstream) else { continue };
            let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || reference_proxy::yardstick::splice_pump(client, server));
            std::thread::spawn(move || reference_proxy::yardstick::splice_pump(s2, c2));
        }
    });
    addr
}

/// A client stream whose write side can be closed on its own.
trait Conn: Read + Write {
    fn finish(&mut self);
}

impl Conn for TcpStream {
    fn finish(&mut self) {
        let _ = self.shutdown(std::net::Shutdown::Write);
    }
}

impl Conn for rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    fn finish(&mut self) {
        self.conn.send_close_notify();
        let _ = self.flush();
        let _ = self.sock.shutdown(std::net::Shutdown::Write);
    }
}

/// Writes `bytes` through a fresh connection, closes its write side and waits for the sink's close to come
/// back, so every byte was received; returns Gbit/s.
/// Pins the calling thread to `cpu` (the client to 0, the sink to 1) when there are two CPUs or more, unless
/// `RELAY_BENCH_NO_PIN` is set, so that both paths always cross cores the same way (left to the scheduler, client
/// and sink sometimes share a core and copy cache-hot, which only the direct path can profit from). The proxy is
/// not pinned. On the 2-vCPU VM this was written on, the direct rounds still vary about 2x from round to round.
fn pin_for_throughput(cpu: usize) {
    if num_cpus() < 2 || std::env::var_os("RELAY_BENCH_NO_PIN").is_some() {
        return;
    }
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET and sched_setaffinity get valid pointers.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Undoes [`pin_for_throughput`] for the calling thread.
fn unpin() {
    // SAFETY: as in `pin_for_throughput`.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for cpu in 0..num_cpus() {
            libc::CPU_SET(cpu, &mut set);
        }
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

fn throughput(bytes: u64, open: impl Fn() -> std::io::Result<Box<dyn Conn>>) -> (f64, Duration) {
    let mut w = open().expect("open stream");
    let buf = vec![0x5au8; CHUNK];
    let start = Instant::now();
    let mut left = bytes;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        w.write_all(&buf[..n]).expect("write");
        left -= n as u64;
    }
    w.flush().unwrap();
    w.finish();
    let mut b = [0u8; 64];
    while matches!(w.read(&mut b), Ok(n) if n > 0) {}
    let elapsed = start.elapsed();
    (bytes as f64 * 8.0 / elapsed.as_secs_f64() / 1e9, elapsed)
}

struct Proxy {
    child: Child,
    plain: SocketAddr,
    tls: SocketAddr,
    tls_config: Arc<rustls::ClientConfig>,
    _dir: TempDir,
}

struct TempDir(std::path::PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Proxy {
    fn spawn() -> Proxy {
        let dir = std::env::temp_dir().join(format!("reference-proxy-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = dir.join("ca.pem");
        let mut child = Command::new(env!("CARGO_BIN_EXE_reference-proxy"))
            .args(["--listen", "127.0.0.1:0", "--tls-listen", "127.0.0.1:0", "--tls-self-signed", "127.0.0.1"])
            .arg("--tls-ca-out")
            .arg(&ca)
            .args(["--allow-ports", "1-65535", "--allow-net", "127.0.0.0/8", "--max-connections", "100000"])
            .args(["--idle-timeout", "600", "--header-timeout", "30"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn reference-proxy");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut addr = |prefix: &str| -> SocketAddr {
            let line = lines.next().unwrap().unwrap();
            line.strip_prefix(prefix).unwrap_or_else(|| panic!("{line}")).parse().unwrap()
        };
        let plain = addr("listening plain ");
        let tls = addr("listening tls ");
        let mut roots = rustls::RootCertStore::empty();
        let pem = std::fs::read(&ca).unwrap();
        use rustls::pki_types::pem::PemObject as _;
        for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
            roots.add(cert.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls_config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Proxy { child, plain, tls, tls_config: Arc::new(tls_config), _dir: TempDir(dir) }
    }

    fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        let after = stat.rsplit_once(')').map_or("", |(_, a)| a);
        let f: Vec<u64> = after.split_whitespace().filter_map(|x| x.parse().ok()).collect();
        // Fields 14 and 15 (utime, stime); `after` starts at field 3 (state, not numeric, filtered out).
        let ticks = f.get(10).copied().unwrap_or(0) + f.get(11).copied().unwrap_or(0);
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        ticks as f64 / hz
    }

    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    fn plain_tunnel(&self, target: SocketAddr) -> std::io::Result<TcpStream> {
        let mut s = TcpStream::connect(self.plain)?;
        s.set_nodelay(true)?;
        handshake(&mut s, target)?;
        Ok(s)
    }

    fn tls_tunnel(
        &self,
        target: SocketAddr,
    ) -> std::io::Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>> {
        let tcp = TcpStream::connect(self.tls)?;
        tcp.set_nodelay(true)?;
        let name = rustls::pki_types::ServerName::IpAddress(self.tls.ip().into());
        let conn = rustls::ClientConnection::new(self.tls_config.clone(), name).map_err(std::io::Error::other)?;
        let mut s = rustls::StreamOwned::new(conn, tcp);
        handshake(&mut s, target)?;
        Ok(s)
    }

    /// One CONNECT round trip, then close; returns its latency.
    fn connect_setup(&self, target: SocketAddr) -> Duration {
        let start = Instant::now();
        let mut s = self.plain_tunnel(target).expect("tunnel");
        let elapsed = start.elapsed();
        let _ = s.shutdown(std::net::Shutdown::Write);
        let mut b = [0u8; 1];
        let _ = s.read(&mut b);
        elapsed
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// Sends CONNECT and reads the response head byte by byte.
fn handshake<S: Read + Write>(s: &mut S, target: SocketAddr) -> std::io::Result<()> {
    // One write: `write!` straight to a socket would send each formatting piece as its own segment.
    s.write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())?;
    s.flush()?;
    // The targets used here send nothing before the client does, so reading past the head cannot eat data.
    let mut head = Vec::with_capacity(64);
    let mut b = [0u8; 256];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut b)?;
        if n == 0 {
            return Err(std::io::Error::other("EOF in response head"));
        }
        head.extend_from_slice(&b[..n]);
    }
    if !head.starts_with(b"HTTP/1.1 200") {
        return Err(std::io::Error::other(String::from_utf8_lossy(&head).into_owned()));
    }
    Ok(())
}

/// Setup target: accepts and closes at once (no thread per connection, unlike the sink).
fn closer() -> SocketAddr {
    static CLOSER: std::sync::OnceLock<SocketAddr> = std::sync::OnceLock::new();
    *CLOSER.get_or_init(|| {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = l.local_addr().unwrap();
        std::thread::spawn(move || for _ in l.incoming() {});
        a
    })
}

/// Baseline for setup: a TCP connect to a server that answers with one byte.
fn direct_setup() -> Duration {
    static BANNER: std::sync::OnceLock<SocketAddr> = std::sync::OnceLock::new();
    let addr = *BANNER.get_or_init(|| {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = l.local_addr().unwrap();
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                let mut s = s;
                let _ = s.write_all(b"!");
            }
        });
        a
    });
    let start = Instant::now();
    let mut s = TcpStream::connect(addr).unwrap();
    let mut b = [0u8; 1];
    s.read_exact(&mut b).unwrap();
    start.elapsed()
}

struct Setup {
    rate: f64,
    p50: f64,
    p99: f64,
}

fn setup(concurrency: usize, total: usize, one: impl Fn(usize) -> Duration + Sync) -> Setup {
    let per = total / concurrency;
    let start = Instant::now();
    let mut all: Vec<Duration> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..concurrency)
            .map(|i| {
                let one = &one;
                scope.spawn(move || (0..per).map(|_| one(i)).collect::<Vec<_>>())
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let elapsed = start.elapsed();
    all.sort();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)].as_secs_f64() * 1e6;
    Setup { rate: all.len() as f64 / elapsed.as_secs_f64(), p50: pct(0.50), p99: pct(0.99) }
}

/// Opens `n` tunnels to a holder that keeps them open, sends 100 bytes through each (so every relay path has
/// been used once), and reports the proxy's RSS growth per tunnel once they are idle.
fn idle_memory<T: Write>(proxy: &Proxy, n: usize, label: &str, open: impl Fn(SocketAddr) -> std::io::Result<T>) {
    let holder = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = holder.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let held = std::thread::spawn(move || {
        let mut kept = Vec::new();
        holder.set_nonblocking(true).unwrap();
        while !stop2.load(Ordering::Relaxed) {
            match holder.accept() {
                Ok((s, _)) => kept.push(s),
                Err(_) => std::thread::sleep(Duration::from_millis(1)),
            }
        }
        kept.len()
    });
    // Warm up (thread pools, allocator arenas), then measure from a settled baseline.
    for _ in 0..200 {
        drop(open(target).unwrap());
    }
    std::thread::sleep(Duration::from_millis(500));
    let before = proxy.rss_kib();
    let mut clients = Vec::with_capacity(n);
    for i in 0..n {
        match open(target) {
            Ok(mut s) => {
                let _ = s.write_all(&[0x42; 100]);
                let _ = s.flush();
                clients.push(s);
            }
            Err(e) => {
                println!("  stopped at {i} tunnels: {e}");
                break;
            }
        }
    }
    std::thread::sleep(Duration::from_secs(1));
    let after = proxy.rss_kib();
    let opened = clients.len().max(1);
    println!(
        "idle tunnels ({label}): {} open, proxy RSS {} KiB -> {} KiB, {:.1} KiB per idle tunnel",
        clients.len(),
        before,
        after,
        after.saturating_sub(before) as f64 / opened as f64
    );
    drop(clients);
    stop.store(true, Ordering::Relaxed);
    let _ = held.join();
}
