//! Destination policy checks against a declared policy. A scenario with `policy = { port = 25 }` or
//! `policy = { address = "0.0.0.0" }` probes one destination. Without a declaration it only records what the
//! proxy did (its level stays `observed`). With one (`--policy-ports`, `--policy-allow`, `--policy-deny`, or the
//! embedded proxy's own configuration) it is judged at `should` (RFC 9110 §9.3.6: proxies SHOULD restrict
//! CONNECT): a destination the declaration denies must be refused, one it allows must not be refused by policy.
//! So an operator's legitimate policy is never reported as a failure, and a proxy that ignores it is.

use std::{net::IpAddr, sync::Arc};

use reference_proxy::config::{DestinationPolicy, PortSet};

use crate::scenario::{
    Level, Loaded, Step,
    step::{Expect, OriginCheck, OriginKind, Outcome, OutcomeVerdict, StatusPattern, StatusSet},
};

/// What the operator declared the proxy allows. `None` parts are unknown: probes of them stay observed.
#[derive(Debug, Clone, Default)]
pub struct DeclaredPolicy {
    pub ports: Option<PortSet>,
    /// Addresses, judged like the reference proxy's policy: public addresses allowed, loopback, private and
    /// link-local closed unless allowed, unspecified, broadcast and multicast always closed.
    pub addresses: Option<DestinationPolicy>,
    /// Whether destinations given as names are allowed (None: not declared; the `--policy-*` flags say
    /// nothing about names, so a refused name stays `inconclusive`).
    pub names: Option<bool>,
}

impl DeclaredPolicy {
    /// The policy of a reference proxy configuration (the embedded proxy declares its own).
    pub fn of(policy: &DestinationPolicy) -> Self {
        DeclaredPolicy {
            ports: Some(policy.ports.clone()),
            addresses: Some(policy.clone()),
            names: Some(!policy.ip_literals_only),
        }
    }

    /// Whether the declaration allows a CONNECT to this destination; None when it does not say. A name is
    /// taken to resolve to an allowed address (the harness's names are its own origins).
    pub fn allows_destination(&self, dest: &crate::preflight::Destination) -> Option<bool> {
        use crate::preflight::DestHost;
        let port = dest.port.and_then(|p| u16::try_from(p).ok());
        match &dest.host {
            DestHost::Ip(ip) => self.allows(port, Some(*ip)),
            DestHost::Name(_) => match self.names? {
                false => Some(false),
                true if port.is_some() && self.ports.is_some() => self.allows(port, None),
                true => Some(true),
            },
        }
    }

    /// Whether the declaration allows the probed destination; `None` when it says nothing about it.
    pub fn allows(&self, port: Option<u16>, address: Option<IpAddr>) -> Option<bool> {
        let port_ok = match port {
            None => None,
            Some(p) => Some(self.ports.as_ref()?.contains(p)),
        };
        let addr_ok = match address {
            None => None,
            Some(a) => Some(self.addresses.as_ref()?.check_addr(a).is_ok()),
        };
        match (port_ok, addr_ok) {
            (None, None) => None,
            (p, a) => Some(p.unwrap_or(true) && a.unwrap_or(true)),
        }
    }
}

fn status(codes: &[&str]) -> StatusSet {
    StatusSet(codes.iter().map(|c| StatusPattern::parse(c).expect("valid pattern")).collect())
}

/// The scenario as judged against the declaration: unchanged without one (or without a `policy` probe).
pub fn apply(loaded: &Arc<Loaded>, declared: Option<&DeclaredPolicy>) -> Arc<Loaded> {
    let Some(probe) = &loaded.scenario.policy else {
        return loaded.clone();
    };
    let address = probe.address.as_deref().and_then(|a| a.trim_matches(['[', ']']).parse::<IpAddr>().ok());
    let Some(allowed) = declared.and_then(|d| d.allows(probe.port, address)) else {
        return loaded.clone();
    };
    let mut l = (**loaded).clone();
    let s = &mut l.scenario;
    s.level = Level::Should;
    let outcomes = if allowed {
        vec![
            Outcome { status: status(&["2xx"]), ..Default::default() },
            Outcome {
                status: status(&["502", "503", "504"]),
                note: Some("allowed by policy; the connection itself failed".into()),
                ..Default::default()
            },
        ]
    } else {
        vec![
            Outcome { status: status(&["403", "502"]), ..Default::default() },
            Outcome {
                status: status(&["4xx", "5xx"]),
                verdict: Some(OutcomeVerdict::Observed),
                note: Some("refused, with neither 403 nor 502".into()),
                ..Default::default()
            },
        ]
    };
    let expect = Expect { any_of: outcomes, timeout_ms: None, ..Default::default() };
    if let Some(step) = s.steps.iter_mut().find(|st| matches!(st, Step::Expect(_))) {
        *step = Step::Expect(expect);
    }
    if !allowed {
        s.steps.retain(|st| !matches!(st, Step::Echo(_)));
        s.steps.push(Step::Origin(OriginCheck {
            name: OriginKind::Echo,
            connections: Some(0),
            received_all_sent: false,
            received_prefix: None,
            never_received: None,
            ended: false,
            end: None,
            sni: None,
            alpn: None,
            if_rejected: false,
            if_tunnelled: false,
            timeout_ms: None,
            level: None,
            evidence: None,
        }));
    }
    let verdict = if allowed { "allows" } else { "denies" };
    let note = format!("Judged against the declared policy, which {verdict} this destination.");
    s.note = Some(match &s.note {
        Some(n) => format!("{n} {note}"),
        None => note,
    });
    Arc::new(l)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declaration_decides_only_what_it_declares() {
        let d = DeclaredPolicy::of(&DestinationPolicy::loopback_any_port());
        assert_eq!(d.allows(Some(25), None), Some(true));
        assert_eq!(d.allows(None, Some("0.0.0.0".parse().unwrap())), Some(false));
        assert_eq!(d.allows(None, Some("127.0.0.1".parse().unwrap())), Some(true));
        let ports_only = DeclaredPolicy { ports: Some("443".parse().unwrap()), addresses: None, names: None };
        assert_eq!(ports_only.allows(Some(25), None), Some(false));
        assert_eq!(ports_only.allows(None, Some("127.0.0.1".parse().unwrap())), None);
        assert_eq!(DeclaredPolicy::default().allows(Some(443), None), None);
        let dest = |t: &str| crate::preflight::Destination::parse(t.as_bytes()).unwrap();
        assert_eq!(d.allows_destination(&dest("localhost:80")), Some(true));
        assert_eq!(d.allows_destination(&dest("127.0.0.1:80")), Some(true));
        assert_eq!(ports_only.allows_destination(&dest("localhost:443")), None);
        let mut names_off = DestinationPolicy::loopback_any_port();
        names_off.ip_literals_only = true;
        assert_eq!(DeclaredPolicy::of(&names_off).allows_destination(&dest("localhost:80")), Some(false));
    }
}
