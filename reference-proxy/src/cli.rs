//! Command line and TOML configuration of the `reference-proxy` binary, turned into a [`ProxyConfig`].
//!
//! A TOML file (`--config`) is read first; flags given on the command line override its values. Invalid
//! configuration is an error at start-up, naming the offending value.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use serde::Deserialize;
use thiserror::Error;

use crate::auth::{Auth, AuthError};
use crate::config::ProxyConfig;
use crate::policy::{IpNet, PolicyParseError, PortSet};
use crate::resolve::ResolveSpecError;
use crate::tls::TlsIdentitySource;
use crate::upstream::Upstream;

/// A correct HTTP/1.1 CONNECT proxy over plain TCP and TLS.
///
/// Secure defaults: listens on 127.0.0.1:8080, tunnels only to port 443, never to loopback, private,
/// link-local, unspecified or multicast addresses unless allowed with --allow-net (link-local, unspecified and
/// multicast stay denied).
#[derive(Debug, Clone, Default, Parser)]
#[command(name = "reference-proxy", version, about, long_about)]
pub struct Args {
    /// TOML configuration file; command-line flags override its values.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Plain TCP listener address (repeatable). Default 127.0.0.1:8080 when no listener is given.
    #[arg(long, value_name = "ADDR")]
    pub listen: Vec<SocketAddr>,
    /// TLS listener address (repeatable); needs --tls-cert/--tls-key or --tls-self-signed.
    #[arg(long, value_name = "ADDR")]
    pub tls_listen: Vec<SocketAddr>,
    /// PEM certificate chain (leaf first) for the TLS listeners.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for the TLS listeners.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Generate a CA and a certificate for NAME at start-up (repeatable: more names or IP addresses).
    #[arg(long, value_name = "NAME", conflicts_with_all = ["tls_cert", "tls_key"])]
    pub tls_self_signed: Vec<String>,
    /// Write the generated CA certificate (PEM) here, for clients to trust (e.g. curl --proxy-cacert).
    #[arg(long, value_name = "PATH")]
    pub tls_ca_out: Option<PathBuf>,
    /// Resolve NAME to ADDR without asking the system resolver (repeatable), like curl's --resolve.
    #[arg(long, value_name = "NAME:ADDR")]
    pub resolve: Vec<String>,
    /// Resolve only names given with --resolve; every other name is a DNS failure.
    #[arg(long)]
    pub resolve_only: bool,
    /// Ports tunnels may reach, as a list of ports and ranges. Default 443.
    #[arg(long, value_name = "LIST", value_parser = parse_ports)]
    pub allow_ports: Option<PortSet>,
    /// Network to allow even if denied by default, e.g. 127.0.0.0/8 or 10.0.0.0/8 (repeatable).
    #[arg(long, value_name = "CIDR", value_parser = parse_net)]
    pub allow_net: Vec<IpNet>,
    /// Network to deny; deny wins over allow (repeatable).
    #[arg(long, value_name = "CIDR", value_parser = parse_net)]
    pub deny_net: Vec<IpNet>,
    /// Tunnel only to IP literals: a CONNECT to a name gets 403 (the proxy never resolves for clients).
    #[arg(long)]
    pub ip_literals_only: bool,
    /// Require Basic proxy authentication with this user:password (repeatable).
    #[arg(long, value_name = "USER:PASS")]
    pub auth: Vec<String>,
    /// Require Basic proxy authentication with the user:password lines of this file.
    #[arg(long, value_name = "FILE")]
    pub auth_file: Option<PathBuf>,
    /// Realm named in the Proxy-Authenticate challenge.
    #[arg(long, value_name = "REALM")]
    pub auth_realm: Option<String>,
    /// Maximum concurrent connections; more are answered 503.
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
    /// Seconds allowed for the TLS handshake and request head (slowloris defence); exceeded gives 408.
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub header_timeout: Option<Duration>,
    /// Seconds allowed to connect upstream; exceeded gives 504.
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub connect_timeout: Option<Duration>,
    /// Seconds allowed for one name resolution; exceeded gives 504.
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub dns_timeout: Option<Duration>,
    /// Seconds without traffic after which a tunnel is closed.
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub idle_timeout: Option<Duration>,
    /// Seconds open tunnels may take to finish after SIGINT/SIGTERM.
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub shutdown_grace: Option<Duration>,
    /// Largest request head in bytes; larger gives 431.
    #[arg(long, value_name = "BYTES")]
    pub max_head: Option<usize>,
    /// Longest request line in bytes; longer gives 414.
    #[arg(long, value_name = "BYTES")]
    pub max_request_line: Option<usize>,
    /// Most header fields; more gives 431.
    #[arg(long, value_name = "N")]
    pub max_fields: Option<usize>,
    /// Name of this proxy in Proxy-Status fields (an RFC 8941 token).
    #[arg(long, value_name = "TOKEN")]
    pub name: Option<String>,
    /// Send every CONNECT through this parent proxy: http://HOST:PORT, or https://NAME:PORT (then
    /// --upstream-cacert is required: the parent's certificate is always verified). The parent resolves names.
    #[arg(long, value_name = "URL")]
    pub upstream: Option<String>,
    /// PEM CA certificate(s) that sign the parent proxy's certificate (with --upstream https://…).
    #[arg(long, value_name = "PEM", requires = "upstream")]
    pub upstream_cacert: Option<PathBuf>,
    /// Basic credentials this proxy presents to the parent (the client's own are never forwarded).
    #[arg(long, value_name = "USER:PASS", requires = "upstream")]
    pub upstream_user: Option<String>,
    /// Destinations reached directly instead of through the parent: a network (10.0.0.0/8, 127.0.0.1) or a
    /// name suffix (.internal) (repeatable).
    #[arg(long, value_name = "NET|SUFFIX", requires = "upstream")]
    pub upstream_direct: Vec<String>,
    /// HTTP/2 CONNECT (RFC 9113 §8.5): offer `h2` in ALPN on the TLS listeners and accept HTTP/2 with prior
    /// knowledge (h2c) on the plain ones. Off by default.
    #[arg(long)]
    pub h2: bool,
    /// With --h2: SETTINGS_MAX_CONCURRENT_STREAMS, the tunnels one HTTP/2 connection may have open (default 100).
    #[arg(long, value_name = "N", requires = "h2")]
    pub h2_max_streams: Option<u32>,
    /// Log lines as JSON instead of text.
    #[arg(long)]
    pub log_json: bool,
    /// Deliberate misbehaviour for negative controls (repeatable; builds with the `faults` feature only).
    #[cfg(feature = "faults")]
    #[arg(long, value_name = "FAULT")]
    pub fault: Vec<crate::faults::Fault>,
}

/// The TOML file: the same settings as the flags, in snake_case.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<Vec<SocketAddr>>,
    pub tls_listen: Option<Vec<SocketAddr>>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tls_self_signed: Option<Vec<String>>,
    pub tls_ca_out: Option<PathBuf>,
    pub resolve: Option<Vec<String>>,
    pub resolve_only: Option<bool>,
    pub allow_ports: Option<String>,
    pub allow_net: Option<Vec<String>>,
    pub deny_net: Option<Vec<String>>,
    pub ip_literals_only: Option<bool>,
    pub auth: Option<Vec<String>>,
    pub auth_file: Option<PathBuf>,
    pub auth_realm: Option<String>,
    pub max_connections: Option<usize>,
    pub header_timeout: Option<f64>,
    pub connect_timeout: Option<f64>,
    pub dns_timeout: Option<f64>,
    pub idle_timeout: Option<f64>,
    pub shutdown_grace: Option<f64>,
    pub max_head: Option<usize>,
    pub max_request_line: Option<usize>,
    pub max_fields: Option<usize>,
    pub name: Option<String>,
    pub upstream: Option<String>,
    pub upstream_cacert: Option<PathBuf>,
    pub upstream_user: Option<String>,
    pub upstream_direct: Option<Vec<String>>,
    pub h2: Option<bool>,
    pub h2_max_streams: Option<u32>,
    #[cfg(feature = "faults")]
    pub faults: Option<Vec<String>>,
}

/// A configuration that cannot be used.
#[derive(Debug, Error)]
pub enum ConfigError {
    // The causes are fields named `error`, not `source`: shown once in the message, not again as a cause chain.
    #[error("reading {path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("parsing {path}: {error}")]
    Toml { path: String, error: toml::de::Error },
    #[error("{key}: {error}")]
    Policy { key: &'static str, error: PolicyParseError },
    #[error(transparent)]
    Resolve(#[from] ResolveSpecError),
    #[error("{0}")]
    Auth(#[from] AuthError),
    #[error("{key}: {value} is not a duration in seconds")]
    Duration { key: &'static str, value: f64 },
    #[error("{key}: {error}")]
    Upstream { key: &'static str, error: crate::upstream::UpstreamError },
    #[error("{0}")]
    Invalid(String),
}

/// The configuration to run, and where to write the generated CA certificate.
#[derive(Debug)]
pub struct Resolved {
    pub config: ProxyConfig,
    pub ca_out: Option<PathBuf>,
    pub log_json: bool,
}

fn parse_ports(s: &str) -> Result<PortSet, PolicyParseError> {
    s.parse()
}

fn parse_net(s: &str) -> Result<IpNet, PolicyParseError> {
    s.parse()
}

fn parse_secs(s: &str) -> Result<Duration, String> {
    s.parse::<f64>()
        .ok()
        .and_then(|v| Duration::try_from_secs_f64(v).ok())
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("`{s}` is not a positive number of seconds"))
}

fn secs(key: &'static str, value: f64) -> Result<Duration, ConfigError> {
    Duration::try_from_secs_f64(value).ok().filter(|d| !d.is_zero()).ok_or(ConfigError::Duration { key, value })
}

/// Reads a TOML configuration file.
pub fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read { path: shown.clone(), error })?;
    toml::from_str(&text).map_err(|error| ConfigError::Toml { path: shown, error })
}

/// Flag value if given, else the file's.
fn pick<T>(flag: Option<T>, file: Option<T>) -> Option<T> {
    flag.or(file)
}

fn pick_vec<T>(flag: Vec<T>, file: Option<Vec<T>>) -> Vec<T> {
    if flag.is_empty() { file.unwrap_or_default() } else { flag }
}

impl Args {
    /// Reads the file named by `--config` (if any) and merges the flags over it.
    pub fn resolve(self) -> Result<Resolved, ConfigError> {
        let file = match &self.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        self.merge(file)
    }

    /// Merges the flags over a file configuration.
    pub fn merge(self, file: FileConfig) -> Result<Resolved, ConfigError> {
        let mut config = ProxyConfig::default();
        let listen = pick_vec(self.listen, file.listen);
        let tls_listen = pick_vec(self.tls_listen, file.tls_listen);
        if !listen.is_empty() || !tls_listen.is_empty() {
            config.listen = listen;
        }
        config.tls_listen = tls_listen;

        let cert = pick(self.tls_cert, file.tls_cert);
        let key = pick(self.tls_key, file.tls_key);
        let self_signed = pick_vec(self.tls_self_signed, file.tls_self_signed);
        config.tls = match (cert, key, self_signed.is_empty()) {
            (Some(cert), Some(key), true) => Some(TlsIdentitySource::Pem { cert, key }),
            (None, None, false) => Some(TlsIdentitySource::SelfSigned { names: self_signed }),
            (None, None, true) => None,
            (Some(_), Some(_), false) => {
                return Err(ConfigError::Invalid("use either tls_cert/tls_key or tls_self_signed, not both".into()));
            }
            _ => {
                return Err(ConfigError::Invalid("tls_cert and tls_key must be given together".into()));
            }
        };
        if !config.tls_listen.is_empty() && config.tls.is_none() {
            return Err(ConfigError::Invalid(
                "a TLS listener needs --tls-cert and --tls-key, or --tls-self-signed NAME".into(),
            ));
        }
        let ca_out = pick(self.tls_ca_out, file.tls_ca_out);
        if ca_out.is_some() && !matches!(config.tls, Some(TlsIdentitySource::SelfSigned { .. })) {
            return Err(ConfigError::Invalid("--tls-ca-out needs --tls-self-signed".into()));
        }

        for spec in pick_vec(self.resolve, file.resolve) {
            config.resolver.insert_spec(&spec)?;
        }
        config.resolver.map_only = self.resolve_only || file.resolve_only.unwrap_or(false);
        if let Some(t) = self.dns_timeout {
            config.resolver.timeout = t;
        } else if let Some(v) = file.dns_timeout {
            config.resolver.timeout = secs("dns_timeout", v)?;
        }

        let policy_err = |key| move |error| ConfigError::Policy { key, error };
        if let Some(p) = self.allow_ports {
            config.policy.ports = p;
        } else if let Some(p) = file.allow_ports {
            config.policy.ports = p.parse().map_err(policy_err("allow_ports"))?;
        }
        config.policy.allow = if self.allow_net.is_empty() {
            let nets = file.allow_net.unwrap_or_default();
            nets.iter().map(|n| n.parse()).collect::<Result<_, _>>().map_err(policy_err("allow_net"))?
        } else {
            self.allow_net
        };
        config.policy.deny = if self.deny_net.is_empty() {
            let nets = file.deny_net.unwrap_or_default();
            nets.iter().map(|n| n.parse()).collect::<Result<_, _>>().map_err(policy_err("deny_net"))?
        } else {
            self.deny_net
        };
        config.policy.ip_literals_only = self.ip_literals_only || file.ip_literals_only.unwrap_or(false);

        let users = pick_vec(self.auth, file.auth);
        let auth_file = pick(self.auth_file, file.auth_file);
        if !users.is_empty() || auth_file.is_some() {
            let realm = pick(self.auth_realm, file.auth_realm).unwrap_or_else(|| "reference-proxy".into());
            let mut auth = Auth::new(realm);
            for u in &users {
                auth.add(u)?;
            }
            if let Some(path) = &auth_file {
                auth.add_file(path)?;
            }
            config.auth = Some(auth);
        }

        let limits = &mut config.limits;
        if let Some(n) = pick(self.max_connections, file.max_connections) {
            if n == 0 {
                return Err(ConfigError::Invalid("max_connections must be at least 1".into()));
            }
            limits.max_connections = n;
        }
        let durations: [(&'static str, Option<Duration>, Option<f64>, &mut Duration); 4] = [
            ("header_timeout", self.header_timeout, file.header_timeout, &mut limits.header_timeout),
            ("connect_timeout", self.connect_timeout, file.connect_timeout, &mut limits.connect_timeout),
            ("idle_timeout", self.idle_timeout, file.idle_timeout, &mut limits.idle_timeout),
            ("shutdown_grace", self.shutdown_grace, file.shutdown_grace, &mut limits.shutdown_grace),
        ];
        for (key, flag, file_value, slot) in durations {
            if let Some(d) = flag {
                *slot = d;
            } else if let Some(v) = file_value {
                *slot = secs(key, v)?;
            }
        }
        if let Some(n) = pick(self.max_head, file.max_head) {
            limits.wire.max_head = n;
        }
        if let Some(n) = pick(self.max_request_line, file.max_request_line) {
            limits.wire.max_request_line = n;
        }
        if let Some(n) = pick(self.max_fields, file.max_fields) {
            limits.wire.max_fields = n;
        }
        if limits.wire.max_head < 64 || limits.wire.max_request_line < 16 {
            return Err(ConfigError::Invalid("max_head must be >= 64 and max_request_line >= 16".into()));
        }
        if let Some(name) = pick(self.name, file.name) {
            if !crate::response::is_token(&name) {
                return Err(ConfigError::Invalid(format!("name `{name}` is not an RFC 8941 token")));
            }
            config.name = name;
        }
        config.http2.enabled = self.h2 || file.h2.unwrap_or(false);
        if let Some(n) = pick(self.h2_max_streams, file.h2_max_streams) {
            if n == 0 {
                return Err(ConfigError::Invalid("h2_max_streams must be at least 1".into()));
            }
            config.http2.max_concurrent_streams = n;
        }
        let upstream_err = |key| move |error| ConfigError::Upstream { key, error };
        if let Some(url) = pick(self.upstream, file.upstream) {
            let mut up = Upstream::parse(&url).map_err(upstream_err("upstream"))?;
            if let Some(path) = pick(self.upstream_cacert, file.upstream_cacert) {
                let shown = path.display().to_string();
                up.ca_pem =
                    Some(std::fs::read_to_string(&path).map_err(|error| ConfigError::Read { path: shown, error })?);
            }
            up.credentials = pick(self.upstream_user, file.upstream_user);
            up.direct = pick_vec(self.upstream_direct, file.upstream_direct)
                .iter()
                .map(|r| r.parse())
                .collect::<Result<_, _>>()
                .map_err(upstream_err("upstream_direct"))?;
            up.validate().map_err(upstream_err("upstream"))?;
            config.upstream = Some(up);
        } else if file.upstream_cacert.is_some() || file.upstream_user.is_some() || file.upstream_direct.is_some() {
            return Err(ConfigError::Invalid(
                "upstream_cacert, upstream_user and upstream_direct need upstream".into(),
            ));
        }
        #[cfg(feature = "faults")]
        {
            config.faults = if self.fault.is_empty() {
                let names = file.faults.unwrap_or_default();
                names
                    .iter()
                    .map(|n| n.parse())
                    .collect::<Result<_, _>>()
                    .map_err(|e: crate::faults::UnknownFault| ConfigError::Invalid(e.to_string()))?
            } else {
                self.fault
            };
        }
        Ok(Resolved { config, ca_out, log_json: self.log_json })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(argv: &[&str]) -> Args {
        Args::try_parse_from(std::iter::once("reference-proxy").chain(argv.iter().copied())).unwrap()
    }

    #[test]
    fn defaults_are_secure() {
        let r = args(&[]).resolve().unwrap();
        assert_eq!(r.config.listen, vec!["127.0.0.1:8080".parse().unwrap()]);
        assert!(r.config.tls_listen.is_empty() && r.config.auth.is_none());
        assert!(r.config.policy.ports.contains(443) && !r.config.policy.ports.contains(80));
    }

    #[test]
    fn flags_override_the_file() {
        let file: FileConfig = toml::from_str(
            r#"
            listen = ["127.0.0.1:3128"]
            allow_ports = "443,8000-9000"
            allow_net = ["127.0.0.0/8"]
            resolve = ["origin.test:127.0.0.1"]
            idle_timeout = 1.5
            auth = ["u:p"]
            "#,
        )
        .unwrap();
        let r = args(&["--allow-ports", "22"]).merge(file).unwrap();
        assert_eq!(r.config.listen, vec!["127.0.0.1:3128".parse().unwrap()]);
        assert!(r.config.policy.ports.contains(22) && !r.config.policy.ports.contains(443));
        assert_eq!(r.config.limits.idle_timeout, Duration::from_millis(1500));
        assert!(r.config.auth.is_some());
        assert_eq!(r.config.resolver.static_map.len(), 1);
    }

    #[test]
    fn invalid_configuration_is_an_error() {
        assert!(Args::try_parse_from(["p", "--allow-ports", "0"]).is_err());
        assert!(Args::try_parse_from(["p", "--allow-net", "10.0.0.0/99"]).is_err());
        assert!(Args::try_parse_from(["p", "--idle-timeout", "-1"]).is_err());
        assert!(args(&["--tls-listen", "127.0.0.1:8443"]).resolve().is_err());
        assert!(args(&["--resolve", "nonsense"]).resolve().is_err());
        assert!(args(&["--auth", "nocolon"]).resolve().is_err());
        assert!(args(&["--tls-ca-out", "/nonexistent/ca.pem"]).resolve().is_err());
        assert!(args(&["--name", "bad name"]).resolve().is_err());
        assert!(toml::from_str::<FileConfig>("unknown_key = 1").is_err());
    }

    #[test]
    fn upstream_settings() {
        let r = args(&["--upstream", "http://127.0.0.1:3128", "--upstream-user", "me:pw", "--upstream-direct", ".lan"])
            .resolve()
            .unwrap();
        let up = r.config.upstream.unwrap();
        assert_eq!((up.host.as_str(), up.port, up.credentials.as_deref()), ("127.0.0.1", 3128, Some("me:pw")));
        let err = |a: &[&str]| args(a).resolve().unwrap_err().to_string();
        assert!(err(&["--upstream", "https://parent.test:8443"]).contains("--upstream-cacert"));
        assert!(err(&["--upstream", "http://parent.test"]).contains("explicit port"));
        assert!(err(&["--upstream", "http://p.test:1", "--upstream-user", "nocolon"]).contains("user:password"));
        assert!(err(&["--upstream", "http://p.test:1", "--upstream-direct", "bad rule!"]).contains("upstream_direct"));
        assert!(Args::try_parse_from(["p", "--upstream-user", "a:b"]).is_err(), "needs --upstream");
        let file: FileConfig = toml::from_str("upstream_user = \"a:b\"").unwrap();
        assert!(Args::default().merge(file).is_err());
    }
}
