//! The reference proxy driven as an external proxy: https URL with --proxy-addr and --proxy-cacert,
//! --proxy-insecure, a CA that does not match (a harness-side error, exit 3), and --origin-ports.

use harness::{exit, origin::Pool, scenario::OriginKind};
use serde_json::Value;

use crate::support::{self, TempDir};

async fn reference() -> reference_proxy::RunningProxy {
    reference_proxy::start(reference_proxy::ProxyConfig::for_testing()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_proxy_by_name_with_cacert_and_connect_to() {
    let p = reference().await;
    let dir = TempDir::new("external");
    let ca = dir.file("ca.pem", p.ca_cert_pem().unwrap());
    let addr = p.tls_addrs()[0];
    let url = format!("https://proxy.test:{}", addr.port());
    let (addr_s, ca_s, report) = (addr.to_string(), ca.display().to_string(), dir.path("r.json"));
    let args =
        ["--proxy", &url, "--proxy-addr", &addr_s, "--proxy-cacert", &ca_s, "--only", "tls/*", "--report", &report];
    let (code, out) = support::run(&args).await;
    assert_eq!(code, exit::OK, "{out}");
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let sni_proxy = r["results"].as_array().unwrap().iter().find(|x| x["id"] == "tls/sni-proxy-name").unwrap();
    assert_eq!(sni_proxy["tls"]["sni_sent"], "proxy.test");
    assert_eq!(sni_proxy["tls"]["cert"]["valid_for_proxy_name"], true);
    assert_eq!(r["metadata"]["transports"], serde_json::json!(["tls"]));

    let insecure = format!("https://127.0.0.1:{}", addr.port());
    let (code, out) =
        support::run(&["--proxy", &insecure, "--proxy-insecure", "--only", "rfc9110/9.3.6/tunnel-basic"]).await;
    assert_eq!(code, exit::OK, "{out}");

    // A CA that did not sign the proxy's certificate: the harness cannot verify, which is not the proxy failing.
    let other = reference().await;
    let wrong = dir.file("wrong.pem", other.ca_cert_pem().unwrap()).display().to_string();
    let (code, out) = support::run(&[
        "--proxy",
        &url,
        "--proxy-addr",
        &addr_s,
        "--proxy-cacert",
        &wrong,
        "--only",
        "tls/sni-proxy-name",
    ])
    .await;
    assert_eq!(code, exit::CANNOT_RUN, "{out}");
    assert!(out.contains("ERROR") && out.contains("not trusted"), "{out}");
    other.shutdown().await;
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origins_stay_inside_the_given_port_range() {
    // Find a free range of two origin sets (18 ports); retry elsewhere if something else holds a port.
    for base in (43_000u16..60_000).step_by(1_237).take(10) {
        let Ok(pool) = Pool::new(Some(base..=base + 17)).await else {
            continue;
        };
        let Ok(a) = pool.lease(OriginKind::ALL).await else { continue };
        let Ok(b) = pool.lease(OriginKind::ALL).await else { continue };
        for &kind in OriginKind::ALL {
            for set in [&a, &b] {
                assert!((base..=base + 17).contains(&set.port(kind)), "{kind:?} outside the range");
            }
        }
        assert_ne!(a.port(OriginKind::Echo), b.port(OriginKind::Echo));
        assert_eq!(pool.capacity(), Some(2));
        drop((a, b));
        drop(pool);
        let port = base.to_string() + "-" + &(base + 17).to_string();
        let (code, out) = support::run(&["--origin-ports", &port, "--only", "rfc9110/9.3.6/tunnel-*"]).await;
        assert_eq!(code, exit::OK, "{out}");
        assert!(out.contains("2 jobs"), "jobs are capped by the origin sets: {out}");
        return;
    }
    panic!("no free port range found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_dial_does_not_land_in_the_next_scenario() {
    for base in (47_000u16..60_000).step_by(997).take(10) {
        let Ok(pool) = Pool::new(Some(base..=base + 8)).await else { continue };
        let first = pool.lease(OriginKind::ALL).await.unwrap();
        let echo = first.addr(OriginKind::Echo);
        let _during = tokio::net::TcpStream::connect(echo).await.unwrap();
        wait_for_connections(&first, 1).await;
        drop(first);
        // The next scenario leases the set while the previous scenario's proxy dials late (100 ms after the
        // lease ended): the set rests, so the dial is recorded nowhere.
        let (second, _late) = tokio::join!(pool.lease(OriginKind::ALL), async {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            let s = tokio::net::TcpStream::connect(echo).await.unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            s
        });
        let second = second.unwrap();
        assert_eq!(second.addr(OriginKind::Echo), echo, "one set: the same ports are reused");
        assert!(second.log.snapshot().is_empty(), "the late connection leaked into the next scenario");
        return;
    }
    panic!("no free port range found");
}

async fn wait_for_connections(set: &harness::origin::OriginSet, n: usize) {
    for _ in 0..200 {
        if set.log.snapshot().len() >= n {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    panic!("the origin never recorded {n} connections");
}

/// A proxy under test chained to the harness's parent (`--upstream-proxy-port`), with its own credentials for it
/// and client authentication: every chained scenario runs and passes (the loop one through its plain listener);
/// without the flag they are skipped with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chained_external_proxy_runs_the_chained_scenarios() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut config = reference_proxy::ProxyConfig::for_testing();
    let mut up = reference_proxy::config::Upstream::parse(&format!("http://127.0.0.1:{port}")).unwrap();
    up.credentials = Some("child:parent-pw".into());
    config.upstream = Some(up);
    let mut auth = reference_proxy::config::Auth::new("child");
    auth.add("alice:pw").unwrap();
    config.auth = Some(auth);
    let p = reference_proxy::start(config).await.unwrap();
    let url = format!("http://{}", p.plain_addrs()[0]);
    let port_s = port.to_string();
    let dir = TempDir::new("chained");
    let report = dir.path("r.json");
    // The proxy under test, its client credentials, the parent's port and the chained scenarios; then the
    // credentials the proxy presents to the parent, and the rest.
    let chained = |presents: &'static str| {
        let args: Vec<&str> = vec!["--proxy", &url, "--proxy-user", "alice:pw", "--upstream-proxy-port", &port_s];
        [args, vec!["--only", "chained/*", "--upstream-proxy-credentials", presents]].concat()
    };
    let (code, out) = support::run(&[chained("child:parent-pw"), vec!["--report", &report]].concat()).await;
    assert_eq!(code, exit::OK, "{out}");
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let results = r["results"].as_array().unwrap();
    let passed = results.iter().filter(|x| x["verdict"] == "pass" && x["transport"] == "plain").count();
    assert!(passed >= 16, "{out}");
    // Credentials the proxy does not present: recorded once (the `may` scenario), no other scenario breaks.
    let (code, out) = support::run(&chained("someone:else")).await;
    assert_eq!(code, exit::OK, "{out}");
    assert!(out.contains("OBSERVED") && out.contains("chained/11.7.2/own-credentials-presented"), "{out}");
    // A proxy that is not chained, run without the flag: skipped, saying why.
    let plain = reference().await;
    let plain_url = format!("http://{}", plain.plain_addrs()[0]);
    let (code, out) = support::run(&["--proxy", &plain_url, "--only", "chained/9.3.6/tunnel-through-parent"]).await;
    assert_eq!(code, exit::NOTHING_JUDGED, "{out}");
    assert!(out.contains("--upstream-proxy-port"), "{out}");
    plain.shutdown().await;
    p.shutdown().await;
}
