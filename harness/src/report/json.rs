//! The JSON report consumer: collects results and writes the report when the run is done.

use std::path::PathBuf;

use super::{Report, SCHEMA_VERSION, ScenarioResult};
use crate::runner::Event;

/// Which results keep their wire transcript in the JSON report (`--transcripts`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Transcripts {
    /// Every result.
    #[default]
    All,
    /// Only results worth reading: not a plain pass or skip (fail, warn, observed, error, or a listed deviation).
    Failures,
}

impl Transcripts {
    /// Whether this result keeps its transcript.
    pub fn keeps(self, r: &ScenarioResult) -> bool {
        self == Transcripts::All
            || r.deviation.is_some()
            || !matches!(r.verdict, crate::judge::Verdict::Pass | crate::judge::Verdict::Skip)
    }
}

pub struct JsonReporter {
    path: PathBuf,
    transcripts: Transcripts,
    results: Vec<ScenarioResult>,
}

impl JsonReporter {
    pub fn new(path: PathBuf, transcripts: Transcripts) -> Self {
        Self { path, transcripts, results: Vec::new() }
    }
}

impl super::terminal::Reporter for JsonReporter {
    fn on_event(&mut self, ev: &Event) -> std::io::Result<()> {
        match ev {
            Event::Started { .. } => {}
            Event::Finished(r) => {
                let mut r = (**r).clone();
                if !self.transcripts.keeps(&r) {
                    r.transcript = None;
                }
                self.results.push(r);
            }
            Event::Done { metadata, summary, findings } => {
                let mut results = std::mem::take(&mut self.results);
                results.sort_by(|a, b| (&a.id, a.transport).cmp(&(&b.id, b.transport)));
                let report = Report {
                    schema_version: SCHEMA_VERSION,
                    metadata: (**metadata).clone(),
                    summary: summary.clone(),
                    findings: findings.clone(),
                    results,
                };
                let text = serde_json::to_string_pretty(&report).map_err(std::io::Error::other)?;
                std::fs::write(&self.path, text + "\n")?;
            }
        }
        Ok(())
    }
}
