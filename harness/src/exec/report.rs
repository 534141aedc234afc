//! Per-step results, as the executor records them and the judge reads them.

use schemars::JsonSchema;
use serde::Serialize;

use crate::scenario::{Level, step::OutcomeVerdict};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StepResult {
    /// Did what it should, or matched a preferred outcome.
    Passed,
    /// Matched an acceptable outcome marked as tolerated (its verdict says how).
    Tolerated(OutcomeVerdict),
    /// The proxy's behaviour did not match.
    Mismatch,
    /// The step's deadline passed.
    TimedOut,
    /// The proxy refused by policy, so the step's requirement could not be exercised.
    Inconclusive,
    /// Our setup toward the proxy failed (handshake, connection), even after a retry.
    Setup,
    /// The harness could not perform the step (not the proxy's fault).
    Error,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct StepReport {
    /// 1-based position in the scenario; 0 for setup (origins, connecting, TLS to the proxy).
    pub index: usize,
    pub kind: String,
    pub result: StepResult,
    /// The level a mismatch is judged at.
    pub level: Level,
    pub detail: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub acceptable: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed: Option<String>,
}

impl StepReport {
    pub fn new(index: usize, kind: &str, level: Level, result: StepResult, detail: impl Into<String>) -> Self {
        Self {
            index,
            kind: kind.to_string(),
            result,
            level,
            detail: detail.into(),
            acceptable: Vec::new(),
            observed: None,
        }
    }

    /// "step 3 (expect)" or "setup (proxy_tls)".
    pub fn label(&self) -> String {
        if self.index == 0 { format!("setup ({})", self.kind) } else { format!("step {} ({})", self.index, self.kind) }
    }

    /// Whether the scenario should stop after this step.
    pub fn stops(&self) -> bool {
        match self.result {
            StepResult::Passed | StepResult::Tolerated(_) => false,
            StepResult::Error | StepResult::Setup => true,
            // Only "nothing was dialled" checks still run after a policy refusal (see `exec::steps`).
            StepResult::Inconclusive => false,
            StepResult::Mismatch | StepResult::TimedOut => matches!(self.level, Level::Must | Level::Should),
        }
    }
}
