//! Listeners, connection limits and graceful shutdown: the in-process API the harness and the binary use.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant as StdInstant};

use thiserror::Error;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout_at};
use tokio_rustls::TlsAcceptor;

use crate::config::ProxyConfig;
use crate::conn::{self, ConnLog, Shared};
use crate::resolve::Resolver;
use crate::response::{ErrorResponse, ErrorType};
use crate::stream::ClientStream;
use crate::tls::{TlsError, TlsIdentity};

/// Why the proxy could not start.
#[derive(Debug, Error)]
pub enum StartError {
    #[error("binding {addr}: {source}")]
    Bind { addr: SocketAddr, source: io::Error },
    #[error("TLS listeners configured without a TLS identity (certificate/key or self-signed name)")]
    TlsWithoutIdentity,
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("no listener configured")]
    NoListener,
    #[error("invalid configuration: {0}")]
    Config(String),
}

/// Connections over the limit are answered 503 by at most this many tasks at once; beyond, they are closed.
const MAX_REJECTING: usize = 64;

/// A running proxy. Dropping it stops it abruptly; [`RunningProxy::shutdown`] drains.
pub struct RunningProxy {
    plain: Vec<SocketAddr>,
    tls: Vec<SocketAddr>,
    ca_cert_pem: Option<String>,
    stop: watch::Sender<bool>,
    abort: watch::Sender<bool>,
    accept_tasks: Vec<JoinHandle<()>>,
    /// Every connection task holds a sender; `recv` returns `None` when all have ended.
    done_rx: mpsc::Receiver<()>,
    grace: Duration,
}

impl std::fmt::Debug for RunningProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningProxy").field("plain", &self.plain).field("tls", &self.tls).finish_non_exhaustive()
    }
}

impl RunningProxy {
    pub fn plain_addrs(&self) -> &[SocketAddr] {
        &self.plain
    }

    pub fn tls_addrs(&self) -> &[SocketAddr] {
        &self.tls
    }

    /// PEM of the CA that signed the TLS identity when it was self-signed (so clients can trust it).
    pub fn ca_cert_pem(&self) -> Option<&str> {
        self.ca_cert_pem.as_deref()
    }

    /// Stop accepting, drain tunnels up to a deadline, return when all tasks ended.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        for task in self.accept_tasks.drain(..) {
            let _ = task.await;
        }
        let drained = tokio::time::timeout(self.grace, self.done_rx.recv()).await.is_ok();
        if !drained {
            let _ = self.abort.send(true);
            // Aborted tasks end at their next poll; bounded in case one is stuck in a blocking DNS lookup.
            let _ = tokio::time::timeout(Duration::from_secs(5), self.done_rx.recv()).await;
        }
    }
}

impl Drop for RunningProxy {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        let _ = self.abort.send(true);
    }
}

/// Binds every listener and starts serving. Returns once the listeners are bound.
pub async fn start(config: ProxyConfig) -> Result<RunningProxy, StartError> {
    if config.listen.is_empty() && config.tls_listen.is_empty() {
        return Err(StartError::NoListener);
    }
    if config.limits.max_connections == 0 {
        return Err(StartError::Config("max_connections must be at least 1".into()));
    }
    if !crate::response::is_token(&config.name) {
        return Err(StartError::Config(format!("proxy name `{}` is not an RFC 8941 token", config.name)));
    }
    let tls = match (&config.tls, config.tls_listen.is_empty()) {
        (_, true) => None,
        (None, false) => return Err(StartError::TlsWithoutIdentity),
        (Some(source), false) => Some(TlsIdentity::load(source)?),
    };
    let mut plain_listeners = Vec::new();
    for addr in &config.listen {
        plain_listeners.push(bind(*addr).await?);
    }
    let mut tls_listeners = Vec::new();
    for addr in &config.tls_listen {
        tls_listeners.push(bind(*addr).await?);
    }
    let local = |ls: &[TcpListener]| ls.iter().map(|l| l.local_addr()).collect::<io::Result<Vec<_>>>();
    let plain = local(&plain_listeners).map_err(|source| StartError::Bind { addr: config.listen[0], source })?;
    let tls_addrs = local(&tls_listeners).map_err(|source| StartError::Bind { addr: config.tls_listen[0], source })?;

    let (stop, _) = watch::channel(false);
    let (abort, _) = watch::channel(false);
    let (done_tx, done_rx) = mpsc::channel::<()>(1);
    let grace = config.limits.shutdown_grace;
    let limit = Arc::new(Semaphore::new(config.limits.max_connections));
    let rejecting = Arc::new(Semaphore::new(MAX_REJECTING));
    let ca_cert_pem = tls.as_ref().and_then(|t| t.ca_cert_pem.clone());
    let hooks = crate::hooks::for_config(&config);
    let http2 = config.http2.enabled;
    let acceptor = tls.map(|t| {
        let mut tls_config = t.config;
        if http2 {
            // HTTP/2 first: a client offering both gets h2 (RFC 7301: the server picks in its own order).
            let mut c = (*tls_config).clone();
            c.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
            tls_config = Arc::new(c);
        }
        TlsAcceptor::from(hooks.tls_config(tls_config))
    });
    let own_addrs = plain.iter().chain(&tls_addrs).copied().collect();
    let upstream_tls = match &config.upstream {
        Some(up) => {
            up.validate().map_err(|e| StartError::Config(e.to_string()))?;
            match &up.ca_pem {
                Some(pem) if up.tls => {
                    Some(crate::tls::upstream_connector(pem).map_err(|e| StartError::Config(e.to_string()))?)
                }
                _ => None,
            }
        }
        None => None,
    };
    let shared = Arc::new(Shared {
        upstream_tls,
        via_token: crate::upstream::via_token(),
        resolver: Resolver::new(config.resolver.clone()),
        config,
        own_addrs,
        hooks,
        stalled_until: std::sync::Mutex::new(None),
    });
    let mut accept_tasks = Vec::new();
    let listeners =
        plain_listeners.into_iter().map(|l| (l, None)).chain(tls_listeners.into_iter().map(|l| (l, acceptor.clone())));
    for (listener, acceptor) in listeners {
        let ctx = AcceptCtx {
            shared: shared.clone(),
            acceptor,
            limit: limit.clone(),
            rejecting: rejecting.clone(),
            stop: stop.subscribe(),
            abort: abort.subscribe(),
            done: done_tx.clone(),
        };
        accept_tasks.push(tokio::spawn(accept_loop(listener, ctx)));
    }
    for addr in &plain {
        tracing::info!(%addr, "listening (plain)");
    }
    for addr in &tls_addrs {
        tracing::info!(%addr, "listening (TLS)");
    }
    Ok(RunningProxy { plain, tls: tls_addrs, ca_cert_pem, stop, abort, accept_tasks, done_rx, grace })
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    let err = |source| StartError::Bind { addr, source };
    let socket = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None).map_err(err)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true).map_err(err)?;
    }
    socket.set_reuse_address(true).map_err(err)?;
    socket.set_nonblocking(true).map_err(err)?;
    socket.bind(&addr.into()).map_err(err)?;
    socket.listen(1024).map_err(err)?;
    TcpListener::from_std(socket.into()).map_err(err)
}

struct AcceptCtx {
    shared: Arc<Shared>,
    acceptor: Option<TlsAcceptor>,
    limit: Arc<Semaphore>,
    rejecting: Arc<Semaphore>,
    stop: watch::Receiver<bool>,
    abort: watch::Receiver<bool>,
    done: mpsc::Sender<()>,
}

async fn accept_loop(listener: TcpListener, mut ctx: AcceptCtx) {
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = ctx.stop.wait_for(|s| *s) => return,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning; the listener stays open.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        match ctx.limit.clone().try_acquire_owned() {
            Ok(permit) => {
                let task = Connection {
                    shared: ctx.shared.clone(),
                    acceptor: ctx.acceptor.clone(),
                    abort: ctx.abort.clone(),
                    _done: ctx.done.clone(),
                    _permit: permit,
                };
                tokio::spawn(task.run(tcp, peer));
            }
            Err(_) => overloaded(tcp, peer, &ctx),
        }
    }
}

/// Over the connection limit: a plain client gets a 503 (if few are being answered already); a TLS client, or
/// any client when too many are being answered, is closed at once.
fn overloaded(tcp: TcpStream, peer: SocketAddr, ctx: &AcceptCtx) {
    let Ok(permit) = ctx.rejecting.clone().try_acquire_owned() else {
        tracing::info!(client = %peer, status = 503, close = "over-limit-dropped", "connection");
        return;
    };
    if ctx.acceptor.is_some() {
        tracing::info!(client = %peer, status = 503, close = "over-limit-dropped", "connection");
        return;
    }
    let shared = ctx.shared.clone();
    let done = ctx.done.clone();
    tokio::spawn(async move {
        let _permit: OwnedSemaphorePermit = permit;
        let _done = done;
        let mut log = ConnLog::default();
        let mut client = ClientStream::Plain(tcp);
        let resp = ErrorResponse::new(503, ErrorType::ProxyInternalResponse, "too many connections");
        conn::reject(&mut client, resp, &shared, &mut log, "over-limit").await;
        tracing::info!(client = %peer, status = 503, close = "over-limit", "connection");
    });
}

struct Connection {
    shared: Arc<Shared>,
    acceptor: Option<TlsAcceptor>,
    abort: watch::Receiver<bool>,
    _done: mpsc::Sender<()>,
    _permit: OwnedSemaphorePermit,
}

impl Connection {
    async fn run(mut self, tcp: TcpStream, peer: SocketAddr) {
        let started = StdInstant::now();
        let deadline = Instant::now() + self.shared.config.limits.header_timeout;
        let mut log = ConnLog::default();
        let listener = if self.acceptor.is_some() { "tls" } else { "plain" };
        let work = async {
            self.shared.wait_if_stalled().await;
            let client = match &self.acceptor {
                None => ClientStream::Plain(tcp),
                // Fault: read the ClientHello and never answer, like a TLS listener that stalls.
                Some(_) if self.shared.hooks.stall_tls_handshake() => {
                    let mut tcp = tcp;
                    let mut buf = [0u8; 4096];
                    while let Ok(Ok(n)) = timeout_at(deadline, tokio::io::AsyncReadExt::read(&mut tcp, &mut buf)).await
                    {
                        if n == 0 {
                            break;
                        }
                    }
                    log.reason = "tls-handshake-stalled (fault)".into();
                    return;
                }
                Some(acceptor) => match timeout_at(deadline, acceptor.accept(tcp)).await {
                    Ok(Ok(tls))
                        if tls.get_ref().1.alpn_protocol().is_none() && self.shared.hooks.refuse_without_alpn() =>
                    {
                        log.reason = "no-alpn-refused (fault)".into();
                        return;
                    }
                    Ok(Ok(tls)) => {
                        log.sni = tls.get_ref().1.server_name().map(str::to_owned);
                        ClientStream::Tls(Box::new(tls))
                    }
                    Ok(Err(e)) => {
                        log.reason = format!("tls-handshake-failed: {e}");
                        return;
                    }
                    Err(_) => {
                        log.reason = "tls-handshake-timeout".into();
                        return;
                    }
                },
            };
            // HTTP/2: chosen by ALPN on TLS, or with prior knowledge (the client preface) on a plain connection.
            let h2 = match &client {
                _ if !self.shared.config.http2.enabled => false,
                ClientStream::Tls(tls) => tls.get_ref().1.alpn_protocol() == Some(&b"h2"[..]),
                ClientStream::Plain(tcp) => crate::http2::starts_with_preface(tcp, deadline).await,
            };
            match client {
                ClientStream::Tls(tls) if h2 => {
                    crate::http2::serve(*tls, self.shared.clone(), deadline, &mut log).await
                }
                ClientStream::Plain(tcp) if h2 => {
                    crate::http2::serve(tcp, self.shared.clone(), deadline, &mut log).await
                }
                client => conn::serve(client, &self.shared, deadline, &mut log).await,
            }
        };
        let aborted = tokio::select! {
            () = work => false,
            _ = self.abort.wait_for(|a| *a) => true,
        };
        if aborted {
            log.reason = "shutdown".into();
        }
        tracing::info!(
            client = %peer,
            listener = %listener,
            sni = %log.sni.as_deref().unwrap_or("-"),
            target = %log.target.as_deref().unwrap_or("-"),
            status = log.status.unwrap_or(0),
            up = log.up,
            down = log.down,
            duration_ms = started.elapsed().as_millis() as u64,
            close = %log.reason,
            "connection"
        );
    }
}
