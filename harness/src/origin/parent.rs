//! The instrumented parent proxy: the upstream proxy a chained proxy under test sends its CONNECTs to.
//!
//! One parent runs per run (`--upstream-proxy-port`, or an ephemeral port for the embedded reference proxy). It
//! records every CONNECT it receives (request line, every field, what arrived after its answer) and answers as
//! the scenario scripted: a tunnel (the default), a response of any bytes, closing without an answer, a reset
//! or silence. A CONNECT belongs to the scenario whose origins own its target's port (origin sets never share
//! ports while they run), so parallel scenarios never see each other's requests; a CONNECT for any other port
//! is tunnelled like a plain correct proxy would (to loopback only). The parent never demands credentials; when
//! the run says which ones the proxy under test presents, one scenario checks that it does.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::{Arc, Mutex},
    time::Duration,
};

use base64::Engine as _;
use reference_proxy::wire::{HeadParser, Limits, Progress};
use serde::Deserialize;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::Notify,
    time::timeout,
};

/// How long a parent waits for a request head, holds a connection after its answer, or stays silent.
const HOLD: Duration = Duration::from_secs(10);
/// The longest a tunnel through the parent lives (longer than any scenario).
const MAX_TUNNEL: Duration = Duration::from_secs(300);
/// Bytes kept of what arrives after the parent's answer.
const KEEP_AFTER: usize = 4096;

/// What the parent does with a scenario's CONNECT.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ParentScript {
    /// Send these bytes as the answer (placeholders are not expanded). A 2xx answer then tunnels to the target;
    /// anything else is followed by `then`.
    #[serde(default)]
    pub respond: Option<String>,
    /// After a non-2xx `respond`: "close" (default) or "hold" (keep the connection open, recording what comes).
    #[serde(default)]
    pub then: Then,
    /// Instead of answering: "close" (read the CONNECT, close without a word), "reset" (RST), "silence" (say
    /// nothing and hold the connection open), or "loop" (send the CONNECT back to the proxy under test, as its
    /// client, and relay whatever follows: a proxy loop; after four rounds the parent answers 508 itself).
    #[serde(default)]
    pub action: Option<Action>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Then {
    #[default]
    Close,
    Hold,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Close,
    Reset,
    Silence,
    Loop,
}

/// Rounds of a loop after which the parent stops it (508), so a proxy that does not detect loops cannot make one
/// run forever.
pub const MAX_LOOP_ROUNDS: usize = 4;

/// One CONNECT the parent received.
#[derive(Debug, Clone, Default)]
pub struct ParentRequest {
    /// The request line, as text (bytes outside printable ASCII escaped).
    pub request_line: String,
    pub target: String,
    pub fields: Vec<(String, String)>,
    /// Bytes of the client's that came with the CONNECT, before any answer (forwarded optimistically), when the
    /// answer was not a 2xx (the first [`KEEP_AFTER`]), and how many in all.
    pub before_answer: Vec<u8>,
    pub before_answer_len: u64,
    /// Bytes that arrived after a non-2xx answer (the first [`KEEP_AFTER`]), and how many in all.
    pub after_answer: Vec<u8>,
    pub after_answer_len: u64,
    /// The head did not parse as a request: why (the request line names the port, so it is still recorded).
    pub malformed: Option<String>,
    /// `action = "loop"`: the status line the proxy under test answered the looped CONNECT with.
    pub looped_answer: Option<String>,
}

impl ParentRequest {
    /// Every value of a field, in order.
    pub fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.fields.iter().filter(move |(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The head as text, one line per field, for reports.
    pub fn shown(&self) -> String {
        let mut s = self.request_line.clone();
        for (n, v) in &self.fields {
            s.push_str(&format!(" | {n}: {v}"));
        }
        if let Some(why) = &self.malformed {
            s.push_str(&format!(" (not a valid request head: {why})"));
        }
        if let Some(a) = &self.looped_answer {
            s.push_str(&format!(" (sent back to the proxy under test, which answered {a})"));
        }
        s
    }
}

/// CONNECTs kept per scenario (more are counted, not kept): a proxy that floods its parent stays bounded.
const KEPT_REQUESTS: usize = 16;

/// A scenario's claim on the parent: its script and the CONNECTs it received.
#[derive(Default)]
pub struct Registration {
    pub script: ParentScript,
    requests: Mutex<Vec<ParentRequest>>,
    count: std::sync::atomic::AtomicUsize,
    changed: Notify,
}

impl Registration {
    /// The first [`KEPT_REQUESTS`] CONNECTs.
    pub fn requests(&self) -> Vec<ParentRequest> {
        self.requests.lock().expect("parent log").clone()
    }

    /// How many CONNECTs arrived in all.
    pub fn len(&self) -> usize {
        self.count.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Resolves when something was recorded (create it before looking, then await).
    pub fn changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.changed.notified()
    }

    /// Records a CONNECT; its index among the kept ones (`None` once the log is full).
    fn record(&self, req: ParentRequest) -> Option<usize> {
        let mut all = self.requests.lock().expect("parent log");
        self.count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let kept = (all.len() < KEPT_REQUESTS).then(|| {
            all.push(req);
            all.len() - 1
        });
        drop(all);
        self.changed.notify_waiters();
        kept
    }

    /// Notes client bytes: with the CONNECT (`before` the answer) or after a non-2xx answer.
    fn client_bytes(&self, i: usize, bytes: &[u8], before: bool) {
        let mut all = self.requests.lock().expect("parent log");
        if let Some(r) = all.get_mut(i) {
            let (kept, len) = if before {
                (&mut r.before_answer, &mut r.before_answer_len)
            } else {
                (&mut r.after_answer, &mut r.after_answer_len)
            };
            let room = KEEP_AFTER.saturating_sub(kept.len());
            kept.extend_from_slice(&bytes[..bytes.len().min(room)]);
            *len += bytes.len() as u64;
        }
        drop(all);
        self.changed.notify_waiters();
    }

    fn looped_answer(&self, i: usize, status_line: String) {
        if let Some(r) = self.requests.lock().expect("parent log").get_mut(i) {
            r.looped_answer = Some(status_line);
        }
        self.changed.notify_waiters();
    }
}

type Registry = Arc<Mutex<HashMap<u16, Arc<Registration>>>>;

/// The running parent proxy.
pub struct Parent {
    addr: SocketAddr,
    registry: Registry,
    /// `user:password` the proxy under test is configured to present (Basic), for the credentials scenario. The
    /// parent never refuses a CONNECT for its credentials: a mismatch would turn every chained scenario into a
    /// failure that is really a configuration problem; chained/11.7.2/own-credentials-presented judges it once.
    credentials: Option<String>,
    /// Where a looped CONNECT goes (the proxy under test's plain listener) and the client credentials it needs.
    loop_to: Arc<Mutex<Option<LoopTarget>>>,
    task: tokio::task::JoinHandle<()>,
}

/// The proxy under test, as the parent reaches it to make a loop.
#[derive(Debug, Clone)]
pub struct LoopTarget {
    pub addr: SocketAddr,
    /// `user:password` a client of the proxy under test presents (`--proxy-user`), put in place of the
    /// credentials the proxy presented to the parent, so the looped CONNECT is refused for the loop, not for them.
    pub client_credentials: Option<String>,
}

impl Drop for Parent {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The parent could not start.
#[derive(Debug, thiserror::Error)]
#[error("the instrumented parent proxy could not listen on {addr}: {source}")]
pub struct ParentError {
    pub addr: SocketAddr,
    pub source: std::io::Error,
}

impl Parent {
    /// Listens on `addr` (a loopback address; port 0 for an ephemeral one).
    pub async fn start(addr: SocketAddr, credentials: Option<String>) -> Result<Arc<Parent>, ParentError> {
        let listener = TcpListener::bind(addr).await.map_err(|source| ParentError { addr, source })?;
        let addr = listener.local_addr().map_err(|source| ParentError { addr, source })?;
        let registry: Registry = Arc::default();
        let loop_to: Arc<Mutex<Option<LoopTarget>>> = Arc::default();
        let task = tokio::spawn(serve(listener, registry.clone(), loop_to.clone()));
        Ok(Arc::new(Parent { addr, registry, credentials, loop_to, task }))
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn credentials(&self) -> Option<&str> {
        self.credentials.as_deref()
    }

    /// Where `action = "loop"` sends the CONNECT back (without it, a loop script answers 502).
    pub fn set_loop_target(&self, target: LoopTarget) {
        *self.loop_to.lock().expect("parent loop target") = Some(target);
    }

    pub fn has_loop_target(&self) -> bool {
        self.loop_to.lock().expect("parent loop target").is_some()
    }

    /// Claims the CONNECTs to these ports for one scenario, until the lease is dropped.
    pub fn register(self: &Arc<Self>, ports: &[u16], script: ParentScript) -> ParentLease {
        let reg = Arc::new(Registration { script, ..Registration::default() });
        let mut map = self.registry.lock().expect("parent registry");
        for p in ports.iter().filter(|p| **p != 0) {
            map.insert(*p, reg.clone());
        }
        ParentLease { parent: self.clone(), ports: ports.to_vec(), reg }
    }
}

/// One scenario's registration; dropping it releases the ports.
pub struct ParentLease {
    parent: Arc<Parent>,
    ports: Vec<u16>,
    pub reg: Arc<Registration>,
}

impl ParentLease {
    pub fn parent(&self) -> &Parent {
        &self.parent
    }
}

impl Drop for ParentLease {
    fn drop(&mut self) {
        let mut map = self.parent.registry.lock().expect("parent registry");
        for p in &self.ports {
            if map.get(p).is_some_and(|r| Arc::ptr_eq(r, &self.reg)) {
                map.remove(p);
            }
        }
    }
}

/// Connections the parent serves at once; more wait in the listen queue (a flooding proxy stays bounded).
const MAX_CONNECTIONS: usize = 512;

async fn serve(listener: TcpListener, registry: Registry, loop_to: Arc<Mutex<Option<LoopTarget>>>) {
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else { return };
        let Ok((conn, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let registry = registry.clone();
        let loop_to = loop_to.lock().expect("parent loop target").clone();
        tokio::spawn(async move {
            handle(conn, registry, loop_to).await;
            drop(permit);
        });
    }
}

/// The target's port: after the last colon (bracketed IPv6 included).
fn target_port(target: &str) -> Option<u16> {
    target.rsplit_once(':').and_then(|(_, p)| p.parse().ok())
}

async fn handle(mut conn: TcpStream, registry: Registry, loop_to: Option<LoopTarget>) {
    let _ = conn.set_nodelay(true);
    let mut buf = Vec::with_capacity(1024);
    let mut parser = HeadParser::new(Limits::default());
    let head_deadline = tokio::time::Instant::now() + HOLD;
    let parsed = loop {
        match tokio::time::timeout_at(head_deadline, conn.read_buf(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => return,
        }
        match parser.advance(&buf) {
            Ok(Progress::Complete(len)) => break Ok(len),
            Ok(Progress::Partial) if buf.len() < 64 * 1024 => {}
            Ok(Progress::Partial) => break Err("head larger than 64 KiB".to_string()),
            Err(e) => break Err(e.to_string()),
        }
    };
    let (record, head_len) = match parsed {
        Ok(len) => {
            let head = parser.head(&buf);
            let text = |b: &[u8]| crate::escape::escape(b, 4096);
            let line_end = buf.iter().position(|b| *b == b'\r').unwrap_or(0);
            let record = ParentRequest {
                request_line: text(&buf[..line_end]),
                target: head.target().to_string(),
                fields: head.fields().map(|f| (f.name.to_string(), text(f.value))).collect(),
                ..ParentRequest::default()
            };
            (record, len)
        }
        Err(why) => {
            // Recorded under the port its request line names (if any), then answered 400.
            let line_end = buf.iter().position(|b| *b == b'\r' || *b == b'\n').unwrap_or(buf.len().min(512));
            let line = &buf[..line_end];
            let target = String::from_utf8_lossy(line).split(' ').nth(1).unwrap_or_default().to_string();
            let record = ParentRequest {
                request_line: crate::escape::escape(line, 512),
                target: target.clone(),
                malformed: Some(why),
                ..ParentRequest::default()
            };
            let reg = target_port(&target).and_then(|p| registry.lock().expect("parent registry").get(&p).cloned());
            if let Some(r) = reg {
                r.record(record);
            }
            let _ = conn.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").await;
            return;
        }
    };
    let reg = target_port(&record.target).and_then(|p| registry.lock().expect("parent registry").get(&p).cloned());
    let script = reg.as_ref().map(|r| r.script.clone()).unwrap_or_default();
    let target = record.target.clone();
    let index = reg.as_ref().and_then(|r| r.record(record));
    let early = buf.split_off(head_len);
    let head = buf;
    match (script.action, script.respond) {
        (Some(Action::Close), _) => {}
        (Some(Action::Reset), _) => {
            let _ = socket2::SockRef::from(&conn).set_linger(Some(Duration::ZERO));
        }
        (Some(Action::Silence), _) => hold(conn, reg.as_deref(), index, Then::Hold).await,
        (Some(Action::Loop), _) => {
            let rounds = reg.as_ref().map_or(0, |r| r.requests().len());
            match loop_to {
                Some(to) if rounds <= MAX_LOOP_ROUNDS => {
                    loop_back(conn, &to, &head, early, reg.as_deref(), index).await
                }
                Some(_) => {
                    let answer = "HTTP/1.1 508 Loop Detected\r\nProxy-Status: connect-harness-parent; error=proxy_loop_detected; details=\"the parent stopped a loop the proxy under test did not\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
                    let _ = conn.write_all(answer.as_bytes()).await;
                }
                None => {
                    let answer = "HTTP/1.1 502 Bad Gateway\r\nProxy-Status: connect-harness-parent; error=proxy_configuration_error; details=\"no loop target: the parent does not know the proxy under test's plain address\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
                    let _ = conn.write_all(answer.as_bytes()).await;
                }
            }
        }
        (None, Some(answer)) => {
            let success = answer.starts_with("HTTP/1.1 2") || answer.starts_with("HTTP/1.0 2");
            if conn.write_all(answer.as_bytes()).await.is_err() {
                return;
            }
            if success {
                tunnel(conn, &target, early).await;
            } else {
                if let (Some(r), Some(i)) = (&reg, index)
                    && !early.is_empty()
                {
                    r.client_bytes(i, &early, true);
                }
                hold(conn, reg.as_deref(), index, script.then).await;
            }
        }
        (None, None) => match dial(&target).await {
            Ok(up) => {
                if conn.write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n").await.is_ok() {
                    relay(conn, up, early).await;
                }
            }
            Err(answer) => {
                let _ = conn.write_all(answer.as_bytes()).await;
            }
        },
    }
}

/// Sends the CONNECT back to the proxy under test (as its client: the proxy's credentials for the parent
/// replaced by the client's) and relays both ways: the proxy's answer becomes the parent's.
async fn loop_back(
    mut conn: TcpStream,
    to: &LoopTarget,
    head: &[u8],
    early: Vec<u8>,
    reg: Option<&Registration>,
    index: Option<usize>,
) {
    let Ok(Ok(mut back)) = timeout(Duration::from_secs(5), TcpStream::connect(to.addr)).await else {
        let _ = conn.write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").await;
        return;
    };
    let mut request = as_client(head, to.client_credentials.as_deref());
    request.extend_from_slice(&early);
    if back.write_all(&request).await.is_err() {
        return;
    }
    // The proxy's answer to the looped CONNECT is recorded (its status line), then everything is relayed.
    let mut answer = Vec::new();
    let until = tokio::time::Instant::now() + HOLD;
    let mut chunk = [0u8; 2048];
    while !answer.windows(2).any(|w| w == b"\r\n") && answer.len() < 16 * 1024 {
        match tokio::time::timeout_at(until, back.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => answer.extend_from_slice(&chunk[..n]),
            _ => break,
        }
    }
    if let (Some(r), Some(i)) = (reg, index) {
        let line = answer.split(|b| *b == b'\r').next().unwrap_or_default();
        let shown =
            if answer.is_empty() { "nothing (it closed)".to_string() } else { crate::escape::escape(line, 200) };
        r.looped_answer(i, shown);
    }
    if conn.write_all(&answer).await.is_err() {
        return;
    }
    let _ = tokio::time::timeout(HOLD, tokio::io::copy_bidirectional(&mut conn, &mut back)).await;
}

/// A request head with its Proxy-Authorization lines replaced by the client's credentials (or removed).
fn as_client(head: &[u8], credentials: Option<&str>) -> Vec<u8> {
    let text = String::from_utf8_lossy(head);
    let mut lines: Vec<String> = text
        .split("\r\n")
        .filter(|l| !l.to_ascii_lowercase().starts_with("proxy-authorization:"))
        .map(str::to_owned)
        .collect();
    // The head ends with "\r\n\r\n": the last two split pieces are empty.
    if let Some(c) = credentials {
        let at = lines.len().saturating_sub(2);
        let token = base64::engine::general_purpose::STANDARD.encode(c);
        lines.insert(at, format!("Proxy-Authorization: Basic {token}"));
    }
    lines.join("\r\n").into_bytes()
}

/// Keeps the connection (when `Hold`) and records what arrives, until EOF or the hold time.
async fn hold(mut conn: TcpStream, reg: Option<&Registration>, index: Option<usize>, then: Then) {
    if then == Then::Close {
        let _ = conn.shutdown().await;
    }
    let mut chunk = vec![0u8; 4096];
    let until = tokio::time::Instant::now() + HOLD;
    while let Ok(Ok(n)) = tokio::time::timeout_at(until, conn.read(&mut chunk)).await {
        if n == 0 {
            break;
        }
        if let (Some(r), Some(i)) = (reg, index) {
            r.client_bytes(i, &chunk[..n], false);
        }
    }
}

/// Connects to a loopback target (names resolve only to loopback), or says why not as a response.
async fn dial(target: &str) -> Result<TcpStream, String> {
    let refuse = |status: &str, error: &str, details: String| {
        format!(
            "HTTP/1.1 {status}\r\nProxy-Status: connect-harness-parent; error={error}; details=\"{details}\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
    };
    let Some((host, port)) = target.rsplit_once(':').and_then(|(h, p)| Some((h, p.parse::<u16>().ok()?))) else {
        return Err(refuse("400 Bad Request", "http_request_error", format!("no port in {target}")));
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ips: Vec<IpAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) if host.eq_ignore_ascii_case("localhost") => vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
        Err(_) => match timeout(Duration::from_secs(5), tokio::net::lookup_host((host, port))).await {
            Ok(Ok(addrs)) => addrs.map(|a| a.ip()).collect(),
            _ => return Err(refuse("502 Bad Gateway", "dns_error", format!("{host} does not resolve"))),
        },
    };
    let Some(ip) = ips.into_iter().find(IpAddr::is_loopback) else {
        return Err(refuse("403 Forbidden", "destination_ip_prohibited", "the parent tunnels to loopback only".into()));
    };
    match timeout(Duration::from_secs(5), TcpStream::connect((ip, port))).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            Err(refuse("502 Bad Gateway", "connection_refused", format!("{ip}:{port} refused the connection")))
        }
        _ => Err(refuse("504 Gateway Timeout", "connection_timeout", format!("{ip}:{port} did not answer"))),
    }
}

/// Tunnels to the target after a scripted 2xx (a refusal to connect just closes: the 2xx is already out).
async fn tunnel(conn: TcpStream, target: &str, early: Vec<u8>) {
    if let Ok(up) = dial(target).await {
        relay(conn, up, early).await;
    }
}

/// Relays both ways with half-close, until both directions end (at most [`MAX_TUNNEL`]).
async fn relay(mut conn: TcpStream, mut up: TcpStream, early: Vec<u8>) {
    if !early.is_empty() && up.write_all(&early).await.is_err() {
        return;
    }
    let _ = tokio::time::timeout(MAX_TUNNEL, tokio::io::copy_bidirectional(&mut conn, &mut up)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_looped_request_carries_the_clients_credentials_not_the_proxys() {
        let head = b"CONNECT a:1 HTTP/1.1\r\nHost: a:1\r\nVia: 1.1 p\r\nProxy-Authorization: Basic cGFyZW50\r\n\r\n";
        let out = String::from_utf8(as_client(head, Some("u:p"))).unwrap();
        assert_eq!(out, "CONNECT a:1 HTTP/1.1\r\nHost: a:1\r\nVia: 1.1 p\r\nProxy-Authorization: Basic dTpw\r\n\r\n");
        let out = String::from_utf8(as_client(head, None)).unwrap();
        assert_eq!(out, "CONNECT a:1 HTTP/1.1\r\nHost: a:1\r\nVia: 1.1 p\r\n\r\n");
        assert_eq!(target_port("[::1]:8080"), Some(8080));
    }
}
