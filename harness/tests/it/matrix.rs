//! The interop matrix (`connect-harness matrix`): the committed reports/README.md matches the committed JSON
//! reports, the rendering of cells and deviations, and `--proxy-log` attaching a log's new lines to results.

use std::{
    io::Write,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use serde_json::{Value, json};

use crate::support::{TempDir, bin};

#[test]
fn committed_matrix_is_fresh() {
    let dir = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../reports"));
    let reports = harness::matrix::reports_in(dir).unwrap();
    if reports.is_empty() {
        return; // no interop reports committed yet
    }
    let generated = harness::matrix::render(&reports).unwrap();
    let committed = std::fs::read_to_string(dir.join("README.md")).unwrap_or_default();
    assert!(
        committed == generated,
        "reports/README.md is stale relative to reports/*.json: run \
         `connect-harness matrix reports/*-*-*.json > reports/README.md` (interop/run-matrix does)"
    );
}

fn result(id: &str, transport: &str, verdict: &str, status: Option<u16>, deviation: Option<(&str, bool)>) -> Value {
    let mut r = json!({ "id": id, "transport": transport, "verdict": verdict });
    if let Some(s) = status {
        r["observed"] = json!({ "kind": "response", "head": { "status": s } });
    }
    if let Some((reason, unexpected)) = deviation {
        r["deviation"] = json!({ "reason": reason, "unexpected_pass": unexpected });
    }
    r
}

#[test]
fn cells_columns_and_deviations() {
    let dir = TempDir::new("matrix");
    let plain = json!({ "metadata": { "transports": ["plain"] }, "results": [
        result("a/one", "plain", "pass", Some(200), None),
        result("a/one", "tls", "skip", None, None),
        result("b/two", "plain", "warn", Some(500), Some(("answers 500", false))),
    ]});
    let tls = json!({ "metadata": { "transports": ["tls"] }, "results": [
        result("a/one", "tls", "fail", Some(200), Some(("no close_notify", false))),
        result("c/tls-only", "tls", "pass", None, Some(("was broken", true))),
    ]});
    let p1 = dir.file("proxyx-1.2-plain.json", &plain.to_string());
    let p2 = dir.file("proxyx-1.2-tls.json", &tls.to_string());
    let (code, md, err) = bin(&["matrix", p2.to_str().unwrap(), p1.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(md.contains("| scenario | proxyx 1.2 plain | proxyx 1.2 tls |"), "{md}");
    assert!(md.contains("| `a/one` | pass | **FAIL** 200† |"), "{md}");
    assert!(md.contains("| `b/two` | *warn* 500† | – |"), "{md}");
    assert!(md.contains("| `c/tls-only` | – | pass‡ |"), "{md}");
    assert!(md.contains("| proxyx | 1.2 | plain | 2 runs: 1 pass, 0 fail, 1 warn (1 known deviations) |"), "{md}");
    assert!(md.contains("- `c/tls-only` (unexpected pass): was broken"), "{md}");

    let readme = dir.file("README.md", &md);
    let (code, _, _) =
        bin(&["matrix", "--check", readme.to_str().unwrap(), p1.to_str().unwrap(), p2.to_str().unwrap()]);
    assert_eq!(code, 0);
    dir.file("README.md", &md.replace("pass‡", "pass"));
    let (code, _, err) =
        bin(&["matrix", "--check", readme.to_str().unwrap(), p1.to_str().unwrap(), p2.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("stale"), "{err}");

    let odd = dir.file("report.json", &plain.to_string());
    let (code, _, err) = bin(&["matrix", odd.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("<proxy>-<version>-<transport>.json"), "{err}");
}

#[test]
fn proxy_log_lines_written_during_a_scenario_are_attached() {
    let dir = TempDir::new("proxy-log");
    let log = dir.file("error.log", "before the run\n");
    let report = dir.path("r.json");
    // A stand-in for a proxy's error log: a line every few milliseconds while the harness runs.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, log) = (stop.clone(), log.clone());
        std::thread::spawn(move || {
            let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                writeln!(f, "[proxy:error] AH00898: line {n}").unwrap();
                n += 1;
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
        })
    };
    let (code, out, err) = bin(&[
        "run",
        "--only",
        "rfc9110/9.3.6/tunnel-basic",
        "--jobs",
        "1",
        "--proxy-log",
        log.to_str().unwrap(),
        "--report",
        &report,
        "--color",
        "never",
    ]);
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    assert_eq!(code, 0, "{out}{err}");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let ran: Vec<&Value> = v["results"].as_array().unwrap().iter().filter(|r| r["verdict"] == "pass").collect();
    assert!(!ran.is_empty());
    for r in ran {
        let excerpt = &r["proxy_log"][0];
        assert_eq!(excerpt["file"], log.to_str().unwrap());
        assert_eq!(excerpt["approximate"], false);
        let lines = excerpt["lines"].as_array().unwrap();
        assert!(!lines.is_empty(), "{r}");
        assert!(lines.iter().all(|l| l.as_str().unwrap().starts_with("[proxy:error] AH00898: line ")), "{r}");
    }
}
