//! Deliberate misbehaviours (feature `faults`), each reproducing one real-world proxy bug, so that the harness
//! can show that its checks fail when they should (negative controls). Never enabled in the default binary.

use std::str::FromStr;

#[cfg(feature = "faults")]
mod h2_filter;
#[cfg(feature = "faults")]
use std::sync::Arc;

#[cfg(feature = "faults")]
use crate::{
    auth::AuthCheck,
    decision::{Destination, OwnedHost, Request},
    hooks::{Hooks, Interjection},
    relay::RelayFaults,
    response::{ErrorResponse, ErrorType},
    upstream::ParentRequest,
    wire::{Limits, WireError},
};

/// Declares the faults once: the enum, [`Fault::ALL`], the names and the descriptions all come from here.
macro_rules! faults {
    ($($(#[doc = $doc:literal])+ $variant:ident = $name:literal,)+) => {
        /// One misbehaviour. Several can be combined in [`crate::config::ProxyConfig::faults`].
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum Fault {
            $($(#[doc = $doc])+ $variant,)+
        }

        impl Fault {
            /// Every fault, in declaration order.
            pub const ALL: &'static [Fault] = &[$(Fault::$variant,)+];

            /// The kebab-case name used on the command line and in TOML.
            pub fn name(self) -> &'static str {
                match self {
                    $(Fault::$variant => $name,)+
                }
            }

            /// What the fault does (its documentation, one line per doc line).
            pub fn description(self) -> &'static str {
                match self {
                    $(Fault::$variant => concat!($($doc, "\n"),+),)+
                }
            }
        }
    };
}

faults! {
    /// Answer 400 when the TLS SNI differs from the CONNECT host (Apache 2.2.12–2.2.26 / 2.4 < 2.4.9).
    SniMustMatchTarget = "sni-must-match-target",
    /// `Content-Length: 0` in the 200 (google/martian#209, which broke curl).
    ContentLengthIn2xx = "content-length-in-2xx",
    /// `Transfer-Encoding: chunked` in the 200 (apache/trafficserver#5156).
    TransferEncodingIn2xx = "transfer-encoding-in-2xx",
    /// Tunnel to the Host field instead of the request-target.
    RouteByHost = "route-by-host",
    /// Discard bytes sent with or right after the request head (apify/proxy-chain#284).
    DropEarlyData = "drop-early-data",
    /// Drop the last chunk the upstream sent before closing.
    LoseLastUpstreamBytes = "lose-last-upstream-bytes",
    /// Send the 200 before (and whether or not) the upstream connection exists.
    RespondBeforeConnect = "respond-before-connect",
    /// Accept a CONNECT target without a port, defaulting to 443 (tinyproxy's `extract_url`).
    AcceptMissingPort = "accept-missing-port",
    /// Accept whitespace between a field name and its colon.
    AcceptWsBeforeColon = "accept-ws-before-colon",
    /// Accept several Host field lines (the first one wins).
    AcceptDuplicateHost = "accept-duplicate-host",
    /// Flip a bit in the first byte of every chunk relayed from the upstream to the client.
    CorruptTunnelBytes = "corrupt-tunnel-bytes",
    /// Keep reading requests after an error response instead of closing.
    NoCloseAfterReject = "no-close-after-reject",
    /// Answer 421 when the TLS SNI differs from the CONNECT host (mod_ssl's "no compatible SSL setup").
    Answer421OnSniMismatch = "answer-421-on-sni-mismatch",
    /// When one side sends FIN, close both connections instead of half-closing.
    HalfCloseClosesBoth = "half-close-closes-both",
    /// Connect wherever asked: no port or address policy.
    IgnorePolicy = "ignore-policy",
    /// Read the port like C `atoi` into 16 bits: sign and trailing junk ignored, 65536 wraps to 0, 0 means 443.
    LaxPort = "lax-port",
    /// Read the port into 32 bits with wrap-around, then check the 16-bit range: `N + 2^32` becomes `N` (a
    /// proxy that validates after an overflowing parse).
    PortWraps32 = "port-wraps-32",
    /// Strip `userinfo@` from the CONNECT target and connect (tinyproxy's `strip_username_password`).
    StripUserinfo = "strip-userinfo",
    /// Take the authority out of an absolute-form target (`http://host:port/`), with the scheme's port.
    AcceptAbsoluteForm = "accept-absolute-form",
    /// For an origin-form or asterisk-form CONNECT target, tunnel to the Host field instead.
    OriginFormRoutesByHost = "origin-form-routes-by-host",
    /// Cut a path, query or fragment off the CONNECT target (tinyproxy splits at `/`).
    IgnoreTargetPath = "ignore-target-path",
    /// Accept `[127.0.0.1]:port`, `[name]:port` and unbracketed `::1:port` (Squid before PR #1253).
    LaxBrackets = "lax-brackets",
    /// Hand malformed host names to the resolver instead of answering 400 (it then fails: 502).
    ResolveUncheckedNames = "resolve-unchecked-names",
    /// Split the target at its first colon, so bracketed IPv6 literals are refused with 400.
    SplitAtFirstColon = "split-at-first-colon",
    /// Treat any method with an authority-form target as CONNECT.
    AuthorityFormAnyMethod = "authority-form-any-method",
    /// Compare the method CONNECT case-insensitively (`connect` opens a tunnel).
    MethodCaseInsensitive = "method-case-insensitive",
    /// Treat a bare CR as a line end.
    BareCrEndsLine = "bare-cr-ends-line",
    /// Answer 400 to an empty line before the request-line.
    RejectLeadingEmptyLine = "reject-leading-empty-line",
    /// Close the connection without a response when a request head is malformed.
    SilentCloseOnBadRequest = "silent-close-on-bad-request",
    /// Accept any HTTP-version text (`http/1.1`, `HTTP/1`, `HTTP/2.0`) as HTTP/1.1.
    LaxVersion = "lax-version",
    /// Answer 505 to an HTTP/1.x version other than 1.0 and 1.1.
    RejectUnknownMinorVersion = "reject-unknown-minor-version",
    /// Accept an HTTP/1.1 CONNECT without Host (many proxies ignore Host on CONNECT).
    AcceptMissingHost = "accept-missing-host",
    /// Accept any Host field value without checking it.
    HostNotValidated = "host-not-validated",
    /// Answer 400 to an HTTP/1.0 CONNECT without Host.
    HostRequiredForHttp10 = "host-required-for-http10",
    /// Answer 400 when the Host field has no port.
    HostPortRequired = "host-port-required",
    /// Drop obs-fold continuation lines, keeping the first line of a folded value alone.
    ObsFoldTruncates = "obs-fold-truncates",
    /// Truncate field values at a NUL (HTTP Garden: "Header values are truncated at \x00").
    NulTruncatesValue = "nul-truncates-value",
    /// Use a whitespace-preceded first field line as a field, trimming the whitespace; a Host given that way wins
    /// over later Host lines and names the tunnel's destination (a proxy that processes the line and routes by the
    /// first Host it sees).
    AcceptWsBeforeFirstField = "accept-ws-before-first-field",
    /// Skip header lines without a colon or with an empty or non-token name.
    SkipMalformedFieldLines = "skip-malformed-field-lines",
    /// Buffer request heads of any size and any number of fields (no 414/431).
    NoHeadLimit = "no-head-limit",
    /// Refuse request heads larger than 4 KiB with 431.
    SmallHeadLimit = "small-head-limit",
    /// Ignore Content-Length and Transfer-Encoding on a CONNECT and open the tunnel (the body becomes tunnel data).
    TunnelDespiteFramingFields = "tunnel-despite-framing-fields",
    /// Answer `HTTP/1.0 200 Connection Established` to HTTP/1.1 requests (Apache mod_proxy_connect).
    Http10StatusLine = "http10-status-line",
    /// Label every error `proxy_internal_error` in Proxy-Status, whatever happened.
    ProxyStatusGeneric = "proxy-status-generic",
    /// Check only that Proxy-Authorization is present, not what it says.
    AcceptAnyCredentials = "accept-any-credentials",
    /// Challenge with 401 and WWW-Authenticate instead of 407 and Proxy-Authenticate.
    Auth401 = "auth-401",
    /// Answer 101 Switching Protocols to a CONNECT that carries Upgrade.
    SwitchProtocolsOnUpgrade = "switch-protocols-on-upgrade",
    /// Answer `Expect: 100-continue` with 100 and then wait for content that never comes.
    Expect100Stalls = "expect-100-stalls",
    /// Tunnel to the proxy's own listening address (tinyproxy before cd005a9).
    NoLoopDetection = "no-loop-detection",
    /// Accept only the exact spelling `Basic` as the authentication scheme.
    BasicSchemeCaseSensitive = "basic-scheme-case-sensitive",
    /// Prefer `h2c` in ALPN, which RFC 9113 §3.2 forbids over TLS (servers that copy cleartext protocol lists).
    AlpnSelectsH2c = "alpn-selects-h2c",
    /// Send an extra CRLF after the 2xx head, which the client reads as tunnel data.
    ExtraCrlfAfter2xx = "extra-crlf-after-2xx",
    /// Drop the last chunk the client sent before its FIN (the upstream never gets it).
    LoseLastClientBytes = "lose-last-client-bytes",
    /// Allow tunnels only to ports 443 and 563, whatever the configuration says (the Squid/ATS default lists, hard-coded).
    SslPortsOnly = "ssl-ports-only",
    /// When the target closes, close the client's TLS connection with a bare TCP FIN, no close_notify alert
    /// (Apache mod_proxy_connect on a TLS listener).
    NoCloseNotify = "no-close-notify",
    /// Answer 407 without a Proxy-Authenticate challenge.
    ProxyAuthenticateMissing = "407-without-proxy-authenticate",
    /// On the TLS listener, read the ClientHello and never answer (a stalled handshake, neither completed nor
    /// aborted with an alert).
    StallTlsHandshake = "stall-tls-handshake",
    /// Send the 2xx status line without a reason phrase and without the SP before it (`HTTP/1.1 200`): RFC 9112
    /// §4 requires the space even when the reason is absent.
    NoSpaceAfterStatus = "no-space-after-status",
    /// Tunnel to the name (or address) the client sent as TLS SNI, with the request-target's port: a proxy that
    /// routes TLS connections by SNI, as SNI-routing frontends do.
    RouteBySni = "route-by-sni",
    /// Dial the request-target's port plus one (an off-by-one in the port handling).
    DialNextPort = "dial-next-port",
    /// Refuse valid credentials as invalid (a broken credential store or decoder).
    RejectValidCredentials = "reject-valid-credentials",
    /// On the TLS listener, close the connection when the client offered no ALPN (an h2-only front end).
    AlpnRequired = "alpn-required",
    /// After a request with a field value of 4 KiB or more, stop answering anyone for 3 seconds (a proxy whose
    /// event loop blocks on one request: the liveness oracle's control).
    StallOnLongField = "stall-on-long-field",
    /// Chained: send the client's Proxy-Authorization to the parent in place of the proxy's own credentials.
    ForwardClientCredentials = "forward-client-credentials",
    /// Chained: forward every field of the client's CONNECT to the parent, hop-by-hop ones included
    /// (`Connection` and the fields it lists, `Proxy-Connection`, `Keep-Alive`, `TE`, `Upgrade`).
    ForwardHopByHopFields = "forward-hop-by-hop-fields",
    /// Chained: send the CONNECT to the parent without a Via field (neither the client's nor the proxy's member).
    NoVia = "no-via",
    /// Chained: resolve a name target here and send the parent `ADDRESS:PORT` instead of the name.
    ReResolveTarget = "re-resolve-target",
    /// Chained: when the parent closes without answering, send the CONNECT again on a new connection.
    RetryParentConnect = "retry-parent-connect",
    /// Chained: relay whatever the parent answered to the client and open the tunnel anyway (Squid before
    /// CVE-2015-5400's fix: "Do not blindly forward cache peer CONNECT responses").
    TunnelParentAnswer = "tunnel-parent-answer",
    /// Chained: drop the parent's Proxy-Status members from the refusal (only the proxy's own member is sent).
    DropParentProxyStatus = "drop-parent-proxy-status",
    /// HTTP/2: ignore END_STREAM both ways: the client's is not a FIN to the upstream, the upstream's FIN is not
    /// END_STREAM to the client (the stream just stays open).
    H2DropEndStream = "h2-drop-end-stream",
    /// HTTP/2: an upstream reset ends the stream with END_STREAM, as if the upstream had closed cleanly, instead
    /// of RST_STREAM(CONNECT_ERROR).
    H2ResetAsEndStream = "h2-reset-as-end-stream",
    /// HTTP/2: the client's RST_STREAM closes the upstream connection with a FIN instead of a TCP reset.
    H2ClientResetAsFin = "h2-client-reset-as-fin",
    /// HTTP/2: after a refused stream, close the whole connection (GOAWAY), so a second CONNECT on it fails.
    H2CloseAfterRefusal = "h2-close-after-refusal",
    /// HTTP/2: ignore `:scheme` and `:path` on a CONNECT stream and tunnel to `:authority` (the h2 crate refuses
    /// them, so the client's HEADERS are rewritten without them before it reads them).
    H2AcceptSchemePath = "h2-accept-scheme-path",
    /// HTTP/2: ignore connection-specific fields (connection, proxy-connection, keep-alive, transfer-encoding,
    /// upgrade, te other than trailers) instead of treating the request as malformed (rewritten away as above).
    H2AcceptConnectionFields = "h2-accept-connection-fields",
    /// HTTP/2: a connection-level receive window of one stream's size (the bug behind "one slow tunnel stalls the
    /// others": a stream whose upstream stopped reading keeps its unreleased DATA, and with it the whole window).
    H2SharedWindow = "h2-shared-window",
    /// HTTP/2: HEADERS (trailers) from the client on a connected CONNECT stream taken as END_STREAM (a FIN to the
    /// upstream) instead of a stream error.
    H2TrailersAsEndStream = "h2-trailers-as-end-stream",
    /// HTTP/2: accept malformed fields: uppercase names lowercased, fields whose values hold CR, LF or NUL
    /// dropped (the h2 crate refuses both; the client's HEADERS are rewritten before it reads them).
    H2LenientFields = "h2-lenient-fields",
    /// HTTP/2: an extended CONNECT (RFC 8441, `:protocol`) without the setting is taken as a plain CONNECT to its
    /// `:authority` (`:protocol`, `:scheme` and `:path` rewritten away before the h2 crate, which refuses it).
    H2ExtendedConnectTunnels = "h2-extended-connect-tunnels",
    /// HTTP/2: ignore the client's stream flow-control window: send as if it had granted 16 MiB (the client's
    /// SETTINGS_INITIAL_WINDOW_SIZE is rewritten before the h2 crate, which otherwise honours it).
    H2IgnoreFlowControl = "h2-ignore-flow-control",
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
        Fault::ALL.iter().copied().find(|f| f.name().replace('-', "") == norm).ok_or_else(|| UnknownFault(s.to_owned()))
    }
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
        Fault::AcceptWsBeforeFirstField => {
            let first = lines.first()?.trim_start_matches([' ', '\t']);
            let host = first.split_once(':').filter(|(n, _)| n.eq_ignore_ascii_case("host")).map(|(_, v)| v.trim());
            let mut out = format!("{m} {} {v}\r\n{first}", host.unwrap_or(t));
            for line in &lines[1..] {
                if !(host.is_some() && is_field(line, "host")) {
                    out.push_str("\r\n");
                    out.push_str(line);
                }
            }
            Some(out.into_bytes())
        }
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
/// The faults of a configuration, as overrides of [`Hooks`]: the only place where a fault changes what the
/// proxy does.
pub(crate) struct FaultHooks {
    faults: Vec<Fault>,
}

#[cfg(feature = "faults")]
impl FaultHooks {
    pub(crate) fn new(faults: Vec<Fault>) -> Self {
        FaultHooks { faults }
    }

    fn has(&self, f: Fault) -> bool {
        self.faults.contains(&f)
    }
}

#[cfg(feature = "faults")]
impl Hooks for FaultHooks {
    fn parser_limits(&self, mut limits: Limits) -> Limits {
        if self.has(Fault::NoHeadLimit) {
            limits = Limits { max_request_line: 1 << 20, max_head: 16 << 20, max_fields: 1 << 20 };
        }
        if self.has(Fault::SmallHeadLimit) {
            limits.max_head = limits.max_head.min(4096);
        }
        limits
    }

    fn relaxes(&self, err: &WireError) -> bool {
        (matches!(err, WireError::AuthorityFormWithoutConnect) && self.has(Fault::MethodCaseInsensitive))
            || enabled_relaxation(&self.faults, err).is_some()
    }

    fn relax_head(&self, head: &[u8], err: &WireError) -> Option<Vec<u8>> {
        relax_head(&self.faults, head, err)
    }

    fn invalid_head(&self, err: &WireError, response: ErrorResponse) -> Option<ErrorResponse> {
        use crate::wire::AuthorityError as A;
        // `resolve-unchecked-names`: the malformed name goes to the resolver, which fails.
        if self.has(Fault::ResolveUncheckedNames)
            && matches!(err, WireError::Authority(A::InvalidRegName | A::PercentEncoded))
        {
            return Some(ErrorResponse::new(502, ErrorType::DnsError, "DNS lookup failure for the target"));
        }
        (!self.has(Fault::SilentCloseOnBadRequest)).then_some(response)
    }

    fn keep_reading_after_refusal(&self) -> bool {
        self.has(Fault::NoCloseAfterReject)
    }

    fn before_decision(&self, req: &Request, sni: Option<&str>) -> Option<Interjection> {
        let refuse = |status: u16, error: ErrorType, details: String| {
            Some(Interjection::Refuse(ErrorResponse::new(status, error, details)))
        };
        let bad = ErrorType::HttpRequestError;
        if self.has(Fault::RejectLeadingEmptyLine) && req.leading_empty_line {
            return refuse(400, bad, "empty line before the request-line".into());
        }
        if self.has(Fault::SplitAtFirstColon) && req.target.starts_with('[') {
            return refuse(400, bad, "invalid port".into());
        }
        if self.has(Fault::RejectUnknownMinorVersion) && req.version.minor > 1 {
            return refuse(505, bad, "HTTP version not supported".into());
        }
        if self.has(Fault::HostRequiredForHttp10) && req.host_field.is_none() {
            return refuse(400, bad, "no Host".into());
        }
        if self.has(Fault::HostPortRequired) && matches!(req.host_field, Some((_, None))) {
            return refuse(400, bad, "Host without a port".into());
        }
        if self.has(Fault::SwitchProtocolsOnUpgrade) && req.upgrade {
            let bytes = b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\r\n";
            return Some(Interjection::WriteAndClose { bytes, stall: false });
        }
        if self.has(Fault::Expect100Stalls) && req.expect_100 {
            let bytes = b"HTTP/1.1 100 Continue\r\n\r\n";
            return Some(Interjection::WriteAndClose { bytes, stall: true });
        }
        let sni = sni?;
        if sni.trim_end_matches('.').to_ascii_lowercase() == req.host.name_key() {
            return None;
        }
        if self.has(Fault::SniMustMatchTarget) {
            let details = format!(
                "Hostname {sni} provided via SNI and hostname {} provided via HTTP are different",
                req.host.as_host()
            );
            return refuse(400, bad, details);
        }
        if self.has(Fault::Answer421OnSniMismatch) {
            return refuse(421, bad, "SNI does not match the request".into());
        }
        None
    }

    fn auth_check(&self, req: &Request, check: AuthCheck) -> AuthCheck {
        if self.has(Fault::RejectValidCredentials) && check == AuthCheck::Ok {
            return AuthCheck::Invalid;
        }
        if self.has(Fault::AcceptAnyCredentials) && check == AuthCheck::Invalid {
            return AuthCheck::Ok;
        }
        if self.has(Fault::BasicSchemeCaseSensitive) && check == AuthCheck::Ok && !req.auth_scheme_exact {
            return AuthCheck::Invalid;
        }
        check
    }

    fn auth_refusal(&self, refusal: ErrorResponse, challenge: String) -> ErrorResponse {
        if self.has(Fault::Auth401) {
            return ErrorResponse::new(401, ErrorType::ProxyInternalResponse, "authentication required")
                .with_field("WWW-Authenticate", challenge);
        }
        if self.has(Fault::ProxyAuthenticateMissing) {
            return refusal;
        }
        refusal.with_field("Proxy-Authenticate", challenge)
    }

    fn destination(&self, req: &Request, sni: Option<&str>, target: Destination) -> Destination {
        if self.has(Fault::RouteByHost)
            && let Some((host, port)) = &req.host_field
        {
            return Destination { host: host.clone(), port: port.unwrap_or(target.port) };
        }
        if self.has(Fault::RouteBySni)
            && let Some(name) = sni
        {
            let host = match name.parse::<std::net::IpAddr>() {
                Ok(ip) => OwnedHost::Ip(ip),
                Err(_) => OwnedHost::Name(name.to_owned()),
            };
            return Destination { host, port: target.port };
        }
        if self.has(Fault::DialNextPort) {
            return Destination { port: target.port.wrapping_add(1), ..target };
        }
        target
    }

    fn refuse_port(&self, port: u16) -> Option<ErrorResponse> {
        (self.has(Fault::SslPortsOnly) && !matches!(port, 443 | 563))
            .then(|| ErrorResponse::new(403, ErrorType::HttpRequestDenied, format!("port {port} is not an SSL port")))
    }

    fn enforce_policy(&self) -> bool {
        !self.has(Fault::IgnorePolicy)
    }

    fn detect_loops(&self) -> bool {
        !self.has(Fault::NoLoopDetection)
    }

    fn respond_before_connect(&self) -> bool {
        self.has(Fault::RespondBeforeConnect)
    }

    fn success_head(&self) -> &'static [u8] {
        if self.has(Fault::NoSpaceAfterStatus) {
            return b"HTTP/1.1 200\r\n\r\n";
        }
        if self.has(Fault::ExtraCrlfAfter2xx) {
            return b"HTTP/1.1 200 Connection Established\r\n\r\n\r\n";
        }
        if self.has(Fault::Http10StatusLine) {
            return b"HTTP/1.0 200 Connection Established\r\nProxy-agent: reference-proxy\r\n\r\n";
        }
        if self.has(Fault::ContentLengthIn2xx) {
            return b"HTTP/1.1 200 Connection Established\r\nContent-Length: 0\r\n\r\n";
        }
        if self.has(Fault::TransferEncodingIn2xx) {
            return b"HTTP/1.1 200 Connection Established\r\nTransfer-Encoding: chunked\r\n\r\n";
        }
        crate::response::ESTABLISHED
    }

    fn forward_early_data(&self) -> bool {
        !self.has(Fault::DropEarlyData)
    }

    fn relay(&self) -> RelayFaults {
        RelayFaults {
            lose_last_upstream_bytes: self.has(Fault::LoseLastUpstreamBytes),
            lose_last_client_bytes: self.has(Fault::LoseLastClientBytes),
            corrupt: self.has(Fault::CorruptTunnelBytes),
            half_close_closes_both: self.has(Fault::HalfCloseClosesBoth),
            no_close_notify: self.has(Fault::NoCloseNotify),
        }
    }

    fn refusal(&self, mut response: ErrorResponse) -> ErrorResponse {
        if self.has(Fault::ProxyStatusGeneric) {
            response.error = ErrorType::ProxyInternalError;
        }
        response
    }

    fn tls_config(&self, tls: Arc<rustls::ServerConfig>) -> Arc<rustls::ServerConfig> {
        if !self.has(Fault::AlpnSelectsH2c) {
            return tls;
        }
        let mut c = (*tls).clone();
        c.alpn_protocols = vec![b"h2c".to_vec(), b"http/1.1".to_vec()];
        Arc::new(c)
    }

    fn stall_tls_handshake(&self) -> bool {
        self.has(Fault::StallTlsHandshake)
    }

    fn refuse_without_alpn(&self) -> bool {
        self.has(Fault::AlpnRequired)
    }

    fn stall_everyone(&self, req: &Request) -> Option<std::time::Duration> {
        (self.has(Fault::StallOnLongField) && req.longest_value >= 4096).then_some(std::time::Duration::from_secs(3))
    }

    fn parent_request(&self, req: &Request, mut request: ParentRequest) -> ParentRequest {
        let named = |name: &'static str| move |(n, _): &&(String, String)| n.eq_ignore_ascii_case(name);
        if self.has(Fault::ForwardClientCredentials) {
            request.fields.retain(|(n, _)| !n.eq_ignore_ascii_case("proxy-authorization"));
            request.fields.extend(req.fields.iter().filter(named("proxy-authorization")).cloned());
        }
        if self.has(Fault::ForwardHopByHopFields) {
            let skip = ["host", "via", "proxy-authorization"];
            request
                .fields
                .extend(req.fields.iter().filter(|(n, _)| !skip.iter().any(|s| n.eq_ignore_ascii_case(s))).cloned());
        }
        if self.has(Fault::NoVia) {
            request.fields.retain(|(n, _)| !n.eq_ignore_ascii_case("via"));
        }
        request
    }

    fn resolve_before_parent(&self) -> bool {
        self.has(Fault::ReResolveTarget)
    }

    fn retry_parent(&self) -> bool {
        self.has(Fault::RetryParentConnect)
    }

    fn blind_parent_answer(&self) -> bool {
        self.has(Fault::TunnelParentAnswer)
    }

    fn keep_parent_proxy_status(&self) -> bool {
        !self.has(Fault::DropParentProxyStatus)
    }

    fn h2(&self) -> crate::hooks::H2Faults {
        crate::hooks::H2Faults {
            drop_end_stream: self.has(Fault::H2DropEndStream),
            reset_as_end_stream: self.has(Fault::H2ResetAsEndStream),
            client_reset_as_fin: self.has(Fault::H2ClientResetAsFin),
            close_after_refusal: self.has(Fault::H2CloseAfterRefusal),
            shared_window: self.has(Fault::H2SharedWindow),
            trailers_as_end_stream: self.has(Fault::H2TrailersAsEndStream),
        }
    }

    fn h2_client_io(&self, io: crate::hooks::H2Io) -> crate::hooks::H2Io {
        let scheme_path = self.has(Fault::H2AcceptSchemePath);
        let connection = self.has(Fault::H2AcceptConnectionFields);
        let by_host = self.has(Fault::RouteByHost);
        let lenient = self.has(Fault::H2LenientFields);
        let extended = self.has(Fault::H2ExtendedConnectTunnels);
        let window = self.has(Fault::H2IgnoreFlowControl).then_some(16 * 1024 * 1024);
        if !scheme_path && !connection && !by_host && !lenient && !extended && window.is_none() {
            return io;
        }
        Box::new(
            h2_filter::HeaderFilter::new(io, move |fields: h2_filter::Fields| {
                let has_protocol = fields.iter().any(|(n, _)| n == b":protocol");
                let ignored = |name: &[u8], value: &[u8]| {
                    (scheme_path && (name == b":scheme" || name == b":path"))
                        || (extended && has_protocol && matches!(name, b":protocol" | b":scheme" | b":path"))
                        || (connection
                            && (h2_filter::CONNECTION_SPECIFIC.contains(&name)
                                || (name == b"te" && value != b"trailers")))
                };
                let invalid = |value: &[u8]| value.iter().any(|b| matches!(b, b'\r' | b'\n' | 0));
                let mut fields: h2_filter::Fields = fields
                    .into_iter()
                    .filter(|(n, v)| !(ignored(n, v) || (lenient && invalid(v))))
                    .map(|(n, v)| if lenient { (n.to_ascii_lowercase(), v) } else { (n, v) })
                    .collect();
                // route-by-host: a stream without :authority goes where its Host field says.
                if by_host
                    && !fields.iter().any(|(n, _)| n == b":authority")
                    && let Some((_, host)) = fields.iter().find(|(n, _)| n == b"host")
                {
                    let authority = (b":authority".to_vec(), host.clone());
                    fields.insert(1.min(fields.len()), authority);
                }
                fields
            })
            .with_window(window),
        )
    }
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
            assert_eq!(f.name().parse::<Fault>(), Ok(*f));
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
            (Fault::AcceptWsBeforeFirstField, "CONNECT o.test:1 HTTP/1.1\r\n X: y\r\nHost: o.test\r\n\r\n", "o.test:1"),
            (
                Fault::AcceptWsBeforeFirstField,
                "CONNECT o.test:1 HTTP/1.1\r\n Host: p.test:2\r\nHost: o.test:1\r\n\r\n",
                "p.test:2",
            ),
            (Fault::SkipMalformedFieldLines, "CONNECT o.test:1 HTTP/1.1\r\nHost: o.test\r\njunk\r\n\r\n", "o.test:1"),
            (
                Fault::TunnelDespiteFramingFields,
                "CONNECT o.test:1 HTTP/1.1\r\nHost: o.test\r\nContent-Length: 5\r\n\r\n",
                "o.test:1",
            ),
        ];
        for (fault, head, want) in cases {
            assert!(FaultHooks::new(vec![fault]).relaxes(&parse(head.as_bytes()).unwrap_err()), "{fault}: {head:?}");
            assert_eq!(relaxed(fault, head).as_deref(), Some(want), "{fault}: {head:?}");
        }
        // A bare CR becomes a line end: the head ends early, and the rest is left over.
        let head = b"CONNECT o.test:1 HTTP/1.1\r\nHost: o.test\r\nX: a\r\rB: c\r\n\r\n";
        let err = parse(head).unwrap_err();
        let out = relax_head(&[Fault::BareCrEndsLine], head, &err).unwrap();
        assert!(out.starts_with(b"CONNECT o.test:1 HTTP/1.1\r\nHost: o.test\r\nX: a\r\n\r\nB: c"));
        assert_eq!(atoi_port("+443x"), 443);
        let bad = || ErrorResponse::new(400, ErrorType::HttpRequestError, "");
        assert!(FaultHooks::new(vec![Fault::SilentCloseOnBadRequest]).invalid_head(&err, bad()).is_none());
        assert!(crate::hooks::Correct.invalid_head(&err, bad()).is_some());
    }
}
