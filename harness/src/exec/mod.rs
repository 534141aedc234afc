//! Runs one scenario over one transport: leases origins, connects to the proxy, executes the steps with
//! deadlines, and collects what the client and the origins observed. Judging happens in [`crate::judge`].

pub mod observe;
mod origin_check;
pub mod report;
mod response;
mod steps;
mod tunnel;

pub use tunnel::MIN_RATE;

use std::{net::SocketAddr, time::Duration};

use base64::Engine;
use rustls::pki_types::ServerName;
use schemars::JsonSchema;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use self::{
    observe::Observed,
    report::{StepReport, StepResult},
};
use crate::{
    client::{self, Conn, tls::CertCheck, tls::ProxyTrust, transcript::Transcript},
    origin::{OriginConnection, OriginSet, Pool},
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
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            step_timeout: Duration::from_secs(5),
            head_limit: 64 * 1024,
            proxy_user: None,
            proxy_logs: Default::default(),
            policy: None,
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

pub(crate) struct RunEnv<'a> {
    origins: &'a OriginSet,
    ep: &'a ProxyEndpoint,
    target: Vec<u8>,
    auth: Option<String>,
    token: String,
}

impl Env for RunEnv<'_> {
    fn origin(&self, kind: OriginKind, form: &AddrForm) -> String {
        let port = self.origins.port(kind);
        match form {
            AddrForm::V4 => format!("127.0.0.1:{port}"),
            AddrForm::V6 => format!("[::1]:{port}"),
            AddrForm::Name => format!("localhost:{port}"),
            AddrForm::Port => port.to_string(),
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
}

/// State carried from step to step.
pub(crate) struct State<'a> {
    pub conn: Conn,
    pub env: RunEnv<'a>,
    pub origins: &'a OriginSet,
    pub settings: &'a Settings,
    /// A 2xx was seen: bytes now belong to the tunnel.
    pub tunnel: bool,
    /// Hash and count of the tunnel bytes the client sent.
    pub sent_hash: Sha256,
    pub sent_len: u64,
    pub observed: Option<Observed>,
    pub level: Level,
}

impl State<'_> {
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

fn basic_auth(user: &str) -> String {
    format!("Proxy-Authorization: Basic {}", base64::engine::general_purpose::STANDARD.encode(user))
}

/// The host part of an authority ("name:port", "[v6]:port", "name").
fn host_of(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    authority.rsplit_once(':').map(|(h, _)| h).unwrap_or(authority)
}

/// Runs the scenario against the endpoint. Never panics on proxy behaviour; every wait has a deadline.
pub async fn execute(loaded: &Loaded, ep: &ProxyEndpoint, settings: &Settings, pool: &Pool) -> Execution {
    let scn = &loaded.scenario;
    let start = std::time::Instant::now();
    let mut transcript = Transcript::new(start);
    let setup_error = |kind: &str, detail: String, transcript: Transcript| Execution {
        steps: vec![StepReport::new(0, kind, scn.level, StepResult::Error, detail)],
        transcript,
        origins: Vec::new(),
        observed: None,
        tls: None,
    };
    let origins = match pool.lease(&loaded.origins()).await {
        Ok(o) => o,
        Err(e) => return setup_error("origins", e.to_string(), transcript),
    };
    let token = format!("ch-{:016x}", rand::random::<u64>());
    let auth = settings.proxy_user.as_deref().map(basic_auth);
    let mut env = RunEnv { origins: &origins, ep, target: Vec::new(), auth, token };
    env.target = match Template::parse(&scn.target) {
        Ok(t) => t.expand(&env),
        Err(e) => return setup_error("target", e.0, transcript),
    };

    let deadline = Instant::now() + settings.step_timeout;
    let tcp = match client::connect_tcp(ep.addr, deadline).await {
        Ok(t) => t,
        Err(e) if e.accepted_then_reset() => {
            let mut ex = setup_error("connect", e.to_string(), transcript);
            ex.steps[0].result = StepResult::Mismatch;
            return ex;
        }
        Err(e) => return setup_error("connect", e.to_string(), transcript),
    };
    transcript.event(format!("connected to the proxy at {} ({})", ep.addr, ep.transport.as_str()));
    let mut conn = Conn::new(tcp, transcript);
    let mut steps = Vec::new();
    let mut tls_facts = None;

    if ep.transport == Transport::Tls {
        let (report, facts) = proxy_handshake(&mut conn, scn, ep, &env, settings).await;
        tls_facts = Some(facts);
        if let Some(r) = report {
            steps.push(r);
            return finish(steps, conn, &origins, None, tls_facts);
        }
    }

    let mut state = State {
        conn,
        env,
        origins: &origins,
        settings,
        tunnel: false,
        sent_hash: Sha256::new(),
        sent_len: 0,
        observed: None,
        level: scn.level,
    };
    for (i, step) in scn.steps.iter().enumerate() {
        let report = steps::run(&mut state, i + 1, step).await;
        let stop = report.stops();
        steps.push(report);
        if stop {
            break;
        }
    }
    let State { conn, observed, .. } = state;
    finish(steps, conn, &origins, observed, tls_facts)
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

/// TLS to the proxy with the scenario's SNI and ALPN. Returns a report when the handshake did not succeed.
async fn proxy_handshake(
    conn: &mut Conn,
    scn: &crate::scenario::Scenario,
    ep: &ProxyEndpoint,
    env: &RunEnv<'_>,
    settings: &Settings,
) -> (Option<StepReport>, ProxyTls) {
    let level = scn.level;
    let proxy_name = ServerName::try_from(ep.host.clone());
    let target_host = String::from_utf8_lossy(&env.target).to_string();
    let sni_name: Option<String> = match &scn.tls.sni {
        Sni::ProxyName => Some(ep.host.clone()),
        Sni::TargetName => Some(host_of(&target_host).to_string()),
        Sni::None => None,
        Sni::Literal(n) => Some(n.clone()),
    };
    // rustls never sends an IP address as SNI (RFC 6066 §3); record what really goes out.
    let sni_server_name = sni_name.as_ref().and_then(|n| ServerName::try_from(n.clone()).ok());
    let sni_sent = match &sni_server_name {
        Some(ServerName::DnsName(d)) => Some(d.as_ref().to_string()),
        _ => None,
    };
    let mut facts = ProxyTls {
        sni_sent: sni_sent.clone(),
        alpn_offered: scn.tls.alpn.clone(),
        alpn_selected: None,
        cert: CertCheck::default(),
    };
    let err = |kind: &str, result: StepResult, detail: String| Some(StepReport::new(0, kind, level, result, detail));
    let Ok(proxy_name) = proxy_name else {
        return (err("proxy_tls", StepResult::Error, format!("{:?} is not a valid server name", ep.host)), facts);
    };
    let trust = ep.trust.clone().unwrap_or(ProxyTrust::Insecure);
    let (config, cell) =
        match client::tls::proxy_client_config(&trust, proxy_name.clone(), sni_sent.is_some(), &scn.tls.alpn) {
            Ok(c) => c,
            Err(e) => return (err("proxy_tls", StepResult::Error, e), facts),
        };
    let connect_name = sni_server_name.filter(|_| sni_sent.is_some()).unwrap_or(proxy_name);
    let deadline = Instant::now() + settings.step_timeout;
    let result = conn.start_tls(config, connect_name, deadline).await;
    facts.cert = cell.lock().expect("cert check lock").clone();
    match result {
        Ok(alpn) => {
            facts.alpn_selected = alpn.clone();
            let want = &scn.tls.expect_alpn;
            if !want.is_empty() && !want.iter().any(|w| w == alpn.as_deref().unwrap_or("")) {
                let detail = format!("the proxy selected ALPN {alpn:?}, acceptable: {want:?} (\"\" = none)");
                return (err("proxy_tls", StepResult::Mismatch, detail), facts);
            }
            if facts.cert.valid_for_sni == Some(false) || facts.cert.valid_for_proxy_name == Some(false) {
                conn.transcript.event(format!(
                    "proxy certificate name check: valid for proxy name {:?}, for SNI {:?} (recorded, not fatal)",
                    facts.cert.valid_for_proxy_name, facts.cert.valid_for_sni
                ));
            }
            (None, facts)
        }
        Err(e) if facts.cert.chain_trusted == Some(false) => {
            let detail = format!("the proxy's certificate chain is not trusted by the given CA: {e}");
            (err("proxy_tls", StepResult::Error, detail), facts)
        }
        Err(e) if e.contains("timed out") => (err("proxy_tls", StepResult::TimedOut, e), facts),
        Err(e) if scn.tls.may_refuse => {
            let detail = format!("TLS to the proxy refused, which this setting allows: {e}");
            (err("proxy_tls", StepResult::Tolerated(OutcomeVerdict::Observed), detail), facts)
        }
        Err(e) => (err("proxy_tls", StepResult::Mismatch, format!("TLS to the proxy: {e}")), facts),
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
