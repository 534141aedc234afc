//! Negative controls (a first version): every fault a scenario declares must make it fail against the
//! reference proxy running with that fault. Issue 5 extends this to the whole catalog.

use std::{collections::BTreeSet, str::FromStr, sync::Arc};

use harness::{
    exec::Settings,
    judge::Verdict,
    origin::Pool,
    runner::{RunSpec, run_quiet},
    scenario::{Level, embedded_sources, load},
};
use reference_proxy::faults::Fault;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_faults_make_their_scenarios_fail() {
    let all = load(&embedded_sources()).unwrap();
    let faults: BTreeSet<String> = all.iter().flat_map(|l| l.scenario.faults.clone()).collect();
    assert!(!faults.is_empty());
    let pool = Arc::new(Pool::new(None).await.unwrap());
    let mut problems = Vec::new();
    for name in &faults {
        let fault = Fault::from_str(name).unwrap_or_else(|_| panic!("scenario declares unknown fault {name:?}"));
        let mut config = reference_proxy::ProxyConfig::for_testing();
        config.faults = vec![fault];
        let (proxy, endpoints) = harness::cli::start_reference(config).await.unwrap();
        let scenarios: Vec<_> = all.iter().filter(|l| l.scenario.faults.contains(name)).cloned().collect();
        let spec = RunSpec {
            scenarios,
            endpoints,
            settings: Settings { step_timeout: std::time::Duration::from_secs(2), ..Settings::default() },
            jobs: 16,
            deviations: Default::default(),
            target_label: name.clone(),
            fail_on: Level::Must,
        };
        for r in run_quiet(spec, pool.clone()).await {
            let caught = match r.level {
                Level::Must => r.verdict == Verdict::Fail,
                Level::Should => r.verdict == Verdict::Warn,
                _ => true,
            };
            if !caught && r.verdict != Verdict::Skip {
                problems.push(format!(
                    "{name}: {} {} was {:?} ({:?})",
                    r.transport.as_str(),
                    r.id,
                    r.verdict,
                    r.reason
                ));
            }
        }
        proxy.shutdown().await;
    }
    assert!(problems.is_empty(), "faults not caught:\n{}", problems.join("\n"));
}
