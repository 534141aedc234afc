//! The proxy's configuration, as built by the command line, a TOML file, or the harness in-process.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

pub use crate::auth::Auth;
pub use crate::policy::{DestinationPolicy, IpNet, PortSet};
pub use crate::resolve::ResolverConfig;
pub use crate::tls::TlsIdentitySource;
pub use crate::upstream::{DirectRule, Upstream};
use crate::wire;

/// Resource limits and timeouts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyLimits {
    /// Request line, head size and field count limits of the parser.
    pub wire: wire::Limits,
    /// Connections handled at once; more are answered 503 (or refused when even that would cost too much).
    pub max_connections: usize,
    /// Deadline for the TLS handshake plus the whole request head (against slowloris); exceeded gives 408.
    pub header_timeout: Duration,
    /// Deadline for connecting upstream, over all addresses of the target; exceeded gives 504.
    pub connect_timeout: Duration,
    /// A tunnel with no traffic either way for this long is closed.
    pub idle_timeout: Duration,
    /// How long a graceful shutdown lets open tunnels finish before closing them.
    pub shutdown_grace: Duration,
    /// After an error response, how long the client's further input is read and discarded so that it receives
    /// the response instead of a reset (a lingering close).
    pub linger: Duration,
}

impl Default for ProxyLimits {
    fn default() -> Self {
        ProxyLimits {
            wire: wire::Limits::default(),
            max_connections: 10_000,
            header_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            shutdown_grace: Duration::from_secs(10),
            linger: Duration::from_secs(2),
        }
    }
}

/// Everything the proxy needs to run.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Plain TCP listeners.
    pub listen: Vec<SocketAddr>,
    /// TLS listeners (HTTP/1.1 inside TLS); need `tls`.
    pub tls_listen: Vec<SocketAddr>,
    pub tls: Option<TlsIdentitySource>,
    pub policy: DestinationPolicy,
    pub resolver: ResolverConfig,
    pub limits: ProxyLimits,
    /// Basic proxy authentication; `None` lets everyone through.
    pub auth: Option<Auth>,
    /// This proxy's name in `Proxy-Status` and its pseudonym in `Via` (an RFC 8941 token).
    pub name: String,
    /// A parent proxy the tunnels go through (`--upstream`); `None` connects directly.
    pub upstream: Option<Upstream>,
    /// HTTP/2 CONNECT (`--h2`): off by default.
    pub http2: crate::http2::Http2Config,
    /// Deliberate misbehaviours for negative controls.
    #[cfg(feature = "faults")]
    pub faults: Vec<crate::faults::Fault>,
}

impl Default for ProxyConfig {
    /// One plain listener on 127.0.0.1:8080, secure policy, system resolver, no authentication.
    fn default() -> Self {
        ProxyConfig {
            listen: vec![SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080)],
            tls_listen: Vec::new(),
            tls: None,
            policy: DestinationPolicy::default(),
            resolver: ResolverConfig::default(),
            limits: ProxyLimits::default(),
            auth: None,
            name: "reference-proxy".to_owned(),
            upstream: None,
            http2: crate::http2::Http2Config::default(),
            #[cfg(feature = "faults")]
            faults: Vec::new(),
        }
    }
}

impl ProxyConfig {
    /// Loopback ephemeral plain + TLS listeners (127.0.0.1:0), self-signed identity for the name "proxy.test"
    /// (plus IP SAN 127.0.0.1 and ::1), policy allowing loopback and every port, short timeouts suited to tests.
    pub fn for_testing() -> Self {
        let ephemeral = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
        ProxyConfig {
            listen: vec![ephemeral],
            tls_listen: vec![ephemeral],
            tls: Some(TlsIdentitySource::SelfSigned {
                names: vec!["proxy.test".to_owned(), Ipv4Addr::LOCALHOST.to_string(), Ipv6Addr::LOCALHOST.to_string()],
            }),
            policy: DestinationPolicy::loopback_any_port(),
            resolver: ResolverConfig { timeout: Duration::from_secs(2), ..ResolverConfig::default() },
            limits: ProxyLimits {
                max_connections: 1000,
                header_timeout: Duration::from_secs(5),
                connect_timeout: Duration::from_secs(3),
                idle_timeout: Duration::from_secs(60),
                shutdown_grace: Duration::from_secs(2),
                linger: Duration::from_millis(500),
                ..ProxyLimits::default()
            },
            ..ProxyConfig::default()
        }
    }
}
