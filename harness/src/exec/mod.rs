//! Runs one scenario over one transport with origins the runner leased: connects to the proxy, executes the steps with
//! deadlines, and collects what the client and the origins observed. Judging happens in [`crate::judge`].

pub mod connect;
mod control;
mod h2_parallel;
pub mod observe;
mod origin_check;
mod parent_check;
pub mod report;
mod response;
mod steps;
mod tunnel;

pub use tunnel::MIN_RATE;

use std::{net::SocketAddr, time::Duration};

use base64::Engine;
use schemars::JsonSchema;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use self::{
    observe::Observed,
    report::{StepReport, StepResult},
};
use crate::{
    client::{Conn, tls::CertCheck, tls::ProxyTrust, transcript::Transcript},
    origin::{OriginConnection, OriginSet},
    scenario::{
        Level, Loaded, Sni, Transport,
        step::{OriginKind, OutcomeVerdict},
        template::{AddrForm, Env, ProxyPart, Template},
    },
};

/// Origin connections listed per result in reports.
const REPORTED_ORIGIN_CONNECTIONS: usize = 64;

/// Where and how to reach the proxy on one transport.
#[derive(Clone)]
pub struct ProxyEndpoint {
    pub transport: Transport,
    /// Where to connect.
    pub addr: SocketAddr,
    /// The host of the proxy URL: the name for SNI ("proxy-name") and for checking the certificate.
    pub host: String,
    pub port: u16,
    /// How to trust the proxy's certificate (TLS only).
    pub trust: Option<ProxyTrust>,
}

/// Run-wide settings for the executor.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Deadline of each step (and of connecting and handshaking).
    pub step_timeout: Duration,
    /// Bound on the size of a response head.
    pub head_limit: usize,
    /// `user:pass` for Proxy-Authorization.
    pub proxy_user: Option<String>,
    /// The proxy's logs to correlate with each scenario (`--proxy-log`).
    pub proxy_logs: crate::proxy_log::ProxyLogs,
    /// The destination policy the proxy is declared to enforce, for `policy` scenarios.
    pub policy: Option<std::sync::Arc<crate::policy::DeclaredPolicy>>,
    /// What the preflight saw of the proxy's policy (run by the runner when not given).
    pub preflight: Option<std::sync::Arc<crate::preflight::Preflight>>,
    /// `--origin-ports`, to tell which destinations are outside the range.
    pub origin_ports: Option<std::ops::RangeInclusive<u16>>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            step_timeout: Duration::from_secs(5),
            head_limit: 64 * 1024,
            proxy_user: None,
            proxy_logs: Default::default(),
            policy: None,
            preflight: None,
            origin_ports: None,
        }
    }
}

/// TLS facts about the connection to the proxy.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ProxyTls {
    /// The SNI the client sent (None: no server_name extension).
    pub sni_sent: Option<String>,
    pub alpn_offered: Vec<String>,
    /// The ALPN protocol the proxy selected (None: none).
    pub alpn_selected: Option<String>,
    pub cert: CertCheck,
}

/// Everything one scenario run produced, before judging.
pub struct Execution {
    pub steps: Vec<StepReport>,
    pub transcript: Transcript,
    pub origins: Vec<OriginConnection>,
    /// The last response observation (from the last `expect` step that ran).
    pub observed: Option<Observed>,
    pub tls: Option<ProxyTls>,
}

impl Execution {
    /// A run that ended before its steps: this one report says why.
    pub fn failed(report: StepReport, transcript: Transcript, tls: Option<ProxyTls>) -> Self {
        Execution { steps: vec![report], transcript, origins: Vec::new(), observed: None, tls }
    }
}

pub(crate) struct RunEnv<'a> {
    origins: &'a OriginSet,
    ep: &'a ProxyEndpoint,
    target: Vec<u8>,
    auth: Option<String>,
    token: String,
}

impl<'a> RunEnv<'a> {
    /// An environment for templates outside a scenario (the fuzzer): no `{target}`.
    pub(crate) fn new(origins: &'a OriginSet, ep: &'a ProxyEndpoint, user: Option<&str>, token: &str) -> Self {
        RunEnv { origins, ep, target: Vec::new(), auth: user.map(basic_auth), token: token.to_string() }
    }
}

impl Env for RunEnv<'_> {
    fn origin(&self, kind: OriginKind, form: &AddrForm) -> String {
        let addr = self.origins.addr(kind);
        let port = addr.port();
        match form {
            AddrForm::V4 => addr.to_string(),
            AddrForm::V6 => format!("[::1]:{port}"),
            AddrForm::Name => format!("localhost:{port}"),
            AddrForm::Port => port.to_string(),
            AddrForm::PortOffset(n) => (i128::from(port) + n).to_string(),
            AddrForm::Host => match addr.ip() {
                std::net::IpAddr::V6(v6) => format!("[{v6}]"),
                v4 => v4.to_string(),
            },
        }
    }
    fn proxy(&self, part: &ProxyPart) -> String {
        let host = if self.ep.host.contains(':') { format!("[{}]", self.ep.host) } else { self.ep.host.clone() };
        match part {
            ProxyPart::Authority => format!("{host}:{}", self.ep.port),
            ProxyPart::Name => host,
            ProxyPart::Port => self.ep.port.to_string(),
            ProxyPart::Addr => self.ep.addr.to_string(),
        }
    }
    fn target(&self) -> Vec<u8> {
        self.target.clone()
    }
    fn auth_line(&self) -> Option<String> {
        self.auth.clone()
    }
    fn token(&self) -> String {
        self.token.clone()
    }
    fn protocol(&self) -> &'static str {
        if self.ep.transport.is_h2() { "2" } else { "1.1" }
    }
}

/// State carried from step to step.
pub(crate) struct State<'a> {
    pub conn: Conn,
    pub env: RunEnv<'a>,
    pub origins: &'a OriginSet,
    /// This scenario's claim on the instrumented parent proxy (chained scenarios).
    pub parent: Option<&'a crate::origin::parent::ParentLease>,
    pub settings: &'a Settings,
    /// A 2xx was seen: bytes now belong to the tunnel.
    pub tunnel: bool,
    /// Hash and count of the tunnel bytes the client sent.
    pub sent_hash: Sha256,
    pub sent_len: u64,
    pub observed: Option<Observed>,
    pub level: Level,
    pub transport: Transport,
    /// The first request the client sent (for the SNI control, which repeats it).
    pub first_request: Option<Vec<u8>>,
    /// The request-target of the last request sent before a tunnel (for telling policy refusals).
    pub last_target: Option<Vec<u8>>,
    /// The scenario probes the destination policy itself (`policy = {...}`): refusals are its subject.
    pub policy_probe: bool,
    /// A step found the answer to be a policy refusal: only checks that nothing was dialled still run.
    pub refused_by_policy: bool,
}

impl State<'_> {
    /// Notes a request the client sent outside a tunnel.
    pub fn note_request(&mut self, data: &[u8]) {
        if self.tunnel {
            return;
        }
        if self.first_request.is_none() {
            self.first_request = Some(data.to_vec());
        }
        let line = data.split(|b| *b == b'\n').next().unwrap_or_default();
        let mut parts = line.split(|b| *b == b' ');
        if let (Some(_), Some(target)) = (parts.next(), parts.next()) {
            self.last_target = Some(target.to_vec());
        }
    }

    pub fn deadline(&self, ms: Option<u64>) -> Instant {
        Instant::now() + ms.map(Duration::from_millis).unwrap_or(self.settings.step_timeout)
    }

    pub fn expand(&self, text: &str) -> Result<Vec<u8>, String> {
        Template::parse(text).map(|t| t.expand(&self.env)).map_err(|e| e.0)
    }

    pub fn note_tunnel_sent(&mut self, data: &[u8]) {
        self.sent_hash.update(data);
        self.sent_len += data.len() as u64;
    }
}

/// The `Proxy-Authorization` field line (without CRLF) for `user:pass`.
pub(crate) fn basic_auth(user: &str) -> String {
    format!("Proxy-Authorization: Basic {}", base64::engine::general_purpose::STANDARD.encode(user))
}

/// The host part of an authority ("name:port", "[v6]:port", "name").
fn host_of(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    authority.rsplit_once(':').map(|(h, _)| h).unwrap_or(authority)
}

/// Runs the scenario against the endpoint with origins already leased (the runner leases them first, so waiting
/// for a set is not counted against the scenario's deadline). Never panics on proxy behaviour; every wait has a
/// deadline.
pub async fn execute(
    loaded: &Loaded,
    ep: &ProxyEndpoint,
    settings: &Settings,
    origins: &OriginSet,
    parent: Option<&crate::origin::parent::ParentLease>,
) -> Execution {
    let scn = &loaded.scenario;
    let start = std::time::Instant::now();
    let transcript = Transcript::new(start);
    let setup_error = |kind: &str, detail: String, transcript: Transcript| {
        Execution::failed(StepReport::new(0, kind, scn.level, StepResult::Error, detail), transcript, None)
    };
    let token = format!("ch-{:016x}", rand::random::<u64>());
    let auth = settings.proxy_user.as_deref().map(basic_auth);
    let mut env = RunEnv { origins, ep, target: Vec::new(), auth, token };
    env.target = match Template::parse(&scn.target) {
        Ok(t) => t.expand(&env),
        Err(e) => return setup_error("target", e.0, transcript),
    };

    let choice = tls_choice(scn, ep, &env);
    let (conn, tls_facts) = match connect::open(ep, settings, &choice, transcript).await {
        Ok(opened) => opened,
        Err((e, facts, transcript)) => return Execution::failed(open_failure(scn, &e), transcript, facts),
    };
    let mut steps = Vec::new();
    if let Some(facts) = &tls_facts {
        let want = &scn.tls.expect_alpn;
        let got = facts.alpn_selected.as_deref().unwrap_or("");
        if !want.is_empty() && !want.iter().any(|w| w == got) {
            let detail =
                format!("the proxy selected ALPN {:?}, acceptable: {want:?} (\"\" = none)", facts.alpn_selected);
            steps.push(StepReport::new(0, "proxy_tls", scn.level, StepResult::Mismatch, detail));
            return finish(steps, conn, origins, None, tls_facts);
        }
    }

    let mut state = State {
        conn,
        env,
        origins,
        parent,
        settings,
        tunnel: false,
        sent_hash: Sha256::new(),
        sent_len: 0,
        observed: None,
        level: scn.level,
        transport: ep.transport,
        first_request: None,
        last_target: None,
        policy_probe: scn.policy.is_some(),
        refused_by_policy: false,
    };
    for (i, step) in scn.steps.iter().enumerate() {
        let report = steps::run(&mut state, i + 1, step).await;
        let stop = report.stops();
        steps.push(report);
        if stop {
            break;
        }
    }
    let State { mut conn, observed, first_request, env, .. } = state;
    if scn.tls.compare_sni && ep.transport == Transport::Tls {
        let sni = tls_facts.as_ref().and_then(|f| f.sni_sent.clone());
        let target = String::from_utf8_lossy(&env.target).to_string();
        control::compare_sni(
            &mut steps,
            scn,
            ep,
            settings,
            control::MainAnswer {
                request: first_request.as_deref(),
                observed: observed.as_ref(),
                sni_sent: sni.as_deref(),
                target_host: host_of(&target),
            },
            &mut conn.transcript,
        )
        .await;
    }
    finish(steps, conn, origins, observed, tls_facts)
}

fn finish(
    steps: Vec<StepReport>,
    mut conn: Conn,
    origins: &OriginSet,
    observed: Option<Observed>,
    tls: Option<ProxyTls>,
) -> Execution {
    conn.reset_quietly();
    // The report lists a bounded number of origin connections (a looping proxy could make thousands).
    let all = origins.log.snapshot();
    if all.len() > REPORTED_ORIGIN_CONNECTIONS || origins.log.overflow() > 0 {
        let more = all.len().saturating_sub(REPORTED_ORIGIN_CONNECTIONS) as u64 + origins.log.overflow();
        conn.transcript.event(format!("{more} more origin connections not listed"));
    }
    let origins = all.into_iter().take(REPORTED_ORIGIN_CONNECTIONS).map(|s| s.report).collect();
    Execution { steps, transcript: conn.transcript, origins, observed, tls }
}

/// The SNI and ALPN a scenario asks for toward the proxy.
fn tls_choice(scn: &crate::scenario::Scenario, ep: &ProxyEndpoint, env: &RunEnv<'_>) -> connect::TlsChoice {
    let target_host = String::from_utf8_lossy(&env.target).to_string();
    let sni = match &scn.tls.sni {
        Sni::ProxyName => Some(ep.host.clone()),
        Sni::TargetName => Some(host_of(&target_host).to_string()),
        Sni::None => None,
        Sni::Literal(n) => Some(n.clone()),
    };
    connect::TlsChoice { sni, alpn: scn.tls.alpn.clone(), h2_frames: scn.uses_h2_frames() }
}

/// What a connection that could not be opened (after the retry) means for this scenario.
fn open_failure(scn: &crate::scenario::Scenario, e: &connect::OpenError) -> StepReport {
    use connect::OpenError as E;
    let level = scn.level;
    let report = |kind: &str, result: StepResult, detail: String| StepReport::new(0, kind, level, result, detail);
    // The scenario's TLS settings are what it tests when they are not the defaults a plain client uses.
    let own_settings = scn.tls.sni != Sni::ProxyName || !scn.tls.alpn.is_empty();
    match e {
        E::AcceptedThenReset(d) => report("connect", StepResult::Mismatch, d.clone()),
        E::Connect { .. } => report(
            "connect",
            StepResult::Setup,
            format!("could not connect to the proxy, twice (the proxy stopped accepting connections?): {e}"),
        ),
        E::BadName(_) | E::Config(_) | E::Untrusted(_) => report("proxy_tls", StepResult::Error, e.to_string()),
        E::NoH2(_) => report("proxy_tls", StepResult::Setup, e.to_string()),
        E::H2(_) => report("h2_connection", StepResult::Setup, format!("{e} (not this scenario's requirement)")),
        E::Handshake { .. } if scn.tls.judge_handshake => {
            let result = if e.timed_out() { StepResult::TimedOut } else { StepResult::Mismatch };
            report("proxy_tls", result, format!("TLS to the proxy: {e}"))
        }
        E::Handshake { .. } if scn.tls.may_refuse && !e.timed_out() => report(
            "proxy_tls",
            StepResult::Tolerated(OutcomeVerdict::Observed),
            format!("TLS to the proxy refused, which this setting allows: {e}"),
        ),
        E::Handshake { .. } if own_settings && !e.timed_out() => {
            report("proxy_tls", StepResult::Mismatch, format!("TLS to the proxy with this scenario's SNI/ALPN: {e}"))
        }
        E::Handshake { .. } => report(
            "proxy_tls",
            StepResult::Setup,
            format!("the TLS handshake to the proxy did not complete, twice (not this scenario's requirement): {e}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn host_of_authorities() {
        assert_eq!(super::host_of("localhost:80"), "localhost");
        assert_eq!(super::host_of("[::1]:80"), "::1");
        assert_eq!(super::host_of("target.test"), "target.test");
    }
}
