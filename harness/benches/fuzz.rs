//! Fuzz campaign speed against the embedded reference proxy, with the baselines that say where the time goes,
//! all measured in the same run on loopback:
//! 1. generation: make, render and judge cases with no I/O (the fuzzer's own CPU cost);
//! 2. floor: a well-formed CONNECT, its 2xx and a probe through the tunnel, the same worker count (what any
//!    case costs at least: one connection to the proxy, one upstream connection, one round trip);
//! 3. the campaign: generated cases with every oracle, liveness probes included.
//!
//! `cargo bench -p harness --bench fuzz` (env FUZZ_BENCH_CASES, default 20000; FUZZ_BENCH_JOBS, default 32).

use std::{sync::Arc, time::Instant};

use harness::{
    exec::Settings,
    fuzz::{self, Campaign, case, probe},
    origin::Pool,
    scenario::OriginKind,
};
use proptest::strategy::{Strategy, ValueTree};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(bench());
}

async fn bench() {
    let cases = env("FUZZ_BENCH_CASES", 20000);
    let jobs = env("FUZZ_BENCH_JOBS", 32) as usize;
    let (proxy, endpoints) = harness::cli::start_reference(reference_proxy::ProxyConfig::for_testing()).await.unwrap();
    let settings = Settings::default();

    // 1. Generation and judging, no I/O.
    let strategy = case::strategy();
    let t = Instant::now();
    let mut bytes = 0usize;
    for i in 0..cases {
        let c = strategy.new_tree(&mut case::runner_for(1, i)).unwrap().current();
        bytes += c.render().len();
    }
    let gen_rate = cases as f64 / t.elapsed().as_secs_f64();

    // 2. The floor: well-formed CONNECTs through the same probe code, `jobs` at once.
    let pool = Arc::new(Pool::new(None).await.unwrap());
    let t = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let per = cases / jobs as u64;
    for j in 0..jobs {
        let (pool, ep, settings) = (pool.clone(), endpoints[j % endpoints.len()].clone(), settings.clone());
        tasks.spawn(async move {
            let set = pool.lease(&[OriginKind::Echo, OriginKind::Echo2, OriginKind::Closed]).await.unwrap();
            for _ in 0..per {
                let f =
                    probe::run(&case::Case::well_formed(), &set, &ep, &settings, settings.step_timeout).await.unwrap();
                assert!(f.answer.is_success());
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let floor_rate = (per * jobs as u64) as f64 / t.elapsed().as_secs_f64();

    // 3. The campaign.
    let c = Campaign {
        endpoints: endpoints.clone(),
        settings: settings.clone(),
        seed: 1,
        cases: Some(cases),
        duration: None,
        jobs,
        timeout: settings.step_timeout,
        liveness_every: 32,
        shrink_runs: 150,
    };
    let outcome = fuzz::run(&c, pool, Arc::new(fuzz::Quiet)).await;
    proxy.shutdown().await;

    println!("fuzz bench: {cases} cases, {jobs} jobs, plain + TLS, embedded reference proxy, loopback");
    println!(
        "  generation + rendering (no I/O): {gen_rate:>10.0} cases/s ({:.0} bytes/case)",
        bytes as f64 / cases as f64
    );
    println!("  floor (well-formed CONNECT + 2xx + probe): {floor_rate:>8.0} cases/s");
    println!(
        "  campaign (all oracles, liveness every 32): {:>7.0} cases/s = {:.2} x floor; {} findings",
        outcome.cases_per_second,
        outcome.cases_per_second / floor_rate,
        outcome.findings.len()
    );
}
