//! The proxy under test: parsing `--proxy`, starting the embedded reference proxy, describing an external one.

use std::net::{IpAddr, SocketAddr};

use super::{CliError, RunArgs, cannot_run, usage};
use crate::{client::tls::ProxyTrust, exec::ProxyEndpoint, scenario::Transport};

/// A parsed `--proxy` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyUrl {
    pub transport: Transport,
    pub host: String,
    pub port: u16,
}

/// Parses `http://host:port` / `https://host:port` (a bracketed IPv6 host is allowed; no path or userinfo).
pub fn parse_proxy_url(s: &str) -> Result<ProxyUrl, String> {
    let (transport, rest, default_port) = if let Some(r) = s.strip_prefix("http://") {
        (Transport::Plain, r, 80)
    } else if let Some(r) = s.strip_prefix("https://") {
        (Transport::Tls, r, 443)
    } else {
        return Err(format!("{s:?}: the proxy URL must start with http:// or https://"));
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains('@') {
        return Err(format!("{s:?}: put credentials in --proxy-user, not in the URL"));
    }
    if rest.contains(['/', '?', '#']) {
        return Err(format!("{s:?}: a proxy URL has no path, query or fragment"));
    }
    let (host, port) = if let Some(r) = rest.strip_prefix('[') {
        let (h, after) = r.split_once(']').ok_or_else(|| format!("{s:?}: unclosed '[' in the host"))?;
        h.parse::<std::net::Ipv6Addr>().map_err(|_| format!("{s:?}: {h:?} is not an IPv6 address"))?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or_else(|| format!("{s:?}: expected ':' after ']'"))?),
        };
        (h.to_string(), port)
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (rest.to_string(), None),
        }
    };
    if host.is_empty() {
        return Err(format!("{s:?}: the URL has no host"));
    }
    let port = match port {
        None => default_port,
        Some(p) => {
            p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| format!("{s:?}: {p:?} is not a valid port"))?
        }
    };
    Ok(ProxyUrl { transport, host: host.to_ascii_lowercase(), port })
}

/// Names the embedded reference proxy resolves statically (so scenarios may use them).
pub const EMBEDDED_NAMES: [&str; 2] = ["target.test", "origin.test"];

/// The proxy under test, started or described; shut down after the run.
pub enum ProxyUnderTest {
    Embedded(reference_proxy::RunningProxy),
    External,
}

impl ProxyUnderTest {
    /// Stops the embedded proxy (bounded); nothing for an external one.
    pub async fn shutdown(self) {
        if let ProxyUnderTest::Embedded(p) = self {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), p.shutdown()).await;
        }
    }
}

/// Starts the embedded reference proxy and describes its endpoints. With `proxy_user`, the proxy requires
/// exactly those Basic credentials (so the authentication scenarios have something to test).
pub async fn embedded_proxy(proxy_user: Option<&str>) -> Result<(ProxyUnderTest, Vec<ProxyEndpoint>), CliError> {
    let (proxy, endpoints) = start_reference(embedded_config(proxy_user)?).await?;
    Ok((ProxyUnderTest::Embedded(proxy), endpoints))
}

/// The embedded reference proxy's configuration (for testing, requiring `proxy_user` when given).
pub fn embedded_config(proxy_user: Option<&str>) -> Result<reference_proxy::ProxyConfig, CliError> {
    let mut config = reference_proxy::ProxyConfig::for_testing();
    // HTTP/2 CONNECT on both listeners, so the h2 and h2c transports run in the main job.
    config.http2.enabled = true;
    if let Some(user) = proxy_user {
        let mut auth = reference_proxy::config::Auth::new("connect-harness");
        auth.add(user).map_err(|e| usage(format!("--proxy-user: {e}")))?;
        config.auth = Some(auth);
    }
    Ok(config)
}

/// The credentials the embedded reference proxy's chained instance presents to the harness's parent, so that
/// chained/11.7.2/own-credentials-presented runs in the main job.
pub const EMBEDDED_PARENT_CREDENTIALS: &str = "reference-proxy:parent-secret";

/// Starts a reference proxy whose CONNECTs go through the harness's parent proxy, with the parent's expected
/// credentials: the embedded target's chained instance, and the negative controls' chained proxy.
pub async fn start_chained_reference(
    config: reference_proxy::ProxyConfig,
    parent: &crate::origin::parent::Parent,
) -> Result<(reference_proxy::RunningProxy, Vec<ProxyEndpoint>), CliError> {
    let mut config = config;
    let mut up = reference_proxy::config::Upstream::parse(&format!("http://{}", parent.addr()))
        .map_err(|e| cannot_run(format!("the parent's address: {e}")))?;
    up.credentials = parent.credentials().map(str::to_owned);
    config.upstream = Some(up);
    start_reference(config).await
}

/// Starts the reference proxy with any configuration (for example with faults, for negative controls) and
/// describes its endpoints: plain by IP, TLS by the name "proxy.test" trusting the proxy's own CA.
pub async fn start_reference(
    config: reference_proxy::ProxyConfig,
) -> Result<(reference_proxy::RunningProxy, Vec<ProxyEndpoint>), CliError> {
    let mut config = config;
    let http2 = config.http2.enabled;
    for name in EMBEDDED_NAMES {
        config.resolver.static_map.insert(name.to_string(), vec![IpAddr::from([127, 0, 0, 1])]);
    }
    let proxy = reference_proxy::start(config)
        .await
        .map_err(|e| cannot_run(format!("could not start the embedded reference proxy: {e}")))?;
    let mut endpoints = Vec::new();
    if let Some(addr) = proxy.plain_addrs().first() {
        endpoints.push(ProxyEndpoint {
            transport: Transport::Plain,
            addr: *addr,
            host: addr.ip().to_string(),
            port: addr.port(),
            trust: None,
        });
    }
    if let Some(addr) = proxy.tls_addrs().first() {
        let pem = proxy.ca_cert_pem().ok_or_else(|| cannot_run("the embedded proxy has no CA certificate"))?;
        let trust = ProxyTrust::from_pem(pem).map_err(cannot_run)?;
        endpoints.push(ProxyEndpoint {
            transport: Transport::Tls,
            addr: *addr,
            host: "proxy.test".into(),
            port: addr.port(),
            trust: Some(trust),
        });
    }
    if http2 {
        // The same listeners speak HTTP/2: ALPN h2 on TLS, the connection preface on plain.
        let h2: Vec<ProxyEndpoint> = endpoints
            .iter()
            .map(|e| ProxyEndpoint {
                transport: if e.transport == Transport::Tls { Transport::H2 } else { Transport::H2c },
                ..e.clone()
            })
            .collect();
        endpoints.extend(h2);
    }
    Ok((proxy, endpoints))
}

/// Describes an external proxy from the flags, and checks that it accepts TCP connections.
pub async fn external_proxy(args: &RunArgs, url: &str) -> Result<Vec<ProxyEndpoint>, CliError> {
    let mut u = parse_proxy_url(url).map_err(usage)?;
    if u.transport == Transport::Plain && (args.proxy_cacert.is_some() || args.proxy_insecure) {
        return Err(usage("--proxy-cacert and --proxy-insecure apply only to an https:// proxy"));
    }
    if args.proxy_http2 {
        u.transport = if u.transport == Transport::Tls { Transport::H2 } else { Transport::H2c };
    }
    let how = ProxyAccess {
        addr: args.proxy_addr,
        cacert: args.proxy_cacert.as_deref(),
        insecure: args.proxy_insecure,
        timeout: args.timeout,
    };
    Ok(vec![describe_proxy(&u, &how).await?])
}

/// How to reach and trust an external proxy (`--proxy-addr`, `--proxy-cacert`, `--proxy-insecure`).
pub struct ProxyAccess<'a> {
    pub addr: Option<SocketAddr>,
    pub cacert: Option<&'a std::path::Path>,
    pub insecure: bool,
    pub timeout: std::time::Duration,
}

/// The endpoint of a parsed proxy URL, checked to accept TCP connections.
pub async fn describe_proxy(u: &ProxyUrl, args: &ProxyAccess<'_>) -> Result<ProxyEndpoint, CliError> {
    let u = u.clone();
    let trust = match (u.transport.is_tls(), &args.cacert, args.insecure) {
        (false, _, _) => None,
        (true, Some(path), _) => {
            let pem =
                std::fs::read_to_string(path).map_err(|e| usage(format!("--proxy-cacert {}: {e}", path.display())))?;
            Some(ProxyTrust::from_pem(&pem).map_err(|e| usage(format!("--proxy-cacert {}: {e}", path.display())))?)
        }
        (true, None, true) => Some(ProxyTrust::Insecure),
        (true, None, false) => {
            return Err(usage("an https:// proxy needs --proxy-cacert FILE (or --proxy-insecure)"));
        }
    };
    let addr = match args.addr {
        Some(a) => a,
        None => match u.host.parse::<IpAddr>() {
            Ok(ip) => SocketAddr::new(ip, u.port),
            Err(_) => tokio::net::lookup_host((u.host.as_str(), u.port))
                .await
                .ok()
                .and_then(|mut it| it.next())
                .ok_or_else(|| cannot_run(format!("cannot resolve {:?}; give --proxy-addr IP:PORT", u.host)))?,
        },
    };
    let deadline = tokio::time::Instant::now() + args.timeout;
    match crate::client::connect_tcp(addr, deadline).await {
        Ok(_) => {}
        Err(e) if e.accepted_then_reset() => {}
        Err(e) => return Err(cannot_run(e.to_string())),
    }
    Ok(ProxyEndpoint { transport: u.transport, addr, host: u.host, port: u.port, trust })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_urls() {
        let u = parse_proxy_url("https://proxy.test:8443").unwrap();
        assert_eq!((u.transport, u.host.as_str(), u.port), (Transport::Tls, "proxy.test", 8443));
        let u = parse_proxy_url("http://[::1]:3128/").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 3128));
        assert_eq!(parse_proxy_url("http://127.0.0.1").unwrap().port, 80);
        for bad in [
            "ftp://x:1",
            "http://u:p@x:1",
            "http://x:1/path",
            "http://x:0",
            "http://x:99999",
            "http://:1",
            "https://[zz]:1",
        ] {
            assert!(parse_proxy_url(bad).is_err(), "{bad}");
        }
    }
}
