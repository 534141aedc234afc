//! Chaining (`--upstream`): one reference proxy as the parent of another, over plain TCP and over verified TLS;
//! the parent's refusal relayed with both Proxy-Status members; a loop (same name in Via) refused.

use reference_proxy::config::Upstream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

/// A parent (named `parent`) and a child chained to it over `scheme` (plain or TLS, verified with the parent's
/// CA), with the child's credentials required by the parent.
async fn pair(tls: bool, parent_name: &str) -> (reference_proxy::RunningProxy, reference_proxy::RunningProxy) {
    let mut pcfg = config();
    pcfg.name = parent_name.into();
    let mut auth = reference_proxy::config::Auth::new("parent");
    auth.add("child:secret").unwrap();
    pcfg.auth = Some(auth);
    let parent = start(pcfg).await;
    let url =
        if tls { format!("https://{}", parent.tls_addrs()[0]) } else { format!("http://{}", parent.plain_addrs()[0]) };
    let mut up = Upstream::parse(&url).unwrap();
    up.ca_pem = parent.ca_cert_pem().map(str::to_owned);
    up.credentials = Some("child:secret".into());
    let mut ccfg = config();
    ccfg.name = "child".into();
    ccfg.upstream = Some(up);
    // The child resolves nothing at all (map_only, empty map): names can only work if the parent resolves them.
    ccfg.resolver.static_map.clear();
    (parent, start(ccfg).await)
}

async fn echo_through(child: &reference_proxy::RunningProxy, target: &str) {
    let mut s = plain_to_proxy(child).await;
    let (status, head) = connect(&mut s, target).await;
    assert_eq!(status, 200, "{head}");
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    within("write", s.write_all(&data)).await.unwrap();
    let mut back = vec![0u8; data.len()];
    within("echo", s.read_exact(&mut back)).await.unwrap();
    assert!(back == data, "the tunnel through the parent corrupted bytes");
}

#[tokio::test]
async fn a_tunnel_goes_through_the_parent_over_plain_and_verified_tls() {
    let echo = echo_server().await;
    for tls in [false, true] {
        let (parent, child) = pair(tls, "parent").await;
        // A name the child cannot resolve (its map is empty) but the parent can.
        echo_through(&child, &format!("origin.test:{}", echo.port())).await;
        echo_through(&child, &echo.to_string()).await;
        child.shutdown().await;
        parent.shutdown().await;
    }
}

#[tokio::test]
async fn an_unverifiable_parent_certificate_is_a_502_tls_certificate_error() {
    let (parent, _) = pair(true, "parent").await;
    let other = start(config()).await; // a different CA
    let mut up = Upstream::parse(&format!("https://{}", parent.tls_addrs()[0])).unwrap();
    up.ca_pem = other.ca_cert_pem().map(str::to_owned);
    let mut ccfg = config();
    ccfg.upstream = Some(up);
    let child = start(ccfg).await;
    let echo = echo_server().await;
    let req = format!("CONNECT {echo} HTTP/1.1\r\nHost: {echo}\r\n\r\n");
    let (status, head, _) = exchange(&child, req.as_bytes()).await;
    assert_eq!(status, 502, "{head}");
    assert!(field(&head, "proxy-status").unwrap().contains("error=tls_certificate_error"), "{head}");
}

#[tokio::test]
async fn the_parents_refusal_keeps_its_proxy_status_member_before_ours() {
    let (parent, child) = pair(false, "parent").await;
    // The parent refuses a port its policy does not allow... any refusal will do: a closed port gives 502.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let req = format!("CONNECT {closed} HTTP/1.1\r\nHost: {closed}\r\n\r\n");
    let (status, head, _) = exchange(&child, req.as_bytes()).await;
    assert_eq!(status, 502, "{head}");
    let ps = field(&head, "proxy-status").unwrap();
    // Re-serialised as a Structured Fields List (no space before parameters).
    assert!(ps.starts_with("parent;error=connection_refused;details="), "{ps}");
    assert!(ps.contains(", child; received-status=502; next-hop=\"http://"), "{ps}");
    drop(parent);
}

#[tokio::test]
async fn two_proxies_with_one_name_are_no_loop_but_a_proxy_that_is_its_own_parent_is() {
    // Same (default) name, two processes' worth of tokens: a chain, not a loop.
    let parent = start(config()).await;
    let mut ccfg = config();
    ccfg.upstream = Some(Upstream::parse(&format!("http://{}", parent.plain_addrs()[0])).unwrap());
    let child = start(ccfg).await;
    let echo = echo_server().await;
    echo_through(&child, &echo.to_string()).await;
    // A proxy whose parent is itself: its own Via member comes back.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut cfg = config();
    cfg.listen = vec![format!("127.0.0.1:{port}").parse().unwrap()];
    cfg.tls_listen.clear();
    cfg.upstream = Some(Upstream::parse(&format!("http://127.0.0.1:{port}")).unwrap());
    let looped = start(cfg).await;
    let req = format!("CONNECT {echo} HTTP/1.1\r\nHost: {echo}\r\n\r\n");
    let (status, head, _) = exchange(&looped, req.as_bytes()).await;
    assert_eq!(status, 502, "{head}");
    assert!(field(&head, "proxy-status").unwrap().contains("error=proxy_loop_detected"), "{head}");
}

#[tokio::test]
async fn direct_rules_bypass_the_parent() {
    // The parent is a closed port: anything sent through it fails; the direct network still tunnels.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let mut up = Upstream::parse(&format!("http://{closed}")).unwrap();
    up.direct = vec!["127.0.0.0/8".parse().unwrap()];
    let mut ccfg = config();
    ccfg.upstream = Some(up);
    let child = start(ccfg).await;
    let echo = echo_server().await;
    echo_through(&child, &echo.to_string()).await;
    // origin.test is not under a direct suffix: it goes to the (closed) parent, a 502 naming it as next hop.
    let req = format!("CONNECT origin.test:{0} HTTP/1.1\r\nHost: origin.test:{0}\r\n\r\n", echo.port());
    let (status, head, _) = exchange(&child, req.as_bytes()).await;
    assert_eq!(status, 502, "{head}");
    let ps = field(&head, "proxy-status").unwrap();
    assert!(ps.contains("error=connection_refused") && ps.contains(&format!("next-hop=\"http://{closed}\"")), "{ps}");
}
