//! The whole catalog against the embedded reference proxy, on every transport (plain, tls, h2, h2c).

use harness::exit;
use serde_json::Value;

use crate::support::{self, TempDir};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_catalog_passes_on_both_transports() {
    let dir = TempDir::new("embedded");
    let (report, junit) = (dir.path("report.json"), dir.path("junit.xml"));
    let (code, out) = support::run(&["--report", &report, "--junit", &junit]).await;
    assert_eq!(code, exit::OK, "{out}");
    assert!(out.contains("Summary") && out.contains("0 failed") && out.contains("0 errors"), "{out}");

    let r: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(r["schema_version"], 3);
    // The preflight found the embedded proxy's policy open to the origins, by IPv4 at least, on both transports.
    let probes = r["metadata"]["preflight"].as_array().unwrap();
    for t in ["plain", "tls", "h2", "h2c"] {
        assert!(
            probes.iter().any(|p| p["transport"] == t && p["kind"] == "ipv4" && p["answer"] == "tunnel"),
            "{probes:?}"
        );
    }
    assert_eq!(r["metadata"]["transports"], serde_json::json!(["plain", "tls", "h2", "h2c"]));
    let results = r["results"].as_array().unwrap();
    assert_eq!(r["summary"]["total"].as_u64().unwrap() as usize, results.len());
    for t in ["plain", "tls", "h2", "h2c"] {
        let ran = results.iter().filter(|x| x["transport"] == t && x["verdict"] != "skip").count();
        assert!(ran >= 60, "too few {t} results: {ran}");
    }
    // On HTTP/2, a scenario in HTTP/1.1 syntax is skipped and says why; the HTTP/2-only ones ran.
    let syntax = results.iter().find(|x| x["id"] == "rfc9112/3.2/host-missing" && x["transport"] == "h2").unwrap();
    assert_eq!(syntax["verdict"], "skip");
    assert!(syntax["reason"].as_str().unwrap().contains("no HTTP/2 form"), "{syntax}");
    let h2_only: Vec<_> = results.iter().filter(|x| x["id"].as_str().unwrap().starts_with("h2/")).collect();
    assert!(h2_only.len() >= 36, "18 h2/ scenarios or more, on h2 and h2c: {}", h2_only.len());
    for x in &h2_only {
        assert!(x["transport"] == "h2" || x["transport"] == "h2c", "{x}");
        let recorded = x["level"] == "observed" && x["verdict"] == "observed";
        assert!(x["verdict"] == "pass" || recorded, "{} {}: {}", x["transport"], x["id"], x["reason"]);
    }
    for x in results {
        let v = x["verdict"].as_str().unwrap();
        assert!(["pass", "observed", "skip"].contains(&v), "{} {}: {v}: {}", x["transport"], x["id"], x["reason"]);
        if v != "skip" {
            assert!(x["transcript"]["entries"].as_array().is_some_and(|e| !e.is_empty()), "{}", x["id"]);
            assert!(!x["requirement"].as_str().unwrap().is_empty());
        }
    }
    // Without --proxy-user, the authentication scenarios are skipped with a reason.
    let auth = results.iter().find(|x| x["id"] == "rfc9110/11.7.1/407-has-proxy-authenticate").unwrap();
    assert_eq!(auth["verdict"], "skip");
    assert!(auth["reason"].as_str().unwrap().contains("--proxy-user"));
    // The origins saw what the scenario claims: request-target, not Host.
    let rt = results
        .iter()
        .find(|x| x["id"] == "rfc9112/3.3/request-target-wins-over-host" && x["transport"] == "plain")
        .unwrap();
    let dialled: Vec<&str> = rt["origins"].as_array().unwrap().iter().map(|o| o["origin"].as_str().unwrap()).collect();
    assert_eq!(dialled, ["echo"]);
    // SNI = target name: the certificate name mismatch is recorded, and the scenario still ran.
    let sni = results.iter().find(|x| x["id"] == "tls/sni-target-name").unwrap();
    assert_eq!(sni["tls"]["cert"]["valid_for_sni"], false);
    assert_eq!(sni["tls"]["cert"]["chain_trusted"], true);

    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("<testsuite name=\"connect-harness.tls\"") && xml.contains("failures=\"0\""), "{xml}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_credentials_the_auth_scenarios_run_and_pass() {
    // The embedded proxy then requires exactly these credentials.
    let (code, out) = support::run(&["--proxy-user", "alice:s3cret:x", "--only", "rfc9110/11.7.1/*"]).await;
    assert_eq!(code, exit::OK, "{out}");
    assert!(out.contains("PASS") && !out.contains("SKIP"), "{out}");
    // Two scenarios on plain, tls, h2 and h2c.
    assert!(out.contains("8 runs: 8 passed"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn library_run_against_a_configured_reference_proxy() {
    use std::sync::Arc;

    use harness::{
        exec::Settings,
        judge::Verdict,
        origin::Pool,
        runner::{RunSpec, run_quiet},
        scenario::{Level, embedded_sources, load},
    };
    let (proxy, endpoints) = harness::cli::start_reference(reference_proxy::ProxyConfig::for_testing()).await.unwrap();
    let scenarios: Vec<_> = load(&embedded_sources())
        .unwrap()
        .into_iter()
        .filter(|l| l.file.ends_with("/rfc9112-3.3-request-target.toml"))
        .collect();
    let spec = RunSpec {
        scenarios,
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
    // The configuration has no HTTP/2: the h2 and h2c items are skipped, saying so.
    let (ran, skipped): (Vec<_>, Vec<_>) = results.iter().partition(|r| r.verdict != Verdict::Skip);
    assert_eq!((ran.len(), skipped.len()), (4, 4));
    assert!(skipped.iter().all(|r| r.transport.is_h2() && r.reason.as_deref().unwrap_or("").contains("no h2")));
    assert!(
        ran.iter().all(|r| r.verdict == Verdict::Pass),
        "{:?}",
        results.iter().map(|r| (&r.id, r.verdict)).collect::<Vec<_>>()
    );
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transcripts_failures_drops_them_from_results_that_need_no_reading() {
    let dir = TempDir::new("transcripts");
    let report = dir.path("report.json");
    let only = "rfc9112/9.6/connection-close-on-success";
    let (code, out) =
        support::run(&["--only", "rfc9110/9.3.6/*", "--only", only, "--transcripts", "failures", "--report", &report])
            .await;
    assert_eq!(code, exit::OK, "{out}");
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let results = r["results"].as_array().unwrap();
    let (mut passes, mut observed) = (0, 0);
    for x in results {
        match x["verdict"].as_str().unwrap() {
            "pass" => {
                passes += 1;
                assert!(x.get("transcript").is_none(), "{}: a pass kept its transcript", x["id"]);
            }
            "observed" => {
                // Recorded, not judged: its observed response is the record (failures keep their transcripts:
                // reports::compact_reports_keep_what_a_failure_needs).
                observed += 1;
                assert!(x.get("transcript").is_none(), "{}: an observed result kept its transcript", x["id"]);
                assert!(x.get("observed").is_some(), "{}", x["id"]);
            }
            _ => {}
        }
    }
    assert!(passes > 0 && observed > 0, "passes {passes}, observed {observed}: {out}");
}
