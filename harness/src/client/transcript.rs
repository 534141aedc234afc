//! A bounded record of the bytes each way, with timestamps, for reports.

use std::time::Instant;

use schemars::JsonSchema;
use serde::Serialize;

use crate::escape;

/// At most this many entries are kept.
pub const MAX_ENTRIES: usize = 200;
/// At most this many bytes of one entry are rendered.
pub const MAX_ENTRY_BYTES: usize = 2048;
/// At most this many bytes are rendered over the whole transcript.
pub const MAX_TOTAL_BYTES: usize = 32 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Client to proxy.
    Sent,
    /// Proxy to client.
    Received,
    /// Something that happened (close, TLS handshake, bulk transfer summary).
    Event,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Entry {
    /// Milliseconds since the scenario started.
    pub t_ms: u64,
    pub dir: Direction,
    /// Bytes in this entry (0 for events).
    pub len: u64,
    /// The bytes, escaped and possibly cut short; for events, a description.
    pub data: String,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Transcript {
    pub entries: Vec<Entry>,
    /// Some entries or bytes were left out to respect the bounds.
    pub truncated: bool,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    #[serde(skip)]
    start: Option<Instant>,
    #[serde(skip)]
    rendered: usize,
}

impl Transcript {
    /// A placeholder, for moving a transcript out of a connection.
    pub fn empty() -> Self {
        Self::new(Instant::now())
    }

    pub fn new(start: Instant) -> Self {
        Self {
            entries: Vec::new(),
            truncated: false,
            bytes_sent: 0,
            bytes_received: 0,
            start: Some(start),
            rendered: 0,
        }
    }

    fn now(&self) -> u64 {
        self.start.map(|s| s.elapsed().as_millis() as u64).unwrap_or(0)
    }

    pub fn bytes(&mut self, dir: Direction, data: &[u8]) {
        match dir {
            Direction::Sent => self.bytes_sent += data.len() as u64,
            _ => self.bytes_received += data.len() as u64,
        }
        let room = MAX_TOTAL_BYTES.saturating_sub(self.rendered).min(MAX_ENTRY_BYTES);
        if self.entries.len() >= MAX_ENTRIES || room == 0 {
            self.truncated = true;
            return;
        }
        // Merge into the previous entry when the same direction continues (many small reads).
        if let Some(last) = self.entries.last_mut()
            && last.dir == dir
            && last.len as usize + data.len() <= MAX_ENTRY_BYTES
            && dir != Direction::Event
        {
            last.len += data.len() as u64;
            last.data.push_str(&escape::escape(data, room));
            self.rendered += data.len().min(room);
            return;
        }
        if data.len() > room {
            self.truncated = true;
        }
        let t_ms = self.now();
        self.entries.push(Entry { t_ms, dir, len: data.len() as u64, data: escape::escape(data, room) });
        self.rendered += data.len().min(room);
    }

    pub fn event(&mut self, text: impl Into<String>) {
        if self.entries.len() >= MAX_ENTRIES {
            self.truncated = true;
            return;
        }
        let t_ms = self.now();
        self.entries.push(Entry { t_ms, dir: Direction::Event, len: 0, data: text.into() });
    }

    /// Accounts bytes moved in bulk (echo, random data) without rendering them.
    pub fn bulk(&mut self, sent: u64, received: u64, text: impl Into<String>) {
        self.bytes_sent += sent;
        self.bytes_received += received;
        self.event(text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_bounded() {
        let mut t = Transcript::new(Instant::now());
        for i in 0..10_000 {
            let dir = if i % 2 == 0 { Direction::Sent } else { Direction::Received };
            t.bytes(dir, &[b'x'; 1000]);
        }
        assert!(t.truncated);
        assert!(t.entries.len() <= MAX_ENTRIES);
        let rendered: usize = t.entries.iter().map(|e| e.data.len()).sum();
        assert!(rendered <= MAX_TOTAL_BYTES + MAX_ENTRIES * 32, "{rendered}");
        assert_eq!(t.bytes_sent, 5_000_000);
    }
}
