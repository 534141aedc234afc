//! `connect-harness report diff OLD.json NEW.json`: what changed between two runs, so CI can gate on "nothing got
//! worse" without an expectations file. Reports are read as plain JSON (like the matrix), so a report from an
//! older harness still compares; only results of a report's own transports count.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;
use serde_json::Value;

/// One scenario on one transport, as a report has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Entry {
    pub verdict: String,
    pub level: String,
    /// Listed in the run's `--expect` file.
    pub known: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What happened to one (id, transport).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Change {
    /// Worse than before (pass → fail, warn → fail, a new scenario that fails...).
    Regressed,
    /// Better (fail → pass...).
    Fixed,
    /// The verdict changed without getting better or worse (pass → skip, observed → pass...), or the level did.
    Changed,
    Added,
    Removed,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Line {
    pub id: String,
    pub transport: String,
    pub change: Change,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old: Option<Entry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new: Option<Entry>,
}

/// The whole comparison.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Diff {
    pub old: String,
    pub new: String,
    /// Sorted by change, then id and transport; unchanged results are not listed.
    pub lines: Vec<Line>,
    pub unchanged: usize,
}

impl Diff {
    pub fn regressed(&self) -> bool {
        self.lines.iter().any(|l| l.change == Change::Regressed)
    }

    fn count(&self, c: Change) -> usize {
        self.lines.iter().filter(|l| l.change == c).count()
    }

    /// One line of counts.
    pub fn summary(&self) -> String {
        format!(
            "{} regressed, {} fixed, {} changed, {} added, {} removed, {} unchanged",
            self.count(Change::Regressed),
            self.count(Change::Fixed),
            self.count(Change::Changed),
            self.count(Change::Added),
            self.count(Change::Removed),
            self.unchanged
        )
    }

    /// For the terminal.
    pub fn to_text(&self) -> String {
        let mut s = format!("{} → {}: {}\n", self.old, self.new, self.summary());
        for l in &self.lines {
            let _ = writeln!(
                s,
                "  {:<10} {} [{}]: {}",
                format!("{:?}", l.change).to_lowercase(),
                l.id,
                l.transport,
                l.what()
            );
        }
        s
    }

    /// For a pull request or a step summary.
    pub fn to_markdown(&self) -> String {
        let mut s = format!("**{}** → **{}**: {}\n\n", self.old, self.new, self.summary());
        if !self.lines.is_empty() {
            s.push_str("| change | scenario | transport | before → after |\n|---|---|---|---|\n");
            for l in &self.lines {
                let _ = writeln!(
                    s,
                    "| {} | `{}` | {} | {} |",
                    format!("{:?}", l.change).to_lowercase(),
                    l.id,
                    l.transport,
                    super::markdown::cell(&l.what())
                );
            }
        }
        s
    }
}

impl Line {
    fn what(&self) -> String {
        let e = |e: &Option<Entry>| match e {
            None => "–".to_string(),
            Some(e) => format!("{} ({}){}", e.verdict, e.level, if e.known { ", known" } else { "" }),
        };
        let mut s = format!("{} → {}", e(&self.old), e(&self.new));
        if self.change == Change::Regressed
            && let Some(r) = self.new.as_ref().and_then(|n| n.reason.as_deref())
        {
            let _ = write!(s, ": {}", crate::escape::escape(r.as_bytes(), 160));
        }
        s
    }
}

/// How bad a verdict is: neutral verdicts 0, a warning or our setup failing 1, a failure or an error 2.
fn rank(verdict: &str) -> u8 {
    match verdict {
        "fail" | "error" => 2,
        "warn" | "setup" => 1,
        _ => 0,
    }
}

/// The results of a report's own transports, by (id, transport).
pub fn entries(report: &Value) -> Result<BTreeMap<(String, String), Entry>, String> {
    let mut out = BTreeMap::new();
    for r in super::load::own_results(report)? {
        out.insert(
            (r["id"].as_str().unwrap_or("?").to_string(), r["transport"].as_str().unwrap_or("").to_string()),
            Entry {
                verdict: super::load::verdict(r).to_string(),
                level: r["level"].as_str().unwrap_or("?").to_string(),
                known: super::load::is_known_deviation(r),
                reason: r["reason"].as_str().map(str::to_string),
            },
        );
    }
    Ok(out)
}

/// Compares two reports (already parsed).
pub fn diff(old_name: &str, old: &Value, new_name: &str, new: &Value) -> Result<Diff, String> {
    let (a, b) =
        (entries(old).map_err(|e| format!("{old_name}: {e}"))?, entries(new).map_err(|e| format!("{new_name}: {e}"))?);
    if b.is_empty() && !a.is_empty() {
        // A gate on "nothing got worse" must not pass because nothing ran.
        return Err(format!("{new_name}: no results of the transports it ran: nothing to compare with {old_name}"));
    }
    let mut lines = Vec::new();
    let mut unchanged = 0;
    for (key, o) in &a {
        match b.get(key) {
            None => lines.push(Line {
                id: key.0.clone(),
                transport: key.1.clone(),
                change: Change::Removed,
                old: Some(o.clone()),
                new: None,
            }),
            Some(n) => {
                let change = match rank(&n.verdict).cmp(&rank(&o.verdict)) {
                    std::cmp::Ordering::Greater => Some(Change::Regressed),
                    std::cmp::Ordering::Less => Some(Change::Fixed),
                    std::cmp::Ordering::Equal if n.verdict != o.verdict || n.level != o.level => Some(Change::Changed),
                    std::cmp::Ordering::Equal => None,
                };
                match change {
                    Some(change) => lines.push(Line {
                        id: key.0.clone(),
                        transport: key.1.clone(),
                        change,
                        old: Some(o.clone()),
                        new: Some(n.clone()),
                    }),
                    None => unchanged += 1,
                }
            }
        }
    }
    for (key, n) in &b {
        if !a.contains_key(key) {
            // A new scenario that fails is a regression: the run got a failure it did not have.
            let change = if rank(&n.verdict) > 0 { Change::Regressed } else { Change::Added };
            lines.push(Line { id: key.0.clone(), transport: key.1.clone(), change, old: None, new: Some(n.clone()) });
        }
    }
    lines.sort_by(|x, y| (x.change, &x.id, &x.transport).cmp(&(y.change, &y.id, &y.transport)));
    Ok(Diff { old: old_name.to_string(), new: new_name.to_string(), lines, unchanged })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn report(results: &[(&str, &str, &str)]) -> Value {
        json!({
            "metadata": { "transports": ["plain"] },
            "results": results.iter().map(|(id, t, v)| json!({"id": id, "transport": t, "verdict": v, "level": "must"})).collect::<Vec<_>>(),
        })
    }

    #[test]
    fn changes_are_classified() {
        let a = report(&[
            ("a", "plain", "pass"),
            ("b", "plain", "fail"),
            ("c", "plain", "pass"),
            ("d", "plain", "pass"),
            ("x", "tls", "fail"),
        ]);
        let b = report(&[
            ("a", "plain", "fail"),
            ("b", "plain", "pass"),
            ("c", "plain", "skip"),
            ("e", "plain", "warn"),
            ("f", "plain", "pass"),
        ]);
        let d = diff("A", &a, "B", &b).unwrap();
        let got: Vec<(&str, Change)> = d.lines.iter().map(|l| (l.id.as_str(), l.change)).collect();
        assert_eq!(
            got,
            vec![
                ("a", Change::Regressed),
                ("e", Change::Regressed),
                ("b", Change::Fixed),
                ("c", Change::Changed),
                ("f", Change::Added),
                ("d", Change::Removed)
            ]
        );
        assert!(d.regressed());
        let same = diff("A", &a, "A", &a).unwrap();
        assert!(same.lines.is_empty() && !same.regressed() && same.unchanged == 4, "{same:?}");
        assert!(
            d.to_markdown().contains("| regressed | `a` | plain | pass (must) → fail (must) |"),
            "{}",
            d.to_markdown()
        );
        assert!(diff("A", &json!({}), "B", &b).is_err());
    }
}
