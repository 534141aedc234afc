//! The JUnit XML consumer (for CI systems): one test suite per transport, one test case per scenario.

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use quick_junit::{NonSuccessKind, TestCase, TestCaseStatus, TestSuite};

use super::ScenarioResult;
use crate::{judge::Verdict, runner::Event};

pub struct JunitReporter {
    path: PathBuf,
    results: Vec<ScenarioResult>,
}

impl JunitReporter {
    pub fn new(path: PathBuf) -> Self {
        Self { path, results: Vec::new() }
    }
}

/// Builds the XML for a set of results.
pub fn to_xml(results: &[ScenarioResult], duration: Duration) -> Result<String, String> {
    let mut report = quick_junit::Report::new("connect-harness");
    report.set_time(duration);
    let mut suites: BTreeMap<&str, Vec<&ScenarioResult>> = BTreeMap::new();
    for r in results {
        suites.entry(r.transport.as_str()).or_default().push(r);
    }
    for (transport, list) in suites {
        let mut suite = TestSuite::new(format!("connect-harness.{transport}"));
        for r in list {
            let detail = || {
                format!(
                    "{}\nrequirement ({}, {}): {}\nacceptable: {}\nobserved: {}",
                    r.reason.clone().unwrap_or_default(),
                    r.section,
                    r.level.as_str(),
                    r.requirement,
                    r.acceptable.join("; "),
                    r.observed.as_ref().map(|o| o.summary()).unwrap_or_else(|| "-".into())
                )
            };
            let expected = r.is_expected_failure();
            let reason = r.deviation.as_ref().map(|d| d.reason.as_str()).unwrap_or("");
            let status = match r.verdict {
                // A listed deviation that passed fails the run (the expectations file is out of date).
                Verdict::Pass if r.is_unexpected_pass() => {
                    let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                    s.set_message(format!("unexpected pass: the --expect file lists it ({reason})"));
                    s.set_type("unexpected-pass");
                    s
                }
                Verdict::Pass | Verdict::Observed => TestCaseStatus::success(),
                Verdict::Warn | Verdict::Fail if expected => {
                    let mut s = TestCaseStatus::skipped();
                    s.set_message(format!("expected deviation: {reason}"));
                    s
                }
                Verdict::Skip => {
                    let mut s = TestCaseStatus::skipped();
                    s.set_message(r.reason.clone().unwrap_or_default());
                    s
                }
                Verdict::Inconclusive | Verdict::Setup => {
                    let mut s = TestCaseStatus::skipped();
                    s.set_message(format!("{}: {}", r.verdict.as_str(), r.reason.clone().unwrap_or_default()));
                    s
                }
                Verdict::Warn | Verdict::Fail => {
                    let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                    s.set_message(r.reason.clone().unwrap_or_default());
                    s.set_type(r.verdict.as_str());
                    s.set_description(detail());
                    s
                }
                Verdict::Error => {
                    let mut s = TestCaseStatus::non_success(NonSuccessKind::Error);
                    s.set_message(r.reason.clone().unwrap_or_default());
                    s.set_type("error");
                    s
                }
            };
            let mut case = TestCase::new(r.id.clone(), status);
            case.set_classname(format!("{transport}.{}", r.section));
            case.set_time(Duration::from_millis(r.duration_ms));
            suite.add_test_case(case);
        }
        report.add_test_suite(suite);
    }
    report.to_string().map_err(|e| e.to_string())
}

impl super::terminal::Reporter for JunitReporter {
    fn on_event(&mut self, ev: &Event) -> std::io::Result<()> {
        match ev {
            Event::Finished(r) => self.results.push((**r).clone()),
            Event::Done { metadata, .. } => {
                self.results.sort_by(|a, b| (&a.id, a.transport).cmp(&(&b.id, b.transport)));
                let xml = to_xml(&self.results, Duration::from_millis(metadata.duration_ms))
                    .map_err(std::io::Error::other)?;
                std::fs::write(&self.path, xml)?;
            }
            Event::Started { .. } => {}
        }
        Ok(())
    }
}
