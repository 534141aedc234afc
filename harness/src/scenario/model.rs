//! The typed scenario model, as read from TOML (`deny_unknown_fields` everywhere, so typos are errors).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::step::Step;

/// How strongly the RFC states the requirement; decides what a mismatch means (fail, warn, observed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// MUST / MUST NOT (or derived from one): a mismatch is `fail`.
    Must,
    /// SHOULD / SHOULD NOT: a mismatch is `warn`.
    Should,
    /// MAY: either behaviour conforms; a mismatch is recorded as `observed`.
    May,
    /// Conforming proxies legitimately differ: the behaviour is recorded, never judged.
    Observed,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Must => "must",
            Level::Should => "should",
            Level::May => "may",
            Level::Observed => "observed",
        }
    }
}

/// How the client reaches the proxy: cleartext HTTP/1.1, HTTP/1.1 inside TLS ("HTTPS proxy"), HTTP/2 inside TLS
/// (ALPN h2; each CONNECT a stream, RFC 9113 §8.5), or HTTP/2 with prior knowledge on a cleartext connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Plain,
    Tls,
    H2,
    H2c,
}

impl Transport {
    pub const ALL: [Transport; 4] = [Transport::Plain, Transport::Tls, Transport::H2, Transport::H2c];

    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Plain => "plain",
            Transport::Tls => "tls",
            Transport::H2 => "h2",
            Transport::H2c => "h2c",
        }
    }

    /// The connection to the proxy is TLS.
    pub fn is_tls(self) -> bool {
        matches!(self, Transport::Tls | Transport::H2)
    }

    /// The client speaks HTTP/2 to the proxy.
    pub fn is_h2(self) -> bool {
        matches!(self, Transport::H2 | Transport::H2c)
    }
}

/// Something a scenario needs from the run; without it the scenario is skipped with a reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Needs {
    /// Proxy credentials (`--proxy-user`).
    Auth,
    /// An IPv6 loopback address for the origins.
    Ipv6,
    /// A proxy under test that sends its CONNECTs to the harness's instrumented parent proxy
    /// (`--upstream-proxy-port`; the embedded reference proxy runs a chained instance of its own).
    Upstream,
    /// The credentials the chained proxy presents to its parent (`--upstream-proxy-credentials`; the embedded
    /// reference proxy's chained instance has its own).
    UpstreamCredentials,
}

/// The server name the client puts in its TLS ClientHello to the proxy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Sni {
    /// The host of the proxy URL (none when that host is an IP address, as RFC 6066 §3 requires).
    #[default]
    ProxyName,
    /// The host of the scenario's `target` (the CONNECT destination), as a buggy client would send.
    TargetName,
    /// No server_name extension at all.
    None,
    /// Exactly this name.
    Literal(String),
}

/// Client TLS settings toward the proxy (TLS transport only).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientTls {
    /// SNI sent to the proxy: "proxy-name" (default), "target-name", "none", or `{ literal = "name" }`.
    #[serde(default)]
    pub sni: Sni,
    /// ALPN protocols offered to the proxy; none by default.
    #[serde(default)]
    pub alpn: Vec<String>,
    /// ALPN selections the proxy may make ("" for none); empty: not checked.
    #[serde(default)]
    pub expect_alpn: Vec<String>,
    /// The proxy may legitimately refuse this TLS setting (e.g. no SNI, RFC 8446 §9.2): a failed handshake
    /// is recorded as `observed` instead of judged at the scenario's level.
    #[serde(default)]
    pub may_refuse: bool,
    /// The handshake itself is what the scenario checks: a handshake that fails twice is judged at the
    /// scenario's level. Elsewhere it is a setup failure (`setup`), not a failure of the requirement.
    #[serde(default)]
    pub judge_handshake: bool,
    /// Judge by difference: when the answer is not the expected one, the same request is sent again with a
    /// control SNI (none, or the target's name when the scenario sends none). Outcomes that differ, a 421, or
    /// a refusal that names SNI fail; the same refusal both ways is `inconclusive` (not about SNI).
    #[serde(default)]
    pub compare_sni: bool,
}

/// The destination a policy scenario probes: a port, an address, or both.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyProbe {
    #[serde(default)]
    pub port: Option<u16>,
    /// An IP address (IPv6 with or without brackets).
    #[serde(default)]
    pub address: Option<String>,
}

/// One check: a script of steps with the requirement it proves.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Stable id, `rfc/section/slug`; used by `--only`, `--skip` and expectation files.
    pub id: String,
    pub title: String,
    /// Where the requirement is written, e.g. "RFC 9110 §9.3.6".
    pub section: String,
    /// The requirement, quoted from the RFC text.
    pub requirement: String,
    pub level: Level,
    /// Transports the scenario applies to (default: both).
    #[serde(default = "all_transports")]
    pub transports: Vec<Transport>,
    /// Row ids in the requirement catalog (e.g. "F01").
    #[serde(default)]
    pub catalog: Vec<String>,
    /// What the run must provide, else the scenario is skipped.
    #[serde(default)]
    pub needs: Vec<Needs>,
    /// Names of reference-proxy faults that must make this scenario fail (negative controls).
    #[serde(default)]
    pub faults: Vec<String>,
    /// The kinds of the steps that embody the requirement (e.g. `["origin"]` when the requirement is about
    /// where the tunnel goes): each negative control must make one of these steps fail, not some other step.
    /// Required for `must` and `should` scenarios; every kind named must be one of the scenario's steps.
    #[serde(default)]
    pub requirement_at: Vec<String>,
    /// The CONNECT destination, available as `{target}` (default `{echo}`); `sni = "target-name"` uses its host.
    #[serde(default = "default_target")]
    pub target: String,
    /// Client TLS settings toward the proxy.
    #[serde(default)]
    pub tls: ClientTls,
    /// Free text for readers of the report.
    #[serde(default)]
    pub note: Option<String>,
    /// A destination-policy probe: judged against the declared policy when there is one (see `crate::policy`).
    #[serde(default)]
    pub policy: Option<PolicyProbe>,
    /// What the instrumented parent proxy does with this scenario's CONNECT (chained scenarios; default: tunnel).
    #[serde(default)]
    pub parent: Option<crate::origin::parent::ParentScript>,
    /// The script, run in order.
    #[serde(rename = "step")]
    pub steps: Vec<Step>,
}

impl Scenario {
    /// Whether the scenario writes frames of its own (`h2_headers`, `h2_window`): its connection then runs through
    /// the harness's frame writer instead of the `h2` crate.
    pub fn uses_h2_frames(&self) -> bool {
        self.steps.iter().any(|s| matches!(s, Step::H2Headers(_) | Step::H2Window(_)))
    }
}

fn all_transports() -> Vec<Transport> {
    Transport::ALL.to_vec()
}

fn default_target() -> String {
    "{echo}".to_string()
}
