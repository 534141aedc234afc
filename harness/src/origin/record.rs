//! What the origins saw, per connection; shared between origin tasks and the step executor.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Instant,
};

use schemars::JsonSchema;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::Notify;

use crate::{escape, scenario::OriginKind};

/// Bytes kept per connection for prefix and substring checks (the hash covers everything).
pub const KEEP_BYTES: usize = 64 * 1024;
/// Connections recorded per scenario; a proxy that connects more often than this is only counted.
pub const MAX_RECORDS: usize = 4096;

#[derive(Debug, Clone)]
struct Record {
    origin: OriginKind,
    peer: SocketAddr,
    at_ms: u64,
    bytes_in: u64,
    bytes_out: u64,
    hasher: Sha256,
    kept: Vec<u8>,
    sni: Option<String>,
    alpn: Vec<String>,
    end: Option<ConnEnd>,
}

/// How an origin connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConnEnd {
    /// The peer (the proxy) closed its side cleanly.
    Eof,
    /// The connection failed (reset, TLS error).
    Error,
    /// The origin closed it (banner sent, idle deadline).
    OriginClosed,
}

/// One connection an origin accepted, as reported.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct OriginConnection {
    pub origin: OriginKind,
    pub peer: String,
    /// Milliseconds since the scenario's origins started.
    pub at_ms: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// SHA-256 of every byte received.
    pub sha256_in: String,
    /// The first bytes received, escaped.
    pub first_bytes: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub alpn_offered: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end: Option<ConnEnd>,
}

/// A consistent copy of one record, with the data checks need.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub report: OriginConnection,
    pub kept: Vec<u8>,
    pub sha256: [u8; 32],
}

/// The per-scenario log of origin connections.
#[derive(Debug)]
pub struct OriginLog {
    start: Instant,
    records: Mutex<Records>,
    changed: Notify,
}

/// Records of the current generation; `clear` starts a new one so stale handles update nothing.
#[derive(Debug, Default)]
struct Records {
    generation: u64,
    list: Vec<Record>,
    /// Connections beyond [`MAX_RECORDS`].
    overflow: u64,
}

impl Default for OriginLog {
    fn default() -> Self {
        Self { start: Instant::now(), records: Mutex::new(Records::default()), changed: Notify::new() }
    }
}

/// A handle an origin task uses to update its connection's record.
#[derive(Clone)]
pub struct ConnHandle {
    log: Arc<OriginLog>,
    generation: u64,
    idx: usize,
}

impl OriginLog {
    pub fn open(self: &Arc<Self>, origin: OriginKind, peer: SocketAddr) -> ConnHandle {
        let mut recs = self.records.lock().expect("origin log lock");
        let generation = recs.generation;
        if recs.list.len() >= MAX_RECORDS {
            recs.overflow += 1;
            drop(recs);
            self.changed.notify_waiters();
            return ConnHandle { log: self.clone(), generation, idx: usize::MAX };
        }
        recs.list.push(Record {
            origin,
            peer,
            at_ms: self.start.elapsed().as_millis() as u64,
            bytes_in: 0,
            bytes_out: 0,
            hasher: Sha256::new(),
            kept: Vec::new(),
            sni: None,
            alpn: Vec::new(),
            end: None,
        });
        let idx = recs.list.len() - 1;
        drop(recs);
        self.changed.notify_waiters();
        ConnHandle { log: self.clone(), generation, idx }
    }

    pub fn snapshot(&self) -> Vec<Snapshot> {
        let recs = self.records.lock().expect("origin log lock");
        recs.list
            .iter()
            .map(|r| {
                let sha: [u8; 32] = r.hasher.clone().finalize().into();
                Snapshot {
                    report: OriginConnection {
                        origin: r.origin,
                        peer: r.peer.to_string(),
                        at_ms: r.at_ms,
                        bytes_in: r.bytes_in,
                        bytes_out: r.bytes_out,
                        sha256_in: escape::hex(&sha),
                        first_bytes: escape::escape(&r.kept, 64),
                        sni: r.sni.clone(),
                        alpn_offered: r.alpn.clone(),
                        end: r.end,
                    },
                    kept: r.kept.clone(),
                    sha256: sha,
                }
            })
            .collect()
    }

    /// Connections accepted but not recorded (beyond [`MAX_RECORDS`]).
    pub fn overflow(&self) -> u64 {
        self.records.lock().expect("origin log lock").overflow
    }

    /// Resolves on the next change (register before checking the condition to not miss one).
    pub fn changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.changed.notified()
    }

    /// Forget everything (when a pooled origin set starts a new scenario).
    pub fn clear(&self) {
        let mut recs = self.records.lock().expect("origin log lock");
        recs.generation += 1;
        recs.list.clear();
        recs.overflow = 0;
    }

    fn update(&self, generation: u64, idx: usize, f: impl FnOnce(&mut Record)) {
        let mut recs = self.records.lock().expect("origin log lock");
        if recs.generation != generation {
            return;
        }
        if let Some(r) = recs.list.get_mut(idx) {
            f(r);
        }
        drop(recs);
        self.changed.notify_waiters();
    }
}

impl ConnHandle {
    pub fn received(&self, data: &[u8]) {
        self.log.update(self.generation, self.idx, |r| {
            r.bytes_in += data.len() as u64;
            r.hasher.update(data);
            let room = KEEP_BYTES.saturating_sub(r.kept.len());
            r.kept.extend_from_slice(&data[..data.len().min(room)]);
        });
    }

    pub fn sent(&self, n: usize) {
        self.log.update(self.generation, self.idx, |r| r.bytes_out += n as u64);
    }

    pub fn tls_hello(&self, sni: Option<String>, alpn: Vec<String>) {
        self.log.update(self.generation, self.idx, |r| {
            r.sni = sni;
            r.alpn = alpn;
        });
    }

    pub fn end(&self, how: ConnEnd) {
        self.log.update(self.generation, self.idx, |r| {
            r.end.get_or_insert(how);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_bounded_and_generations_isolated() {
        let log = Arc::new(OriginLog::default());
        let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let first = log.open(OriginKind::Echo, peer);
        first.received(&vec![b'x'; KEEP_BYTES + 10]);
        for _ in 0..MAX_RECORDS + 9 {
            log.open(OriginKind::Sink, peer).received(b"y");
        }
        let snap = log.snapshot();
        assert_eq!(snap.len(), MAX_RECORDS);
        assert_eq!(log.overflow(), 10);
        assert_eq!(snap[0].kept.len(), KEEP_BYTES);
        assert_eq!(snap[0].report.bytes_in, (KEEP_BYTES + 10) as u64);
        // After a clear, a stale handle from the previous scenario changes nothing.
        log.clear();
        let fresh = log.open(OriginKind::Echo, peer);
        first.received(b"stale");
        fresh.received(b"new");
        let snap = log.snapshot();
        assert_eq!(snap.len(), 1);
        assert_eq!(snap[0].kept, b"new");
    }
}
