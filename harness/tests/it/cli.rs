//! The binary: listing, usage errors (exit 2), bad scenario files, an unreachable proxy (exit 3), and
//! known deviations.

use harness::exit;
use serde_json::Value;

use crate::support::{self, TempDir, TestProxy, bin};

#[test]
fn list_json_names_every_scenario_once() {
    let (code, stdout, _) = bin(&["list", "--json"]);
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&stdout).unwrap();
    let ids: Vec<&str> = v.as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert!(ids.len() >= 20, "{ids:?}");
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ids.len());
    assert!(ids.contains(&"rfc9110/9.3.6/no-content-length-in-2xx"));
    let (code, table, _) = bin(&["list", "--only", "tls/*"]);
    assert_eq!(code, 0);
    assert!(table.lines().all(|l| l.starts_with("tls/") || l.ends_with("scenarios")), "{table}");
}

#[test]
fn malformed_scenario_file_names_file_line_and_field() {
    let dir = TempDir::new("bad-scenarios");
    dir.file(
        "bad.toml",
        "[[scenario]]\nid = \"x/y\"\ntitle = \"t\"\nsection = \"s\"\nrequirement = \"r\"\nlevel = \"must\"\n\n[[scenario.step]]\nexpect = { status = \"2xx\", absnt = [\"a\"] }\n",
    );
    let (code, _, stderr) = bin(&["list", "--scenarios", dir.0.to_str().unwrap()]);
    assert_eq!(code, i32::from(exit::USAGE), "{stderr}");
    assert!(stderr.contains("bad.toml:9:") && stderr.contains("absnt"), "{stderr}");

    let dir2 = TempDir::new("bad-placeholder");
    dir2.file(
        "p.toml",
        "[[scenario]]\nid = \"x/z\"\ntitle = \"t\"\nsection = \"s\"\nrequirement = \"r\"\nlevel = \"sometimes\"\n[[scenario.step]]\nsend = \"x\"\n",
    );
    let (code, _, stderr) = bin(&["list", "--scenarios", dir2.0.to_str().unwrap()]);
    assert_eq!(code, i32::from(exit::USAGE));
    assert!(stderr.contains("p.toml:6:") && stderr.contains("sometimes"), "{stderr}");
}

#[test]
fn wrong_flag_values_are_usage_errors() {
    for args in [
        &["run", "--proxy", "ftp://127.0.0.1:1"][..],
        &["run", "--jobs", "0"],
        &["run", "--fail-on", "may"],
        &["run", "--timeout", "-1"],
        &["run", "--origin-ports", "20019-20000"],
        &["run", "--proxy", "https://127.0.0.1:1"],
        &["run", "--proxy", "http://127.0.0.1:1", "--proxy-insecure"],
        &["run", "--proxy-user", "nocolon"],
        &["run", "--only", "["],
        &["run", "--only", "no-such-scenario"],
        &["run", "--report", "/nonexistent-dir-connect-harness/r.json"],
    ] {
        let (code, _, stderr) = bin(args);
        assert_eq!(code, i32::from(exit::USAGE), "{args:?}: {stderr}");
        assert!(!stderr.is_empty());
    }
}

#[test]
fn unreachable_proxy_is_exit_3() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (code, _, stderr) = bin(&["run", "--proxy", &format!("http://127.0.0.1:{port}")]);
    assert_eq!(code, i32::from(exit::CANNOT_RUN), "{stderr}");
    assert!(stderr.contains("could not connect"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expected_deviation_does_not_fail_the_run() {
    let p = TestProxy::start(|s| support::simple_connect(s, "Content-Length: 0\r\n", false)).await;
    let only = ["--only", "rfc9110/9.3.6/no-content-length-in-2xx", "--only", "rfc9110/9.3.6/tunnel-basic"];
    let url = p.url();
    let mut args = vec!["--proxy", url.as_str()];
    args.extend_from_slice(&only);
    let (code, out) = support::run(&args).await;
    assert_eq!(code, exit::FAILURES, "{out}");
    assert!(out.contains("field Content-Length is present"), "{out}");
    assert!(out.contains("MUST NOT send any Transfer-Encoding or Content-Length"), "the requirement is quoted: {out}");

    let dir = TempDir::new("expect");
    let file = dir.file(
        "known.toml",
        "[[deviation]]\nid = \"rfc9110/9.3.6/no-content-length-*\"\nreason = \"sends Content-Length: 0\"\n\n\
         [[deviation]]\nid = \"rfc9110/9.3.6/tunnel-basic\"\nreason = \"thought broken\"\n",
    );
    let report = dir.path("r.json");
    let file = file.display().to_string();
    args.extend_from_slice(&["--expect", &file, "--report", &report]);
    let (code, out) = support::run(&args).await;
    // The expected failure does not fail the run; the unexpected pass does (the file is no longer true).
    assert_eq!(code, exit::FAILURES, "{out}");
    assert!(out.contains("(expected)") && out.contains("(unexpected pass)"), "{out}");
    assert!(out.contains("UNEXPECTED PASS plain rfc9110/9.3.6/tunnel-basic"), "{out}");
    assert!(out.contains("--expect:   thought broken"), "{out}");
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(r["summary"]["expected_failures"], 1);
    assert_eq!(r["summary"]["unexpected_passes"], 1);

    // Only the true entry: the run passes.
    let only_true = dir.file(
        "true.toml",
        "[[deviation]]\nid = \"rfc9110/9.3.6/no-content-length-*\"\nreason = \"sends Content-Length: 0\"\n",
    );
    let only_true = only_true.display().to_string();
    let mut a = vec!["--proxy", url.as_str()];
    a.extend_from_slice(&only);
    a.extend_from_slice(&["--expect", &only_true]);
    let (code, out) = support::run(&a).await;
    assert_eq!(code, exit::OK, "{out}");

    // An entry whose results are now only observed (an observed-level scenario) is stale: it fails the run and
    // is named in the report.
    let observed = "rfc9112/9.6/connection-close-on-success";
    let stale = dir.file(
        "stale.toml",
        &format!(
            "[[deviation]]\nid = \"{observed}\"\nreason = \"was a failure once\"\n\n\
             [[deviation]]\nid = \"rfc9110/9.3.6/no-content-length-*\"\nreason = \"sends Content-Length: 0\"\n"
        ),
    );
    let stale = stale.display().to_string();
    let mut a = vec!["--proxy", url.as_str(), "--only", observed, "--expect", &stale, "--report", &report];
    a.extend_from_slice(&only);
    let (code, out) = support::run(&a).await;
    assert_eq!(code, exit::FAILURES, "{out}");
    assert!(out.contains(&format!("STALE EXPECTATION {observed} lists results that are only observed")), "{out}");
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(r["stale_expectations"][0]["id"], observed, "{r}");
    assert_eq!(r["stale_expectations"].as_array().unwrap().len(), 1, "{r}");

    // An entry that names no scenario of the catalog (a typo) is refused before anything runs.
    let typo = dir.file("typo.toml", "[[deviation]]\nid = \"rfc9110/9.3.6/tunnel-basik\"\nreason = \"x\"\n");
    let typo = typo.display().to_string();
    let (code, out) = support::run(&["--proxy", &url, "--expect", &typo]).await;
    assert_eq!(code, exit::USAGE, "{out}");
    assert!(out.contains("no scenario matches \"rfc9110/9.3.6/tunnel-basik\""), "{out}");

    let bad = dir.file("bad.toml", "[[deviation]]\nid = \"x\"\n");
    let bad = bad.display().to_string();
    let (code, out) = support::run(&["--proxy", &url, "--expect", &bad]).await;
    assert_eq!(code, exit::USAGE, "{out}");
    assert!(out.contains("reason"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_on_should_counts_warnings() {
    // A proxy that drops early data misses a SHOULD: a warning, which fails the run only with --fail-on should.
    let p = TestProxy::start(|s| support::simple_connect(s, "", true)).await;
    let url = p.url();
    let base = ["--proxy", url.as_str(), "--only", "rfc2817/5.2/early-data-delivered", "--timeout", "0.5"];
    let (code, out) = support::run(&base).await;
    assert_eq!(code, exit::OK, "{out}");
    assert!(out.contains("WARN"), "{out}");
    let mut args = base.to_vec();
    args.extend_from_slice(&["--fail-on", "should"]);
    let (code, out) = support::run(&args).await;
    assert_eq!(code, exit::FAILURES, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_where_nothing_was_judged_is_exit_4() {
    // The authentication scenarios without --proxy-user: every run is skipped.
    let (code, out) = support::run(&["--only", "rfc9110/11.7.1/*"]).await;
    assert_eq!(code, exit::NOTHING_JUDGED, "{out}");
    assert!(out.contains("skipped"), "{out}");
}
