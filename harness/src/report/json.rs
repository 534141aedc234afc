//! The JSON report consumer: collects results and writes the report when the run is done.

use std::path::PathBuf;

use super::{Report, SCHEMA_VERSION, ScenarioResult};
use crate::runner::Event;

/// Which results keep their wire transcript and proxy-log excerpts in the report (`--transcripts`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Transcripts {
    /// Every result.
    #[default]
    All,
    /// Only results worth reading: fail, warn, error, setup, or a result an `--expect` entry lists.
    Failures,
    /// None: verdicts, steps, observed responses and origin evidence only.
    None,
}

impl Transcripts {
    /// Whether this result keeps its transcript.
    pub fn keeps(self, r: &ScenarioResult) -> bool {
        match self {
            Transcripts::All => true,
            Transcripts::None => false,
            Transcripts::Failures => worth_reading(r),
        }
    }
}

/// A result someone has to read: the proxy failed or warned, the harness or its setup failed, or the
/// expectations file lists it.
pub fn worth_reading(r: &ScenarioResult) -> bool {
    use crate::judge::Verdict;
    r.deviation.is_some() || matches!(r.verdict, Verdict::Fail | Verdict::Warn | Verdict::Error | Verdict::Setup)
}

/// Proxy-log lines a `--compact` report keeps per excerpt, and bytes per line.
const COMPACT_LOG_LINES: usize = 20;
const COMPACT_LOG_LINE_BYTES: usize = 512;

/// `--compact`: what a result that needs no reading keeps is its verdict (and reason, duration and start, which
/// shards balance by); results worth reading keep everything but the log lines past [`COMPACT_LOG_LINES`].
/// The other transports' skipped rows go, and the summary is counted from what is left. Observed results keep
/// their observed response and origins but not their steps.
pub fn compact(report: &mut Report) {
    use crate::judge::Verdict;
    report.metadata.compact = true;
    let own = report.metadata.transports.clone();
    report.results.retain(|r| own.contains(&r.transport));
    for r in &mut report.results {
        if !worth_reading(r) {
            r.title.clear();
            r.requirement.clear();
            r.section.clear();
            r.source.clear();
            r.catalog.clear();
            r.acceptable.clear();
            r.steps.clear();
            r.tls = None;
            if matches!(r.verdict, Verdict::Pass | Verdict::Skip) {
                r.origins.clear();
                r.observed = None;
            }
        }
        for e in &mut r.proxy_log {
            if e.lines.len() > COMPACT_LOG_LINES {
                e.lines.truncate(COMPACT_LOG_LINES);
                e.truncated = true;
            }
            for line in &mut e.lines {
                if line.len() > COMPACT_LOG_LINE_BYTES {
                    let mut cut = COMPACT_LOG_LINE_BYTES;
                    while !line.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    line.truncate(cut);
                    line.push('…');
                    e.truncated = true;
                }
            }
        }
    }
    report.summary = super::Summary::from_results(&report.results);
}

/// The report as JSON with one result per line (the `--compact` encoding: small, and still diffable by line).
pub fn to_lines(report: &Report) -> serde_json::Result<String> {
    #[derive(serde::Serialize)]
    struct Head<'a> {
        schema_version: u32,
        metadata: &'a super::Metadata,
        summary: &'a super::Summary,
        findings: &'a [super::findings::Finding],
        #[serde(skip_serializing_if = "<[_]>::is_empty")]
        stale_expectations: &'a [crate::expect::Stale],
    }
    let head = serde_json::to_string(&Head {
        schema_version: report.schema_version,
        metadata: &report.metadata,
        summary: &report.summary,
        findings: &report.findings,
        stale_expectations: &report.stale_expectations,
    })?;
    let mut out = head[..head.len() - 1].to_string();
    out.push_str(",\"results\":[");
    for (i, r) in report.results.iter().enumerate() {
        out.push_str(if i == 0 { "\n" } else { ",\n" });
        out.push_str(&serde_json::to_string(r)?);
    }
    out.push_str("\n]}\n");
    Ok(out)
}

/// The results of a run as they arrive, made into the [`Report`] at the end (for the JSON and HTML reporters).
pub struct Collector {
    transcripts: Transcripts,
    results: Vec<ScenarioResult>,
}

impl Collector {
    pub fn new(transcripts: Transcripts) -> Self {
        Self { transcripts, results: Vec::new() }
    }

    /// Takes one finished result; on `Done`, returns the whole report (results sorted by id, then transport).
    pub fn on_event(&mut self, ev: &Event) -> Option<Report> {
        match ev {
            Event::Started { .. } => None,
            Event::Finished(r) => {
                let mut r = (**r).clone();
                if !self.transcripts.keeps(&r) {
                    r.transcript = None;
                    r.proxy_log.clear();
                }
                self.results.push(r);
                None
            }
            Event::Done { metadata, summary, findings, stale } => {
                let mut results = std::mem::take(&mut self.results);
                results.sort_by(|a, b| (&a.id, a.transport).cmp(&(&b.id, b.transport)));
                Some(Report {
                    schema_version: SCHEMA_VERSION,
                    metadata: (**metadata).clone(),
                    summary: summary.clone(),
                    findings: findings.clone(),
                    stale_expectations: stale.clone(),
                    results,
                })
            }
        }
    }
}

pub struct JsonReporter {
    path: PathBuf,
    collector: Collector,
    compact: bool,
}

impl JsonReporter {
    pub fn new(path: PathBuf, transcripts: Transcripts, compact: bool) -> Self {
        Self { path, collector: Collector::new(transcripts), compact }
    }
}

impl super::terminal::Reporter for JsonReporter {
    fn on_event(&mut self, ev: &Event) -> std::io::Result<()> {
        if let Some(mut report) = self.collector.on_event(ev) {
            let text = if self.compact {
                compact(&mut report);
                to_lines(&report).map_err(std::io::Error::other)?
            } else {
                serde_json::to_string_pretty(&report).map_err(std::io::Error::other)? + "\n"
            };
            std::fs::write(&self.path, text)?;
        }
        Ok(())
    }
}
