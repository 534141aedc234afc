//! Known deviations of a given proxy (`--expect FILE`): an expected failure does not fail the run, and an
//! unexpected pass is reported.
//!
//! ```toml
//! [[deviation]]
//! id = "rfc9110/9.3.6/*"      # glob on scenario ids
//! transport = "tls"           # optional: only on this transport
//! reason = "sends Content-Length: 0 on the 2xx (tracked upstream as #123)"
//! ```

use globset::{Glob, GlobMatcher};
use serde::Deserialize;

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
    matcher: GlobMatcher,
    reason: String,
    transport: Option<Transport>,
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
            rules.push(Rule { matcher, reason: d.reason, transport: d.transport });
        }
        Ok(Self(rules))
    }

    /// Marks the result when a deviation lists it.
    /// The reason of the first entry matching this id on this transport (used for fuzz findings).
    pub fn reason_for(&self, id: &str, transport: Transport) -> Option<&str> {
        self.0
            .iter()
            .find(|d| d.matcher.is_match(id) && d.transport.is_none_or(|t| t == transport))
            .map(|d| d.reason.as_str())
    }

    pub fn apply(&self, r: &mut ScenarioResult) {
        let Some(rule) =
            self.0.iter().find(|d| d.matcher.is_match(&r.id) && d.transport.is_none_or(|t| t == r.transport))
        else {
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
}
