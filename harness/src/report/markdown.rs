//! `connect-harness report markdown REPORT.json`: a short summary that renders on GitHub (counts, then every
//! failure and warning that is not a known deviation, with its requirement), for a pull request comment or
//! `$GITHUB_STEP_SUMMARY` (which `run` fills when the variable is set).

use std::fmt::Write as _;

use serde_json::Value;

/// At most this many failures are listed (the rest are counted).
const MAX_LISTED: usize = 50;

use super::load::VERDICT_ORDER as ORDER;

/// Text made safe for a Markdown table cell: no line breaks, pipes escaped, HTML characters as entities (the
/// text may come from the proxy).
pub fn cell(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '|' => out.push_str("\\|"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '`' => out.push('\''),
            '\r' | '\n' => out.push(' '),
            c if c.is_control() => out.push('�'),
            c => out.push(c),
        }
    }
    out
}

/// The summary of one report.
pub fn summary(report: &Value) -> Result<String, String> {
    let own = super::load::own_transports(report);
    let results = super::load::own_results(report)?;
    let verdict = |r: &Value| super::load::verdict(r).to_string();
    let known = |r: &Value| super::load::is_known_deviation(r);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "### connect-harness: {} ({})\n",
        cell(report["metadata"]["target"].as_str().unwrap_or("?")),
        own.join(", ")
    );
    let _ = writeln!(s, "| {} | known deviations |", ORDER.join(" | "));
    let _ = writeln!(s, "|{}---|", "---|".repeat(ORDER.len()));
    let counts: Vec<String> =
        ORDER.iter().map(|v| results.iter().filter(|r| verdict(r) == *v).count().to_string()).collect();
    let _ = writeln!(s, "| {} | {} |\n", counts.join(" | "), results.iter().filter(|r| known(r)).count());
    let unexpected_pass = |r: &Value| super::load::is_unexpected_pass(r);
    let bad: Vec<&&Value> = results
        .iter()
        .filter(|r| (matches!(verdict(r).as_str(), "fail" | "warn" | "error") && !known(r)) || unexpected_pass(r))
        .collect();
    let stale: Vec<String> = report["stale_expectations"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|st| {
            let now: Vec<&str> = st["now"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            format!(
                "- `{}` lists results that are only {} in this run (not failures)",
                cell(st["id"].as_str().unwrap_or("?")),
                now.join(", ")
            )
        })
        .collect();
    if !stale.is_empty() {
        let _ = writeln!(s, "#### Stale expectations ({}): they fail the run\n\n{}\n", stale.len(), stale.join("\n"));
    }
    if bad.is_empty() {
        s.push_str("No failure, warning, error or unexpected pass outside the known deviations.\n");
        return Ok(s);
    }
    let _ = writeln!(s, "#### Failures, warnings, errors and unexpected passes ({})\n", bad.len());
    s.push_str("| verdict | scenario | transport | requirement | why |\n|---|---|---|---|---|\n");
    for r in bad.iter().take(MAX_LISTED) {
        let _ = writeln!(
            s,
            "| {} ({}) | `{}` | {} | {} | {} |",
            if unexpected_pass(r) { "unexpected pass".to_string() } else { verdict(r) },
            r["level"].as_str().unwrap_or("?"),
            r["id"].as_str().unwrap_or("?"),
            r["transport"].as_str().unwrap_or("?"),
            cell(&format!("{} ({})", r["requirement"].as_str().unwrap_or(""), r["section"].as_str().unwrap_or(""))),
            cell(&if unexpected_pass(r) {
                format!("passed, but the --expect file lists it: {}", r["deviation"]["reason"].as_str().unwrap_or(""))
            } else {
                r["reason"].as_str().unwrap_or("").to_string()
            })
        );
    }
    if bad.len() > MAX_LISTED {
        let _ = writeln!(s, "\n…and {} more (see the JSON report).", bad.len() - MAX_LISTED);
    }
    Ok(s)
}

/// Appends the summary of the run to a file when it ends: `$GITHUB_STEP_SUMMARY`, which GitHub Actions shows on
/// the job's page. Keeps only what the summary needs of each result.
pub struct StepSummaryReporter {
    path: std::path::PathBuf,
    results: Vec<Value>,
}

impl StepSummaryReporter {
    pub fn new(path: std::path::PathBuf) -> Self {
        Self { path, results: Vec::new() }
    }
}

impl super::terminal::Reporter for StepSummaryReporter {
    fn on_event(&mut self, ev: &crate::runner::Event) -> std::io::Result<()> {
        use crate::runner::Event;
        match ev {
            Event::Started { .. } => {}
            Event::Finished(r) => self.results.push(serde_json::json!({
                "id": r.id,
                "transport": r.transport,
                "verdict": r.verdict,
                "level": r.level,
                "requirement": r.requirement,
                "section": r.section,
                "reason": r.reason,
                "deviation": r.deviation,
            })),
            Event::Done { metadata, stale, .. } => {
                let mut results = std::mem::take(&mut self.results);
                results.sort_by(|a, b| {
                    (a["id"].as_str(), a["transport"].as_str()).cmp(&(b["id"].as_str(), b["transport"].as_str()))
                });
                let v = serde_json::json!({ "metadata": **metadata, "results": results, "stale_expectations": stale });
                let text = summary(&v).map_err(std::io::Error::other)?;
                use std::io::Write as _;
                let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&self.path)?;
                f.write_all(text.as_bytes())?;
                f.write_all(b"\n")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn failures_are_listed_and_proxy_text_is_inert() {
        let r = json!({
            "metadata": { "target": "http://127.0.0.1:3128", "transports": ["plain"] },
            "results": [
                { "id": "a/b", "transport": "plain", "verdict": "fail", "level": "must", "requirement": "MUST x", "section": "RFC 9110 §9.3.6", "reason": "got <script>alert(1)</script> | x\nz" },
                { "id": "a/c", "transport": "plain", "verdict": "fail", "level": "must", "deviation": { "reason": "known", "unexpected_pass": false } },
                { "id": "a/d", "transport": "plain", "verdict": "pass", "level": "must" },
                { "id": "a/e", "transport": "tls", "verdict": "fail", "level": "must" },
            ]
        });
        let s = summary(&r).unwrap();
        assert!(s.contains("| 1 | 2 | 0 | 0 | 0 | 0 | 0 | 0 | 1 |"), "{s}");
        assert!(s.contains("`a/b`") && !s.contains("`a/c`") && !s.contains("a/e"), "{s}");
        assert!(s.contains("&lt;script&gt;") && !s.contains("<script>") && s.contains("\\| x z"), "{s}");
    }
}
