//! Error-log correlation (`--proxy-log FILE`): the lines the proxy appended to its logs while a scenario ran
//! (Apache's AH codes, Squid's cache.log, …), attached to that scenario's result so a reader sees why the
//! proxy answered as it did. The file's length is noted before the scenario and the new bytes read after it,
//! bounded. With `--jobs` > 1 scenarios overlap and so do their lines: the excerpt is then marked approximate.

use std::{
    io::{Read, Seek, SeekFrom},
    path::PathBuf,
    time::Duration,
};

use schemars::JsonSchema;
use serde::Serialize;

/// At most this many lines per file and scenario are kept (the first ones)...
pub const MAX_LINES: usize = 200;
/// ...and at most this many bytes are read per file and scenario.
pub const MAX_BYTES: u64 = 64 * 1024;
/// Longer lines are cut here (with a marker).
pub const MAX_LINE_CHARS: usize = 2000;
/// After a scenario, a proxy may still be logging what it just did (a connection close): wait this long.
pub const SETTLE: Duration = Duration::from_millis(50);

/// What one log file gained while a scenario ran.
#[derive(Debug, Clone, Serialize, JsonSchema, PartialEq, Eq)]
pub struct LogExcerpt {
    /// The file, as given to `--proxy-log`.
    pub file: String,
    /// The new lines (lossy UTF-8, trailing newline removed).
    pub lines: Vec<String>,
    /// More was written than kept (see the limits in the harness docs).
    pub truncated: bool,
    /// Other scenarios ran at the same time (`--jobs` > 1), so some lines may belong to them.
    pub approximate: bool,
    /// The file could not be read (missing, permissions); the lines are then empty.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The log files to watch.
#[derive(Debug, Clone, Default)]
pub struct ProxyLogs {
    files: Vec<PathBuf>,
    approximate: bool,
}

/// Where each file ended when a scenario started.
#[derive(Debug, Clone)]
pub struct Marks(Vec<Option<u64>>);

impl ProxyLogs {
    /// `approximate`: scenarios run concurrently.
    pub fn new(files: Vec<PathBuf>, approximate: bool) -> Self {
        Self { files, approximate }
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Notes every file's current length (None when it cannot be read yet: everything then counts as new).
    pub fn mark(&self) -> Marks {
        Marks(self.files.iter().map(|f| std::fs::metadata(f).ok().map(|m| m.len())).collect())
    }

    /// What was appended since `marks`, per file; files that gained nothing are left out.
    pub fn since(&self, marks: &Marks) -> Vec<LogExcerpt> {
        self.files
            .iter()
            .zip(&marks.0)
            .filter_map(|(f, start)| {
                let name = f.display().to_string();
                match read_from(f, start.unwrap_or(0)) {
                    Ok((lines, truncated)) if lines.is_empty() && !truncated => None,
                    Ok((lines, truncated)) => {
                        Some(LogExcerpt { file: name, lines, truncated, approximate: self.approximate, error: None })
                    }
                    Err(e) => Some(LogExcerpt {
                        file: name,
                        lines: Vec::new(),
                        truncated: false,
                        approximate: self.approximate,
                        error: Some(e.to_string()),
                    }),
                }
            })
            .collect()
    }
}

/// Reads the complete lines after `start` (bounded). A file that shrank was rotated or truncated: read it
/// from the beginning.
fn read_from(path: &std::path::Path, start: u64) -> std::io::Result<(Vec<String>, bool)> {
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    let start = if len < start { 0 } else { start };
    // Read from one byte before the mark: when the mark fell inside a line (the proxy was writing it), the rest of
    // that line belongs before the mark, where it was already kept as a last line without its newline.
    let from = start.saturating_sub(1);
    f.seek(SeekFrom::Start(from))?;
    let mut buf = Vec::new();
    f.take(MAX_BYTES + 1).read_to_end(&mut buf)?;
    if start > 0 && !buf.is_empty() {
        let skip = if buf[0] == b'\n' { 1 } else { buf.iter().position(|&b| b == b'\n').map_or(buf.len(), |i| i + 1) };
        buf.drain(..skip);
    }
    let mut truncated = len - start > MAX_BYTES;
    // A last line without its newline is still being written (or was cut by MAX_BYTES): keep it anyway.
    let text = String::from_utf8_lossy(&buf);
    let mut lines = Vec::new();
    for line in text.lines() {
        if lines.len() == MAX_LINES {
            truncated = true;
            break;
        }
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.chars().count() > MAX_LINE_CHARS {
            let cut: String = line.chars().take(MAX_LINE_CHARS).collect();
            lines.push(format!("{cut}…[line cut]"));
        } else {
            lines.push(line.to_string());
        }
    }
    Ok((lines, truncated))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("proxy-log-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        dir
    }

    #[test]
    fn only_new_lines_are_attached() {
        let p = temp("new");
        std::fs::write(&p, "old line\n").unwrap();
        let logs = ProxyLogs::new(vec![p.clone()], false);
        let m = logs.mark();
        assert!(logs.since(&m).is_empty(), "nothing new yet");
        let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"[proxy:error] AH00898: blocked\r\nsecond\n").unwrap();
        let got = logs.since(&m);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].lines, vec!["[proxy:error] AH00898: blocked", "second"]);
        assert!(!got[0].truncated && !got[0].approximate && got[0].error.is_none());
        let _ = std::fs::remove_file(&p);
    }

    #[test]
    fn bounded_and_truncation_aware() {
        let p = temp("bounded");
        std::fs::write(&p, "").unwrap();
        let logs = ProxyLogs::new(vec![p.clone()], true);
        let m = logs.mark();
        let many: String = (0..MAX_LINES + 5).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&p, many).unwrap();
        let got = logs.since(&m);
        assert_eq!(got[0].lines.len(), MAX_LINES);
        assert!(got[0].truncated && got[0].approximate);
        // The file was replaced by a shorter one (a new proxy start): read from the start.
        let m = logs.mark();
        std::fs::write(&p, "fresh\n").unwrap();
        assert_eq!(logs.since(&m)[0].lines, vec!["fresh"]);
        let _ = std::fs::remove_file(&p);
    }

    #[test]
    fn a_line_being_written_at_the_mark_stays_before_it() {
        let p = temp("partial");
        std::fs::write(&p, "first\nsecond-half").unwrap();
        let logs = ProxyLogs::new(vec![p.clone()], false);
        let m = logs.mark();
        let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"-written\nthird\n").unwrap();
        assert_eq!(logs.since(&m)[0].lines, vec!["third"]);
        // A mark right after a newline keeps the next line whole.
        let m = logs.mark();
        f.write_all(b"fourth\n").unwrap();
        assert_eq!(logs.since(&m)[0].lines, vec!["fourth"]);
    }

    #[test]
    fn missing_file_is_reported_not_fatal() {
        let p = temp("missing");
        let logs = ProxyLogs::new(vec![p.clone()], false);
        let m = logs.mark();
        let got = logs.since(&m);
        assert_eq!(got.len(), 1);
        assert!(got[0].error.is_some() && got[0].lines.is_empty());
    }
}
