//! The terminal consumer: one line per scenario as it finishes (with a progress bar on a terminal), then
//! the failures with the quoted requirement, the acceptable outcomes and what was observed.

use std::io::{self, Write};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::ScenarioResult;
use crate::{judge::Verdict, runner::Event, scenario::Level};

/// A consumer of runner events.
pub trait Reporter: Send {
    fn on_event(&mut self, ev: &Event) -> io::Result<()>;
}

pub struct TerminalReporter {
    out: Box<dyn Write + Send>,
    color: bool,
    progress: Option<ProgressBar>,
    problems: Vec<ScenarioResult>,
    fail_on: Level,
}

impl TerminalReporter {
    /// `progress`: draw a bar on stdout (only when it is a terminal).
    pub fn new(out: Box<dyn Write + Send>, color: bool, progress: bool, fail_on: Level) -> Self {
        let progress = progress.then(|| {
            let pb = ProgressBar::with_draw_target(None, ProgressDrawTarget::stdout());
            pb.set_style(
                ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} {msg}")
                    .expect("valid template"),
            );
            pb
        });
        Self { out, color, progress, problems: Vec::new(), fail_on }
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.color { format!("\x1b[{code}m{text}\x1b[0m") } else { text.to_string() }
    }

    fn verdict_label(&self, v: Verdict) -> String {
        let (code, text) = match v {
            Verdict::Pass => ("32", "PASS"),
            Verdict::Fail => ("1;31", "FAIL"),
            Verdict::Warn => ("33", "WARN"),
            Verdict::Observed => ("36", "OBSERVED"),
            Verdict::Skip => ("2", "SKIP"),
            Verdict::Inconclusive => ("34", "INCONCL"),
            Verdict::Setup => ("35", "SETUP"),
            Verdict::Error => ("1;35", "ERROR"),
        };
        self.paint(code, &format!("{text:>8}"))
    }

    fn line(&mut self, text: &str) -> io::Result<()> {
        match &self.progress {
            Some(pb) => {
                pb.println(text);
                Ok(())
            }
            None => writeln!(self.out, "{text}"),
        }
    }
}

/// The one-line rendering of a finished scenario.
pub fn result_line(r: &ScenarioResult, label: &str) -> String {
    let mut s = format!("{label} [{:>7.3}s] {:<5} {}", r.duration_ms as f64 / 1000.0, r.transport.as_str(), r.id);
    if let Some(d) = &r.deviation {
        s.push_str(if d.unexpected_pass { "  (unexpected pass)" } else { "  (expected)" });
    }
    if matches!(r.verdict, Verdict::Skip | Verdict::Inconclusive | Verdict::Setup)
        && let Some(why) = &r.reason
    {
        s.push_str(&format!("  ({why})"));
    }
    s
}

impl Reporter for TerminalReporter {
    fn on_event(&mut self, ev: &Event) -> io::Result<()> {
        match ev {
            Event::Started { total, metadata } => {
                if let Some(pb) = &self.progress {
                    pb.set_length(*total as u64);
                }
                let t: Vec<&str> = metadata.transports.iter().map(|t| t.as_str()).collect();
                let head = format!(
                    "{} {total} scenario run{} against {} ({}), {} jobs",
                    self.paint("1;32", "Starting"),
                    if *total == 1 { "" } else { "s" },
                    metadata.target,
                    t.join(" + "),
                    metadata.jobs
                );
                self.line(&head)?;
                for p in &metadata.preflight {
                    let line = format!("{} {p}", self.paint("2", "Preflight"));
                    self.line(&line)?;
                }
            }
            Event::Finished(r) => {
                let label = self.verdict_label(r.verdict);
                let line = result_line(r, &label);
                self.line(&line)?;
                if let Some(pb) = &self.progress {
                    pb.inc(1);
                    pb.set_message(r.id.clone());
                }
                if (matches!(r.verdict, Verdict::Fail | Verdict::Warn | Verdict::Error) && !r.is_expected_failure())
                    || r.is_unexpected_pass()
                {
                    self.problems.push((**r).clone());
                }
            }
            Event::Done { metadata, summary, findings, stale } => {
                if let Some(pb) = self.progress.take() {
                    pb.finish_and_clear();
                }
                let mut problems = std::mem::take(&mut self.problems);
                problems.sort_by(|a, b| (&a.id, a.transport).cmp(&(&b.id, b.transport)));
                let mut text = String::new();
                for r in &problems {
                    let label = if r.is_unexpected_pass() {
                        self.paint("1;31", "UNEXPECTED PASS")
                    } else {
                        self.verdict_label(r.verdict)
                    };
                    text.push_str(&render_problem(r, &label));
                }
                let s = summary;
                for f in findings {
                    text.push_str(&format!("\n{} {}\n", self.paint("1;35", "FINDING"), f.describe()));
                }
                for st in stale {
                    text.push_str(&format!(
                        "\n{} {st}: remove or narrow it in the --expect file\n",
                        self.paint("1;31", "STALE EXPECTATION")
                    ));
                }
                text.push_str(&format!(
                    "------------\n{} [{:>7.3}s] {} runs: {} passed, {} failed, {} warned, {} observed, {} inconclusive, \
                     {} setup failures, {} skipped, {} errors",
                    self.paint("1", "Summary"),
                    metadata.duration_ms as f64 / 1000.0,
                    s.total,
                    s.passed,
                    s.failed,
                    s.warned,
                    s.observed,
                    s.inconclusive,
                    s.setup_failures,
                    s.skipped,
                    s.errors
                ));
                if s.expected_failures + s.unexpected_passes + stale.len() > 0 {
                    text.push_str(&format!(
                        " ({} expected failures, {} unexpected passes, {} stale expectations)",
                        s.expected_failures,
                        s.unexpected_passes,
                        stale.len()
                    ));
                }
                text.push_str(&format!(" (fail on: {})\n", self.fail_on.as_str()));
                let judged = s.total - s.skipped;
                if s.inconclusive > 0 && s.inconclusive * 2 >= judged {
                    text.push_str(&format!(
                        "{} {} of {judged} runs were inconclusive: the proxy refused their destinations by its access \
                         policy, so their requirements were not exercised. See the preflight lines above for what it \
                         refused; allow those destinations, or fit the harness to the policy (--origin-ports, \
                         --origin-addr).\n",
                        self.paint("1;33", "WARNING: most of this run was not judged."),
                        s.inconclusive
                    ));
                }
                self.out.write_all(text.as_bytes())?;
                self.out.flush()?;
            }
        }
        Ok(())
    }
}

/// The detailed block for a failed, warned or errored scenario, or an unexpected pass.
pub fn render_problem(r: &ScenarioResult, label: &str) -> String {
    let mut t = format!("\n{label} {} {}\n", r.transport.as_str(), r.id);
    t.push_str(&format!("  {}\n", r.title));
    t.push_str(&format!("  requirement ({}, {}): \"{}\"\n", r.section, r.level.as_str().to_uppercase(), r.requirement));
    if let Some(reason) = &r.reason {
        t.push_str(&format!("  why:        {reason}\n"));
    }
    for a in &r.acceptable {
        t.push_str(&format!("  acceptable: {a}\n"));
    }
    if let Some(o) = &r.observed {
        t.push_str(&format!("  observed:   {}\n", o.summary()));
    }
    let dialled: Vec<String> =
        r.origins.iter().map(|o| format!("{} ({} bytes in)", o.origin.as_str(), o.bytes_in)).collect();
    if !dialled.is_empty() {
        t.push_str(&format!("  origins:    {}\n", dialled.join(", ")));
    }
    if let Some(d) = &r.deviation {
        t.push_str(&format!("  --expect:   {}\n", d.reason));
    }
    t.push_str(&format!("  defined at: {}\n", r.source));
    t
}
