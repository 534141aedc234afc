//! Reports after the run: shards merge into what an unsharded run reports; a diff finds a regression injected
//! with a reference-proxy fault and nothing between a report and itself; the Markdown summary and the GitHub step
//! summary.

use std::sync::Arc;

use harness::{
    exec::Settings,
    origin::Pool,
    report::{diff, merge},
    runner::{RunSpec, run_quiet},
    scenario::{Level, embedded_sources, load},
};
use reference_proxy::faults::Fault;
use serde_json::{Value, json};

use crate::support::{self, TempDir, bin};

/// A small selection that still has every kind of item: both transports, skips, and the handshake owner.
const ONLY: [&str; 4] = ["--only", "rfc9110/9.3.6/*", "--only", "tls/handshake-completes"];

fn read(path: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn verdicts(r: &Value) -> Vec<(String, String, String)> {
    r["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["id"].as_str().unwrap().into(),
                x["transport"].as_str().unwrap().into(),
                x["verdict"].as_str().unwrap().into(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_merge_into_the_unsharded_run() {
    let dir = TempDir::new("shards");
    let whole = dir.path("whole.json");
    let (code, out) = support::run(&[&ONLY[..], &["--report", &whole]].concat()).await;
    assert_eq!(code, 0, "{out}");
    let whole = read(&whole);
    assert!(verdicts(&whole).len() >= 10, "{:?}", verdicts(&whole));
    for n in [1usize, 2, 3, 7] {
        let mut parts = Vec::new();
        for i in 1..=n {
            let p = dir.path(&format!("s{n}-{i}.json"));
            let shard = format!("{i}/{n}");
            let (code, out) = support::run(&[&ONLY[..], &["--shard", &shard, "--report", &p]].concat()).await;
            assert_eq!(code, 0, "{out}");
            let v = read(&p);
            assert_eq!(v["metadata"]["shard"], shard.as_str());
            parts.push((p, v));
        }
        let merged = merge::merge(&parts).unwrap();
        assert_eq!(verdicts(&merged), verdicts(&whole), "N = {n}");
        assert_eq!(merged["summary"], whole["summary"], "N = {n}");
        assert_eq!(merged["metadata"]["merged_from"].as_array().unwrap().len(), n);
        // Balanced: no shard has more than its share (plus the handshake owner, which every shard runs).
        let total = verdicts(&whole).len();
        for (_, v) in &parts {
            assert!(verdicts(v).len() <= total.div_ceil(n) + 2, "N = {n}: {}", verdicts(v).len());
        }
    }
    // Durations from the whole run balance by time; the split still covers everything once.
    let timed = dir.path("whole-timed.json");
    std::fs::write(&timed, serde_json::to_string(&whole).unwrap()).unwrap();
    let mut parts = Vec::new();
    for i in 1..=2 {
        let p = dir.path(&format!("t{i}.json"));
        let shard = format!("{i}/2");
        let (code, out) =
            support::run(&[&ONLY[..], &["--shard", &shard, "--shard-durations", &timed, "--report", &p]].concat())
                .await;
        assert_eq!(code, 0, "{out}");
        let v = read(&p);
        parts.push((p, v));
    }
    assert_eq!(verdicts(&merge::merge(&parts).unwrap()), verdicts(&whole));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diff_finds_an_injected_regression() {
    let scenarios: Vec<_> = load(&embedded_sources())
        .unwrap()
        .into_iter()
        .filter(|l| l.file.ends_with("/rfc9110-9.3.6-tunnel.toml"))
        .collect();
    assert!(!scenarios.is_empty());
    let mut reports = Vec::new();
    for faults in [vec![], vec![Fault::ContentLengthIn2xx]] {
        let mut config = reference_proxy::ProxyConfig::for_testing();
        config.faults = faults;
        let (proxy, endpoints) = harness::cli::start_reference(config).await.unwrap();
        let spec = RunSpec {
            scenarios: scenarios.clone(),
            endpoints,
            settings: Settings::default(),
            jobs: 8,
            deviations: Default::default(),
            target_label: "test".into(),
            fail_on: Level::Must,
            shard: None,
            chained: None,
        };
        let results = run_quiet(spec, Arc::new(Pool::new(None).await.unwrap())).await;
        proxy.shutdown().await;
        reports.push(json!({ "metadata": { "transports": ["plain", "tls"] }, "results": results }));
    }
    let d = diff::diff("good", &reports[0], "faulty", &reports[1]).unwrap();
    assert!(d.regressed(), "{}", d.to_text());
    assert!(
        d.lines.iter().any(|l| l.change == diff::Change::Regressed && l.id == "rfc9110/9.3.6/no-content-length-in-2xx"),
        "{}",
        d.to_text()
    );
    let back = diff::diff("faulty", &reports[1], "good", &reports[0]).unwrap();
    assert!(!back.regressed() && back.lines.iter().any(|l| l.change == diff::Change::Fixed), "{}", back.to_text());
    let same = diff::diff("good", &reports[0], "good", &reports[0]).unwrap();
    assert!(same.lines.is_empty(), "{}", same.to_text());
}

#[test]
fn the_commands_and_the_step_summary() {
    let dir = TempDir::new("report-cmds");
    let (a, summary) = (dir.path("a.json"), dir.path("summary.md"));
    // The binary, with the variable set for it alone (tests in this process run concurrently).
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_connect-harness"))
        .args(["run", "--color", "never", "--only", "rfc9110/9.3.6/*", "--report", &a])
        .env("GITHUB_STEP_SUMMARY", &summary)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    let md = std::fs::read_to_string(&summary).unwrap();
    assert!(md.contains("### connect-harness: embedded reference proxy") && md.contains("| pass | fail |"), "{md}");
    assert!(md.contains("No failure, warning, error or unexpected pass"), "{md}");
    let (code, md2, err) = bin(&["report", "markdown", &a]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(md2.trim(), md.trim());
    let (code, text, _) = bin(&["report", "diff", &a, &a]);
    assert_eq!(code, 0);
    assert!(text.contains("0 regressed"), "{text}");
    // A copy where one pass became a fail: exit 1, in every format.
    let mut v = read(&a);
    let first = v["results"].as_array_mut().unwrap().iter_mut().find(|r| r["verdict"] == "pass").unwrap();
    first["verdict"] = json!("fail");
    let b = dir.path("b.json");
    std::fs::write(&b, serde_json::to_string(&v).unwrap()).unwrap();
    for format in ["text", "json", "markdown"] {
        let (code, out, _) = bin(&["report", "diff", &a, &b, "--format", format]);
        assert_eq!(code, 1, "{format}: {out}");
        assert!(out.contains("regressed"), "{out}");
    }
    let (code, _, err) = bin(&["report", "diff", &a, "/nonexistent.json"]);
    assert_eq!(code, 2, "{err}");
    let merged = dir.path("m.json");
    let (code, _, err) = bin(&["report", "merge", &a, &b, "-o", &merged]);
    assert_eq!(code, 2, "overlapping reports are no shards: {err}");
    assert!(err.contains("not shards of one run"), "{err}");
}

/// `--compact` and `--transcripts`: the compact report keeps what a failure needs and little else, one result per
/// line; `none` keeps no transcript; `report html` fills the texts a compact report leaves out from the catalog.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compact_reports_keep_what_a_failure_needs() {
    let dir = TempDir::new("compact");
    let (full, compact, none) = (dir.path("full.json"), dir.path("compact.json"), dir.path("none.json"));
    // A proxy whose 2xx carries Content-Length: failures, with transcripts worth keeping.
    let p = support::TestProxy::start(|s| support::simple_connect(s, "Content-Length: 0\r\n", false)).await;
    let url = p.url();
    let base = ["--proxy", url.as_str(), "--only", "rfc9110/9.3.6/*", "--report"];
    let (code, out) = support::run(&[&base[..], &[&full]].concat()).await;
    assert_eq!(code, 1, "{out}");
    let (code, out) = support::run(&[&base[..], &[&compact, "--compact", "--transcripts", "failures"]].concat()).await;
    assert_eq!(code, 1, "{out}");
    let (code, out) = support::run(&[&base[..], &[&none, "--transcripts", "none"]].concat()).await;
    assert_eq!(code, 1, "{out}");

    let text = std::fs::read_to_string(&compact).unwrap();
    let c: Value = serde_json::from_str(&text).unwrap();
    let results = c["results"].as_array().unwrap();
    assert_eq!(text.lines().count(), results.len() + 2, "one result per line");
    assert!(results.iter().all(|r| r["transport"] == "plain"), "only the transport that ran");
    assert_eq!(c["summary"]["total"], results.len());
    let failed: Vec<&Value> = results.iter().filter(|r| r["verdict"] == "fail").collect();
    assert!(!failed.is_empty());
    for r in &failed {
        for field in ["requirement", "section", "reason", "acceptable", "steps", "transcript", "observed", "source"] {
            assert!(r.get(field).is_some(), "a failure keeps its {field}: {r}");
        }
    }
    let passed = results.iter().find(|r| r["verdict"] == "pass").unwrap();
    for field in ["requirement", "steps", "transcript", "observed"] {
        assert!(passed.get(field).is_none(), "a pass drops its {field}: {passed}");
    }
    assert!(passed.get("duration_ms").is_some() && passed.get("level").is_some());
    let full_size = std::fs::metadata(&full).unwrap().len();
    assert!((text.len() as u64) * 3 < full_size, "compact {} bytes, full {full_size}", text.len());

    let n: Value = serde_json::from_str(&std::fs::read_to_string(&none).unwrap()).unwrap();
    assert!(n["results"].as_array().unwrap().iter().all(|r| r.get("transcript").is_none()));

    // The page of the compact report has the pass's requirement again, from the catalog.
    let page = dir.path("c.html");
    let (code, _, err) = bin(&["report", "html", &compact, "-o", &page]);
    assert_eq!(code, 0, "{err}");
    let html = std::fs::read_to_string(&page).unwrap();
    let requirement =
        read(&full)["results"].as_array().unwrap().iter().find(|r| r["id"] == passed["id"]).unwrap()["requirement"]
            .as_str()
            .unwrap()
            .to_string();
    let snippet: String = requirement.chars().take(40).collect::<String>().replace('<', "\\u003c");
    assert!(html.contains(&snippet), "{snippet}");
}
