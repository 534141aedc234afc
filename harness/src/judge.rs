//! Verdicts from step results (pure): what a mismatch means depends on the level it is judged at.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{
    exec::report::{StepReport, StepResult},
    scenario::{Level, step::OutcomeVerdict},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// The requirement is met.
    Pass,
    /// Behaviour recorded, not judged (or a tolerated alternative).
    Observed,
    /// Not applicable to this run (the reason says why).
    Skip,
    /// A SHOULD is not met.
    Warn,
    /// The scenario ran, but the proxy refused the destination by its access policy (a 403, or the answer the
    /// preflight showed to be its policy answer), so the requirement was never exercised. Never fails a run.
    Inconclusive,
    /// Our setup toward the proxy failed (the TLS handshake to the proxy failed twice, the proxy stopped accepting
    /// connections): says nothing about the scenario's requirement. Counted apart; `tls/handshake-completes`
    /// owns the requirement that the proxy completes handshakes.
    Setup,
    /// A MUST is not met.
    Fail,
    /// The harness or its setup failed; says nothing about the proxy.
    Error,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Observed => "observed",
            Verdict::Skip => "skip",
            Verdict::Warn => "warn",
            Verdict::Inconclusive => "inconclusive",
            Verdict::Setup => "setup",
            Verdict::Fail => "fail",
            Verdict::Error => "error",
        }
    }

    /// Ordering for "the worst of several".
    fn rank(self) -> u8 {
        match self {
            Verdict::Pass => 0,
            Verdict::Skip => 1,
            Verdict::Observed => 2,
            Verdict::Inconclusive => 3,
            Verdict::Setup => 4,
            Verdict::Warn => 5,
            Verdict::Fail => 6,
            Verdict::Error => 7,
        }
    }
}

fn for_level(level: Level) -> Verdict {
    match level {
        Level::Must => Verdict::Fail,
        Level::Should => Verdict::Warn,
        Level::May | Level::Observed => Verdict::Observed,
    }
}

/// The scenario's verdict and the reason (the step that decided it), from its steps.
pub fn judge(level: Level, steps: &[StepReport]) -> (Verdict, Option<String>) {
    let mut worst = (if level == Level::Observed { Verdict::Observed } else { Verdict::Pass }, None);
    for s in steps {
        let v = match s.result {
            StepResult::Passed => continue,
            StepResult::Tolerated(OutcomeVerdict::Warn) => Verdict::Warn,
            StepResult::Tolerated(OutcomeVerdict::Observed) => Verdict::Observed,
            StepResult::Mismatch | StepResult::TimedOut => for_level(s.level),
            StepResult::Inconclusive => Verdict::Inconclusive,
            StepResult::Setup => Verdict::Setup,
            StepResult::Error => Verdict::Error,
        };
        if v.rank() > worst.0.rank() {
            let timed = if s.result == StepResult::TimedOut { " timed out" } else { "" };
            worst = (v, Some(format!("{}{timed}: {}", s.label(), s.detail)));
        }
    }
    worst
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(result: StepResult, level: Level) -> StepReport {
        StepReport::new(2, "expect", level, result, "why")
    }

    #[test]
    fn levels_map_to_verdicts() {
        assert_eq!(judge(Level::Must, &[step(StepResult::Passed, Level::Must)]).0, Verdict::Pass);
        assert_eq!(judge(Level::Must, &[step(StepResult::Mismatch, Level::Must)]).0, Verdict::Fail);
        assert_eq!(judge(Level::Should, &[step(StepResult::Mismatch, Level::Should)]).0, Verdict::Warn);
        assert_eq!(judge(Level::May, &[step(StepResult::Mismatch, Level::May)]).0, Verdict::Observed);
        assert_eq!(judge(Level::Observed, &[step(StepResult::Passed, Level::Observed)]).0, Verdict::Observed);
        let tolerated = step(StepResult::Tolerated(OutcomeVerdict::Observed), Level::Must);
        assert_eq!(judge(Level::Must, &[tolerated]).0, Verdict::Observed);
    }

    #[test]
    fn worst_wins_and_timeouts_are_named() {
        let steps = [
            step(StepResult::Mismatch, Level::Should),
            step(StepResult::TimedOut, Level::Must),
            step(StepResult::Passed, Level::Must),
        ];
        let (v, why) = judge(Level::Must, &steps);
        assert_eq!(v, Verdict::Fail);
        assert_eq!(why.unwrap(), "step 2 (expect) timed out: why");
        let err =
            [step(StepResult::TimedOut, Level::Must), StepReport::new(0, "setup", Level::Must, StepResult::Error, "x")];
        assert_eq!(judge(Level::Must, &err).0, Verdict::Error);
        // A policy refusal is inconclusive, but a later step's evidence (an origin that was dialled) still fails.
        let refused = [step(StepResult::Inconclusive, Level::Must)];
        assert_eq!(judge(Level::Must, &refused).0, Verdict::Inconclusive);
        let dialled = [step(StepResult::Inconclusive, Level::Must), step(StepResult::Mismatch, Level::Must)];
        assert_eq!(judge(Level::Must, &dialled).0, Verdict::Fail);
        let setup = [StepReport::new(0, "proxy_tls", Level::Must, StepResult::Setup, "x")];
        assert_eq!(judge(Level::Must, &setup).0, Verdict::Setup);
    }
}
