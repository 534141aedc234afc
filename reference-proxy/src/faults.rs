//! Deliberate misbehaviours (feature `faults`), each reproducing one real-world proxy bug, so that the harness
//! can show that its checks fail when they should (negative controls). Never enabled in the default binary.

use std::str::FromStr;

/// One misbehaviour. Several can be combined in [`crate::config::ProxyConfig::faults`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Fault {
    /// Answer 400 when the TLS SNI differs from the CONNECT host (Apache 2.2.12–2.2.26 / 2.4 < 2.4.9).
    SniMustMatchTarget,
    /// `Content-Length: 0` in the 200 (google/martian#209, which broke curl).
    ContentLengthIn2xx,
    /// `Transfer-Encoding: chunked` in the 200 (apache/trafficserver#5156).
    TransferEncodingIn2xx,
    /// Tunnel to the Host field instead of the request-target.
    RouteByHost,
    /// Discard bytes sent with or right after the request head (apify/proxy-chain#284).
    DropEarlyData,
    /// Drop the last chunk the upstream sent before closing.
    LoseLastUpstreamBytes,
    /// Send the 200 before (and whether or not) the upstream connection exists.
    RespondBeforeConnect,
    /// Accept a CONNECT target without a port, defaulting to 443 (tinyproxy's `extract_url`).
    AcceptMissingPort,
    /// Accept whitespace between a field name and its colon.
    AcceptWsBeforeColon,
    /// Accept several Host field lines (the first one wins).
    AcceptDuplicateHost,
    /// Flip a bit in the first byte of every chunk relayed from the upstream to the client.
    CorruptTunnelBytes,
    /// Keep reading requests after an error response instead of closing.
    NoCloseAfterReject,
    /// Answer 421 when the TLS SNI differs from the CONNECT host (mod_ssl's "no compatible SSL setup").
    Answer421OnSniMismatch,
    /// When one side sends FIN, close both connections instead of half-closing.
    HalfCloseClosesBoth,
    /// Connect wherever asked: no port or address policy.
    IgnorePolicy,
    /// Read the port like C `atoi` into 16 bits: sign and trailing junk ignored, 65536 wraps to 0, 0 means 443.
    LaxPort,
    /// Read the port into 32 bits with wrap-around, then check the 16-bit range: `N + 2^32` becomes `N` (a
    /// proxy that validates after an overflowing parse).
    PortWraps32,
    /// Strip `userinfo@` from the CONNECT target and connect (tinyproxy's `strip_username_password`).
    StripUserinfo,
    /// Take the authority out of an absolute-form target (`http://host:port/`), with the scheme's port.
    AcceptAbsoluteForm,
    /// For an origin-form or asterisk-form CONNECT target, tunnel to the Host field instead.
    OriginFormRoutesByHost,
    /// Cut a path, query or fragment off the CONNECT target (tinyproxy splits at `/`).
    IgnoreTargetPath,
    /// Accept `[127.0.0.1]:port`, `[name]:port` and unbracketed `::1:port` (Squid before PR #1253).
    LaxBrackets,
    /// Hand malformed host names to the resolver instead of answering 400 (it then fails: 502).
    ResolveUncheckedNames,
    /// Split the target at its first colon, so bracketed IPv6 literals are refused with 400.
    SplitAtFirstColon,
    /// Treat any method with an authority-form target as CONNECT.
    AuthorityFormAnyMethod,
    /// Compare the method CONNECT case-insensitively (`connect` opens a tunnel).
    MethodCaseInsensitive,
    /// Treat a bare CR as a line end.
    BareCrEndsLine,
    /// Answer 400 to an empty line before the request-line.
    RejectLeadingEmptyLine,
    /// Close the connection without a response when a request head is malformed.
    SilentCloseOnBadRequest,
    /// Accept any HTTP-version text (`http/1.1`, `HTTP/1`, `HTTP/2.0`) as HTTP/1.1.
    LaxVersion,
    /// Answer 505 to an HTTP/1.x version other than 1.0 and 1.1.
    RejectUnknownMinorVersion,
    /// Accept an HTTP/1.1 CONNECT without Host (many proxies ignore Host on CONNECT).
    AcceptMissingHost,
    /// Accept any Host field value without checking it.
    HostNotValidated,
    /// Answer 400 to an HTTP/1.0 CONNECT without Host.
    HostRequiredForHttp10,
    /// Answer 400 when the Host field has no port.
    HostPortRequired,
    /// Drop obs-fold continuation lines, keeping the first line of a folded value alone.
    ObsFoldTruncates,
    /// Truncate field values at a NUL (HTTP Garden: "Header values are truncated at \x00").
    NulTruncatesValue,
    /// Use a whitespace-preceded first field line as a field, trimming the whitespace.
    AcceptWsBeforeFirstField,
    /// Skip header lines without a colon or with an empty or non-token name.
    SkipMalformedFieldLines,
    /// Buffer request heads of any size and any number of fields (no 414/431).
    NoHeadLimit,
    /// Refuse request heads larger than 4 KiB with 431.
    SmallHeadLimit,
    /// Ignore Content-Length and Transfer-Encoding on a CONNECT and open the tunnel (the body becomes tunnel data).
    TunnelDespiteFramingFields,
    /// Answer `HTTP/1.0 200 Connection Established` to HTTP/1.1 requests (Apache mod_proxy_connect).
    Http10StatusLine,
    /// Label every error `proxy_internal_error` in Proxy-Status, whatever happened.
    ProxyStatusGeneric,
    /// Check only that Proxy-Authorization is present, not what it says.
    AcceptAnyCredentials,
    /// Challenge with 401 and WWW-Authenticate instead of 407 and Proxy-Authenticate.
    Auth401,
    /// Answer 101 Switching Protocols to a CONNECT that carries Upgrade.
    SwitchProtocolsOnUpgrade,
    /// Answer `Expect: 100-continue` with 100 and then wait for content that never comes.
    Expect100Stalls,
    /// Tunnel to the proxy's own listening address (tinyproxy before cd005a9).
    NoLoopDetection,
    /// Accept only the exact spelling `Basic` as the authentication scheme.
    BasicSchemeCaseSensitive,
    /// Prefer `h2c` in ALPN, which RFC 9113 §3.2 forbids over TLS (servers that copy cleartext protocol lists).
    AlpnSelectsH2c,
    /// Send an extra CRLF after the 2xx head, which the client reads as tunnel data.
    ExtraCrlfAfter2xx,
    /// Drop the last chunk the client sent before its FIN (the upstream never gets it).
    LoseLastClientBytes,
    /// Allow tunnels only to ports 443 and 563, whatever the configuration says (the Squid/ATS default lists, hard-coded).
    SslPortsOnly,
    /// When the target closes, close the client's TLS connection with a bare TCP FIN, no close_notify alert
    /// (Apache mod_proxy_connect on a TLS listener).
    NoCloseNotify,
    /// Answer 407 without a Proxy-Authenticate challenge.
    ProxyAuthenticateMissing,
    /// On the TLS listener, read the ClientHello and never answer (a stalled handshake, neither completed nor
    /// aborted with an alert).
    StallTlsHandshake,
    /// Send the 2xx status line without a reason phrase and without the SP before it (`HTTP/1.1 200`): RFC 9112
    /// §4 requires the space even when the reason is absent.
    NoSpaceAfterStatus,
}

impl Fault {
    pub const ALL: [Fault; 58] = [
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
        Fault::LaxPort,
        Fault::PortWraps32,
        Fault::StripUserinfo,
        Fault::AcceptAbsoluteForm,
        Fault::OriginFormRoutesByHost,
        Fault::IgnoreTargetPath,
        Fault::LaxBrackets,
        Fault::ResolveUncheckedNames,
        Fault::SplitAtFirstColon,
        Fault::AuthorityFormAnyMethod,
        Fault::MethodCaseInsensitive,
        Fault::BareCrEndsLine,
        Fault::RejectLeadingEmptyLine,
        Fault::SilentCloseOnBadRequest,
        Fault::LaxVersion,
        Fault::RejectUnknownMinorVersion,
        Fault::AcceptMissingHost,
        Fault::HostNotValidated,
        Fault::HostRequiredForHttp10,
        Fault::HostPortRequired,
        Fault::ObsFoldTruncates,
        Fault::NulTruncatesValue,
        Fault::AcceptWsBeforeFirstField,
        Fault::SkipMalformedFieldLines,
        Fault::NoHeadLimit,
        Fault::SmallHeadLimit,
        Fault::TunnelDespiteFramingFields,
        Fault::Http10StatusLine,
        Fault::ProxyStatusGeneric,
        Fault::AcceptAnyCredentials,
        Fault::Auth401,
        Fault::SwitchProtocolsOnUpgrade,
        Fault::Expect100Stalls,
        Fault::NoLoopDetection,
        Fault::BasicSchemeCaseSensitive,
        Fault::AlpnSelectsH2c,
        Fault::ExtraCrlfAfter2xx,
        Fault::LoseLastClientBytes,
        Fault::SslPortsOnly,
        Fault::NoSpaceAfterStatus,
        Fault::StallTlsHandshake,
        Fault::ProxyAuthenticateMissing,
        Fault::NoCloseNotify,
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
            Fault::LaxPort => "lax-port",
            Fault::StallTlsHandshake => "stall-tls-handshake",
            Fault::ProxyAuthenticateMissing => "407-without-proxy-authenticate",
            Fault::NoCloseNotify => "no-close-notify",
            Fault::PortWraps32 => "port-wraps-32",
            Fault::StripUserinfo => "strip-userinfo",
            Fault::AcceptAbsoluteForm => "accept-absolute-form",
            Fault::OriginFormRoutesByHost => "origin-form-routes-by-host",
            Fault::IgnoreTargetPath => "ignore-target-path",
            Fault::LaxBrackets => "lax-brackets",
            Fault::ResolveUncheckedNames => "resolve-unchecked-names",
            Fault::SplitAtFirstColon => "split-at-first-colon",
            Fault::AuthorityFormAnyMethod => "authority-form-any-method",
            Fault::MethodCaseInsensitive => "method-case-insensitive",
            Fault::BareCrEndsLine => "bare-cr-ends-line",
            Fault::RejectLeadingEmptyLine => "reject-leading-empty-line",
            Fault::SilentCloseOnBadRequest => "silent-close-on-bad-request",
            Fault::LaxVersion => "lax-version",
            Fault::RejectUnknownMinorVersion => "reject-unknown-minor-version",
            Fault::AcceptMissingHost => "accept-missing-host",
            Fault::HostNotValidated => "host-not-validated",
            Fault::HostRequiredForHttp10 => "host-required-for-http10",
            Fault::HostPortRequired => "host-port-required",
            Fault::ObsFoldTruncates => "obs-fold-truncates",
            Fault::NulTruncatesValue => "nul-truncates-value",
            Fault::AcceptWsBeforeFirstField => "accept-ws-before-first-field",
            Fault::SkipMalformedFieldLines => "skip-malformed-field-lines",
            Fault::NoHeadLimit => "no-head-limit",
            Fault::SmallHeadLimit => "small-head-limit",
            Fault::TunnelDespiteFramingFields => "tunnel-despite-framing-fields",
            Fault::Http10StatusLine => "http10-status-line",
            Fault::ProxyStatusGeneric => "proxy-status-generic",
            Fault::AcceptAnyCredentials => "accept-any-credentials",
            Fault::Auth401 => "auth-401",
            Fault::SwitchProtocolsOnUpgrade => "switch-protocols-on-upgrade",
            Fault::Expect100Stalls => "expect-100-stalls",
            Fault::NoLoopDetection => "no-loop-detection",
            Fault::BasicSchemeCaseSensitive => "basic-scheme-case-sensitive",
            Fault::AlpnSelectsH2c => "alpn-selects-h2c",
            Fault::ExtraCrlfAfter2xx => "extra-crlf-after-2xx",
            Fault::LoseLastClientBytes => "lose-last-client-bytes",
            Fault::SslPortsOnly => "ssl-ports-only",
            Fault::NoSpaceAfterStatus => "no-space-after-status",
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

#[cfg(feature = "faults")]
/// Whether an enabled fault relaxes the parser for this error (the head is then read to its end and rewritten
/// by [`relax_head`]).
pub(crate) fn relaxes(faults: &[Fault], err: &crate::wire::WireError) -> bool {
    if matches!(err, crate::wire::WireError::AuthorityFormWithoutConnect)
        && faults.contains(&Fault::MethodCaseInsensitive)
    {
        return true;
    }
    enabled_relaxation(faults, err).is_some()
}

#[cfg(feature = "faults")]
/// The enabled fault that relaxes the parser for this error, if any. `port-wraps-32` reads a port above 65535
/// its own way (into 32 bits, where it may wrap into range), before `lax-port` when both are enabled.
fn enabled_relaxation(faults: &[Fault], err: &crate::wire::WireError) -> Option<Fault> {
    use crate::wire::{AuthorityError as A, WireError as W};
    if faults.contains(&Fault::PortWraps32) && matches!(err, W::Authority(A::PortOutOfRange)) {
        return Some(Fault::PortWraps32);
    }
    relaxing_fault(err).filter(|f| faults.contains(f))
}

#[cfg(feature = "faults")]
/// The parser-relaxing fault that applies to an error, if any.
fn relaxing_fault(err: &crate::wire::WireError) -> Option<Fault> {
    use crate::wire::{AuthorityError as A, TargetForm, WireError as W};
    Some(match err {
        W::Authority(A::MissingPort) => Fault::AcceptMissingPort,
        W::Authority(A::EmptyPort | A::InvalidPort | A::PortOutOfRange | A::PortLeadingZero) => Fault::LaxPort,
        W::Authority(A::Userinfo) => Fault::StripUserinfo,
        W::Authority(A::TrailingGarbage) => Fault::IgnoreTargetPath,
        W::Authority(A::BracketedNotIpv6 | A::UnbracketedIpv6) => Fault::LaxBrackets,
        W::ConnectTargetNotAuthority { form: TargetForm::Absolute } => Fault::AcceptAbsoluteForm,
        W::ConnectTargetNotAuthority { form: TargetForm::Origin | TargetForm::Asterisk } => {
            Fault::OriginFormRoutesByHost
        }
        W::WhitespaceBeforeColon => Fault::AcceptWsBeforeColon,
        W::DuplicateHost => Fault::AcceptDuplicateHost,
        W::MissingHost => Fault::AcceptMissingHost,
        W::InvalidHost(_) => Fault::HostNotValidated,
        W::ObsFold => Fault::ObsFoldTruncates,
        W::InvalidFieldValue { byte: 0 } => Fault::NulTruncatesValue,
        W::WhitespaceBeforeFirstField => Fault::AcceptWsBeforeFirstField,
        W::MissingColon | W::InvalidFieldName => Fault::SkipMalformedFieldLines,
        W::ContentOnConnect { .. } => Fault::TunnelDespiteFramingFields,
        W::BareCr => Fault::BareCrEndsLine,
        W::InvalidVersion | W::VersionNotSupported { .. } => Fault::LaxVersion,
        W::AuthorityFormWithoutConnect => Fault::AuthorityFormAnyMethod,
        _ => return None,
    })
}

#[cfg(feature = "faults")]
/// Relaxes the strict parser for the parser-related faults by rewriting a complete head it refused, so that the
/// strict parser then accepts it. Returns the rewritten head, or `None` when no enabled fault applies.
pub(crate) fn relax_head(faults: &[Fault], head: &[u8], err: &crate::wire::WireError) -> Option<Vec<u8>> {
    use crate::wire::WireError as W;
    if matches!(err, W::AuthorityFormWithoutConnect) {
        return relax_method(faults, head);
    }
    let fault = enabled_relaxation(faults, err)?;
    if fault == Fault::BareCrEndsLine {
        return Some(bare_cr_to_crlf(head));
    }
    let text = std::str::from_utf8(head).ok()?;
    let (request_line, rest) = text.split_once("\r\n")?;
    let mut parts = request_line.splitn(3, ' ');
    let (m, t, v) = (parts.next()?, parts.next()?, parts.next()?);
    let lines: Vec<&str> = rest.split("\r\n").collect();
    let host_value = || {
        lines
            .iter()
            .find_map(|l| l.split_once(':').filter(|(n, _)| n.eq_ignore_ascii_case("host")).map(|(_, v)| v.trim()))
    };
    let with_target = |t: &str| Some(format!("{m} {t} {v}\r\n{rest}").into_bytes());
    let with_lines = |keep: &dyn Fn(&str) -> Option<String>| {
        let mut out = format!("{request_line}\r\n");
        for line in &lines {
            if let Some(l) = keep(line) {
                out.push_str(&l);
                out.push_str("\r\n");
            }
        }
        out.truncate(out.len() - 2);
        Some(out.into_bytes())
    };
    let is_field = |line: &str, name: &str| line.split_once(':').is_some_and(|(n, _)| n.eq_ignore_ascii_case(name));
    match fault {
        Fault::AcceptMissingPort => with_target(&format!("{t}:443")),
        Fault::LaxPort | Fault::PortWraps32 => {
            // The same lax reading applies to a Host that repeats the target.
            let (host, port) = split_port(t)?;
            let port = if fault == Fault::LaxPort { atoi_port(port) } else { wrapped_32_port(port)? };
            let fixed = format!("{host}:{port}");
            let mut out = format!("{m} {fixed} {v}\r\n");
            for line in &lines {
                match line.split_once(':') {
                    Some((n, value)) if n.eq_ignore_ascii_case("host") && value.trim() == t => {
                        out.push_str(&format!("{n}: {fixed}"))
                    }
                    _ => out.push_str(line),
                }
                out.push_str("\r\n");
            }
            out.truncate(out.len() - 2);
            Some(out.into_bytes())
        }
        Fault::StripUserinfo => with_target(&t[t.rfind('@')? + 1..]),
        Fault::IgnoreTargetPath => with_target(&t[..t.find(['/', '?', '#'])?]),
        Fault::LaxBrackets => match t.strip_prefix('[') {
            Some(inner) => with_target(&inner.replacen("]:", ":", 1)),
            None => {
                let (host, port) = t.rsplit_once(':')?;
                with_target(&format!("[{host}]:{port}"))
            }
        },
        Fault::AcceptAbsoluteForm => {
            let (scheme, after) = t.split_once("://")?;
            let authority = &after[..after.find(['/', '?', '#']).unwrap_or(after.len())];
            let default = if scheme.eq_ignore_ascii_case("https") { 443 } else { 80 };
            match authority.rsplit_once(':') {
                Some((_, p)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => with_target(authority),
                _ => with_target(&format!("{authority}:{default}")),
            }
        }
        Fault::OriginFormRoutesByHost => with_target(host_value()?),
        Fault::AcceptWsBeforeColon => with_lines(&|line| match line.split_once(':') {
            Some((name, value)) if !line.starts_with([' ', '\t']) => {
                Some(format!("{}:{value}", name.trim_end_matches([' ', '\t'])))
            }
            _ => Some(line.to_owned()),
        }),
        Fault::AcceptDuplicateHost => {
            let seen = std::cell::Cell::new(false);
            with_lines(&|line| {
                let is_host = is_field(line, "host");
                if is_host && seen.get() {
                    return None;
                }
                seen.set(seen.get() | is_host);
                Some(line.to_owned())
            })
        }
        Fault::AcceptMissingHost => {
            let mut out = format!("{request_line}\r\nHost: {t}\r\n{rest}");
            if rest.is_empty() {
                out.truncate(out.len() - 2);
            }
            Some(out.into_bytes())
        }
        Fault::HostNotValidated => {
            with_lines(&|line| Some(if is_field(line, "host") { format!("Host: {t}") } else { line.to_owned() }))
        }
        Fault::ObsFoldTruncates => with_lines(&|line| (!line.starts_with([' ', '\t'])).then(|| line.to_owned())),
        Fault::NulTruncatesValue => with_lines(&|line| Some(line.split('\0').next().unwrap_or("").to_owned())),
        Fault::AcceptWsBeforeFirstField => with_lines(&|line| Some(line.trim_start_matches([' ', '\t']).to_owned())),
        Fault::SkipMalformedFieldLines => with_lines(&|line| {
            let ok = line.is_empty()
                || line.split_once(':').is_some_and(|(n, _)| {
                    !n.is_empty() && n.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
                });
            ok.then(|| line.to_owned())
        }),
        Fault::TunnelDespiteFramingFields => with_lines(&|line| {
            (!is_field(line, "content-length") && !is_field(line, "transfer-encoding")).then(|| line.to_owned())
        }),
        Fault::LaxVersion => Some(format!("{m} {t} HTTP/1.1\r\n{rest}").into_bytes()),
        _ => None,
    }
}

#[cfg(feature = "faults")]
/// `method-case-insensitive` and `authority-form-any-method`: the method becomes `CONNECT`.
fn relax_method(faults: &[Fault], head: &[u8]) -> Option<Vec<u8>> {
    let sp = head.iter().position(|&b| b == b' ')?;
    let method = &head[..sp];
    let applies = faults.contains(&Fault::AuthorityFormAnyMethod)
        || (faults.contains(&Fault::MethodCaseInsensitive) && method.eq_ignore_ascii_case(b"CONNECT"));
    applies.then(|| [b"CONNECT".as_slice(), &head[sp..]].concat())
}

#[cfg(feature = "faults")]
/// Every CR not followed by LF becomes CRLF.
fn bare_cr_to_crlf(head: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(head.len() + 8);
    for (i, &b) in head.iter().enumerate() {
        out.push(b);
        if b == b'\r' && head.get(i + 1) != Some(&b'\n') {
            out.push(b'\n');
        }
    }
    out
}

#[cfg(feature = "faults")]
/// Host and raw port text of a target whose port is malformed (split at the first colon after the host).
fn split_port(t: &str) -> Option<(&str, &str)> {
    if t.starts_with('[') {
        let close = t.find("]:")?;
        return Some((&t[..=close], &t[close + 2..]));
    }
    t.split_once(':')
}

#[cfg(feature = "faults")]
/// The port as C's `(unsigned short)atoi(text)` gives it, with 0 read as the default 443.
fn atoi_port(text: &str) -> u16 {
    let (neg, digits) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let mut n: i64 = 0;
    for b in digits.bytes().take_while(u8::is_ascii_digit) {
        n = n.wrapping_mul(10).wrapping_add(i64::from(b - b'0'));
    }
    let port = (if neg { n.wrapping_neg() } else { n }) as u16;
    if port == 0 { 443 } else { port }
}

#[cfg(feature = "faults")]
/// The port as a parser that reads it into a wrapping `u32` and then checks the 16-bit range gives it: None when
/// it still is not a port.
fn wrapped_32_port(text: &str) -> Option<u16> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let wrapped = text.bytes().fold(0u32, |n, b| n.wrapping_mul(10).wrapping_add(u32::from(b - b'0')));
    u16::try_from(wrapped).ok().filter(|p| *p != 0)
}

#[cfg(feature = "faults")]
/// Which rejection an enabled fault puts in place of the strict parser's answer.
pub(crate) enum Rejection {
    /// Close without answering.
    Silent,
    /// Answer with this status, error type and details.
    Answer(u16, crate::response::ErrorType, String),
}

#[cfg(feature = "faults")]
/// `silent-close-on-bad-request` and `resolve-unchecked-names` replace the parser's 400 (or 414/431).
pub(crate) fn replace_rejection(faults: &[Fault], err: &crate::wire::WireError) -> Option<Rejection> {
    use crate::wire::{AuthorityError as A, WireError as W};
    if faults.contains(&Fault::ResolveUncheckedNames)
        && matches!(err, W::Authority(A::InvalidRegName | A::PercentEncoded))
    {
        let details = "DNS lookup failure for the target".to_owned();
        return Some(Rejection::Answer(502, crate::response::ErrorType::DnsError, details));
    }
    faults.contains(&Fault::SilentCloseOnBadRequest).then_some(Rejection::Silent)
}

#[cfg(all(test, feature = "faults"))]
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

    #[test]
    fn port_wraps_32_reads_the_port_into_32_bits() {
        let big = "CONNECT o.test:4294967739 HTTP/1.1\r\nHost: o.test:4294967739\r\n\r\n";
        assert_eq!(relaxed(Fault::PortWraps32, big).as_deref(), Some("o.test:443"));
        // Above 65535 without wrapping in 32 bits: still refused.
        let err = parse(b"CONNECT o.test:65979 HTTP/1.1\r\nHost: o.test\r\n\r\n").unwrap_err();
        assert_eq!(
            relax_head(&[Fault::PortWraps32], b"CONNECT o.test:65979 HTTP/1.1\r\nHost: o.test\r\n\r\n", &err),
            None
        );
    }

    #[test]
    fn target_relaxations() {
        let cases = [
            (Fault::LaxPort, "CONNECT o.test:65979 HTTP/1.1\r\nHost: o.test\r\n\r\n", "o.test:443"),
            (Fault::LaxPort, "CONNECT o.test:-1 HTTP/1.1\r\nHost: o.test\r\n\r\n", "o.test:65535"),
            (Fault::LaxPort, "CONNECT o.test:0 HTTP/1.1\r\nHost: o.test\r\n\r\n", "o.test:443"),
            (Fault::LaxPort, "CONNECT o.test:80;x HTTP/1.1\r\nHost: o.test\r\n\r\n", "o.test:80"),
            (Fault::StripUserinfo, "CONNECT u:p@o.test:1 HTTP/1.1\r\nHost: o.test\r\n\r\n", "o.test:1"),
            (Fault::IgnoreTargetPath, "CONNECT o.test:1/x HTTP/1.1\r\nHost: o.test\r\n\r\n", "o.test:1"),
            (Fault::LaxBrackets, "CONNECT [127.0.0.1]:1 HTTP/1.1\r\nHost: o.test\r\n\r\n", "127.0.0.1:1"),
            (Fault::LaxBrackets, "CONNECT ::1:1 HTTP/1.1\r\nHost: o.test\r\n\r\n", "[::1]:1"),
            (Fault::AcceptAbsoluteForm, "CONNECT https://o.test/ HTTP/1.1\r\nHost: o.test\r\n\r\n", "o.test:443"),
            (Fault::AcceptAbsoluteForm, "CONNECT http://o.test:8/ HTTP/1.1\r\nHost: o.test\r\n\r\n", "o.test:8"),
            (Fault::OriginFormRoutesByHost, "CONNECT / HTTP/1.1\r\nHost: o.test:2\r\n\r\n", "o.test:2"),
            (Fault::AuthorityFormAnyMethod, "GET o.test:1 HTTP/1.1\r\nHost: o.test\r\n\r\n", "o.test:1"),
            (Fault::MethodCaseInsensitive, "connect o.test:1 HTTP/1.1\r\nHost: o.test\r\n\r\n", "o.test:1"),
            (Fault::LaxVersion, "CONNECT o.test:1 HTTP/2.0\r\nHost: o.test\r\n\r\n", "o.test:1"),
            (Fault::AcceptMissingHost, "CONNECT o.test:1 HTTP/1.1\r\n\r\n", "o.test:1"),
            (Fault::HostNotValidated, "CONNECT o.test:1 HTTP/1.1\r\nHost: a b\r\n\r\n", "o.test:1"),
            (Fault::ObsFoldTruncates, "CONNECT o.test:1 HTTP/1.1\r\nHost: o.test\r\n x\r\n\r\n", "o.test:1"),
            (Fault::NulTruncatesValue, "CONNECT o.test:1 HTTP/1.1\r\nHost: o.test\0x\r\n\r\n", "o.test:1"),
            (Fault::AcceptWsBeforeFirstField, "CONNECT o.test:1 HTTP/1.1\r\n Host: o.test\r\n\r\n", "o.test:1"),
            (Fault::SkipMalformedFieldLines, "CONNECT o.test:1 HTTP/1.1\r\nHost: o.test\r\njunk\r\n\r\n", "o.test:1"),
            (
                Fault::TunnelDespiteFramingFields,
                "CONNECT o.test:1 HTTP/1.1\r\nHost: o.test\r\nContent-Length: 5\r\n\r\n",
                "o.test:1",
            ),
        ];
        for (fault, head, want) in cases {
            assert!(relaxes(&[fault], &parse(head.as_bytes()).unwrap_err()), "{fault}: {head:?}");
            assert_eq!(relaxed(fault, head).as_deref(), Some(want), "{fault}: {head:?}");
        }
        // A bare CR becomes a line end: the head ends early, and the rest is left over.
        let head = b"CONNECT o.test:1 HTTP/1.1\r\nHost: o.test\r\nX: a\r\rB: c\r\n\r\n";
        let err = parse(head).unwrap_err();
        let out = relax_head(&[Fault::BareCrEndsLine], head, &err).unwrap();
        assert!(out.starts_with(b"CONNECT o.test:1 HTTP/1.1\r\nHost: o.test\r\nX: a\r\n\r\nB: c"));
        assert_eq!(atoi_port("+443x"), 443);
        assert!(matches!(replace_rejection(&[Fault::SilentCloseOnBadRequest], &err), Some(Rejection::Silent)));
        assert!(replace_rejection(&[], &err).is_none());
    }
}
