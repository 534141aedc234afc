//! Known deviations of a given proxy (`--expect FILE`): an expected failure does not fail the run; an
//! unexpected pass and a stale entry do, so the file stays true of the proxy (this is the check CI runs on the
//! interop proxies).
//!
//! ```toml
//! [[deviation]]
//! id = "rfc9110/9.3.6/*"      # glob on scenario ids
//! transport = "tls"           # optional: only on this transport
//! reason = "sends Content-Length: 0 on the 2xx (tracked upstream as #123)"
//! ```

use globset::{Glob, GlobMatcher};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{
    judge::Verdict,
    report::{DeviationMatch, ScenarioResult},
    scenario::Transport,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    deviation: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    id: String,
    reason: String,
    #[serde(default)]
    transport: Option<Transport>,
}

struct Rule {
    pattern: String,
    matcher: GlobMatcher,
    reason: String,
    transport: Option<Transport>,
}

impl Rule {
    /// Whether this entry lists the scenario `id` on `transport`.
    fn lists(&self, id: &str, transport: Transport) -> bool {
        self.matcher.is_match(id) && self.transport.is_none_or(|t| t == transport)
    }
}

/// The parsed expectation file; empty when none was given.
#[derive(Default)]
pub struct Deviations(Vec<Rule>);

impl Deviations {
    /// Parses the file's text; errors name the file, line and problem.
    pub fn parse(name: &str, text: &str) -> Result<Self, String> {
        let f: File = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| text[..s.start].matches('\n').count() + 1).unwrap_or(0);
            format!("{name}:{line}: {}", e.message())
        })?;
        let mut rules = Vec::new();
        for d in f.deviation {
            let matcher =
                Glob::new(&d.id).map_err(|e| format!("{name}: deviation id {:?}: {e}", d.id))?.compile_matcher();
            rules.push(Rule { pattern: d.id, matcher, reason: d.reason, transport: d.transport });
        }
        Ok(Self(rules))
    }

    /// The reason of the first entry matching this id on this transport (used for fuzz findings).
    pub fn reason_for(&self, id: &str, transport: Transport) -> Option<&str> {
        self.0.iter().find(|d| d.lists(id, transport)).map(|d| d.reason.as_str())
    }

    /// The entries whose `id` glob matches none of these scenario ids (a typo, or a scenario renamed since).
    pub fn unmatched<'a>(&self, ids: impl Iterator<Item = &'a str> + Clone) -> Vec<&str> {
        self.0
            .iter()
            .filter(|rule| !ids.clone().any(|id| rule.matcher.is_match(id)))
            .map(|rule| rule.pattern.as_str())
            .collect()
    }

    /// Marks the result when a deviation lists it.
    pub fn apply(&self, r: &mut ScenarioResult) {
        let Some(rule) = self.0.iter().find(|d| d.lists(&r.id, r.transport)) else {
            return;
        };
        r.deviation = match r.verdict {
            Verdict::Fail | Verdict::Warn => {
                Some(DeviationMatch { reason: rule.reason.clone(), unexpected_pass: false })
            }
            Verdict::Pass => Some(DeviationMatch { reason: rule.reason.clone(), unexpected_pass: true }),
            _ => None,
        };
    }

    /// Entries that no longer describe the proxy: the results they list are now observed (recorded, not judged)
    /// and none is a failure, a warning or a pass. An entry that listed no result of this run (another
    /// transport), or only inconclusive, setup or error ones, is not stale. The runner does not call this for
    /// one shard of a run, which sees only part of an entry's results.
    pub fn stale(&self, results: &[ScenarioResult]) -> Vec<Stale> {
        let mut out = Vec::new();
        for rule in &self.0 {
            let ran: Vec<Verdict> = results
                .iter()
                .filter(|r| rule.lists(&r.id, r.transport))
                .map(|r| r.verdict)
                .filter(|v| *v != Verdict::Skip)
                .collect();
            // Only `observed` proves the entry wrong: a result that is inconclusive, a setup failure or an error
            // this time says nothing about the deviation (and is reported on its own).
            if ran.contains(&Verdict::Observed)
                && !ran.iter().any(|v| matches!(v, Verdict::Fail | Verdict::Warn | Verdict::Pass))
            {
                let mut now = ran;
                now.sort();
                now.dedup();
                out.push(Stale { id: rule.pattern.clone(), transport: rule.transport, now });
            }
        }
        out
    }
}

/// An `--expect` entry whose results are no longer failures, warnings or passes.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Stale {
    /// The entry's `id` glob.
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transport: Option<Transport>,
    /// The verdicts its results have now.
    pub now: Vec<Verdict>,
}

impl std::fmt::Display for Stale {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let now: Vec<&str> = self.now.iter().map(|v| v.as_str()).collect();
        write!(f, "{}", self.id)?;
        if let Some(t) = self.transport {
            write!(f, " [{}]", t.as_str())?;
        }
        write!(f, " lists results that are only {} in this run (not failures)", now.join(", "))
    }
}
