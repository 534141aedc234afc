//! The preflight: before the suite, a few plain CONNECTs to the echo origin (by IPv4 literal, IPv6 literal,
//! the name `localhost`, and a port outside `--origin-ports`) show what the proxy's access policy allows. The
//! answers go into the report; when even the IPv4 tunnel is refused the run stops (exit 3) with what to allow.
//! During the run they tell a policy refusal from a judgement: a scenario whose answer is the proxy's policy
//! answer did not exercise its requirement (`inconclusive`).

use std::net::{IpAddr, SocketAddr};

use schemars::JsonSchema;
use serde::Serialize;
use tokio::time::Instant;

use crate::{
    client::{HeadRead, head::ResponseHead, transcript::Transcript},
    exec::{ProxyEndpoint, Settings, connect},
    origin::Pool,
    scenario::{OriginKind, Transport},
};

/// Which destination a probe asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ProbeKind {
    /// The echo origin by its IPv4 address.
    Ipv4,
    /// The echo origin as `[::1]`.
    Ipv6,
    /// The echo origin as `localhost`.
    Name,
    /// A listener on a port outside `--origin-ports`.
    PortOutsideRange,
}

impl ProbeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeKind::Ipv4 => "IPv4 literal",
            ProbeKind::Ipv6 => "IPv6 literal",
            ProbeKind::Name => "name (localhost)",
            ProbeKind::PortOutsideRange => "port outside --origin-ports",
        }
    }
}

/// What the proxy did with a probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ProbeAnswer {
    /// A 2xx and bytes echoed through the tunnel.
    Tunnel,
    /// A 2xx, but the echo did not come back.
    TunnelBroken,
    /// A refusal (403, or another 4xx that is not 400/407): the proxy's policy.
    PolicyRefusal,
    /// 400: the proxy did not accept the request's form (e.g. no IPv6 literals).
    Rejected,
    /// 407: credentials needed (give --proxy-user).
    AuthRequired,
    /// A 5xx: the proxy tried and could not connect (e.g. no IPv6 route).
    ConnectFailed,
    /// No response: closed, reset, timed out, or our connection to the proxy failed.
    NoAnswer,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Probe {
    pub transport: Transport,
    pub kind: ProbeKind,
    /// The request-target sent.
    pub target: String,
    pub answer: ProbeAnswer,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// The status line, and the fields that explain a refusal (`X-Squid-Error`, `Proxy-Status`, ...).
    pub detail: String,
}

impl std::fmt::Display for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:<5} CONNECT {} ({}): {:?} {}",
            self.transport.as_str(),
            self.target,
            self.kind.as_str(),
            self.answer,
            self.detail
        )
    }
}

/// All probes of a run.
#[derive(Debug, Clone, Default, Serialize, JsonSchema)]
pub struct Preflight {
    pub probes: Vec<Probe>,
    /// The `--origin-ports` range the probes were made with (which ports count as outside it).
    #[serde(skip)]
    pub range: Option<std::ops::RangeInclusive<u16>>,
}

/// The kind of destination a request-target names, for matching it with the probes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub host: DestHost,
    pub port: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DestHost {
    Ip(IpAddr),
    Name(String),
}

impl Destination {
    /// Reads `host:port`, `[v6]:port` or a bare host (lenient: this classifies, it does not validate).
    pub fn parse(target: &[u8]) -> Option<Self> {
        let t = std::str::from_utf8(target).ok()?;
        let t = t.rsplit_once('@').map_or(t, |(_, h)| h);
        let (host, port) = if let Some(rest) = t.strip_prefix('[') {
            let (h, after) = rest.split_once(']')?;
            (h, after.strip_prefix(':'))
        } else {
            match t.rsplit_once(':') {
                Some((h, p)) if !h.contains(':') => (h, Some(p)),
                _ => (t, None),
            }
        };
        if host.is_empty() || host.contains(['/', '?', '#', '*']) {
            return None;
        }
        let port = port.and_then(|p| p.parse::<u32>().ok());
        let host = match host.parse::<IpAddr>() {
            Ok(ip) => DestHost::Ip(ip),
            Err(_) => DestHost::Name(host.to_ascii_lowercase()),
        };
        Some(Destination { host, port })
    }

    /// The probe that asks for this kind of host.
    fn probe_kind(&self) -> ProbeKind {
        match &self.host {
            DestHost::Ip(IpAddr::V4(_)) => ProbeKind::Ipv4,
            DestHost::Ip(IpAddr::V6(_)) => ProbeKind::Ipv6,
            DestHost::Name(_) => ProbeKind::Name,
        }
    }

    /// Whether the port is inside `range`: None without a range, or without a port that is a port.
    fn port_in(&self, range: Option<&std::ops::RangeInclusive<u16>>) -> Option<bool> {
        let port = u16::try_from(self.port?).ok()?;
        Some(range?.contains(&port))
    }
}

/// Fields of a refusal worth showing: the proxy's own error codes.
pub fn refusal_fields(head: &ResponseHead) -> String {
    let wanted = |n: &str| {
        let n = n.to_ascii_lowercase();
        n.contains("error") || n == "proxy-status" || n.starts_with("x-squid") || n == "via"
    };
    head.fields.iter().filter(|(n, _)| wanted(n)).map(|(n, v)| format!("{n}: {v}")).collect::<Vec<_>>().join(", ")
}

impl Preflight {
    /// The statuses this proxy uses to refuse by policy on a transport: 403 and whatever the probes got.
    pub fn policy_statuses(&self, transport: Transport) -> Vec<u16> {
        let mut v = vec![403];
        v.extend(
            self.probes
                .iter()
                .filter(|p| p.transport == transport && p.answer == ProbeAnswer::PolicyRefusal)
                .filter_map(|p| p.status),
        );
        v.sort_unstable();
        v.dedup();
        v
    }

    /// The probe that shows this destination's kind refused by policy, if one does.
    pub fn refused_like(&self, transport: Transport, dest: &Destination) -> Option<&Probe> {
        let refused = |kind: ProbeKind| {
            self.probes
                .iter()
                .find(|p| p.transport == transport && p.kind == kind && p.answer == ProbeAnswer::PolicyRefusal)
        };
        let outside = dest.port_in(self.range.as_ref()) == Some(false);
        refused(dest.probe_kind()).or_else(|| outside.then(|| refused(ProbeKind::PortOutsideRange)).flatten())
    }

    /// Whether the preflight opened a tunnel to this kind of destination (same host kind, and a port inside the
    /// origin range when there is one): then a refusal of it is not the proxy's policy for that kind.
    pub fn tunnelled_like(&self, transport: Transport, dest: &Destination) -> bool {
        let inside = self.range.is_none() || dest.port_in(self.range.as_ref()) == Some(true);
        inside
            && self.probes.iter().any(|p| {
                p.transport == transport
                    && p.kind == dest.probe_kind()
                    && matches!(p.answer, ProbeAnswer::Tunnel | ProbeAnswer::TunnelBroken)
            })
    }

    /// Why the suite cannot run: the proxy answered the IPv4 CONNECT to the echo origin with a refusal on some
    /// transport (policy, credentials, 400, or a failed connect). A proxy that does not answer at all, or breaks
    /// the tunnel, is not stopped here: the suite then shows how it misbehaves.
    pub fn blocked(&self) -> Option<String> {
        let p = self.probes.iter().find(|p| {
            p.kind == ProbeKind::Ipv4
                && matches!(
                    p.answer,
                    ProbeAnswer::PolicyRefusal
                        | ProbeAnswer::AuthRequired
                        | ProbeAnswer::Rejected
                        | ProbeAnswer::ConnectFailed
                )
        })?;
        let what = match p.answer {
            ProbeAnswer::PolicyRefusal => "refused it by policy",
            ProbeAnswer::AuthRequired => "asked for credentials",
            ProbeAnswer::Rejected => "rejected it as a bad request",
            ProbeAnswer::ConnectFailed => "could not connect to it",
            _ => "did not answer it",
        };
        let mut m = format!(
            "preflight: the proxy ({} transport) {what}: CONNECT {} got {}.\n\
             The suite needs tunnels to the harness's origins, so nothing was run.\n",
            p.transport.as_str(),
            p.target,
            p.detail
        );
        m.push_str(match p.answer {
            ProbeAnswer::AuthRequired => "Give the proxy's credentials with --proxy-user USER:PASS.\n",
            _ => {
                "Either allow CONNECT from this client to the origins' address (127.0.0.1, or the --origin-addr \
                 addresses) and ports (ephemeral ports unless --origin-ports FIRST-LAST), or make the harness fit \
                 the policy: --origin-ports with the ports the proxy allows (as root, --origin-ports 443 works: each \
                 origin then gets its own loopback address 127.0.0.N), and --origin-addr ADDR when the proxy refuses \
                 loopback destinations.\n"
            }
        });
        Some(m)
    }
}

/// Runs the probes on every endpoint (a port outside `settings.origin_ports` too, when it is set).
pub async fn run(endpoints: &[ProxyEndpoint], settings: &Settings, pool: &Pool) -> Preflight {
    let range = settings.origin_ports.as_ref();
    let mut probes = Vec::new();
    for ep in endpoints {
        // A set with the echo origin on 127.0.0.1 where the placement has one, so `localhost` and `[::1]` can be
        // probed on every transport.
        let on_localhost: &[OriginKind] =
            if pool.localhost_unavailable(&[OriginKind::Echo]).is_none() { &[OriginKind::Echo] } else { &[] };
        let origins = match pool.lease_with(&[OriginKind::Echo], on_localhost).await {
            Ok(o) => o,
            Err(e) => {
                probes.push(Probe {
                    transport: ep.transport,
                    kind: ProbeKind::Ipv4,
                    target: String::new(),
                    answer: ProbeAnswer::NoAnswer,
                    status: None,
                    detail: format!("no echo origin: {e}"),
                });
                continue;
            }
        };
        let echo = origins.addr(OriginKind::Echo);
        let mut targets = vec![(ProbeKind::Ipv4, echo.to_string())];
        if origins.ipv6 && origins.on_localhost(OriginKind::Echo) {
            targets.push((ProbeKind::Ipv6, format!("[::1]:{}", echo.port())));
        }
        if origins.on_localhost(OriginKind::Echo) {
            targets.push((ProbeKind::Name, format!("localhost:{}", echo.port())));
        }
        // A port outside the range: a listener of our own beside the echo origin (answering like an echo).
        let outside = match range {
            Some(r) => outside_listener(echo.ip(), r).await,
            None => None,
        };
        if let Some((_, addr)) = &outside {
            targets.push((ProbeKind::PortOutsideRange, addr.to_string()));
        }
        for (kind, target) in targets {
            let (answer, status, detail) = probe(ep, settings, &target).await;
            probes.push(Probe { transport: ep.transport, kind, target, answer, status, detail });
        }
        if let Some((task, _)) = outside {
            task.abort();
        }
    }
    Preflight { probes, range: range.cloned() }
}

/// A listener that echoes, on a port of `ip` outside `range`.
async fn outside_listener(
    ip: IpAddr,
    range: &std::ops::RangeInclusive<u16>,
) -> Option<(tokio::task::JoinHandle<()>, SocketAddr)> {
    for _ in 0..16 {
        let l = tokio::net::TcpListener::bind(SocketAddr::new(ip, 0)).await.ok()?;
        let addr = l.local_addr().ok()?;
        if range.contains(&addr.port()) {
            continue;
        }
        let task = tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ =
                        tokio::time::timeout(std::time::Duration::from_secs(10), tokio::io::copy(&mut r, &mut w)).await;
                });
            }
        });
        return Some((task, addr));
    }
    None
}

const PROBE_BYTES: &[u8] = b"connect-harness preflight\n";

/// One CONNECT, then (after a 2xx) a few bytes echoed through the tunnel. Over TLS a refusal is tried once more
/// without SNI: a proxy that compares SNI with the target must not stop the run here (the SNI scenarios judge
/// that), so the answer without SNI counts and both are shown.
async fn probe(ep: &ProxyEndpoint, settings: &Settings, target: &str) -> (ProbeAnswer, Option<u16>, String) {
    let first = probe_with(ep, settings, target, Some(ep.host.clone())).await;
    if ep.transport != Transport::Tls || matches!(first.0, ProbeAnswer::Tunnel | ProbeAnswer::NoAnswer) {
        return first;
    }
    if connect::sni_sent(Some(&ep.host)).is_none() {
        return first;
    }
    let second = probe_with(ep, settings, target, None).await;
    if matches!(second.0, ProbeAnswer::Tunnel | ProbeAnswer::TunnelBroken) {
        let detail = format!("{} without SNI; with SNI {:?}: {}", second.2, ep.host, first.2);
        return (second.0, second.1, detail);
    }
    first
}

async fn probe_with(
    ep: &ProxyEndpoint,
    settings: &Settings,
    target: &str,
    sni: Option<String>,
) -> (ProbeAnswer, Option<u16>, String) {
    let choice = connect::TlsChoice { sni, alpn: Vec::new(), h2_frames: false };
    let mut conn = match connect::open(ep, settings, &choice, Transcript::empty()).await {
        Ok((c, _)) => c,
        Err((e, _, _)) => return (ProbeAnswer::NoAnswer, None, format!("no connection to the proxy: {e}")),
    };
    let deadline = Instant::now() + settings.step_timeout;
    if conn.is_h2() {
        // The same probe as a CONNECT stream.
        let auth: Vec<(String, Vec<u8>)> = settings
            .proxy_user
            .as_deref()
            .and_then(|u| crate::scenario::h2::split_field(crate::exec::basic_auth(u).as_bytes()))
            .into_iter()
            .collect();
        if let Err(e) = conn.h2_connect(target, &auth, Vec::new(), deadline).await {
            return (ProbeAnswer::NoAnswer, None, format!("opening the CONNECT stream failed: {e}"));
        }
    } else {
        let auth = settings.proxy_user.as_deref().map(|u| crate::exec::basic_auth(u) + "\r\n").unwrap_or_default();
        let request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n{auth}\r\n");
        if let Err(e) = conn.write(request.as_bytes(), deadline).await {
            return (ProbeAnswer::NoAnswer, None, format!("sending the CONNECT failed: {e}"));
        }
    }
    let head = match conn.read_head(settings.head_limit, deadline).await {
        HeadRead::Head(h) => h,
        HeadRead::Closed { .. } => {
            return (ProbeAnswer::NoAnswer, None, "the connection closed without a response".into());
        }
        HeadRead::Timeout { .. } => return (ProbeAnswer::NoAnswer, None, "no response before the deadline".into()),
        HeadRead::Garbage(g) => return (ProbeAnswer::NoAnswer, None, format!("not an HTTP response: {g}")),
        HeadRead::TooLarge(n) => return (ProbeAnswer::NoAnswer, None, format!("a response head over {n} bytes")),
    };
    let fields = refusal_fields(&head);
    let detail = if fields.is_empty() { head.status_line() } else { format!("{} ({fields})", head.status_line()) };
    let answer = match head.status {
        200..=299 => {
            let echoed = async {
                conn.write(PROBE_BYTES, deadline).await.ok()?;
                match conn.fill(PROBE_BYTES.len(), deadline).await {
                    crate::client::ReadEvent::Data(_) => Some(conn.buf.starts_with(PROBE_BYTES)),
                    _ => None,
                }
            };
            if echoed.await == Some(true) { ProbeAnswer::Tunnel } else { ProbeAnswer::TunnelBroken }
        }
        407 => ProbeAnswer::AuthRequired,
        400 => ProbeAnswer::Rejected,
        401..=499 => ProbeAnswer::PolicyRefusal,
        _ => ProbeAnswer::ConnectFailed,
    };
    conn.reset_quietly();
    (answer, Some(head.status), detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations() {
        let d = |s: &str| Destination::parse(s.as_bytes());
        assert_eq!(d("127.0.0.1:80").unwrap().host, DestHost::Ip("127.0.0.1".parse().unwrap()));
        assert_eq!(d("[::1]:80").unwrap().port, Some(80));
        assert_eq!(
            d("localhost:99999").unwrap(),
            Destination { host: DestHost::Name("localhost".into()), port: Some(99999) }
        );
        assert_eq!(d("localhost").unwrap().port, None);
        assert!(d("/").is_none());
        assert!(d("*").is_none());
    }
}
