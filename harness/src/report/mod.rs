//! The run report: its types (which generate the JSON Schema) and the consumers of runner events.

pub mod diff;
pub mod findings;
pub mod html;
pub mod json;
pub mod junit;
pub mod load;
pub mod markdown;
pub mod merge;
pub mod terminal;

use schemars::JsonSchema;
use serde::Serialize;

use crate::{
    client::transcript::Transcript,
    exec::{ProxyTls, observe::Observed, report::StepReport},
    judge::Verdict,
    origin::OriginConnection,
    scenario::{Level, Transport},
};

/// Bumped on any incompatible change to the report format.
pub const SCHEMA_VERSION: u32 = 3;

/// The JSON report written by `--report`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Report {
    pub schema_version: u32,
    pub metadata: Metadata,
    pub summary: Summary,
    /// What the run found beyond single scenarios: moments when the proxy stopped answering.
    pub findings: Vec<findings::Finding>,
    /// `--expect` entries that no longer describe the proxy (their results are now only observed, inconclusive,
    /// setup or error); they fail the run.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stale_expectations: Vec<crate::expect::Stale>,
    /// One per scenario and transport, sorted by id then transport.
    pub results: Vec<ScenarioResult>,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Metadata {
    pub harness_version: String,
    /// The proxy under test ("embedded reference proxy" or its URL).
    pub target: String,
    pub transports: Vec<Transport>,
    /// RFC 3339, UTC.
    pub start_time: String,
    pub duration_ms: u64,
    pub jobs: usize,
    pub step_timeout_ms: u64,
    pub fail_on: Level,
    /// What the proxy answered to the preflight CONNECTs (its policy, as seen before the suite).
    pub preflight: Vec<crate::preflight::Probe>,
    /// `I/N` when this run was one shard of N (`run --shard`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
    /// The shard reports this one was merged from (`report merge`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub merged_from: Vec<String>,
    /// Written with `--compact`: results that need no reading keep only their verdict (see `run --help`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub compact: bool,
}

#[derive(Debug, Clone, Default, Serialize, JsonSchema, PartialEq, Eq)]
pub struct Summary {
    pub total: usize,
    pub passed: usize,
    pub failed: usize,
    pub warned: usize,
    pub observed: usize,
    pub skipped: usize,
    /// The proxy refused the destination by policy: the requirement was not exercised (never fails a run).
    pub inconclusive: usize,
    /// Our setup toward the proxy failed (TLS handshake, connection), even after a retry.
    pub setup_failures: usize,
    pub errors: usize,
    /// Failures or warnings listed in the `--expect` file (they do not fail the run).
    pub expected_failures: usize,
    /// Scenarios listed in the `--expect` file that passed.
    pub unexpected_passes: usize,
}

impl Summary {
    pub fn from_results(results: &[ScenarioResult]) -> Self {
        let mut s = Summary { total: results.len(), ..Default::default() };
        for r in results {
            match r.verdict {
                Verdict::Pass => s.passed += 1,
                Verdict::Fail => s.failed += 1,
                Verdict::Warn => s.warned += 1,
                Verdict::Observed => s.observed += 1,
                Verdict::Skip => s.skipped += 1,
                Verdict::Inconclusive => s.inconclusive += 1,
                Verdict::Setup => s.setup_failures += 1,
                Verdict::Error => s.errors += 1,
            }
            if let Some(d) = &r.deviation {
                if d.unexpected_pass {
                    s.unexpected_passes += 1;
                } else {
                    s.expected_failures += 1;
                }
            }
        }
        s
    }
}

/// A known deviation from the `--expect` file that matched this result.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct DeviationMatch {
    pub reason: String,
    /// The scenario was expected to fail but passed.
    pub unexpected_pass: bool,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ScenarioResult {
    pub id: String,
    /// The scenario's texts (title, requirement, section, source, catalog) are left out of results that need no
    /// reading in a `--compact` report: the scenario catalog of the harness version has them.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub title: String,
    pub level: Level,
    /// The requirement, quoted from the RFC.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub requirement: String,
    /// RFC and section, e.g. "RFC 9110 §9.3.6".
    #[serde(skip_serializing_if = "String::is_empty")]
    pub section: String,
    pub transport: Transport,
    pub verdict: Verdict,
    /// Why the verdict is not `pass`: the step that decided it, or why it was skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The outcomes the scenario accepts, per `expect` step.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub acceptable: Vec<String>,
    /// What the last response read looked like.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed: Option<Observed>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<StepReport>,
    /// Connections the origins accepted during this scenario.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub origins: Vec<OriginConnection>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<ProxyTls>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transcript: Option<Transcript>,
    pub duration_ms: u64,
    /// When the scenario started, in milliseconds since the run started.
    pub started_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deviation: Option<DeviationMatch>,
    /// Lines the proxy wrote to its logs (`--proxy-log`) while this scenario ran.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub proxy_log: Vec<crate::proxy_log::LogExcerpt>,
    /// Where the scenario is defined.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub source: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub catalog: Vec<String>,
}

impl ScenarioResult {
    /// A failure or warning the `--expect` file lists.
    pub fn is_expected_failure(&self) -> bool {
        self.deviation.as_ref().is_some_and(|d| !d.unexpected_pass)
    }

    /// A pass the `--expect` file lists as failing (the file is out of date; it fails the run).
    pub fn is_unexpected_pass(&self) -> bool {
        self.deviation.as_ref().is_some_and(|d| d.unexpected_pass)
    }

    /// Whether this result counts against the run at the `fail_on` level.
    pub fn counts_as_failure(&self, fail_on: Level) -> bool {
        !self.is_expected_failure()
            && match self.verdict {
                Verdict::Fail => true,
                Verdict::Warn => fail_on == Level::Should,
                _ => false,
            }
    }
}

/// Formats a time as RFC 3339 UTC (no external time crate needed).
pub fn rfc3339(t: std::time::SystemTime) -> String {
    let secs = t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// The JSON Schema of [`Report`], as committed under `reports/schema/`.
pub fn schema_json() -> String {
    schema_json_of::<Report>()
}

/// The JSON Schema of a report type, pretty-printed with a final newline (as committed under reports/schema/).
pub fn schema_json_of<T: schemars::JsonSchema>() -> String {
    let schema = schemars::schema_for!(T);
    let mut s = serde_json::to_string_pretty(&schema).expect("schema serializes");
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_known_dates() {
        let t = |s| std::time::UNIX_EPOCH + std::time::Duration::from_secs(s);
        assert_eq!(super::rfc3339(t(0)), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(t(951_782_400)), "2000-02-29T00:00:00Z");
        assert_eq!(super::rfc3339(t(1_795_000_000)), "2026-11-18T11:06:40Z");
    }
}
