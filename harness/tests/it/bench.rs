//! `connect-harness bench`: every phase produces figures against the reference proxy; a proxy that accepts and
//! never answers is reported as stalled and does not hang the bench; `--pid` accounting reads the proxy child's
//! own CPU; the report round-trips through `--compare`. No timing assertion: only that figures exist and runs end.

use std::{sync::Arc, time::Duration};

use harness::{
    bench::{
        self, BenchSpec, Phase, Subject,
        origins::Origins,
        path::{OriginAddrs, ProxyPath, Route},
        report::{SubjectInfo, SubjectKind},
    },
    exec::ProxyEndpoint,
    scenario::Transport,
};

use crate::support::{TempDir, bin};

fn subject(label: &str, kind: SubjectKind, route: Route, pids: Vec<u32>) -> Subject {
    Subject {
        info: SubjectInfo { label: label.into(), kind, transport: None, url: None, pids, pgids: vec![], streams: None },
        route,
    }
}

fn spec(subjects: Vec<Subject>, origins: &Origins, open_timeout: Duration) -> BenchSpec {
    BenchSpec {
        subjects,
        origins: OriginAddrs { sink: origins.sink, source: origins.source, echo: origins.echo },
        phases: vec![Phase::Throughput, Phase::Rate, Phase::Idle],
        concurrency: vec![2],
        tunnels: vec![20],
        seconds: 0.2,
        rounds: 1,
        open_timeout,
        fd_limit: bench::procfs::raise_fd_limit(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_phase_measures_the_reference_proxy() {
    // HTTP/2 too: the h2 and h2c listeners, and the h2 one again with four streams sharing a connection.
    let mut config = reference_proxy::ProxyConfig::for_testing();
    config.http2.enabled = true;
    let (proxy, endpoints) = harness::cli::start_reference(config).await.unwrap();
    let origins = Origins::start("127.0.0.1".parse().unwrap(), 0).unwrap();
    let relays = [origins.sink, origins.source, origins.echo].map(|a| bench::yardstick::start(a).unwrap());
    // The proxy runs in this process here, so its "own" CPU is this process's: enough to show accounting works.
    let me = std::process::id();
    let mut subjects = vec![
        subject("direct", SubjectKind::Direct, Route::Direct, vec![]),
        subject("yardstick", SubjectKind::Yardstick, Route::Yardstick(relays), vec![]),
    ];
    for ep in &endpoints {
        let label = format!("reference {}", ep.transport.as_str());
        let path = ProxyPath::new(ep.clone(), None).unwrap();
        subjects.push(subject(&label, SubjectKind::Proxy, Route::Proxy(Arc::new(path)), vec![me]));
    }
    let h2 = endpoints.iter().find(|e| e.transport == Transport::H2).unwrap();
    let path = ProxyPath::new(h2.clone(), None).unwrap().with_streams(4);
    let mut multi = subject("reference h2 ×4", SubjectKind::Proxy, Route::Proxy(Arc::new(path)), vec![me]);
    multi.info.streams = Some(4);
    subjects.push(multi);
    let s = spec(subjects, &origins, Duration::from_secs(5));
    let report = tokio::time::timeout(Duration::from_secs(120), bench::run(&s, &bench::Quiet)).await.unwrap();
    proxy.shutdown().await;
    let mut problems = Vec::new();
    for r in &report.throughput {
        if r.gib_per_s.is_none_or(|g| g <= 0.0) || r.vs_direct.is_none() || r.error.is_some() {
            problems.push(format!("throughput {r:?}"));
        }
        if r.subject.starts_with("reference") && r.cpu_s_per_gib.is_none() {
            problems.push(format!("no CPU figure: {r:?}"));
        }
    }
    // direct, yardstick, plain, tls, h2, h2c, h2 ×4; three directions each.
    if report.throughput.len() != 7 * 3 {
        problems.push(format!("{} throughput rows", report.throughput.len()));
    }
    for r in &report.rate {
        if r.tunnels_per_s <= 0.0 || r.p50_ms.is_none() || r.p99_ms.is_none() || r.stalled || !r.errors.is_empty() {
            problems.push(format!("rate {r:?}"));
        }
    }
    // The yardstick and the multi-stream subject have no setup-rate row.
    if report.rate.len() != 5 {
        problems.push(format!("{} rate rows", report.rate.len()));
    }
    let idle: Vec<_> = report.idle.iter().collect();
    if idle.len() != 4 || idle.iter().any(|r| r.opened != 20 || r.rss_kib_per_tunnel.is_none()) {
        problems.push(format!("idle {idle:?}"));
    }
    let md = report.to_markdown();
    for want in ["### Throughput", "### Tunnel setup rate", "### Idle tunnels", "reference tls", "reference h2 ×4"] {
        if !md.contains(want) {
            problems.push(format!("markdown lacks {want:?}"));
        }
    }
    assert!(problems.is_empty(), "{}\n{md}", problems.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tarpit_proxy_is_stalled_not_a_hang() {
    // Accepts, reads nothing, answers nothing, never closes.
    let tarpit = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tarpit.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut keep = Vec::new();
        while let Ok((s, _)) = tarpit.accept().await {
            keep.push(s);
        }
    });
    let origins = Origins::start("127.0.0.1".parse().unwrap(), 0).unwrap();
    let ep = ProxyEndpoint {
        transport: Transport::Plain,
        addr,
        host: addr.ip().to_string(),
        port: addr.port(),
        trust: None,
    };
    let subjects = vec![
        subject("direct", SubjectKind::Direct, Route::Direct, vec![]),
        subject("tarpit", SubjectKind::Proxy, Route::Proxy(Arc::new(ProxyPath::new(ep, None).unwrap())), vec![]),
    ];
    let s = spec(subjects, &origins, Duration::from_millis(300));
    let report = tokio::time::timeout(Duration::from_secs(60), bench::run(&s, &bench::Quiet))
        .await
        .expect("the bench must end against a proxy that never answers");
    held.abort();
    let tp: Vec<_> = report.throughput.iter().filter(|r| r.subject == "tarpit").collect();
    assert!(
        tp.len() == 3
            && tp.iter().all(|r| r.gib_per_s.is_none() && r.error.as_deref().is_some_and(|e| e.contains("timed out"))),
        "{tp:?}"
    );
    let rate: Vec<_> = report.rate.iter().filter(|r| r.subject == "tarpit").collect();
    assert!(rate.len() == 1 && rate[0].stalled && rate[0].errors.contains_key("timeout"), "{rate:?}");
    let direct: Vec<_> = report.rate.iter().filter(|r| r.subject == "direct").collect();
    assert!(direct[0].tunnels_per_s > 0.0 && !direct[0].stalled, "{direct:?}");
    let idle: Vec<_> = report.idle.iter().collect();
    assert!(idle.len() == 1 && idle[0].opened == 0 && idle[0].errors.contains_key("timeout"), "{idle:?}");
}

#[test]
fn the_command_benches_the_reference_child_and_compares_reports() {
    let dir = TempDir::new("bench-cli");
    let report = dir.0.join("b.json");
    let (code, stdout, stderr) = bin(&[
        "bench",
        "--phases",
        "rate,idle",
        "--seconds",
        "0.3",
        "--rounds",
        "1",
        "--concurrency",
        "2",
        "--tunnels",
        "30",
        "--report",
        report.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let r: harness::bench::report::BenchReport =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    // The reference proxy ran as a child per subject (plain, tls, h2, h2 ×32): its pid is not ours, and its CPU
    // and memory were read.
    let refs: Vec<_> = r.subjects.iter().filter(|s| s.kind == SubjectKind::Proxy).collect();
    assert_eq!(refs.len(), 4, "{refs:?}");
    assert_eq!(refs.iter().filter(|s| s.streams == Some(32)).count(), 1, "{refs:?}");
    assert!(refs.iter().all(|s| s.pids.len() == 1 && s.pids[0] != std::process::id()), "{refs:?}");
    for row in r.rate.iter().filter(|x| x.subject.starts_with("reference-proxy")) {
        assert!(row.tunnels_per_s > 0.0 && row.cpu_ms_per_tunnel.is_some(), "{row:?}");
    }
    for row in &r.idle {
        assert!(row.opened == 30 && row.rss_kib_per_tunnel.is_some(), "{row:?}");
    }
    assert!(stdout.contains("### Tunnel setup rate"), "{stdout}");
    let (code, cmp, _) = bin(&["bench", "--compare", report.to_str().unwrap(), report.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(cmp.contains("tunnels/s") && cmp.contains("| 1.00 |"), "{cmp}");
    // Usage errors name the flag.
    let (code, _, err) = bin(&["bench", "--pid", "notapid", "--proxy", "http://127.0.0.1:1"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--pid"), "{err}");
}

/// Found by the bench: through the TLS listener, the last records of a burst stayed in the proxy's TLS writer
/// when the client's socket was full at the last write and the upstream then went quiet. The client here reads
/// nothing for a while (so every buffer fills), then reads the whole burst while the origin keeps the connection
/// open and sends nothing more: all of it must arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_tunnel_delivers_the_tail_of_a_burst() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (proxy, endpoints) = harness::cli::start_reference(reference_proxy::ProxyConfig::for_testing()).await.unwrap();
    let origins = Origins::start("127.0.0.1".parse().unwrap(), 0).unwrap();
    let addrs = OriginAddrs { sink: origins.sink, source: origins.source, echo: origins.echo };
    let tls = endpoints.iter().find(|e| e.transport == Transport::Tls).unwrap().clone();
    let route = Route::Proxy(Arc::new(ProxyPath::new(tls, None).unwrap()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut io = bench::path::open(&route, &addrs, bench::path::To::Source, deadline, false).await.unwrap();
    const N: u64 = 48 << 20;
    io.write_all(&N.to_be_bytes()).await.unwrap();
    io.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut buf = vec![0u8; 256 * 1024];
    let mut got = 0u64;
    while got < N {
        match tokio::time::timeout(Duration::from_secs(5), io.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => panic!("the tunnel ended after {got} of {N} bytes"),
            Ok(Ok(n)) => got += n as u64,
            Err(_) => panic!("no byte for 5 s after {got} of {N} bytes: the proxy kept the tail"),
        }
    }
    drop(io);
    proxy.shutdown().await;
}
