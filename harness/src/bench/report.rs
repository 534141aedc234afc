//! The bench report: what was measured, on what, with what settings; printed as tables, written as JSON (with a
//! published schema), and compared with another report (`--compare A.json B.json`, ratios B/A).

use std::{collections::BTreeMap, fmt::Write as _};

use serde::{Deserialize, Serialize};

use super::throughput::Direction;
use crate::scenario::Transport;

/// A whole bench run.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct BenchReport {
    /// `connect-harness` and its version.
    pub tool: String,
    /// When the run started (RFC 3339, UTC).
    pub started: String,
    pub machine: Machine,
    /// Seconds each measured run aims at, and the repetitions (medians are over them).
    pub seconds: f64,
    pub rounds: usize,
    pub subjects: Vec<SubjectInfo>,
    pub throughput: Vec<ThroughputRow>,
    pub rate: Vec<RateRow>,
    pub idle: Vec<IdleRow>,
    /// What the reader should know: limits that shrank a phase, subjects without process accounting.
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Machine {
    pub cpus: usize,
    /// `uname -sr`.
    pub kernel: String,
    /// The open-file limit in force (raised to the hard limit at start).
    pub fd_limit: u64,
}

/// What a row was measured through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SubjectKind {
    /// The client straight to the origin: the baseline of every ratio.
    Direct,
    /// The bare splice relay (no HTTP): what relaying costs on this machine.
    Yardstick,
    /// A proxy, through a CONNECT tunnel.
    Proxy,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SubjectInfo {
    pub label: String,
    pub kind: SubjectKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transport: Option<Transport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The processes whose CPU and memory are the proxy's cost (`--pid`).
    pub pids: Vec<u32>,
    /// Process groups whose members (looked up at every reading) count too (`--pgid`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pgids: Vec<u32>,
    /// HTTP/2 only: CONNECT streams sharing one connection in each throughput run (the bytes split over them);
    /// such a subject is measured in the throughput phase only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub streams: Option<usize>,
}

impl SubjectInfo {
    /// The processes to account now; empty when none were named.
    pub fn processes(&self) -> Vec<u32> {
        super::procfs::resolve(&self.pids, &self.pgids)
    }

    /// Whether CPU and memory can be accounted.
    pub fn accounted(&self) -> bool {
        !self.pids.is_empty() || !self.pgids.is_empty()
    }
}

/// One subject, one direction.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ThroughputRow {
    pub subject: String,
    pub direction: Direction,
    /// Bytes of each run: calibrated on this subject's warm-up so a run lasts about `seconds`.
    pub bytes: u64,
    /// Median GiB/s over the rounds that completed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gib_per_s: Option<f64>,
    /// Every round's GiB/s.
    pub runs: Vec<f64>,
    /// The median against the direct path's median in the same run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vs_direct: Option<f64>,
    /// The proxy's CPU seconds per GiB relayed (an echo relays its bytes twice), median (`--pid`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_s_per_gib: Option<f64>,
    /// Why a round did not complete (the first such reason), e.g. a stalled proxy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One subject, one concurrency.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RateRow {
    pub subject: String,
    pub concurrency: usize,
    /// Median over the rounds.
    pub tunnels_per_s: f64,
    pub runs: Vec<f64>,
    /// Setup latency (TCP connect to 2xx, TLS included) of the median round, in ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p50_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p99_ms: Option<f64>,
    /// Failed setups by kind (`connect`, `tls`, `timeout`, `status-403`, `closed`, `garbage`), all rounds.
    pub errors: BTreeMap<String, u64>,
    /// The proxy's CPU milliseconds per tunnel, median (`--pid`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_ms_per_tunnel: Option<f64>,
    /// No tunnel opened and at least one setup timed out: the proxy does not answer.
    pub stalled: bool,
}

/// One subject, one tunnel count.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct IdleRow {
    pub subject: String,
    pub requested: usize,
    pub opened: usize,
    pub errors: BTreeMap<String, u64>,
    /// Before the subject's first idle round (memory freed after a round stays with the allocator); for a subject
    /// sharing processes with one measured before it in the round, right before its own round.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_before_kib: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_with_kib: Option<u64>,
    /// (RSS with the tunnels − before) / opened.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_kib_per_tunnel: Option<f64>,
    /// The same with PSS (shared pages divided among the processes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pss_kib_per_tunnel: Option<f64>,
}

/// The median of a non-empty list.
pub fn median(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let m = s.len() / 2;
    Some(if s.len() % 2 == 1 { s[m] } else { (s[m - 1] + s[m]) / 2.0 })
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map(|x| format!("{x:.digits$}")).unwrap_or_else(|| "–".into())
}

impl BenchReport {
    /// The report as Markdown tables (the terminal output, and `reports/bench.md`).
    pub fn to_markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{} · {} · {} CPUs · {} · {} s per run, median of {}\n",
            self.tool, self.started, self.machine.cpus, self.machine.kernel, self.seconds, self.rounds,
        );
        if !self.throughput.is_empty() {
            let _ = writeln!(s, "### Throughput, one tunnel\n");
            let _ = writeln!(
                s,
                "| subject | upload GiB/s (× direct) | download GiB/s (× direct) | echo GiB/s (× direct) | CPU s/GiB up / down / echo |"
            );
            let _ = writeln!(s, "|---|---|---|---|---|");
            for subj in &self.subjects {
                let row = |d: Direction| self.throughput.iter().find(|r| r.subject == subj.label && r.direction == d);
                let cell = |d: Direction| match row(d) {
                    None => "–".to_string(),
                    Some(r) => match (r.gib_per_s, &r.error) {
                        (Some(g), _) => format!("{g:.2} ({})", opt(r.vs_direct, 2)),
                        (None, Some(e)) => format!("failed: {e}"),
                        (None, None) => "–".into(),
                    },
                };
                let cpu: Vec<String> =
                    Direction::ALL.iter().map(|d| opt(row(*d).and_then(|r| r.cpu_s_per_gib), 2)).collect();
                if Direction::ALL.iter().all(|d| row(*d).is_none()) {
                    continue;
                }
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {} |",
                    subj.label,
                    cell(Direction::Upload),
                    cell(Direction::Download),
                    cell(Direction::Echo),
                    cpu.join(" / ")
                );
            }
            s.push('\n');
        }
        if !self.rate.is_empty() {
            let _ = writeln!(s, "### Tunnel setup rate\n");
            let _ = writeln!(s, "| subject | clients | tunnels/s | p50 ms | p99 ms | CPU ms/tunnel | errors |");
            let _ = writeln!(s, "|---|---|---|---|---|---|---|");
            for r in &self.rate {
                let errors = if r.errors.is_empty() {
                    String::new()
                } else {
                    r.errors.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
                };
                let _ = writeln!(
                    s,
                    "| {} | {} | {:.0}{} | {} | {} | {} | {} |",
                    r.subject,
                    r.concurrency,
                    r.tunnels_per_s,
                    if r.stalled { " (stalled)" } else { "" },
                    opt(r.p50_ms, 2),
                    opt(r.p99_ms, 2),
                    opt(r.cpu_ms_per_tunnel, 3),
                    errors
                );
            }
            s.push('\n');
        }
        if !self.idle.is_empty() {
            let _ = writeln!(s, "### Idle tunnels\n");
            let _ = writeln!(
                s,
                "| subject | tunnels open | RSS KiB/tunnel | PSS KiB/tunnel | RSS before → with | errors |"
            );
            let _ = writeln!(s, "|---|---|---|---|---|---|");
            for r in &self.idle {
                let errors = r.errors.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ");
                let rss = match (r.rss_before_kib, r.rss_with_kib) {
                    (Some(a), Some(b)) => format!("{a} → {b} KiB"),
                    _ => "–".into(),
                };
                let _ = writeln!(
                    s,
                    "| {} | {} of {} | {} | {} | {} | {} |",
                    r.subject,
                    r.opened,
                    r.requested,
                    opt(r.rss_kib_per_tunnel, 1),
                    opt(r.pss_kib_per_tunnel, 1),
                    rss,
                    errors
                );
            }
            s.push('\n');
        }
        for n in &self.notes {
            let _ = writeln!(s, "- {n}");
        }
        s
    }
}

/// `--compare A B`: every figure both reports have, with B/A.
pub fn compare(a: &BenchReport, b: &BenchReport) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "| figure | A | B | B/A |\n|---|---|---|---|");
    let mut line = |name: String, x: Option<f64>, y: Option<f64>| {
        if let (Some(x), Some(y)) = (x, y) {
            let _ = writeln!(s, "| {name} | {x:.3} | {y:.3} | {:.2} |", y / x);
        }
    };
    for ra in &a.throughput {
        if let Some(rb) = b.throughput.iter().find(|r| r.subject == ra.subject && r.direction == ra.direction) {
            let k = format!("{} {}", ra.subject, ra.direction.as_str());
            line(format!("{k} GiB/s"), ra.gib_per_s, rb.gib_per_s);
            line(format!("{k} × direct"), ra.vs_direct, rb.vs_direct);
            line(format!("{k} CPU s/GiB"), ra.cpu_s_per_gib, rb.cpu_s_per_gib);
        }
    }
    for ra in &a.rate {
        if let Some(rb) = b.rate.iter().find(|r| r.subject == ra.subject && r.concurrency == ra.concurrency) {
            let k = format!("{} C={}", ra.subject, ra.concurrency);
            line(format!("{k} tunnels/s"), Some(ra.tunnels_per_s), Some(rb.tunnels_per_s));
            line(format!("{k} p99 ms"), ra.p99_ms, rb.p99_ms);
        }
    }
    for ra in &a.idle {
        if let Some(rb) = b.idle.iter().find(|r| r.subject == ra.subject && r.requested == ra.requested) {
            line(
                format!("{} {} idle RSS KiB/tunnel", ra.subject, ra.requested),
                ra.rss_kib_per_tunnel,
                rb.rss_kib_per_tunnel,
            );
        }
    }
    s
}

/// The JSON Schema of the report.
pub fn schema_json() -> String {
    crate::report::schema_json_of::<BenchReport>()
}
