//! Controls of the fuzzer: against the reference proxy with a fault, the campaign finds the fault's signature
//! within a bounded number of cases and shrinks it to a reproducer that still shows it; the written reproducer
//! loads as a scenario and fails against the faulty proxy when run; against the fault-free proxy a long
//! campaign finds no `must` or `should` violation.

use std::{str::FromStr, sync::Arc, time::Duration};

use harness::{
    exec::Settings,
    fuzz::{self, Campaign, output},
    judge::Verdict,
    origin::Pool,
    runner::{RunSpec, run_quiet},
    scenario::Level,
};
use reference_proxy::faults::Fault;

async fn campaign(
    faults: Vec<Fault>,
    cases: u64,
    timeout: Duration,
) -> (fuzz::Outcome, Vec<harness::exec::ProxyEndpoint>, reference_proxy::RunningProxy) {
    let mut config = reference_proxy::ProxyConfig::for_testing();
    config.faults = faults;
    let (proxy, endpoints) = harness::cli::start_reference(config).await.unwrap();
    let c = Campaign {
        endpoints: endpoints.clone(),
        settings: Settings { step_timeout: timeout, ..Settings::default() },
        seed: 7,
        cases: Some(cases),
        duration: Some(Duration::from_secs(120)),
        jobs: 8,
        timeout,
        liveness_every: 16,
        shrink_runs: 60,
    };
    let pool = Arc::new(Pool::new(None).await.unwrap());
    (fuzz::run(&c, pool, Arc::new(fuzz::Quiet)).await, endpoints, proxy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_fault_is_found_shrunk_and_reproduced() {
    let dir = std::env::temp_dir().join(format!("ch-fuzz-controls-{}", std::process::id()));
    let controls: [(&str, &str); 6] = [
        ("lax-port", "target-integrity/port-"),
        ("route-by-host", "target-integrity/routed-by-host"),
        ("respond-before-connect", "target-integrity/2xx-without-upstream"),
        ("no-close-after-reject", "nothing-after-rejection/pipelined-connect-after-refusal"),
        ("content-length-in-2xx", "well-formed/content-length-in-2xx"),
        ("stall-on-long-field", "liveness/unresponsive"),
    ];
    let mut problems = Vec::new();
    for (fault, want) in controls {
        let timeout = Duration::from_secs(1);
        let (outcome, endpoints, proxy) = campaign(vec![Fault::from_str(fault).unwrap()], 1000, timeout).await;
        let mut hits: Vec<fuzz::Finding> =
            outcome.findings.iter().filter(|f| f.violation.signature.starts_with(want)).cloned().collect();
        if hits.is_empty() {
            let got: Vec<&str> = outcome.findings.iter().map(|f| f.violation.signature.as_str()).collect();
            problems.push(format!("{fault}: {want} not found in {} cases (found {got:?})", outcome.cases));
            proxy.shutdown().await;
            continue;
        }
        let f = hits[0].clone();
        if !f.reproduced {
            problems.push(format!(
                "{fault}: the shrunk case no longer shows {} ({:?}, {} runs)",
                f.violation.signature, f.case, f.shrink_runs
            ));
        }
        // Shrinking makes the case simpler than a random one: at most the parts the fault needs.
        if f.case.features().len() > 4 {
            problems.push(format!("{fault}: shrunk case still has {:?}", f.case.features()));
        }
        // The reproducer, run as a scenario against the same faulty proxy, does not pass.
        let sub = dir.join(fault);
        output::write_reproducers(&sub, &mut hits).unwrap();
        let file = hits[0].reproducer.clone().unwrap();
        let text = std::fs::read_to_string(&file).unwrap();
        let loaded = harness::scenario::load(&[(file.clone(), text.clone())]).unwrap_or_else(|e| panic!("{e}\n{text}"));
        if f.violation.signature != "liveness/unresponsive" {
            let spec = RunSpec {
                scenarios: loaded,
                endpoints: endpoints.iter().filter(|e| e.transport == f.transport).cloned().collect(),
                settings: Settings { step_timeout: Duration::from_secs(2), ..Settings::default() },
                jobs: 1,
                deviations: Default::default(),
                target_label: "fuzz control".into(),
                fail_on: Level::Must,
                shard: None,
                chained: None,
            };
            let results = run_quiet(spec, Arc::new(Pool::new(None).await.unwrap())).await;
            let caught = results.iter().any(|r| matches!(r.verdict, Verdict::Fail | Verdict::Warn));
            if !caught {
                problems.push(format!(
                    "{fault}: the reproducer {file} passed: {:?}",
                    results.iter().map(|r| (&r.verdict, &r.reason)).collect::<Vec<_>>()
                ));
            }
        }
        proxy.shutdown().await;
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_proxy_breaks_no_oracle() {
    let (outcome, _, proxy) = campaign(Vec::new(), 3000, Duration::from_secs(3)).await;
    proxy.shutdown().await;
    assert!(outcome.cases >= 3000, "{}", outcome.cases);
    let bad: Vec<String> = outcome
        .findings
        .iter()
        .filter(|f| matches!(f.violation.level, Level::Must | Level::Should))
        .map(|f| format!("{} {}: {} ({:?})", f.transport.as_str(), f.violation.signature, f.violation.detail, f.case))
        .collect();
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

/// Seed and mutated heads are judged by what the strict parser reads in the bytes: a proxy that reads a port out
/// of `PORTx` (fault `lax-port`) is caught by the differential oracle at its MUST; one that dials another port
/// than the target's (fault `dial-next-port`, reached here by naming the port below the echo origin's) is a
/// tunnel elsewhere. The fault-free proxy shows neither for the same bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_heads_are_judged_by_the_bytes() {
    use fuzz::{case::Case, seed::Seed};
    use harness::scenario::OriginKind;
    let seeded =
        |head: &str| Case { seed: Some(Seed { from: "test".into(), head: head.into() }), ..Case::well_formed() };
    let bad_port = seeded("CONNECT {echo.host}:{echo.port}x HTTP/1.1\r\nHost: {echo.host}:{echo.port}\r\n{auth}\r\n");
    let below = seeded("CONNECT {echo.host}:{echo.port-1} HTTP/1.1\r\nHost: {echo.host}:{echo.port-1}\r\n{auth}\r\n");
    let cases = [
        ("lax-port", &bad_port, Some(("differential/accepts-", Level::Must))),
        ("dial-next-port", &below, Some(("target-integrity/tunnel-elsewhere", Level::Must))),
        ("", &bad_port, None),
        ("", &below, None),
    ];
    let pool = Pool::new(None).await.unwrap();
    let set = pool.lease(&[OriginKind::Echo, OriginKind::Echo2, OriginKind::Closed]).await.unwrap();
    let mut problems = Vec::new();
    for (fault, case, want) in cases {
        let mut config = reference_proxy::ProxyConfig::for_testing();
        config.faults = if fault.is_empty() { Vec::new() } else { vec![Fault::from_str(fault).unwrap()] };
        let (proxy, endpoints) = harness::cli::start_reference(config).await.unwrap();
        let settings = Settings { step_timeout: Duration::from_secs(2), ..Settings::default() };
        let facts = fuzz::probe::run(case, &set, &endpoints[0], &settings, Duration::from_secs(2)).await.unwrap();
        let got = fuzz::oracle::judge(case, &facts);
        let ok = match want {
            Some((sig, level)) => got.iter().any(|v| v.signature.starts_with(sig) && v.level == level),
            None => got.iter().all(|v| v.level == Level::Observed),
        };
        if !ok {
            problems.push(format!(
                "{fault:?} {}: want {want:?}, got {got:?} ({})",
                case.render(),
                facts.answer.summary()
            ));
        }
        proxy.shutdown().await;
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
