//! Findings about the run as a whole. Today one kind: the proxy stopped answering (our connections or TLS
//! handshakes to it failed twice) for a while. Each stretch is reported with when it happened and which
//! scenarios ran just before, since one of them probably caused it.

use schemars::JsonSchema;
use serde::Serialize;

use super::ScenarioResult;
use crate::{judge::Verdict, scenario::Transport};

/// Setup failures less than this far apart belong to one stretch.
const GAP_MS: u64 = 5_000;
/// Scenarios that started up to this long before a stretch are listed as "just before".
const BEFORE_MS: u64 = 3_000;
/// At most this many ids per list.
const LIST: usize = 12;

#[derive(Debug, Clone, Serialize, JsonSchema, PartialEq, Eq)]
pub struct Finding {
    /// "unresponsive": the proxy did not complete connections or TLS handshakes (after a retry).
    pub kind: String,
    pub transport: Transport,
    /// The first and last affected scenario's start, in milliseconds since the run started.
    pub from_ms: u64,
    pub to_ms: u64,
    /// How many scenario runs could not be set up in this stretch.
    pub setup_failures: usize,
    /// Some of those runs.
    pub affected: Vec<String>,
    /// Scenarios that started shortly before the stretch and were not themselves affected: candidates for
    /// what made the proxy stop answering.
    pub just_before: Vec<String>,
}

/// The stretches during which the proxy stopped answering, per transport.
pub fn unresponsive(results: &[ScenarioResult]) -> Vec<Finding> {
    let mut out = Vec::new();
    for transport in Transport::ALL {
        let mut failed: Vec<&ScenarioResult> =
            results.iter().filter(|r| r.transport == transport && r.verdict == Verdict::Setup).collect();
        failed.sort_by_key(|r| r.started_ms);
        let mut stretches: Vec<Vec<&ScenarioResult>> = Vec::new();
        for r in failed {
            match stretches.last_mut() {
                Some(s) if r.started_ms <= s.last().map_or(0, |l| l.started_ms) + GAP_MS => s.push(r),
                _ => stretches.push(vec![r]),
            }
        }
        for s in stretches {
            let from = s[0].started_ms;
            let to = s.last().map_or(from, |l| l.started_ms);
            let mut before: Vec<&ScenarioResult> = results
                .iter()
                .filter(|r| r.transport == transport && r.verdict != Verdict::Setup && r.verdict != Verdict::Skip)
                .filter(|r| r.started_ms <= from && r.started_ms + BEFORE_MS >= from)
                .collect();
            before.sort_by_key(|r| std::cmp::Reverse(r.started_ms));
            out.push(Finding {
                kind: "unresponsive".into(),
                transport,
                from_ms: from,
                to_ms: to,
                setup_failures: s.len(),
                affected: s.iter().take(LIST).map(|r| r.id.clone()).collect(),
                just_before: before.iter().take(LIST).map(|r| r.id.clone()).collect(),
            });
        }
    }
    out
}

impl Finding {
    /// One paragraph for the terminal.
    pub fn describe(&self) -> String {
        format!(
            "The proxy stopped answering ({}) from +{:.1}s to +{:.1}s: {} scenario run(s) could not connect or \
             complete the TLS handshake, even after a retry (e.g. {}). Scenarios that ran just before, one of which \
             probably caused it: {}.",
            self.transport.as_str(),
            self.from_ms as f64 / 1000.0,
            self.to_ms as f64 / 1000.0,
            self.setup_failures,
            self.affected.iter().take(3).cloned().collect::<Vec<_>>().join(", "),
            if self.just_before.is_empty() { "none recorded".to_string() } else { self.just_before.join(", ") }
        )
    }
}
