//! Negative controls. Every `must` and `should` scenario names the reference-proxy faults that make it fail
//! (`faults = [...]`); this proves each of them can fail: against the reference proxy running with that fault,
//! the scenario must fail (`must`) or warn (`should`). Authentication scenarios run with credentials.
//! `observed` and `may` scenarios are exempt: they record what the proxy did and never fail it; a `may` scenario
//! that declares faults anyway must record the other behaviour (`observed`) under each of them.
//! The baseline (no fault) passes everything, with and without credentials (the latter in `embedded.rs`).

use std::{collections::BTreeSet, str::FromStr, sync::Arc};

use harness::{
    exec::Settings,
    judge::Verdict,
    origin::Pool,
    report::ScenarioResult,
    runner::{RunSpec, run_quiet},
    scenario::{Level, Loaded, Needs, embedded_sources, load},
};
use reference_proxy::faults::Fault;

const USER: &str = "alice:s3cret";

/// Faults whose behaviour is legitimately variable, so no scenario declares them: half-closing versus closing
/// both sides (G06), and accepting any head size (D06: RFC 9110 §5.4 requires a 4xx only above what the server
/// "wishes to process"; the limit scenarios record a 2xx). (`no-loop-detection` is declared by the `may`
/// scenario chained/7.6.3/loop-detected, which must record the loop under it.)
const RECORDED_ONLY: [&str; 2] = ["half-close-closes-both", "no-head-limit"];

/// Faults that are controls of the fuzzer's oracles rather than of a scenario (see `fuzz.rs`).
pub const FUZZ_ONLY: [&str; 1] = ["stall-on-long-field"];

/// Runs scenarios against the reference proxy with these faults, with or without credentials.
async fn run(scenarios: Vec<Arc<Loaded>>, faults: Vec<Fault>, auth: bool, pool: Arc<Pool>) -> Vec<ScenarioResult> {
    let mut config = reference_proxy::ProxyConfig::for_testing();
    config.faults = faults;
    // Both listeners also speak HTTP/2, so every check runs on the h2 and h2c transports too.
    config.http2.enabled = true;
    // The proxy's configured policy is the declared one, so `policy` scenarios are judged.
    let policy = Some(Arc::new(harness::policy::DeclaredPolicy::of(&config.policy)));
    if auth {
        let mut a = reference_proxy::config::Auth::new("connect-harness");
        a.add(USER).unwrap();
        config.auth = Some(a);
    }
    // Chained scenarios run against a second instance with the same faults, chained to the harness's parent.
    let chained_needed = scenarios.iter().any(|l| l.scenario.needs.contains(&Needs::Upstream));
    let mut chained_proxy = None;
    let chained = if chained_needed {
        let creds = Some(harness::cli::EMBEDDED_PARENT_CREDENTIALS.to_string());
        let parent = harness::origin::parent::Parent::start(([127, 0, 0, 1], 0).into(), creds).await.unwrap();
        let (p, endpoints) = harness::cli::start_chained_reference(config.clone(), &parent).await.unwrap();
        parent.set_loop_target(harness::origin::parent::LoopTarget {
            addr: p.plain_addrs()[0],
            client_credentials: auth.then(|| USER.to_string()),
        });
        chained_proxy = Some(p);
        Some(harness::runner::Chained { parent, endpoints })
    } else {
        None
    };
    let (proxy, endpoints) = harness::cli::start_reference(config).await.unwrap();
    let spec = RunSpec {
        scenarios,
        endpoints,
        settings: Settings {
            step_timeout: std::time::Duration::from_secs(2),
            proxy_user: auth.then(|| USER.to_string()),
            policy,
            ..Settings::default()
        },
        jobs: 16,
        deviations: Default::default(),
        target_label: "negative controls".into(),
        fail_on: Level::Must,
        shard: None,
        chained,
    };
    let results = run_quiet(spec, pool).await;
    proxy.shutdown().await;
    if let Some(p) = chained_proxy {
        p.shutdown().await;
    }
    results
}

#[test]
fn every_must_and_should_scenario_declares_a_fault_and_every_fault_is_used() {
    let all = load(&embedded_sources()).unwrap();
    let mut used = BTreeSet::new();
    let mut missing = Vec::new();
    for l in &all {
        let s = &l.scenario;
        for f in &s.faults {
            let fault = Fault::from_str(f).unwrap_or_else(|_| panic!("{} declares unknown fault {f:?}", s.id));
            used.insert(fault.name());
        }
        if matches!(s.level, Level::Must | Level::Should) && s.faults.is_empty() {
            missing.push(format!("{} ({})", s.id, s.level.as_str()));
        }
        if !s.faults.is_empty() && s.requirement_at.is_empty() {
            missing.push(format!("{} ({}:{}): no requirement_at", s.id, l.file, l.line));
        }
    }
    assert!(missing.is_empty(), "must/should scenarios without a negative control:\n{}", missing.join("\n"));
    let unused: Vec<&str> = Fault::ALL
        .iter()
        .map(|f| f.name())
        .filter(|n| !used.contains(n) && !RECORDED_ONLY.contains(n) && !FUZZ_ONLY.contains(n))
        .collect();
    assert!(unused.is_empty(), "faults no scenario declares: {unused:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_faults_make_their_scenarios_fail() {
    let all = load(&embedded_sources()).unwrap();
    let faults: BTreeSet<String> = all.iter().flat_map(|l| l.scenario.faults.clone()).collect();
    let by_id: std::collections::HashMap<&str, &Arc<Loaded>> =
        all.iter().map(|l| (l.scenario.id.as_str(), l)).collect();
    assert!(faults.len() >= 40, "{faults:?}");
    let pool = Arc::new(Pool::new(None).await.unwrap());
    let mut problems = Vec::new();
    let mut checked = 0;
    for name in &faults {
        let fault = Fault::from_str(name).unwrap();
        for auth in [false, true] {
            let picked: Vec<_> = all
                .iter()
                .filter(|l| l.scenario.faults.contains(name) && l.scenario.needs.contains(&Needs::Auth) == auth)
                .cloned()
                .collect();
            if picked.is_empty() {
                continue;
            }
            for r in run(picked, vec![fault], auth, pool.clone()).await {
                let decided_at = deciding_step(&r);
                if let Ok(path) = std::env::var("DUMP_CONTROLS") {
                    use std::io::Write as _;
                    let mut f = std::fs::OpenOptions::new().append(true).create(true).open(path).unwrap();
                    let line = serde_json::json!({"id": r.id, "fault": name, "transport": r.transport.as_str(), "verdict": format!("{:?}", r.verdict), "at": decided_at, "reason": r.reason});
                    writeln!(f, "{line}").unwrap();
                }
                // A `policy` scenario is judged (at `should`) only against a declared policy, as here.
                let failed = match r.level {
                    Level::Must => r.verdict == Verdict::Fail,
                    Level::Should => r.verdict == Verdict::Warn,
                    // A `may` scenario with a control: the fault turns the preferred behaviour into the other one.
                    Level::May => r.verdict == Verdict::Observed,
                    _ => true,
                };
                // Strict: the step that failed is one that embodies the requirement, not some other step.
                let required = &by_id[r.id.as_str()].scenario.requirement_at;
                let at_requirement = decided_at.as_ref().is_some_and(|k| required.contains(k));
                let caught = failed && at_requirement;
                // IPv6 scenarios are skipped on hosts without ::1; nothing else may be.
                let skipped_v6 = r.verdict == Verdict::Skip && r.reason.as_deref().is_some_and(|x| x.contains("IPv6"));
                // On the HTTP/2 transports a scenario in HTTP/1.1 syntax is skipped (a reason decided from the
                // scenario alone, scenario::h2::skip_reason); there is nothing to control.
                let skipped_h2 = r.verdict == Verdict::Skip && r.transport.is_h2();
                // A skip is not a check: it must not count towards the number of fault runs checked.
                if skipped_v6 || skipped_h2 {
                    continue;
                }
                checked += 1;
                if !caught {
                    problems.push(format!(
                        "{name}: {} {} was {:?} at {} (requirement at {:?}; {:?})",
                        r.transport.as_str(),
                        r.id,
                        r.verdict,
                        decided_at.as_deref().unwrap_or("no step"),
                        required,
                        r.reason
                    ));
                }
            }
        }
    }
    assert!(checked >= 400, "only {checked} fault runs");
    assert!(problems.is_empty(), "faults not caught:\n{}", problems.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baseline_with_credentials_passes_everything() {
    let all = load(&embedded_sources()).unwrap();
    let pool = Arc::new(Pool::new(None).await.unwrap());
    let results = run(all, Vec::new(), true, pool).await;
    let bad: Vec<String> = results
        .iter()
        .filter(|r| !matches!(r.verdict, Verdict::Pass | Verdict::Observed | Verdict::Skip))
        .map(|r| format!("{} {}: {:?} {:?}", r.transport.as_str(), r.id, r.verdict, r.reason))
        .collect();
    assert!(bad.is_empty(), "the reference proxy without faults failed:\n{}", bad.join("\n"));
    let auth_runs = results.iter().filter(|r| r.id.starts_with("rfc9110/11") && r.verdict == Verdict::Pass).count();
    assert!(auth_runs >= 10, "authentication scenarios did not run: {auth_runs}");
}

/// The kind of the first step that failed (or warned), `setup` for a failure before the steps (the TLS
/// connection to the proxy). A step judged at `observed` never decides.
fn deciding_step(r: &ScenarioResult) -> Option<String> {
    use harness::{exec::report::StepResult, scenario::OutcomeVerdict};
    r.steps
        .iter()
        .find(|s| {
            s.level != Level::Observed
                && matches!(
                    s.result,
                    StepResult::Mismatch | StepResult::TimedOut | StepResult::Tolerated(OutcomeVerdict::Warn)
                )
        })
        .map(|s| if s.index == 0 { "setup".to_string() } else { s.kind.clone() })
}
