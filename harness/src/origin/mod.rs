//! Instrumented origins: upstream servers on loopback that record, per scenario, every connection the
//! proxy made to them, so verdicts can say which target was dialled and whether bytes arrived intact.
//!
//! Each scenario run gets its own [`OriginSet`] (its own ports), so parallel scenarios never share a log.
//! With `--origin-ports`, sets are carved out of the range and reused one scenario at a time.

pub mod parent;
pub mod record;
mod servers;

use std::{
    collections::{HashMap, VecDeque},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::{net::TcpListener, sync::Semaphore, task::JoinSet};

pub use record::{ConnEnd, OriginConnection, OriginLog, Snapshot};

use crate::scenario::OriginKind;

/// Names on the TLS origin's certificate.
pub const TLS_ORIGIN_NAMES: [&str; 2] = ["target.test", "localhost"];

/// Ports one origin set uses (one per kind; the `closed` one is left unbound).
pub const PORTS_PER_SET: usize = OriginKind::ALL.len();

#[derive(Debug, thiserror::Error)]
pub enum OriginError {
    #[error("origin {origin} could not bind {addr}: {source}")]
    Bind { origin: &'static str, addr: SocketAddr, source: std::io::Error },
    #[error("origin TLS identity: {0}")]
    Tls(String),
    #[error("the origin port range {0} holds fewer than {PORTS_PER_SET} ports (one origin set)")]
    RangeTooSmall(String),
    #[error("no origin set with the origins on 127.0.0.1 became free within {0:?}")]
    NoFittingSet(Duration),
}

/// The TLS origin's certificate and key (generated once per run).
pub struct TlsIdentity {
    pub cert: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
}

impl TlsIdentity {
    pub fn generate() -> Result<Self, OriginError> {
        let ck = rcgen::generate_simple_self_signed(TLS_ORIGIN_NAMES.map(String::from).to_vec())
            .map_err(|e| OriginError::Tls(e.to_string()))?;
        Ok(Self { cert: ck.cert.der().clone(), key: PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()) })
    }

    /// A server config that agrees to the first ALPN protocol offered (so ALPN never fails the handshake).
    fn server_config(&self, offered: Vec<Vec<u8>>) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
        let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(vec![self.cert.clone()], PrivateKeyDer::Pkcs8(self.key.clone_key()))?;
        cfg.alpn_protocols = offered.into_iter().take(1).collect();
        Ok(Arc::new(cfg))
    }
}

/// What every origin set of a run shares.
pub struct Shared {
    pub identity: Arc<TlsIdentity>,
    pub banner: Arc<Vec<u8>>,
    /// Whether `::1` can be bound here.
    pub ipv6: bool,
}

impl Shared {
    pub async fn new() -> Result<Self, OriginError> {
        let identity = Arc::new(TlsIdentity::generate()?);
        let ipv6 = TcpListener::bind((Ipv6Addr::LOCALHOST, 0)).await.is_ok();
        Ok(Self { identity, banner: Arc::new(banner_bytes()), ipv6 })
    }
}

/// The server-first origin's banner: an SSH-like line, then 10 KiB of a recognisable pattern.
pub fn banner_bytes() -> Vec<u8> {
    let mut b = b"SSH-2.0-connect-harness banner origin\r\n".to_vec();
    b.extend((0..10 * 1024).map(|i| b'a' + (i % 26) as u8));
    b
}

/// One scenario's origins: a listener per kind, on 127.0.0.1 by default (and ::1 on the same port when
/// available), or on the addresses the run was given (`--origin-addr`, or one loopback address per kind when a
/// port range is too small for a port per kind).
pub struct OriginSet {
    addrs: HashMap<OriginKind, SocketAddr>,
    pub log: Arc<OriginLog>,
    pub ipv6: bool,
    pub tls_cert: CertificateDer<'static>,
    pub banner: Arc<Vec<u8>>,
    _tasks: JoinSet<()>,
    /// Holds the `closed` origin's port, and the `unanswered` origin's full listener with what fills it.
    _held: Vec<socket2::Socket>,
}

impl OriginSet {
    /// The origin's port (0 for a kind this set did not start; scenarios only name kinds they declared).
    pub fn port(&self, kind: OriginKind) -> u16 {
        self.addr(kind).port()
    }

    /// Every port this set holds (the instrumented parent routes CONNECTs to a scenario by them).
    pub fn ports(&self) -> Vec<u16> {
        self.addrs.values().map(|a| a.port()).collect()
    }

    pub fn addr(&self, kind: OriginKind) -> SocketAddr {
        self.addrs.get(&kind).copied().unwrap_or(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0))
    }

    /// Whether `localhost:PORT` (and `127.0.0.1:PORT`) reaches this origin.
    pub fn on_localhost(&self, kind: OriginKind) -> bool {
        self.addrs.get(&kind).is_some_and(|a| a.ip() == IpAddr::V4(Ipv4Addr::LOCALHOST))
    }

    /// Starts a set on the given addresses (one per kind, in [`OriginKind::ALL`] order), or on ephemeral ports
    /// of `host`. With `fixed` addresses every kind starts; otherwise only the `kinds` asked for (fewer sockets).
    pub async fn start(
        shared: &Shared,
        fixed: Option<&[SocketAddr]>,
        host: IpAddr,
        kinds: &[OriginKind],
    ) -> Result<Self, OriginError> {
        let log = Arc::new(OriginLog::default());
        let mut tasks = JoinSet::new();
        let mut addrs = HashMap::new();
        let mut held = Vec::new();
        let mut ipv6 = shared.ipv6;
        for (i, kind) in OriginKind::ALL.iter().copied().enumerate() {
            if fixed.is_none() && !kinds.contains(&kind) {
                continue;
            }
            let want = fixed.map(|p| p[i]).unwrap_or(SocketAddr::new(host, 0));
            if kind == OriginKind::Closed {
                let (addr, socket) = closed_port(want)?;
                addrs.insert(kind, addr);
                held.push(socket);
                continue;
            }
            if kind == OriginKind::Unanswered {
                let (addr, sockets) = unanswered_port(want).await?;
                addrs.insert(kind, addr);
                held.extend(sockets);
                continue;
            }
            // `[::1]:PORT` is offered beside `127.0.0.1:PORT` only.
            let pair_v6 = shared.ipv6 && want.ip() == IpAddr::V4(Ipv4Addr::LOCALHOST);
            let (v4, v6) = bind_pair(kind, want, pair_v6).await?;
            if kind == OriginKind::Echo && v6.is_none() {
                ipv6 = false;
            }
            addrs.insert(kind, v4.local_addr().unwrap_or(want));
            for l in std::iter::once(v4).chain(v6) {
                tasks.spawn(accept_loop(l, kind, log.clone(), shared.identity.clone(), shared.banner.clone()));
            }
        }
        Ok(Self {
            addrs,
            log,
            ipv6,
            tls_cert: shared.identity.cert.clone(),
            banner: shared.banner.clone(),
            _tasks: tasks,
            _held: held,
        })
    }
}

/// Reserves a port that refuses connections: a socket bound (without SO_REUSEADDR) but never listening, so
/// connecting gets a reset and no other listener can take the port while the set lives.
fn closed_port(addr: SocketAddr) -> Result<(SocketAddr, socket2::Socket), OriginError> {
    let err = |source| OriginError::Bind { origin: "closed", addr, source };
    let s = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None).map_err(err)?;
    s.bind(&addr.into()).map_err(err)?;
    let bound = s.local_addr().map_err(err)?.as_socket().unwrap_or(addr);
    Ok((bound, s))
}

/// A port where connecting never completes: a listener with a backlog of 0 whose accept queue is filled by
/// connections of our own (never accepted), so the kernel drops further SYNs. Nothing is ever recorded there.
async fn unanswered_port(addr: SocketAddr) -> Result<(SocketAddr, Vec<socket2::Socket>), OriginError> {
    let err = |source| OriginError::Bind { origin: "unanswered", addr, source };
    let domain = socket2::Domain::for_address(addr);
    let l = socket2::Socket::new(domain, socket2::Type::STREAM, None).map_err(err)?;
    l.bind(&addr.into()).map_err(err)?;
    l.listen(0).map_err(err)?;
    let bound = l.local_addr().map_err(err)?.as_socket().unwrap_or(addr);
    let mut held = vec![l];
    for _ in 0..4 {
        let s = socket2::Socket::new(domain, socket2::Type::STREAM, None).map_err(err)?;
        s.set_nonblocking(true).map_err(err)?;
        // In progress or done: either way it occupies the queue.
        let _ = s.connect(&bound.into());
        held.push(s);
    }
    // Let the fillers' handshakes complete, so the queue is full before a proxy dials.
    tokio::time::sleep(Duration::from_millis(20)).await;
    Ok((bound, held))
}

/// Binds `want` and, if asked, [::1] on the same port (retrying ephemeral picks that collide).
async fn bind_pair(
    kind: OriginKind,
    want: SocketAddr,
    ipv6: bool,
) -> Result<(TcpListener, Option<TcpListener>), OriginError> {
    let mut last = None;
    for _ in 0..8 {
        let v4 = TcpListener::bind(want).await.map_err(|source| OriginError::Bind {
            origin: kind.as_str(),
            addr: want,
            source,
        })?;
        if !ipv6 {
            return Ok((v4, None));
        }
        let port = v4.local_addr().map(|a| a.port()).unwrap_or(want.port());
        let addr6 = SocketAddr::from((Ipv6Addr::LOCALHOST, port));
        match TcpListener::bind(addr6).await {
            Ok(v6) => return Ok((v4, Some(v6))),
            // A fixed port whose ::1 twin is taken: serve IPv4 only rather than fail the run.
            Err(_) if want.port() != 0 => return Ok((v4, None)),
            Err(e) => last = Some(e),
        }
    }
    let addr = SocketAddr::from((Ipv6Addr::LOCALHOST, 0));
    Err(OriginError::Bind { origin: kind.as_str(), addr, source: last.expect("tried at least once") })
}

async fn accept_loop(
    l: TcpListener,
    kind: OriginKind,
    log: Arc<OriginLog>,
    identity: Arc<TlsIdentity>,
    banner: Arc<Vec<u8>>,
) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = l.accept() => {
                let Ok((s, peer)) = accepted else { continue };
                let _ = s.set_nodelay(true);
                let rec = log.open(kind, peer);
                match kind {
                    OriginKind::Echo | OriginKind::Echo2 => { conns.spawn(servers::echo(s, rec)); }
                    OriginKind::Silent | OriginKind::Sink => { conns.spawn(servers::sink(s, rec)); }
                    OriginKind::Banner => { conns.spawn(servers::banner(s, rec, banner.clone())); }
                    OriginKind::Http => { conns.spawn(servers::http(s, rec)); }
                    OriginKind::Tls => { conns.spawn(servers::tls(s, rec, identity.clone())); }
                    OriginKind::Closed | OriginKind::Unanswered => {}
                }
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

/// How long a set from `--origin-ports` rests between scenarios. Its listeners stay up, but whatever connects
/// while it rests (a proxy dialling late, after its scenario ended) is recorded nowhere, so it cannot land in the
/// next scenario's log.
pub const QUARANTINE: Duration = Duration::from_millis(500);

/// The longest a scenario waits for an origin set on 127.0.0.1 (see [`Pool::lease_with`]).
pub const LEASE_WAIT: Duration = Duration::from_secs(600);

/// Idle sets of a port range, the longest-resting first, with the time each was released.
type Idle = Mutex<VecDeque<(OriginSet, Instant)>>;

/// Where the origins may listen: `--origin-ports` and `--origin-addr`.
#[derive(Debug, Clone, Default)]
pub struct Placement {
    /// The ports the origins may use; None: ephemeral ports.
    pub ports: Option<std::ops::RangeInclusive<u16>>,
    /// The local addresses the origins bind; empty: 127.0.0.1 (plus ::1), or, when the port range holds fewer
    /// ports than an origin set needs, one loopback address per origin (127.0.0.1, 127.0.0.2, ...).
    pub addrs: Vec<IpAddr>,
    /// How many sets a port range should provide at most (about the number of concurrent scenarios).
    pub sets: usize,
}

/// Hands out origin sets: a fresh one per scenario with ephemeral ports, or, with a port range, the set that
/// has rested longest (see [`QUARANTINE`]).
pub struct Pool {
    shared: Shared,
    idle: Option<Idle>,
    sets: usize,
    /// Limits concurrent leases to the number of sets a port range allows.
    permits: Option<Arc<Semaphore>>,
    /// Addresses fresh ephemeral sets bind, in turn.
    hosts: Vec<IpAddr>,
    next_host: std::sync::atomic::AtomicUsize,
    /// For a port range: per set, the kinds it has on 127.0.0.1.
    on_localhost: Vec<Vec<OriginKind>>,
}

/// An origin set in use by one scenario run; returned to the pool (range) or closed (ephemeral) when dropped.
pub struct Lease<'a> {
    pool: &'a Pool,
    set: Option<OriginSet>,
    _permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl std::ops::Deref for Lease<'_> {
    type Target = OriginSet;
    fn deref(&self) -> &OriginSet {
        self.set.as_ref().expect("lease holds a set until dropped")
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let (Some(set), Some(idle)) = (self.set.take(), &self.pool.idle) {
            // From now on, connections to this set are recorded into a generation nobody reads.
            set.log.clear();
            idle.lock().expect("pool lock").push_back((set, Instant::now()));
        }
    }
}

/// The i-th generated loopback address: 127.0.0.1, 127.0.0.2, ... 127.0.0.254, 127.0.1.1, ...
fn loopback(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, (i / 254) as u8, (i % 254) as u8 + 1))
}

/// The addresses of each origin set (one per kind, in [`OriginKind::ALL`] order) for a port range: with enough
/// ports a set takes consecutive ports of one address; with fewer ports than kinds, a set spreads over
/// addresses on the same ports (so `--origin-ports 443` works, one address per origin).
pub fn plan_sets(addrs: &[IpAddr], ports: &[u16]) -> Vec<Vec<SocketAddr>> {
    if ports.len() >= PORTS_PER_SET {
        addrs
            .iter()
            .flat_map(|a| {
                ports.chunks_exact(PORTS_PER_SET).map(|c| c.iter().map(|p| SocketAddr::new(*a, *p)).collect())
            })
            .collect()
    } else {
        let slots: Vec<SocketAddr> = ports.iter().flat_map(|p| addrs.iter().map(|a| SocketAddr::new(*a, *p))).collect();
        slots.chunks_exact(PORTS_PER_SET).map(<[SocketAddr]>::to_vec).collect()
    }
}

impl Pool {
    /// `range`: the ports the origins may use (`--origin-ports`), else ephemeral ports; on 127.0.0.1.
    pub async fn new(range: Option<std::ops::RangeInclusive<u16>>) -> Result<Self, OriginError> {
        Self::with(Placement { ports: range, addrs: Vec::new(), sets: 64 }).await
    }

    pub async fn with(place: Placement) -> Result<Self, OriginError> {
        let shared = Shared::new().await?;
        let localhost_v4 = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let hosts = if place.addrs.is_empty() { vec![localhost_v4] } else { place.addrs.clone() };
        let Some(r) = place.ports else {
            return Ok(Self {
                shared,
                idle: None,
                sets: 0,
                permits: None,
                hosts,
                next_host: Default::default(),
                on_localhost: Vec::new(),
            });
        };
        let ports: Vec<u16> = r.clone().collect();
        let wanted = place.sets.max(1);
        let addrs = if !place.addrs.is_empty() {
            place.addrs.clone()
        } else if ports.len() >= PORTS_PER_SET {
            vec![localhost_v4]
        } else {
            // Too few ports for one port per kind: one loopback address per origin (Linux routes 127.0.0.0/8 to
            // lo, so these need no configuration).
            let n = (wanted * PORTS_PER_SET).div_ceil(ports.len()).min(254 * 200);
            (0..n).map(loopback).collect()
        };
        let mut plan = plan_sets(&addrs, &ports);
        if plan.is_empty() {
            return Err(OriginError::RangeTooSmall(format!(
                "{}-{} on {} address(es)",
                r.start(),
                r.end(),
                addrs.len()
            )));
        }
        // As many sets as scenarios can run at once, and at least one per given address.
        plan.truncate(wanted.max(place.addrs.len()).max(1));
        // Claim every port now, before any traffic can take one as an ephemeral port; a port that is taken is
        // a setup error (exit 3) rather than a scenario error later.
        let long_ago = Instant::now().checked_sub(QUARANTINE).unwrap_or_else(Instant::now);
        let mut idle = VecDeque::new();
        for chunk in &plan {
            let mut tries = 0;
            let set = loop {
                match OriginSet::start(&shared, Some(chunk), chunk[0].ip(), OriginKind::ALL).await {
                    // A previous user of the range (an earlier run in this process) may still be closing.
                    Err(OriginError::Bind { source, .. })
                        if source.kind() == std::io::ErrorKind::AddrInUse && tries < 20 =>
                    {
                        tries += 1;
                        tokio::time::sleep(Duration::from_millis(25)).await;
                    }
                    other => break other?,
                }
            };
            idle.push_back((set, long_ago));
        }
        let sets = idle.len();
        let on_localhost: Vec<Vec<OriginKind>> = idle
            .iter()
            .map(|(s, _)| OriginKind::ALL.iter().copied().filter(|k| s.on_localhost(*k)).collect())
            .collect();
        Ok(Self {
            shared,
            idle: Some(Mutex::new(idle)),
            sets,
            permits: Some(Arc::new(Semaphore::new(sets))),
            hosts,
            next_host: Default::default(),
            on_localhost,
        })
    }

    /// How many scenarios can hold origins at once (None: unlimited).
    pub fn capacity(&self) -> Option<usize> {
        self.idle.as_ref().map(|_| self.sets)
    }

    pub fn ipv6(&self) -> bool {
        self.shared.ipv6 && self.has_localhost()
    }

    /// Whether some set has origins on 127.0.0.1 (so names such as `localhost` reach them).
    fn has_localhost(&self) -> bool {
        match &self.idle {
            None => self.hosts.contains(&IpAddr::V4(Ipv4Addr::LOCALHOST)),
            Some(_) => self.on_localhost.iter().any(|kinds| !kinds.is_empty()),
        }
    }

    /// Why a scenario whose placeholders need these origins on 127.0.0.1 (names, `[::1]`, hand-written loopback
    /// hosts) cannot run with this placement, if it cannot.
    pub fn localhost_unavailable(&self, kinds: &[OriginKind]) -> Option<String> {
        if kinds.is_empty() {
            return None;
        }
        if !self.has_localhost() {
            return Some(
                "needs origins on 127.0.0.1 (it names them as localhost or a loopback literal), which \
                         --origin-addr leaves out"
                    .into(),
            );
        }
        self.idle.as_ref()?;
        let ok = self.on_localhost.iter().any(|have| kinds.iter().all(|k| have.contains(k)));
        (!ok).then(|| {
            let names: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
            format!(
                "needs the origins {} on 127.0.0.1, but with --origin-ports giving fewer ports than origins each \
                 origin has its own address, and only the echo origin is on 127.0.0.1",
                names.join(", ")
            )
        })
    }

    /// An origin set for one scenario run, with at least the given kinds listening, and `localhost` kinds on
    /// 127.0.0.1.
    pub async fn lease(&self, kinds: &[OriginKind]) -> Result<Lease<'_>, OriginError> {
        self.lease_with(kinds, &[]).await
    }

    pub async fn lease_with(&self, kinds: &[OriginKind], localhost: &[OriginKind]) -> Result<Lease<'_>, OriginError> {
        let (Some(idle), Some(permits)) = (&self.idle, &self.permits) else {
            let host = if localhost.is_empty() {
                let i = self.next_host.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.hosts[i % self.hosts.len()]
            } else {
                IpAddr::V4(Ipv4Addr::LOCALHOST)
            };
            let set = OriginSet::start(&self.shared, None, host, kinds).await?;
            return Ok(Lease { pool: self, set: Some(set), _permit: None });
        };
        let permit = permits.clone().acquire_owned().await.expect("pool semaphore never closes");
        let fits = |s: &OriginSet| localhost.iter().all(|k| s.on_localhost(*k));
        // Holding a permit guarantees an idle set; a scenario that needs 127.0.0.1 waits for a set that has it
        // (the runner skips scenarios no set fits, so one is released when its scenario ends, within its
        // deadline). A generous bound keeps a mistake from waiting forever.
        let give_up = Instant::now() + LEASE_WAIT;
        let (set, released) = loop {
            {
                let mut q = idle.lock().expect("pool lock");
                if let Some(pos) = q.iter().position(|(s, _)| fits(s)) {
                    break q.remove(pos).expect("position is in range");
                }
            }
            if Instant::now() >= give_up {
                return Err(OriginError::NoFittingSet(LEASE_WAIT));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        tokio::time::sleep_until((released + QUARANTINE).into()).await;
        set.log.clear();
        Ok(Lease { pool: self, set: Some(set), _permit: Some(permit) })
    }
}
