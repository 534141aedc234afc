//! Process exit codes of `connect-harness`.

use crate::{judge::Verdict, report::ScenarioResult, scenario::Level};

/// No failure at the `--fail-on` level.
pub const OK: u8 = 0;
/// At least one failure at the `--fail-on` level (expected deviations excluded), or the `--expect` file is not true
/// of the proxy any more (an unexpected pass, a stale entry).
pub const FAILURES: u8 = 1;
/// Bad usage or a bad scenario / expectation file.
pub const USAGE: u8 = 2;
/// The harness could not run: the proxy is unreachable, an origin could not bind, or a scenario ended in
/// `error` (a harness-side problem, kept apart from the proxy failing).
pub const CANNOT_RUN: u8 = 3;
/// Nothing was judged: every run was skipped, inconclusive (refused by the proxy's policy) or a setup failure,
/// so a green result would claim what was never checked.
pub const NOTHING_JUDGED: u8 = 4;

/// The exit code for a finished run; `stale` is how many `--expect` entries went stale.
pub fn for_results(results: &[ScenarioResult], fail_on: Level, stale: usize) -> u8 {
    if results.iter().any(|r| r.verdict == Verdict::Error) {
        CANNOT_RUN
    } else if results.iter().any(|r| r.counts_as_failure(fail_on))
        || stale > 0
        || results.iter().any(ScenarioResult::is_unexpected_pass)
    {
        FAILURES
    } else if !results
        .iter()
        .any(|r| matches!(r.verdict, Verdict::Pass | Verdict::Observed | Verdict::Warn | Verdict::Fail))
    {
        NOTHING_JUDGED
    } else {
        OK
    }
}
