//! The request decision as pure functions: from a parsed request and the configuration to "refuse with this
//! response" or "connect there", and from resolved addresses to the ones that may be dialled. No I/O, so every
//! rule is tested directly (see the tests below); [`crate::conn`] does the reading, resolving and dialling.
//!
//! Order of checks: method (501) → authentication (407) → port policy (403) → [resolution] → address policy
//! (403) → loop (502).

use std::net::{IpAddr, SocketAddr};

use crate::auth::AuthCheck;
use crate::config::ProxyConfig;
use crate::hooks::{Hooks, Interjection};
use crate::policy::Denial;
use crate::response::{ErrorResponse, ErrorType};
use crate::wire::{Host, RequestHead, Version};

/// The parts of a request head the proxy acts on, copied out of the read buffer. Some fields are only looked at
/// by fault hooks, hence the `allow` without the `faults` feature.
#[derive(Debug, Clone)]
#[cfg_attr(not(feature = "faults"), allow(dead_code))]
pub(crate) struct Request {
    pub method: String,
    /// The request-target as sent, for the log.
    pub target: String,
    /// The authority-form target (an empty name and port 0 when the method is not CONNECT).
    pub host: OwnedHost,
    pub port: u16,
    /// The Host field's host and port, when there is one.
    pub host_field: Option<(OwnedHost, Option<u16>)>,
    /// The credentials check, when authentication is configured.
    pub auth: Option<AuthCheck>,
    pub version: Version,
    /// The head starts with an empty line (which the parser skips).
    pub leading_empty_line: bool,
    pub upgrade: bool,
    /// `Expect: 100-continue` is present.
    pub expect_100: bool,
    /// Every Proxy-Authorization value starts with exactly `Basic `.
    pub auth_scheme_exact: bool,
    /// The length of the longest field value.
    pub longest_value: usize,
    /// The Via field values, in order (for loop detection and the Via sent to a parent proxy).
    pub via: Vec<String>,
    /// Every field as received (fault hooks only: a faulty chained proxy forwards them).
    #[cfg(feature = "faults")]
    pub fields: Vec<(String, String)>,
}

impl Request {
    /// Copies what the decision needs out of a parsed head; `buf` is the bytes it was parsed from.
    pub(crate) fn from_head(head: &RequestHead<'_>, buf: &[u8], config: &ProxyConfig) -> Request {
        let (host, port) = match head.authority() {
            Some(a) => (OwnedHost::from(&a.host), a.port),
            // Not a CONNECT: the target is not used.
            None => (OwnedHost::Name(String::new()), 0),
        };
        let host_field = head.host().map(|h| (OwnedHost::from(&h.host), h.port));
        let named = |name: &'static str| head.fields().filter(move |f| f.name.eq_ignore_ascii_case(name));
        let facts = FieldFacts::of(|| head.fields().map(|f| (f.name, f.value)), config);
        Request {
            method: head.method().to_owned(),
            target: head.target().to_owned(),
            host,
            port,
            host_field,
            auth: facts.auth,
            version: head.version(),
            leading_empty_line: buf.starts_with(b"\r\n"),
            upgrade: named("upgrade").next().is_some(),
            expect_100: named("expect").any(|f| f.value.eq_ignore_ascii_case(b"100-continue")),
            auth_scheme_exact: facts.auth_scheme_exact,
            longest_value: facts.longest_value,
            via: facts.via,
            #[cfg(feature = "faults")]
            fields: facts.fields,
        }
    }

    /// The request of an HTTP/2 CONNECT stream: `:authority` (already checked present, without `:scheme` or
    /// `:path`) and the header fields. The authority must be `host:port`, as in HTTP/1.1 (RFC 9113 §8.5).
    pub(crate) fn from_h2<'a>(
        authority: &str,
        fields: impl Iterator<Item = (&'a str, &'a [u8])> + Clone,
        config: &ProxyConfig,
    ) -> Result<Request, crate::wire::WireError> {
        let a = crate::wire::parse_authority(authority.as_bytes())?;
        let facts = FieldFacts::of(|| fields.clone(), config);
        // A Host field is never used to find the target (RFC 9113 §8.3.1), but it is kept, as in HTTP/1.1, for
        // the faults that misroute by it.
        let host_field = fields
            .clone()
            .find(|(n, _)| n.eq_ignore_ascii_case("host"))
            .and_then(|(_, v)| crate::wire::parse_host_field(v).ok().map(|h| (OwnedHost::from(&h.host), h.port)));
        Ok(Request {
            method: "CONNECT".to_owned(),
            target: authority.to_owned(),
            host: OwnedHost::from(&a.host),
            port: a.port,
            host_field,
            auth: facts.auth,
            version: crate::wire::Version::HTTP_2,
            leading_empty_line: false,
            upgrade: false,
            expect_100: false,
            auth_scheme_exact: facts.auth_scheme_exact,
            longest_value: facts.longest_value,
            via: facts.via,
            #[cfg(feature = "faults")]
            fields: facts.fields,
        })
    }
}

/// What the decision reads from the header fields, the same for an HTTP/1.1 head and an HTTP/2 stream.
struct FieldFacts {
    auth: Option<AuthCheck>,
    auth_scheme_exact: bool,
    longest_value: usize,
    via: Vec<String>,
    #[cfg(feature = "faults")]
    fields: Vec<(String, String)>,
}

impl FieldFacts {
    /// `fields` gives the (name, value) pairs afresh at each call.
    fn of<'a, I>(fields: impl Fn() -> I, config: &ProxyConfig) -> FieldFacts
    where
        I: Iterator<Item = (&'a str, &'a [u8])>,
    {
        let named = |name: &'static str| fields().filter(move |(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v);
        FieldFacts {
            auth: config.auth.as_ref().map(|auth| auth.check(named("proxy-authorization"))),
            auth_scheme_exact: named("proxy-authorization").all(|v| v.starts_with(b"Basic ")),
            longest_value: fields().map(|(_, v)| v.len()).max().unwrap_or(0),
            via: named("via").map(|v| String::from_utf8_lossy(v).into_owned()).collect(),
            #[cfg(feature = "faults")]
            fields: fields().map(|(n, v)| (n.to_owned(), String::from_utf8_lossy(v).into_owned())).collect(),
        }
    }
}

/// A host as the proxy keeps it after the request buffer is gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OwnedHost {
    Name(String),
    Ip(IpAddr),
}

impl OwnedHost {
    fn from(h: &Host<'_>) -> Self {
        match h {
            Host::Name(n) => OwnedHost::Name((*n).to_owned()),
            Host::Ipv4(a) => OwnedHost::Ip(IpAddr::V4(*a)),
            Host::Ipv6(a) => OwnedHost::Ip(IpAddr::V6(*a)),
        }
    }

    pub(crate) fn as_host(&self) -> Host<'_> {
        match self {
            OwnedHost::Name(n) => Host::Name(n),
            OwnedHost::Ip(IpAddr::V4(a)) => Host::Ipv4(*a),
            OwnedHost::Ip(IpAddr::V6(a)) => Host::Ipv6(*a),
        }
    }

    /// For comparisons with SNI: names without a trailing dot, case-folded.
    #[cfg_attr(not(feature = "faults"), allow(dead_code))]
    pub(crate) fn name_key(&self) -> String {
        match self {
            OwnedHost::Name(n) => n.trim_end_matches('.').to_ascii_lowercase(),
            OwnedHost::Ip(ip) => ip.to_string(),
        }
    }
}

/// Where a tunnel goes, before resolution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Destination {
    pub host: OwnedHost,
    pub port: u16,
}

/// What to do with a request.
#[derive(Debug)]
pub(crate) enum Decision {
    Refuse(ErrorResponse),
    /// A fault hook took over.
    Interject(Interjection),
    /// Resolve this destination and admit its addresses (see [`admit`]).
    Connect(Destination),
}

/// Decides a parsed request: method, credentials, then the port and name policy. `sni` is the TLS server name
/// the client sent to the proxy, if any (the correct proxy ignores it: it never changes where a tunnel goes).
pub(crate) fn decide(req: &Request, sni: Option<&str>, config: &ProxyConfig, hooks: &dyn Hooks) -> Decision {
    if req.method != "CONNECT" {
        let details = format!("method {} is not supported; this proxy only implements CONNECT", req.method);
        return Decision::Refuse(
            ErrorResponse::new(501, ErrorType::ProxyInternalResponse, details).with_field("Allow", "CONNECT"),
        );
    }
    if let Some(interjection) = hooks.before_decision(req, sni) {
        return Decision::Interject(interjection);
    }
    if let (Some(auth), Some(check)) = (&config.auth, req.auth) {
        let check = hooks.auth_check(req, check);
        if check != AuthCheck::Ok {
            let details = match check {
                AuthCheck::Missing => "proxy authentication required",
                _ => "invalid proxy credentials",
            };
            let refusal = ErrorResponse::new(407, ErrorType::ProxyInternalResponse, details);
            return Decision::Refuse(hooks.auth_refusal(refusal, auth.challenge()));
        }
    }
    let dest = hooks.destination(req, sni, Destination { host: req.host.clone(), port: req.port });
    if let Some(refusal) = hooks.refuse_port(dest.port) {
        return Decision::Refuse(refusal);
    }
    if hooks.enforce_policy() {
        if let Err(denial) = config.policy.check_port(dest.port) {
            return Decision::Refuse(ErrorResponse::new(403, ErrorType::HttpRequestDenied, denial.to_string()));
        }
        if config.policy.ip_literals_only && matches!(dest.host, OwnedHost::Name(_)) {
            let details = Denial::Name.to_string();
            return Decision::Refuse(ErrorResponse::new(403, ErrorType::DestinationIpProhibited, details));
        }
    }
    Decision::Connect(dest)
}

/// The resolved addresses that may be dialled, in order, or the refusal: every address denied by the policy
/// (403), or one of them is this proxy (502, `proxy_loop_detected`). `is_self` says whether an address reaches
/// one of the proxy's own listeners.
pub(crate) fn admit(
    ips: &[IpAddr],
    port: u16,
    config: &ProxyConfig,
    hooks: &dyn Hooks,
    is_self: impl Fn(SocketAddr) -> bool,
) -> Result<Vec<SocketAddr>, ErrorResponse> {
    let enforce = hooks.enforce_policy();
    let mut first_denial: Option<Denial> = None;
    let allowed: Vec<SocketAddr> = ips
        .iter()
        .filter(|ip| match config.policy.check_addr(**ip) {
            Ok(()) => true,
            Err(_) if !enforce => true,
            Err(d) => {
                first_denial.get_or_insert(d);
                false
            }
        })
        .map(|ip| SocketAddr::new(*ip, port))
        .collect();
    if allowed.is_empty() {
        let details = first_denial.map_or_else(|| "no address".to_owned(), |d| d.to_string());
        return Err(ErrorResponse::new(403, ErrorType::DestinationIpProhibited, details));
    }
    if hooks.detect_loops()
        && let Some(own) = allowed.iter().find(|a| is_self(**a))
    {
        return Err(ErrorResponse::new(502, ErrorType::ProxyLoopDetected, format!("{own} is this proxy")));
    }
    Ok(allowed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hooks::Correct;
    use crate::wire::{HeadParser, Limits, Progress};

    fn request(text: &str, config: &ProxyConfig) -> Request {
        let mut p = HeadParser::new(Limits::default());
        assert!(matches!(p.advance(text.as_bytes()), Ok(Progress::Complete(_))), "{text:?}");
        Request::from_head(&p.head(text.as_bytes()), text.as_bytes(), config)
    }

    fn refused(d: Decision) -> ErrorResponse {
        match d {
            Decision::Refuse(r) => r,
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn a_connect_goes_to_its_request_target_whatever_host_and_sni_say() {
        let config = ProxyConfig::for_testing();
        let req = request("CONNECT 127.0.0.1:9 HTTP/1.1\r\nHost: other.test:10\r\n\r\n", &config);
        match decide(&req, Some("third.test"), &config, &Correct) {
            Decision::Connect(d) => assert_eq!(d, Destination { host: OwnedHost::Ip([127, 0, 0, 1].into()), port: 9 }),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn other_methods_get_501_with_allow() {
        let config = ProxyConfig::for_testing();
        let r = refused(decide(&request("GET / HTTP/1.1\r\nHost: a.test\r\n\r\n", &config), None, &config, &Correct));
        assert_eq!(r.status, 501);
        assert!(r.fields.iter().any(|(n, v)| *n == "Allow" && v == "CONNECT"));
    }

    #[test]
    fn missing_or_wrong_credentials_get_407_with_a_challenge() {
        let mut config = ProxyConfig::for_testing();
        let mut auth = crate::config::Auth::new("r");
        auth.add("u:p").unwrap();
        config.auth = Some(auth);
        for head in [
            "CONNECT a.test:1 HTTP/1.1\r\nHost: a.test:1\r\n\r\n",
            "CONNECT a.test:1 HTTP/1.1\r\nHost: a.test:1\r\nProxy-Authorization: Basic dTp4\r\n\r\n",
        ] {
            let r = refused(decide(&request(head, &config), None, &config, &Correct));
            assert_eq!(r.status, 407);
            assert!(r.fields.iter().any(|(n, _)| *n == "Proxy-Authenticate"), "{head:?}");
        }
        let ok = "CONNECT a.test:1 HTTP/1.1\r\nHost: a.test:1\r\nProxy-Authorization: Basic dTpw\r\n\r\n";
        assert!(matches!(decide(&request(ok, &config), None, &config, &Correct), Decision::Connect(_)));
    }

    #[test]
    fn port_and_name_policy() {
        let mut config = ProxyConfig::default();
        let r = refused(decide(
            &request("CONNECT a.test:80 HTTP/1.1\r\nHost: a.test\r\n\r\n", &config),
            None,
            &config,
            &Correct,
        ));
        assert_eq!((r.status, r.error), (403, ErrorType::HttpRequestDenied));
        config.policy.ip_literals_only = true;
        let r = refused(decide(
            &request("CONNECT a.test:443 HTTP/1.1\r\nHost: a.test\r\n\r\n", &config),
            None,
            &config,
            &Correct,
        ));
        assert_eq!((r.status, r.error), (403, ErrorType::DestinationIpProhibited));
    }

    #[test]
    fn addresses_are_admitted_by_policy_and_never_the_proxy_itself() {
        let lo: IpAddr = [127, 0, 0, 1].into();
        let lo6: IpAddr = std::net::Ipv6Addr::LOCALHOST.into();
        // The default policy denies loopback.
        let r = admit(&[lo, lo6], 443, &ProxyConfig::default(), &Correct, |_| false).unwrap_err();
        assert_eq!((r.status, r.error), (403, ErrorType::DestinationIpProhibited));
        let testing = ProxyConfig::for_testing();
        let admitted = admit(&[lo6, lo], 9, &testing, &Correct, |_| false).unwrap();
        assert_eq!(admitted, vec![SocketAddr::new(lo6, 9), SocketAddr::new(lo, 9)]);
        let r = admit(&[lo], 8080, &testing, &Correct, |a| a.port() == 8080).unwrap_err();
        assert_eq!((r.status, r.error), (502, ErrorType::ProxyLoopDetected));
    }
}
