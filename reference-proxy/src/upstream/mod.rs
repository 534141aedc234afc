//! Chaining to a parent proxy (`--upstream`): what the proxy sends to the parent and how it reads the answer are
//! decided here as pure functions ([`parent_request`], [`answer`]); [`dial`] is the I/O edge.
//!
//! The rules, and where they come from:
//! - The parent gets a CONNECT of its own: the client's request-target unchanged (the parent resolves names:
//!   this proxy never re-resolves them into addresses), `Host`, the client's `Via` with this proxy's member
//!   appended (RFC 9110 §7.6.3: "A proxy MUST send an appropriate Via header field … in each message that it
//!   forwards"), and this proxy's own credentials when configured. Nothing else of the client's head is
//!   forwarded: not `Proxy-Authorization` (consumed by the first proxy expecting credentials, RFC 9110
//!   §11.7.2), not `Connection` or the fields it lists, nor `Proxy-Connection`, `Keep-Alive`, `TE`, `Upgrade`
//!   (RFC 9110 §7.6.1).
//! - A 2xx opens the tunnel (its `Content-Length`/`Transfer-Encoding` mean nothing, RFC 9110 §9.3.6); the
//!   client gets this proxy's own 200.
//! - Any other answer refuses: 403, 502, 503 and 504 keep their status; a 407 (the parent refused this proxy's
//!   credentials) becomes 502 `proxy_configuration_error`, never a challenge for the client's credentials;
//!   anything else becomes 502. The parent's `Proxy-Status` members are kept, in order, and this proxy's member
//!   is appended (RFC 9209 §2: "intermediaries SHOULD preserve the existing members"), with `received-status`
//!   and `next-hop` (§2.1.3, §2.1.2). The parent's connection is closed: nothing the client sends after a
//!   refusal reaches it.
//! - One attempt only: a CONNECT is not idempotent (RFC 9110 §9.2.2, a proxy "MUST NOT automatically retry").

mod dial;

use std::net::IpAddr;
use std::str::FromStr;

use base64::Engine as _;

pub(crate) use dial::{UpstreamStream, dial, write_within};

use crate::decision::{OwnedHost, Request};
use crate::policy::IpNet;
use crate::response::{ErrorResponse, ErrorType};
use crate::wire::ResponseHead;

/// A parent proxy every tunnel goes through, except destinations listed in `direct`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// Name or IP address of the parent (no brackets).
    pub host: String,
    pub port: u16,
    /// TLS to the parent (`https://`), verified against `ca_pem`.
    pub tls: bool,
    /// PEM trust anchors for the parent's certificate (required with TLS: no system roots are used).
    pub ca_pem: Option<String>,
    /// `user:password` this proxy presents to the parent (Basic); the client's credentials are never forwarded.
    pub credentials: Option<String>,
    /// Destinations reached directly instead of through the parent.
    pub direct: Vec<DirectRule>,
}

/// A bad `--upstream` value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    #[error("`{0}`: expected http://HOST:PORT or https://NAME:PORT")]
    Url(String),
    #[error("`{0}`: the upstream URL needs an explicit port")]
    NoPort(String),
    #[error("`{0}`: https:// needs --upstream-cacert (the parent's certificate is always verified)")]
    NoCa(String),
    #[error("the upstream credentials must be user:password (the value given has no colon)")]
    Credentials,
    #[error("`{0}`: a direct rule is a network (10.0.0.0/8, 127.0.0.1) or a name suffix (.internal)")]
    Direct(String),
}

impl Upstream {
    /// Parses `http://HOST:PORT` or `https://NAME:PORT` (IPv6 in brackets).
    pub fn parse(url: &str) -> Result<Upstream, UpstreamError> {
        let bad = || UpstreamError::Url(url.to_owned());
        let (tls, rest) = if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else {
            return Err(bad());
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let authority = crate::wire::parse_authority(rest.as_bytes()).map_err(|e| match e {
            crate::wire::AuthorityError::MissingPort => UpstreamError::NoPort(url.to_owned()),
            _ => bad(),
        })?;
        let host = match authority.host {
            crate::wire::Host::Name(n) => n.to_owned(),
            crate::wire::Host::Ipv4(a) => a.to_string(),
            crate::wire::Host::Ipv6(a) => a.to_string(),
        };
        Ok(Upstream { host, port: authority.port, tls, ca_pem: None, credentials: None, direct: Vec::new() })
    }

    /// Checks what only the whole configuration can tell.
    pub fn validate(&self) -> Result<(), UpstreamError> {
        if self.tls && self.ca_pem.is_none() {
            return Err(UpstreamError::NoCa(self.url()));
        }
        if self.credentials.as_ref().is_some_and(|c| !c.contains(':')) {
            return Err(UpstreamError::Credentials);
        }
        Ok(())
    }

    /// The parent as a URL, for logs and `next-hop`.
    pub fn url(&self) -> String {
        format!("{}://{}", if self.tls { "https" } else { "http" }, self.authority())
    }

    fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// Whether a destination bypasses the parent.
    pub(crate) fn goes_direct(&self, host: &OwnedHost) -> bool {
        self.direct.iter().any(|rule| rule.matches(host))
    }
}

/// A destination that goes direct: a network, or a DNS name suffix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirectRule {
    Net(IpNet),
    /// Lower case, without a leading dot: matches the name itself and every name below it.
    Suffix(String),
}

impl DirectRule {
    fn matches(&self, host: &OwnedHost) -> bool {
        match (self, host) {
            (DirectRule::Net(net), OwnedHost::Ip(ip)) => net.contains(*ip),
            (DirectRule::Suffix(s), OwnedHost::Name(_)) => {
                let name = host.name_key();
                name == *s || name.ends_with(&format!(".{s}"))
            }
            _ => false,
        }
    }
}

impl FromStr for DirectRule {
    type Err = UpstreamError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || UpstreamError::Direct(s.to_owned());
        if let Ok(ip) = s.parse::<IpAddr>() {
            let bits = if ip.is_ipv4() { 32 } else { 128 };
            return format!("{ip}/{bits}").parse().map(DirectRule::Net).map_err(|_| bad());
        }
        if s.contains('/') {
            return s.parse().map(DirectRule::Net).map_err(|_| bad());
        }
        let suffix = s.trim_start_matches('.').trim_end_matches('.').to_ascii_lowercase();
        if suffix.is_empty() || !suffix.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.') {
            return Err(bad());
        }
        Ok(DirectRule::Suffix(suffix))
    }
}

/// The CONNECT this proxy sends to the parent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParentRequest {
    pub target: String,
    pub fields: Vec<(String, String)>,
}

impl ParentRequest {
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!("CONNECT {} HTTP/1.1\r\n", self.target);
        for (name, value) in &self.fields {
            out.push_str(name);
            out.push_str(": ");
            out.push_str(value);
            out.push_str("\r\n");
        }
        out.push_str("\r\n");
        out.into_bytes()
    }
}

/// This proxy's Via member: the protocol the request was received with, the proxy's name as pseudonym, and a
/// comment with this process's token, so that a loop is this very proxy seeing its own member again, not another
/// proxy that happens to have the same name (two reference proxies chained with default names).
pub(crate) fn via_member(req: &Request, name: &str, token: &str) -> String {
    // received-protocol: "1.1", "1.0"; HTTP/2's version is just "2".
    if req.version.major >= 2 {
        format!("{} {name} ({token})", req.version.major)
    } else {
        format!("{}.{} {name} ({token})", req.version.major, req.version.minor)
    }
}

/// A token for this process's Via members (`via-` and 16 hex digits, random per start).
pub fn via_token() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    h.write_u32(std::process::id());
    format!("via-{:016x}", h.finish())
}

/// Builds the CONNECT for the parent (see the module documentation for what is and is not forwarded).
pub(crate) fn parent_request(req: &Request, upstream: &Upstream, name: &str, token: &str) -> ParentRequest {
    let mut fields = vec![("Host".to_owned(), req.target.clone())];
    let mut via: Vec<String> = req.via.clone();
    via.push(via_member(req, name, token));
    fields.push(("Via".to_owned(), via.join(", ")));
    if let Some(creds) = &upstream.credentials {
        let token = base64::engine::general_purpose::STANDARD.encode(creds);
        fields.push(("Proxy-Authorization".to_owned(), format!("Basic {token}")));
    }
    ParentRequest { target: req.target.clone(), fields }
}

/// What the parent's answer means for the client.
#[derive(Debug)]
pub(crate) enum Answer {
    /// A 2xx: open the tunnel.
    Tunnel,
    /// Refuse the client with this response.
    Refuse(ErrorResponse),
}

/// Judges the parent's final response head. `parent` names it in `next-hop`; `name` is this proxy's, for the Via
/// of a refusal passed on.
pub(crate) fn answer(head: &ResponseHead, parent: &str, name: &str) -> Answer {
    let status = head.status;
    if (200..300).contains(&status) {
        return Answer::Tunnel;
    }
    let said = format!("the parent proxy answered {status} {}", head.reason);
    let (ours, error, details) = match status {
        407 => (
            502,
            Some(ErrorType::ProxyConfigurationError),
            "the parent proxy demands credentials this proxy does not have (407)".to_owned(),
        ),
        // A final 1xx (101 without an Upgrade sent) is not an answer to a CONNECT.
        100..=199 => (502, Some(ErrorType::HttpProtocolError), said),
        403 | 502 | 503 | 504 => (status, None, said),
        _ => (502, None, said),
    };
    let mut resp = ErrorResponse::new(ours, error.unwrap_or(ErrorType::DestinationUnavailable), details);
    resp.chain = Some(crate::response::Chain {
        prior: prior_members(head),
        received_status: Some(status),
        next_hop: parent.to_owned(),
        relayed: error.is_none(),
    });
    // The refusal passes on (a rewrite of) the parent's message: it carries this proxy's Via (RFC 9110 §7.6.3).
    let via: Vec<String> = head.values("via").map(str::to_owned).chain([format!("1.1 {name}")]).collect();
    Answer::Refuse(resp.with_field("Via", via.join(", ")))
}

/// Longest Proxy-Status text kept from a parent.
const MAX_PRIOR: usize = 2048;

/// The parent's Proxy-Status members, if they are a valid Structured Fields List (RFC 8941 §3.1) of reasonable
/// size, re-serialised. Anything else is dropped: copied as text, an unclosed string or a stray comma in it would
/// make the whole field (this proxy's member included) unparseable, and a recipient then ignores all of it.
fn prior_members(head: &ResponseHead) -> Option<String> {
    let values: Vec<&str> = head.values("proxy-status").filter(|v| !v.trim().is_empty()).collect();
    if values.is_empty() {
        return None;
    }
    let joined = values.join(", ");
    if joined.len() > MAX_PRIOR {
        return None;
    }
    let list = sfv::Parser::new(&joined).parse::<sfv::List>().ok()?;
    use sfv::FieldType as _;
    list.serialize()
}

/// A refusal of this proxy's own making while talking to the parent (no answer, a bad answer, TLS failed).
pub(crate) fn failure(status: u16, error: ErrorType, details: String, parent: &str) -> ErrorResponse {
    let mut resp = ErrorResponse::new(status, error, details);
    resp.chain = Some(crate::response::Chain {
        prior: None,
        received_status: None,
        next_hop: parent.to_owned(),
        relayed: false,
    });
    resp
}

/// Whether the request's Via already carries this proxy's member (its token: a loop), or has grown past a sane
/// number of hops.
pub(crate) fn is_loop(via: &[String], token: &str) -> bool {
    const MAX_HOPS: usize = 32;
    let members: Vec<&str> = via.iter().flat_map(|v| v.split(',')).map(str::trim).filter(|m| !m.is_empty()).collect();
    // `received-protocol RWS received-by [RWS comment]`: this process's token in the comment.
    members.len() >= MAX_HOPS || members.iter().any(|m| m.contains(&format!("({token})")))
}

#[cfg(test)]
mod tests;
