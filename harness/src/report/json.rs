//! The JSON report consumer: collects results and writes the report when the run is done.

use std::path::PathBuf;

use super::{Report, SCHEMA_VERSION, ScenarioResult};
use crate::runner::Event;

pub struct JsonReporter {
    path: PathBuf,
    results: Vec<ScenarioResult>,
}

impl JsonReporter {
    pub fn new(path: PathBuf) -> Self {
        Self { path, results: Vec::new() }
    }
}

impl super::terminal::Reporter for JsonReporter {
    fn on_event(&mut self, ev: &Event) -> std::io::Result<()> {
        match ev {
            Event::Started { .. } => {}
            Event::Finished(r) => self.results.push((**r).clone()),
            Event::Done { metadata, summary } => {
                let mut results = std::mem::take(&mut self.results);
                results.sort_by(|a, b| (&a.id, a.transport).cmp(&(&b.id, b.transport)));
                let report = Report {
                    schema_version: SCHEMA_VERSION,
                    metadata: (**metadata).clone(),
                    summary: summary.clone(),
                    results,
                };
                let text = serde_json::to_string_pretty(&report).map_err(std::io::Error::other)?;
                std::fs::write(&self.path, text + "\n")?;
            }
        }
        Ok(())
    }
}
