//! Deliberate misbehaviours (feature `faults`), each reproducing one real-world proxy bug, so that the harness
//! can show that its checks fail when they should (negative controls). Never enabled in the default binary.

use std::str::FromStr;

/// One misbehaviour. Several can be combined in [`crate::config::ProxyConfig::faults`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Fault {
    /// Answer 400 when the TLS SNI differs from the CONNECT host (Apache 2.2.12–2.2.26 / 2.4 < 2.4.9).
    SniMustMatchTarget,
    /// `Content-Length: 0` in the 200 (RFC 9110 §9.3.6 MUST NOT).
    ContentLengthIn2xx,
    /// `Transfer-Encoding: chunked` in the 200 (RFC 9110 §9.3.6 MUST NOT).
    TransferEncodingIn2xx,
    /// Tunnel to the Host field instead of the request-target.
    RouteByHost,
    /// Discard bytes sent with or right after the request head.
    DropEarlyData,
    /// Drop the last chunk the upstream sent before closing.
    LoseLastUpstreamBytes,
    /// Send the 200 before (and whether or not) the upstream connection exists.
    RespondBeforeConnect,
    /// Accept a CONNECT target without a port, defaulting to 443.
    AcceptMissingPort,
    /// Accept whitespace between a field name and its colon.
    AcceptWsBeforeColon,
    /// Accept several Host field lines (the first one wins).
    AcceptDuplicateHost,
    /// Flip a bit in the first byte of every chunk relayed from the upstream to the client.
    CorruptTunnelBytes,
    /// Keep reading requests after an error response instead of closing.
    NoCloseAfterReject,
    /// Answer 421 when the TLS SNI differs from the CONNECT host.
    Answer421OnSniMismatch,
    /// When one side sends FIN, close both connections instead of half-closing.
    HalfCloseClosesBoth,
    /// Connect wherever asked: no port or address policy.
    IgnorePolicy,
}

impl Fault {
    pub const ALL: [Fault; 15] = [
        Fault::SniMustMatchTarget,
        Fault::ContentLengthIn2xx,
        Fault::TransferEncodingIn2xx,
        Fault::RouteByHost,
        Fault::DropEarlyData,
        Fault::LoseLastUpstreamBytes,
        Fault::RespondBeforeConnect,
        Fault::AcceptMissingPort,
        Fault::AcceptWsBeforeColon,
        Fault::AcceptDuplicateHost,
        Fault::CorruptTunnelBytes,
        Fault::NoCloseAfterReject,
        Fault::Answer421OnSniMismatch,
        Fault::HalfCloseClosesBoth,
        Fault::IgnorePolicy,
    ];

    /// The kebab-case name used on the command line and in TOML.
    pub fn name(self) -> &'static str {
        match self {
            Fault::SniMustMatchTarget => "sni-must-match-target",
            Fault::ContentLengthIn2xx => "content-length-in-2xx",
            Fault::TransferEncodingIn2xx => "transfer-encoding-in-2xx",
            Fault::RouteByHost => "route-by-host",
            Fault::DropEarlyData => "drop-early-data",
            Fault::LoseLastUpstreamBytes => "lose-last-upstream-bytes",
            Fault::RespondBeforeConnect => "respond-before-connect",
            Fault::AcceptMissingPort => "accept-missing-port",
            Fault::AcceptWsBeforeColon => "accept-ws-before-colon",
            Fault::AcceptDuplicateHost => "accept-duplicate-host",
            Fault::CorruptTunnelBytes => "corrupt-tunnel-bytes",
            Fault::NoCloseAfterReject => "no-close-after-reject",
            Fault::Answer421OnSniMismatch => "answer-421-on-sni-mismatch",
            Fault::HalfCloseClosesBoth => "half-close-closes-both",
            Fault::IgnorePolicy => "ignore-policy",
        }
    }
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A fault name that is not one of [`Fault::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown fault `{0}`")]
pub struct UnknownFault(pub String);

impl FromStr for Fault {
    type Err = UnknownFault;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let norm: String = s.chars().filter(|c| c.is_ascii_alphanumeric()).collect::<String>().to_ascii_lowercase();
        Fault::ALL.into_iter().find(|f| f.name().replace('-', "") == norm).ok_or_else(|| UnknownFault(s.to_owned()))
    }
}

/// Relaxes the strict parser for the parser-related faults by rewriting a complete head it refused, so that the
/// strict parser then accepts it. Returns the rewritten head, or `None` when no enabled fault applies.
pub(crate) fn relax_head(faults: &[Fault], head: &[u8], err: &crate::wire::WireError) -> Option<Vec<u8>> {
    use crate::wire::{AuthorityError, WireError};
    let text = std::str::from_utf8(head).ok()?;
    let (request_line, rest) = text.split_once("\r\n")?;
    match err {
        WireError::Authority(AuthorityError::MissingPort) if faults.contains(&Fault::AcceptMissingPort) => {
            let mut parts = request_line.splitn(3, ' ');
            let (m, t, v) = (parts.next()?, parts.next()?, parts.next()?);
            Some(format!("{m} {t}:443 {v}\r\n{rest}").into_bytes())
        }
        WireError::WhitespaceBeforeColon if faults.contains(&Fault::AcceptWsBeforeColon) => {
            let mut out = format!("{request_line}\r\n");
            for line in rest.split("\r\n") {
                match line.split_once(':') {
                    Some((name, value)) if !line.starts_with([' ', '\t']) => {
                        out.push_str(name.trim_end_matches([' ', '\t']));
                        out.push(':');
                        out.push_str(value);
                    }
                    _ => out.push_str(line),
                }
                out.push_str("\r\n");
            }
            out.truncate(out.len() - 2);
            Some(out.into_bytes())
        }
        WireError::DuplicateHost if faults.contains(&Fault::AcceptDuplicateHost) => {
            let mut out = format!("{request_line}\r\n");
            let mut seen = false;
            for line in rest.split("\r\n") {
                let is_host = line.split_once(':').is_some_and(|(n, _)| n.eq_ignore_ascii_case("host"));
                if is_host && seen {
                    continue;
                }
                seen |= is_host;
                out.push_str(line);
                out.push_str("\r\n");
            }
            out.truncate(out.len() - 2);
            Some(out.into_bytes())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{HeadParser, Limits, Progress};

    fn parse(head: &[u8]) -> Result<String, crate::wire::WireError> {
        let mut p = HeadParser::new(Limits::default());
        match p.advance(head)? {
            Progress::Complete(_) => Ok(p.head(head).target().to_owned()),
            Progress::Partial => panic!("partial"),
        }
    }

    fn relaxed(fault: Fault, head: &str) -> Option<String> {
        let err = parse(head.as_bytes()).unwrap_err();
        relax_head(&[fault], head.as_bytes(), &err).map(|h| parse(&h).unwrap())
    }

    #[test]
    fn names_round_trip() {
        for f in Fault::ALL {
            assert_eq!(f.name().parse::<Fault>(), Ok(f));
        }
        assert_eq!("IgnorePolicy".parse::<Fault>(), Ok(Fault::IgnorePolicy));
        assert!("nope".parse::<Fault>().is_err());
    }

    #[test]
    fn parser_relaxations_only_apply_when_enabled() {
        let no_port = "CONNECT o.test HTTP/1.1\r\nHost: o.test\r\n\r\n";
        assert_eq!(relaxed(Fault::AcceptMissingPort, no_port).as_deref(), Some("o.test:443"));
        assert_eq!(relaxed(Fault::AcceptWsBeforeColon, no_port), None);
        let ws = "CONNECT o.test:1 HTTP/1.1\r\nHost : o.test:1\r\n\r\n";
        assert_eq!(relaxed(Fault::AcceptWsBeforeColon, ws).as_deref(), Some("o.test:1"));
        assert_eq!(relaxed(Fault::AcceptDuplicateHost, ws), None);
        let dup = "CONNECT o.test:1 HTTP/1.1\r\nHost: o.test:1\r\nHost: x.test:2\r\n\r\n";
        assert_eq!(relaxed(Fault::AcceptDuplicateHost, dup).as_deref(), Some("o.test:1"));
        assert_eq!(relaxed(Fault::AcceptMissingPort, dup), None);
    }
}
