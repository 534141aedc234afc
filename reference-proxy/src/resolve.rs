//! Name resolution through one replaceable resolver: a static map (like curl's `--resolve`), optionally exclusive,
//! in front of the system resolver or any other [`Resolve`] implementation.
//!
//! Tests use names under `.test` mapped to loopback and provoke DNS failures with names under `.invalid`
//! (RFC 6761 §6.4: such names never resolve), without touching the system resolver.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;

use crate::wire::Host;

/// A future returned by [`Resolve::resolve`].
pub type ResolveFuture<'a> = Pin<Box<dyn Future<Output = io::Result<Vec<IpAddr>>> + Send + 'a>>;

/// A name resolver. The system resolver ([`SystemResolver`]) is the default.
pub trait Resolve: Send + Sync + 'static {
    /// All addresses of `name`, in the order they should be tried. Errors and empty lists are DNS failures.
    fn resolve<'a>(&'a self, name: &'a str) -> ResolveFuture<'a>;
}

/// getaddrinfo(3), run by tokio on its blocking pool.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve<'a>(&'a self, name: &'a str) -> ResolveFuture<'a> {
        Box::pin(async move {
            let addrs = tokio::net::lookup_host((name, 0)).await?;
            Ok(addrs.map(|a| a.ip()).collect())
        })
    }
}

/// How names are resolved.
#[derive(Clone)]
pub struct ResolverConfig {
    /// Names (lower case, no trailing dot) answered without asking `fallback`.
    pub static_map: BTreeMap<String, Vec<IpAddr>>,
    /// Only the static map: any other name is a DNS failure.
    pub map_only: bool,
    /// Deadline for one resolution; exceeding it answers 504 `dns_timeout`.
    pub timeout: Duration,
    /// The resolver for names not in the map; the system resolver when `None`.
    pub fallback: Option<Arc<dyn Resolve>>,
}

impl Default for ResolverConfig {
    fn default() -> Self {
        ResolverConfig { static_map: BTreeMap::new(), map_only: false, timeout: Duration::from_secs(5), fallback: None }
    }
}

impl fmt::Debug for ResolverConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResolverConfig")
            .field("static_map", &self.static_map)
            .field("map_only", &self.map_only)
            .field("timeout", &self.timeout)
            .field("fallback", &self.fallback.as_ref().map(|_| "custom"))
            .finish()
    }
}

impl ResolverConfig {
    /// Adds `name → addr` to the static map (curl's `--resolve NAME:ADDR` without the port).
    pub fn insert(&mut self, name: &str, addr: IpAddr) {
        self.static_map.entry(normalize(name)).or_default().push(addr);
    }

    /// Parses `NAME:ADDR` (ADDR may be a bracketed or bare IPv6 address) and adds it to the map.
    pub fn insert_spec(&mut self, spec: &str) -> Result<(), ResolveSpecError> {
        let err = || ResolveSpecError(spec.to_owned());
        let (name, addr) = spec.split_once(':').ok_or_else(err)?;
        let addr: IpAddr = addr.trim_start_matches('[').trim_end_matches(']').parse().map_err(|_| err())?;
        let name_ok = !name.is_empty()
            && crate::wire::parse_host_field(name.as_bytes()).is_ok_and(|h| matches!(h.host, Host::Name(_)));
        if !name_ok {
            return Err(err());
        }
        self.insert(name, addr);
        Ok(())
    }
}

/// A `--resolve` entry that is not `NAME:ADDR`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid resolve entry `{0}` (expected NAME:ADDR, e.g. origin.test:127.0.0.1)")]
pub struct ResolveSpecError(pub String);

/// Why a name gave no address.
#[derive(Debug, Error)]
pub enum ResolveError {
    /// No such name (including every name under `.invalid`, and names outside the map in map-only mode).
    #[error("no address for {0}")]
    NotFound(String),
    #[error("resolving {0} took longer than {1:?}")]
    Timeout(String, Duration),
    #[error("resolving {0}: {1}")]
    Failed(String, io::Error),
}

/// The resolver used by the proxy, built from a [`ResolverConfig`].
#[derive(Clone)]
pub struct Resolver {
    config: Arc<ResolverConfig>,
    fallback: Arc<dyn Resolve>,
}

impl Resolver {
    pub fn new(config: ResolverConfig) -> Self {
        let fallback = config.fallback.clone().unwrap_or_else(|| Arc::new(SystemResolver));
        Resolver { config: Arc::new(config), fallback }
    }

    /// The addresses for a CONNECT host, in the order to try them. IP literals are returned as they are.
    pub async fn resolve(&self, host: &Host<'_>) -> Result<Vec<IpAddr>, ResolveError> {
        let name = match host {
            Host::Ipv4(a) => return Ok(vec![IpAddr::V4(*a)]),
            Host::Ipv6(a) => return Ok(vec![IpAddr::V6(*a)]),
            Host::Name(n) => *n,
        };
        let key = normalize(name);
        if let Some(addrs) = self.config.static_map.get(&key) {
            return Ok(addrs.clone());
        }
        if self.config.map_only || key == "invalid" || key.ends_with(".invalid") {
            return Err(ResolveError::NotFound(name.to_owned()));
        }
        let timeout = self.config.timeout;
        match tokio::time::timeout(timeout, self.fallback.resolve(&key)).await {
            Err(_) => Err(ResolveError::Timeout(name.to_owned(), timeout)),
            Ok(Ok(addrs)) if addrs.is_empty() => Err(ResolveError::NotFound(name.to_owned())),
            Ok(Ok(addrs)) => Ok(addrs),
            Ok(Err(e)) => Err(ResolveError::Failed(name.to_owned(), e)),
        }
    }
}

/// DNS names compare case-insensitively, and `name.` is `name`.
fn normalize(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

/// Socket addresses for resolved IPs.
pub fn with_port(ips: &[IpAddr], port: u16) -> Vec<SocketAddr> {
    ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Never;
    impl Resolve for Never {
        fn resolve<'a>(&'a self, _: &'a str) -> ResolveFuture<'a> {
            Box::pin(std::future::pending())
        }
    }

    #[tokio::test]
    async fn static_map_literals_invalid_and_map_only() {
        let mut cfg = ResolverConfig::default();
        cfg.insert_spec("Origin.Test:127.0.0.1").unwrap();
        cfg.insert_spec("origin.test:[::1]").unwrap();
        cfg.map_only = true;
        let r = Resolver::new(cfg);
        let got = r.resolve(&Host::Name("ORIGIN.test.")).await.unwrap();
        assert_eq!(got, vec!["127.0.0.1".parse::<IpAddr>().unwrap(), "::1".parse().unwrap()]);
        assert!(matches!(r.resolve(&Host::Name("other.test")).await, Err(ResolveError::NotFound(_))));
        let lit = r.resolve(&Host::Ipv4("127.0.0.9".parse().unwrap())).await.unwrap();
        assert_eq!(lit, vec!["127.0.0.9".parse::<IpAddr>().unwrap()]);
    }

    #[tokio::test]
    async fn invalid_names_never_reach_the_fallback_and_timeouts_are_bounded() {
        let cfg = ResolverConfig {
            fallback: Some(Arc::new(Never)),
            timeout: Duration::from_millis(20),
            ..Default::default()
        };
        let r = Resolver::new(cfg);
        assert!(matches!(r.resolve(&Host::Name("nx.invalid")).await, Err(ResolveError::NotFound(_))));
        assert!(matches!(r.resolve(&Host::Name("slow.test")).await, Err(ResolveError::Timeout(..))));
    }

    #[test]
    fn bad_specs_are_errors() {
        let mut cfg = ResolverConfig::default();
        for bad in ["noaddr", "name:notanip", ":127.0.0.1", "a b:127.0.0.1", "127.0.0.1:127.0.0.1"] {
            assert!(cfg.insert_spec(bad).is_err(), "{bad}");
        }
    }
}
