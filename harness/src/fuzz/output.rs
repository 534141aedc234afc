//! What a campaign leaves behind: one reproducer scenario per distinct finding (loadable with
//! `connect-harness run --scenarios DIR`, replayed with `connect-harness fuzz --replay FILE`), and the JSON
//! campaign report.

use std::{collections::BTreeMap, path::Path};

use serde::Serialize;

use super::{Finding, Outcome, case::Dest, oracle::Oracle};
use crate::scenario::{Level, Transport};

/// The reproducer's scenario id: stable, from the signature.
pub fn scenario_id(f: &Finding) -> String {
    format!("fuzz/{}", f.violation.signature)
}

/// A TOML basic string (quotes, backslashes and control bytes escaped).
fn toml_str(s: &str) -> String {
    let mut out = String::from("\"");
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\r' => out.push_str("\\r"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The steps that check the finding's requirement after the case is sent: what a correct proxy does.
fn check_steps(f: &Finding) -> (Vec<String>, Level) {
    let sig = f.violation.signature.as_str();
    let any_answer = r#"expect = { any_of = [ { status = ["1xx", "2xx", "3xx", "4xx", "5xx"] }, { closed = true }, { timeout = true } ] }"#;
    let level = f.violation.level;
    let steps: Vec<String> = match f.violation.oracle {
        Oracle::Liveness => vec![any_answer.into()],
        Oracle::Differential if level == Level::Observed => vec![any_answer.into()],
        Oracle::Differential => vec![
            r#"expect = { any_of = [ { status = "4xx" }, { closed = true } ] }"#.into(),
            r#"origin = { name = "echo", connections = 0 }"#.into(),
        ],
        Oracle::TargetIntegrity if sig.ends_with("routed-by-host") || sig.ends_with("pipelined-connect-acted-on") => vec![
            r#"expect = { any_of = [ { status = "2xx" }, { status = ["4xx", "5xx"], verdict = "observed" }, { closed = true, verdict = "observed" } ] }"#.into(),
            r#"origin = { name = "echo2", connections = 0 }"#.into(),
        ],
        Oracle::TargetIntegrity if sig.ends_with("2xx-without-upstream") && f.case.dest == Dest::Closed => vec![
            r#"expect = { any_of = [ { status = ["4xx", "5xx"] }, { closed = true } ] }"#.into(),
        ],
        Oracle::TargetIntegrity if sig.ends_with("2xx-without-upstream") => vec![
            r#"expect = { any_of = [ { status = "2xx" }, { status = ["4xx", "5xx"], verdict = "observed" }, { closed = true, verdict = "observed" } ] }"#.into(),
            r#"origin = { name = "echo", connections = 1, if_tunnelled = true }"#.into(),
        ],
        Oracle::TargetIntegrity => vec![
            r#"expect = { any_of = [ { status = "4xx" }, { closed = true } ] }"#.into(),
            r#"origin = { name = "echo", connections = 0 }"#.into(),
        ],
        Oracle::NothingAfterRejection => vec![
            any_answer.into(),
            r#"origin = { name = "echo2", connections = 0, if_rejected = true }"#.into(),
        ],
        Oracle::WellFormed if sig.ends_with("-in-2xx") => vec![
            r#"expect = { any_of = [ { status = "2xx", absent = ["Content-Length", "Transfer-Encoding"] }, { status = ["4xx", "5xx"] }, { closed = true } ] }"#.into(),
        ],
        Oracle::WellFormed if sig.ends_with("tunnel-bytes-altered") => vec![
            r#"expect = { any_of = [ { status = "2xx" }, { status = ["4xx", "5xx"], verdict = "observed" } ] }"#.into(),
            "echo = 64".into(),
        ],
        Oracle::WellFormed => vec![
            r#"expect = { any_of = [ { status = ["1xx", "2xx", "3xx", "4xx", "5xx"], status_line_spaces = true }, { closed = true } ] }"#.into(),
        ],
    };
    (steps, level)
}

/// The reproducer scenario file of one finding (found on `transports`).
pub fn reproducer(f: &Finding, transports: &[Transport]) -> String {
    let (steps, level) = check_steps(f);
    let v = &f.violation;
    let ts: Vec<String> = transports.iter().map(|t| format!("{:?}", t.as_str())).collect();
    let mut s = String::new();
    s.push_str("# Written by `connect-harness fuzz`: a finding shrunk against the live proxy. Replay it with\n");
    s.push_str("# `connect-harness fuzz --replay THIS-FILE [--proxy URL]`, or run it with the suite (`run --scenarios DIR`).\n");
    s.push_str(&format!("area = {}\n\n[[scenario]]\n", toml_str("fuzz findings")));
    s.push_str(&format!("id = {}\n", toml_str(&scenario_id(f))));
    s.push_str(&format!("title = {}\n", toml_str(&format!("Fuzz finding ({}): {}", v.oracle.as_str(), v.detail))));
    s.push_str(&format!("section = {}\n", toml_str(&format!("catalog {}", v.catalog))));
    s.push_str(&format!("requirement = {}\n", toml_str(&v.requirement)));
    s.push_str(&format!("level = {}\n", toml_str(level.as_str())));
    s.push_str(&format!("catalog = [{}]\n", toml_str(&v.catalog)));
    s.push_str(&format!("transports = [{}]\n", ts.join(", ")));
    let note = format!(
        "Seed {}, case {} (seen in {} cases), shrunk in {} proxy runs to: {}.",
        f.seed,
        f.first_case,
        f.count,
        f.shrink_runs,
        if f.case.features().is_empty() { "a well-formed CONNECT".into() } else { f.case.features().join("; ") }
    );
    s.push_str(&format!("note = {}\n\n", toml_str(&note)));
    s.push_str(&format!("[[scenario.step]]\nsend = {}\n", toml_str(&f.template)));
    for step in steps {
        s.push_str(&format!("\n[[scenario.step]]\n{step}\n"));
    }
    s
}

/// Writes one reproducer per signature into `dir` (a signature found on both transports is one file) and
/// records each file in its findings.
pub fn write_reproducers(dir: &Path, findings: &mut [Finding]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut by_sig: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, f) in findings.iter().enumerate() {
        by_sig.entry(f.violation.signature.clone()).or_default().push(i);
    }
    for (sig, idx) in by_sig {
        let transports: Vec<Transport> = idx.iter().map(|&i| findings[i].transport).collect();
        let file = dir.join(format!("{}.toml", sig.replace('/', "--")));
        std::fs::write(&file, reproducer(&findings[idx[0]], &transports))?;
        for i in idx {
            findings[i].reproducer = Some(file.display().to_string());
        }
    }
    Ok(())
}

/// The JSON campaign report.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct CampaignReport {
    /// Version of this report's format.
    pub schema_version: u32,
    pub tool: String,
    pub target: String,
    #[serde(flatten)]
    pub outcome: Outcome,
}

pub const SCHEMA_VERSION: u32 = 1;

/// The JSON Schema of the campaign report (committed as `reports/schema/fuzz-report.schema.json`).
pub fn schema_json() -> String {
    crate::report::schema_json_of::<CampaignReport>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzz::{case::Case, oracle::Violation};

    #[test]
    fn reproducers_load_as_scenarios() {
        let mut case = Case::well_formed();
        case.extras.push(crate::fuzz::case::Extra::Nul);
        case.pipelined = true;
        for (oracle, sig, level) in [
            (Oracle::TargetIntegrity, "target-integrity/port-plus65536", Level::Must),
            (Oracle::TargetIntegrity, "target-integrity/routed-by-host", Level::Must),
            (Oracle::NothingAfterRejection, "nothing-after-rejection/pipelined-connect-after-refusal", Level::Should),
            (Oracle::WellFormed, "well-formed/content-length-in-2xx", Level::Must),
            (Oracle::Differential, "differential/lenient-x", Level::Observed),
            (Oracle::Liveness, "liveness/unresponsive", Level::Should),
        ] {
            let f = Finding {
                violation: Violation {
                    oracle,
                    signature: sig.into(),
                    level,
                    catalog: "A02".into(),
                    requirement: "A \"quoted\" sentence".into(),
                    detail: "what happened".into(),
                },
                transport: Transport::Plain,
                seed: 1,
                first_case: 2,
                count: 3,
                template: case.render(),
                case: case.clone(),
                shrink_runs: 4,
                reproduced: true,
                reproducer: None,
                known: None,
            };
            let text = reproducer(&f, &[Transport::Plain, Transport::Tls]);
            let loaded =
                crate::scenario::load(&[("r.toml".into(), text.clone())]).unwrap_or_else(|e| panic!("{e}\n{text}"));
            assert_eq!(loaded[0].scenario.id, format!("fuzz/{sig}"));
        }
    }
}
