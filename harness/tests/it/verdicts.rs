//! Negative controls for the judgements that keep a verdict about the requirement: a policy refusal is
//! `inconclusive` (not a failure), a wrapped port is a failure with the dialled port as evidence (whatever the
//! port allow-list answers), a stalled TLS handshake is a `setup` result of its scenario and a failure of
//! `tls/handshake-completes` only, and a refusal of the IPv4 preflight stops the run (exit 3).

use std::{net::SocketAddr, sync::Arc, time::Duration};

use harness::{
    exec::Settings,
    judge::Verdict,
    origin::{Placement, Pool},
    report::ScenarioResult,
    runner::{RunSpec, run_quiet},
    scenario::{Level, Loaded, embedded_sources, load},
};
use reference_proxy::{ProxyConfig, faults::Fault};
use tokio::{
    io::AsyncReadExt,
    net::{TcpListener, TcpStream},
};

fn catalog(filter: impl Fn(&Loaded) -> bool) -> Vec<Arc<Loaded>> {
    load(&embedded_sources()).unwrap().into_iter().filter(|l| filter(l)).collect()
}

/// Runs scenarios against a reference proxy with this configuration, as an external proxy would be run: no
/// declared policy (so its refusals are not known to be wrong).
async fn run(config: ProxyConfig, scenarios: Vec<Arc<Loaded>>, pool: Pool) -> Vec<ScenarioResult> {
    let mut config = config;
    // Every transport, HTTP/2 included.
    config.http2.enabled = true;
    let (proxy, endpoints) = harness::cli::start_reference(config).await.unwrap();
    let results = run_quiet(spec(scenarios, endpoints, Duration::from_secs(2), 16), Arc::new(pool)).await;
    proxy.shutdown().await;
    results
}

/// A run of these scenarios with no declared policy, no expectations, failing on `must`.
fn spec(
    scenarios: Vec<Arc<Loaded>>,
    endpoints: Vec<harness::exec::ProxyEndpoint>,
    step_timeout: Duration,
    jobs: usize,
) -> RunSpec {
    RunSpec {
        scenarios,
        endpoints,
        settings: Settings { step_timeout, ..Settings::default() },
        jobs,
        deviations: Default::default(),
        target_label: "verdicts".into(),
        fail_on: Level::Must,
        shard: None,
        chained: None,
    }
}

/// The results with one of these verdicts.
fn having(results: &[ScenarioResult], verdicts: &[Verdict]) -> Vec<ScenarioResult> {
    results.iter().filter(|r| verdicts.contains(&r.verdict)).cloned().collect()
}

fn show(results: &[ScenarioResult]) -> String {
    results
        .iter()
        .map(|r| format!("{} {} {:?} {:?}", r.transport.as_str(), r.id, r.verdict, r.reason))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_that_refuses_names_is_inconclusive_never_a_failure() {
    let mut config = ProxyConfig::for_testing();
    config.policy.ip_literals_only = true;
    let results = run(config, catalog(|_| true), Pool::new(None).await.unwrap()).await;
    let bad = having(&results, &[Verdict::Fail, Verdict::Warn, Verdict::Error]);
    assert!(bad.is_empty(), "a name-refusing policy produced failures:\n{}", show(&bad));
    let inconclusive = having(&results, &[Verdict::Inconclusive]);
    assert!(inconclusive.len() >= 10, "only {} inconclusive", inconclusive.len());
    for r in &inconclusive {
        assert!(r.reason.as_deref().is_some_and(|x| x.contains("policy")), "{}: {:?}", r.id, r.reason);
    }
    let question = results.iter().find(|r| r.id == "tls/apache-sni-host-question").unwrap();
    assert_eq!(question.verdict, Verdict::Inconclusive, "{:?}", question.reason);
}

/// The ephemeral port range, where the origins' ports come from: the allow-list a port-wrapping proxy hides
/// behind.
fn ephemeral_ports() -> String {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or("32768 60999".into());
    let mut it = text.split_whitespace();
    format!("{}-{}", it.next().unwrap_or("32768"), it.next().unwrap_or("60999"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrapped_ports_fail_with_the_dialled_port_behind_an_allow_list() {
    let wraps = |l: &Loaded| l.scenario.id.starts_with("rfc9112/3.2.3/port-plus-");
    for (fault, expected) in [
        (Fault::LaxPort, vec!["port-plus-65536", "port-plus-131072", "port-plus-2pow32", "port-plus-sign"]),
        (Fault::PortWraps32, vec!["port-plus-2pow32"]),
    ] {
        let mut config = ProxyConfig::for_testing();
        config.faults = vec![fault];
        config.policy.ports = ephemeral_ports().parse().unwrap();
        let results = run(config, catalog(wraps), Pool::new(None).await.unwrap()).await;
        for r in &results {
            let slug = r.id.rsplit('/').next().unwrap();
            if expected.contains(&slug) {
                assert_eq!(r.verdict, Verdict::Fail, "{fault:?} {}: {:?}", r.id, r.reason);
                let why = r.reason.as_deref().unwrap_or_default();
                assert!(why.starts_with("step 2 (origin): echo accepted 1 connections"), "{}: {why}", r.id);
                if slug != "port-plus-sign" {
                    assert!(why.contains("the proxy dialled port") && why.contains(" mod "), "{}: {why}", r.id);
                }
            } else {
                assert_eq!(r.verdict, Verdict::Pass, "{fault:?} {}: {:?}", r.id, r.reason);
            }
        }
    }
}

/// A TCP forwarder to the proxy's TLS listener that stalls the connections numbered in `stall` (it reads and
/// never answers): a TLS listener that stops completing handshakes for a while.
async fn stalling_forwarder(to: SocketAddr, stall: std::ops::Range<usize>) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let mut n = 0usize;
        while let Ok((mut client, _)) = l.accept().await {
            n += 1;
            if stall.contains(&n) {
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    while let Ok(Ok(k)) = tokio::time::timeout(Duration::from_secs(10), client.read(&mut buf)).await {
                        if k == 0 {
                            break;
                        }
                    }
                });
                continue;
            }
            tokio::spawn(async move {
                if let Ok(mut up) = TcpStream::connect(to).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut up).await;
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_handshakes_are_setup_failures_owned_by_one_scenario() {
    let (proxy, mut endpoints) = harness::cli::start_reference(ProxyConfig::for_testing()).await.unwrap();
    endpoints.retain(|e| e.transport == harness::scenario::Transport::Tls);
    // The preflight opens the first connection; with one job, scenarios follow one connection (or two, with
    // a retry) each. Stall a stretch of connections long enough to defeat the retry.
    endpoints[0].addr = stalling_forwarder(endpoints[0].addr, 12..20).await;
    let scenarios =
        catalog(|l| l.scenario.id.starts_with("rfc9110/9.3.6/") || l.scenario.id == harness::runner::HANDSHAKE_OWNER);
    let spec = spec(scenarios, endpoints, Duration::from_millis(500), 1);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let collect = tokio::spawn(async move {
        let mut findings = Vec::new();
        while let Some(ev) = rx.recv().await {
            if let harness::runner::Event::Done { findings: f, .. } = ev {
                findings = f;
            }
        }
        findings
    });
    let results = harness::runner::run(spec, Arc::new(Pool::new(None).await.unwrap()), tx).await.results;
    let findings = collect.await.unwrap();
    proxy.shutdown().await;
    let setup: Vec<&ScenarioResult> = results.iter().filter(|r| r.verdict == Verdict::Setup).collect();
    assert!(!setup.is_empty(), "no setup failure:\n{}", show(&results));
    let failed = having(&results, &[Verdict::Fail]);
    assert_eq!(failed.len(), 1, "only the owner fails:\n{}", show(&failed));
    assert_eq!(failed[0].id, harness::runner::HANDSHAKE_OWNER);
    assert!(failed[0].reason.as_deref().unwrap_or_default().contains("did not complete"), "{:?}", failed[0].reason);
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert!(findings[0].setup_failures >= setup.len().min(1));
    assert!(!findings[0].just_before.is_empty(), "{findings:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_ipv4_preflight_stops_the_run() {
    let mut config = ProxyConfig::for_testing();
    config.policy.ports = "443".parse().unwrap();
    let (proxy, endpoints) = harness::cli::start_reference(config).await.unwrap();
    let pool = Pool::new(None).await.unwrap();
    let settings = Settings::default();
    let pre = harness::preflight::run(&endpoints, &settings, &pool).await;
    proxy.shutdown().await;
    let why = pre.blocked().expect("the IPv4 preflight was refused");
    assert!(why.contains("refused it by policy") && why.contains("403"), "{why}");
    assert!(why.contains("--origin-ports"), "{why}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_that_allows_only_port_443_is_tested_with_its_policy_untouched() {
    // Needs to bind 443 on loopback addresses (root, or CAP_NET_BIND_SERVICE); CI runs as root.
    let Ok(probe) = std::net::TcpListener::bind("127.0.0.2:443") else {
        eprintln!("skipped: cannot bind 127.0.0.2:443 here (not root)");
        return;
    };
    drop(probe);
    let mut config = ProxyConfig::for_testing();
    config.policy.ports = "443".parse().unwrap();
    let pool = Pool::with(Placement { ports: Some(443..=443), addrs: Vec::new(), sets: 16 }).await.unwrap();
    let results = run(config, catalog(|_| true), pool).await;
    let bad = having(&results, &[Verdict::Fail, Verdict::Error, Verdict::Setup]);
    assert!(bad.is_empty(), "{}", show(&bad));
    let passed = results.iter().filter(|r| r.verdict == Verdict::Pass).count();
    assert!(passed >= results.len() / 2, "only {passed} of {} passed:\n{}", results.len(), show(&results));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origins_on_another_address_leave_out_what_needs_localhost() {
    let other: std::net::IpAddr = "127.0.0.2".parse().unwrap();
    let pool = Pool::with(Placement { ports: None, addrs: vec![other], sets: 8 }).await.unwrap();
    let scenarios =
        catalog(|l| l.file.ends_with("/rfc9110-9.3.6-tunnel.toml") || l.scenario.id.starts_with("tls/matrix/"));
    let results = run(ProxyConfig::for_testing(), scenarios, pool).await;
    let bad = having(&results, &[Verdict::Fail, Verdict::Error, Verdict::Setup]);
    assert!(bad.is_empty(), "{}", show(&bad));
    // The tunnels went to 127.0.0.2, and the `localhost` targets were skipped with the reason.
    let passed: Vec<&ScenarioResult> = results.iter().filter(|r| r.verdict == Verdict::Pass).collect();
    assert!(!passed.is_empty());
    for r in passed.iter().filter(|r| !r.origins.is_empty()) {
        let sent = r.transcript.as_ref().map(|t| t.entries.iter().map(|e| e.data.clone()).collect::<String>());
        let sent = sent.unwrap_or_default();
        // HTTP/1.1 request line, or the HTTP/2 HEADERS note.
        let to_other = sent.contains("CONNECT 127.0.0.2:") || sent.contains(":authority 127.0.0.2:");
        assert!(to_other, "{} {}: not to 127.0.0.2", r.transport.as_str(), r.id);
    }
    let skipped = results.iter().find(|r| r.id == "tls/matrix/sni-proxy-name/host-target").unwrap();
    assert_eq!(skipped.verdict, Verdict::Skip);
    assert!(skipped.reason.as_deref().unwrap_or_default().contains("127.0.0.1"), "{:?}", skipped.reason);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_that_compares_sni_with_the_target_is_not_stopped_by_the_preflight() {
    // The preflight's TLS probe sends the proxy's name as SNI: refused, it is retried without SNI, so the SNI
    // scenarios (not exit 3) report the comparison.
    let mut config = ProxyConfig::for_testing();
    config.faults = vec![Fault::SniMustMatchTarget];
    let (proxy, endpoints) = harness::cli::start_reference(config).await.unwrap();
    let pool = Pool::new(None).await.unwrap();
    let pre = harness::preflight::run(&endpoints, &Settings::default(), &pool).await;
    proxy.shutdown().await;
    assert!(pre.blocked().is_none(), "{:?}", pre.blocked());
    let tls_v4 = pre.probes.iter().find(|p| p.transport == harness::scenario::Transport::Tls).unwrap();
    assert!(tls_v4.detail.contains("without SNI"), "{}", tls_v4.detail);
}
