//! `connect-harness report …`: working with JSON reports after a run (diff, Markdown, HTML, merge).

use std::{io::Write, path::PathBuf};

use clap::{Args, Subcommand, ValueEnum};
use serde_json::Value;

use super::{CliError, cannot_run, usage};
use crate::exit;

#[derive(Debug, Args)]
pub struct ReportArgs {
    #[command(subcommand)]
    pub command: ReportCommand,
}

#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// What changed from OLD to NEW: regressions, fixes, other verdict or level changes, scenarios added or
    /// removed. Exit 1 when something regressed (a worse verdict, or a new scenario that fails).
    Diff(DiffArgs),
    /// A short Markdown summary of a report (counts, failures with their requirement), for a pull request.
    Markdown(MarkdownArgs),
    /// One self-contained HTML page of one or more reports (several side by side make an interop matrix):
    /// counts, the TLS × SNI × Host × target grid, results by RFC section with filters, each result's evidence.
    Html(HtmlArgs),
    /// Join the reports of a sharded run (`run --shard I/N`) into one, as an unsharded run would have written.
    Merge(MergeArgs),
}

#[derive(Debug, Args)]
pub struct MergeArgs {
    #[arg(value_name = "SHARD.json", required = true)]
    pub reports: Vec<PathBuf>,
    /// Where to write the merged report.
    #[arg(short = 'o', long, value_name = "FILE.json")]
    pub output: PathBuf,
}

#[derive(Debug, Args)]
pub struct HtmlArgs {
    /// Reports to show, in this order; a column is labelled with the file name without `.json`.
    #[arg(value_name = "REPORT.json", required = true)]
    pub reports: Vec<PathBuf>,
    /// Where to write the page.
    #[arg(short = 'o', long, value_name = "FILE.html")]
    pub output: PathBuf,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    #[arg(value_name = "OLD.json")]
    pub old: PathBuf,
    #[arg(value_name = "NEW.json")]
    pub new: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = DiffFormat::Text)]
    pub format: DiffFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum DiffFormat {
    Text,
    Json,
    Markdown,
}

#[derive(Debug, Args)]
pub struct MarkdownArgs {
    #[arg(value_name = "REPORT.json")]
    pub report: PathBuf,
}

fn read(path: &PathBuf) -> Result<Value, CliError> {
    let text = std::fs::read_to_string(path).map_err(|e| usage(format!("{}: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| usage(format!("{}: not JSON: {e}", path.display())))
}

/// `connect-harness report …`.
pub fn report(args: &ReportArgs, out: &mut dyn Write) -> Result<u8, CliError> {
    let write = |out: &mut dyn Write, s: &str| {
        out.write_all(s.as_bytes()).map_err(|e| cannot_run(format!("writing output: {e}")))
    };
    match &args.command {
        ReportCommand::Diff(a) => {
            let (old, new) = (read(&a.old)?, read(&a.new)?);
            let d = crate::report::diff::diff(&a.old.display().to_string(), &old, &a.new.display().to_string(), &new)
                .map_err(usage)?;
            let text = match a.format {
                DiffFormat::Text => d.to_text(),
                DiffFormat::Json => serde_json::to_string_pretty(&d).expect("diff serializes") + "\n",
                DiffFormat::Markdown => d.to_markdown(),
            };
            write(out, &text)?;
            Ok(if d.regressed() { exit::FAILURES } else { exit::OK })
        }
        ReportCommand::Merge(a) => {
            let reports = a
                .reports
                .iter()
                .map(|p| Ok((p.display().to_string(), read(p)?)))
                .collect::<Result<Vec<_>, CliError>>()?;
            let merged = crate::report::merge::merge(&reports).map_err(usage)?;
            let text = serde_json::to_string_pretty(&merged).expect("JSON serializes") + "\n";
            std::fs::write(&a.output, text).map_err(|e| cannot_run(format!("-o {}: {e}", a.output.display())))?;
            Ok(exit::OK)
        }
        ReportCommand::Html(a) => {
            let files = a
                .reports
                .iter()
                .map(|p| {
                    let report = read(p)?;
                    crate::report::load::own_results(&report).map_err(|e| usage(format!("{}: {e}", p.display())))?;
                    Ok((p.as_path(), report))
                })
                .collect::<Result<Vec<_>, CliError>>()?;
            let inputs = crate::report::html::labelled(files);
            let page = crate::report::html::render(&inputs).map_err(usage)?;
            std::fs::write(&a.output, page).map_err(|e| cannot_run(format!("-o {}: {e}", a.output.display())))?;
            Ok(exit::OK)
        }
        ReportCommand::Markdown(a) => {
            let v = read(&a.report)?;
            let s = crate::report::markdown::summary(&v).map_err(|e| usage(format!("{}: {e}", a.report.display())))?;
            write(out, &s)?;
            Ok(exit::OK)
        }
    }
}
