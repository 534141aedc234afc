//! Instrumented origins: upstream servers on loopback that record, per scenario, every connection the
//! proxy made to them, so verdicts can say which target was dialled and whether bytes arrived intact.
//!
//! Each scenario run gets its own [`OriginSet`] (its own ports), so parallel scenarios never share a log.
//! With `--origin-ports`, sets are carved out of the range and reused one scenario at a time.

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

/// One scenario's origins: a listener per kind on 127.0.0.1 (and ::1 on the same port when available).
pub struct OriginSet {
    ports: HashMap<OriginKind, u16>,
    pub log: Arc<OriginLog>,
    pub ipv6: bool,
    pub tls_cert: CertificateDer<'static>,
    pub banner: Arc<Vec<u8>>,
    _tasks: JoinSet<()>,
    /// Holds the `closed` origin's port.
    _closed: Option<socket2::Socket>,
}

impl OriginSet {
    /// The origin's port (0 for a kind this set did not start; scenarios only name kinds they declared).
    pub fn port(&self, kind: OriginKind) -> u16 {
        self.ports.get(&kind).copied().unwrap_or(0)
    }

    pub fn addr(&self, kind: OriginKind) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), self.port(kind))
    }

    /// Starts a set on the given ports (one per kind, in [`OriginKind::ALL`] order), or ephemeral ones.
    /// With `fixed` ports every kind starts; otherwise only the `kinds` asked for (fewer sockets).
    pub async fn start(shared: &Shared, fixed: Option<&[u16]>, kinds: &[OriginKind]) -> Result<Self, OriginError> {
        let log = Arc::new(OriginLog::default());
        let mut tasks = JoinSet::new();
        let mut ports = HashMap::new();
        let mut reserved = None;
        for (i, kind) in OriginKind::ALL.into_iter().enumerate() {
            if fixed.is_none() && !kinds.contains(&kind) {
                continue;
            }
            let want = fixed.map(|p| p[i]).unwrap_or(0);
            if kind == OriginKind::Closed {
                let (port, socket) = closed_port(want)?;
                ports.insert(kind, port);
                reserved = Some(socket);
                continue;
            }
            let (v4, v6) = bind_pair(kind, want, shared.ipv6).await?;
            ports.insert(kind, v4.local_addr().map(|a| a.port()).unwrap_or(want));
            for l in std::iter::once(v4).chain(v6) {
                tasks.spawn(accept_loop(l, kind, log.clone(), shared.identity.clone(), shared.banner.clone()));
            }
        }
        Ok(Self {
            ports,
            log,
            ipv6: shared.ipv6,
            tls_cert: shared.identity.cert.clone(),
            banner: shared.banner.clone(),
            _tasks: tasks,
            _closed: reserved,
        })
    }
}

/// Reserves a port that refuses connections: a socket bound (without SO_REUSEADDR) but never listening, so
/// connecting gets a reset and no other listener can take the port while the set lives.
fn closed_port(want: u16) -> Result<(u16, socket2::Socket), OriginError> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, want));
    let err = |source| OriginError::Bind { origin: "closed", addr, source };
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).map_err(err)?;
    s.bind(&addr.into()).map_err(err)?;
    let port = s.local_addr().map_err(err)?.as_socket().map(|a| a.port()).unwrap_or(want);
    Ok((port, s))
}

/// Binds 127.0.0.1:port and, if possible, [::1] on the same port (retrying ephemeral picks that collide).
async fn bind_pair(kind: OriginKind, want: u16, ipv6: bool) -> Result<(TcpListener, Option<TcpListener>), OriginError> {
    let mut last = None;
    for _ in 0..8 {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, want));
        let v4 = TcpListener::bind(addr).await.map_err(|source| OriginError::Bind {
            origin: kind.as_str(),
            addr,
            source,
        })?;
        if !ipv6 {
            return Ok((v4, None));
        }
        let port = v4.local_addr().map(|a| a.port()).unwrap_or(want);
        let addr6 = SocketAddr::from((Ipv6Addr::LOCALHOST, port));
        match TcpListener::bind(addr6).await {
            Ok(v6) => return Ok((v4, Some(v6))),
            Err(source) if want != 0 => {
                return Err(OriginError::Bind { origin: kind.as_str(), addr: addr6, source });
            }
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
                    OriginKind::Closed => {}
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

/// Idle sets of a port range, the longest-resting first, with the time each was released.
type Idle = Mutex<VecDeque<(OriginSet, Instant)>>;

/// Hands out origin sets: a fresh one per scenario with ephemeral ports, or, with a port range, the set that
/// has rested longest (see [`QUARANTINE`]).
pub struct Pool {
    shared: Shared,
    idle: Option<Idle>,
    sets: usize,
    /// Limits concurrent leases to the number of sets a port range allows.
    permits: Option<Arc<Semaphore>>,
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

impl Pool {
    /// `range`: the ports the origins may use (`--origin-ports`), else ephemeral ports.
    pub async fn new(range: Option<std::ops::RangeInclusive<u16>>) -> Result<Self, OriginError> {
        let shared = Shared::new().await?;
        let Some(r) = range else {
            return Ok(Self { shared, idle: None, sets: 0, permits: None });
        };
        let ports: Vec<u16> = r.clone().collect();
        if ports.len() < PORTS_PER_SET {
            return Err(OriginError::RangeTooSmall(format!("{}-{}", r.start(), r.end())));
        }
        // Claim every port now, before any traffic can take one as an ephemeral port; a port that is taken is
        // a setup error (exit 3) rather than a scenario error later.
        let long_ago = Instant::now().checked_sub(QUARANTINE).unwrap_or_else(Instant::now);
        let mut idle = VecDeque::new();
        for chunk in ports.chunks_exact(PORTS_PER_SET) {
            let mut tries = 0;
            let set = loop {
                match OriginSet::start(&shared, Some(chunk), &OriginKind::ALL).await {
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
        Ok(Self { shared, idle: Some(Mutex::new(idle)), sets, permits: Some(Arc::new(Semaphore::new(sets))) })
    }

    /// How many scenarios can hold origins at once (None: unlimited).
    pub fn capacity(&self) -> Option<usize> {
        self.idle.as_ref().map(|_| self.sets)
    }

    pub fn ipv6(&self) -> bool {
        self.shared.ipv6
    }

    /// An origin set for one scenario run, with at least the given kinds listening.
    pub async fn lease(&self, kinds: &[OriginKind]) -> Result<Lease<'_>, OriginError> {
        let (Some(idle), Some(permits)) = (&self.idle, &self.permits) else {
            let set = OriginSet::start(&self.shared, None, kinds).await?;
            return Ok(Lease { pool: self, set: Some(set), _permit: None });
        };
        let permit = permits.clone().acquire_owned().await.expect("pool semaphore never closes");
        // Holding a permit guarantees an idle set.
        let (set, released) = idle.lock().expect("pool lock").pop_front().expect("a permit means an idle set");
        tokio::time::sleep_until((released + QUARANTINE).into()).await;
        set.log.clear();
        Ok(Lease { pool: self, set: Some(set), _permit: Some(permit) })
    }
}
