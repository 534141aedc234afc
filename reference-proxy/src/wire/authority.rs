//! `uri-host ":" port` (RFC 9112 §3.2.3, RFC 3986 §3.2), strictly: one spelling per destination.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use super::chars::AuthorityMasks;
use super::error::AuthorityError;

/// The host part of an authority, borrowed from the request where it is a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Host<'a> {
    /// A DNS name, exactly as sent (ASCII; case preserved).
    Name(&'a str),
    Ipv4(Ipv4Addr),
    Ipv6(Ipv6Addr),
}

impl fmt::Display for Host<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(n) => f.write_str(n),
            Host::Ipv4(a) => write!(f, "{a}"),
            Host::Ipv6(a) => write!(f, "[{a}]"),
        }
    }
}

/// A CONNECT destination: host and mandatory port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Authority<'a> {
    pub host: Host<'a>,
    pub port: u16,
}

impl fmt::Display for Authority<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// A Host header field value: `uri-host [ ":" port ]` (RFC 9112 §3.2, RFC 9110 §7.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostField<'a> {
    pub host: Host<'a>,
    /// `None` when the port (or the colon) is absent; RFC 3986 allows an empty port, read here as absent.
    pub port: Option<u16>,
}

/// A validated host before any conversion to text: a name is the first `len` octets of the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RawHost {
    Name(usize),
    Ipv4(Ipv4Addr),
    Ipv6(Ipv6Addr),
}

impl RawHost {
    pub(super) fn to_host(self, input: &[u8]) -> Host<'_> {
        match self {
            RawHost::Name(len) => Host::Name(super::chars::ascii_str(&input[..len])),
            RawHost::Ipv4(a) => Host::Ipv4(a),
            RawHost::Ipv6(a) => Host::Ipv6(a),
        }
    }
}

/// Parses a CONNECT request-target in authority-form. The port is mandatory and in 1..=65535.
pub fn parse_authority(input: &[u8]) -> Result<Authority<'_>, AuthorityError> {
    let (host, port) = authority_raw(input)?;
    Ok(Authority { host: host.to_host(input), port })
}

/// Parses a Host header field value. The port is optional; when present it must be a valid port number.
pub fn parse_host_field(input: &[u8]) -> Result<HostField<'_>, AuthorityError> {
    let (host, port) = host_field_raw(input)?;
    Ok(HostField { host: host.to_host(input), port })
}

/// [`parse_authority`] without converting the name to text.
pub(super) fn authority_raw(input: &[u8]) -> Result<(RawHost, u16), AuthorityError> {
    authority_raw_within(input, input.len())
}

/// [`authority_raw`] of `rest[..n]`; the bytes after it may be read (never parsed) to scan in whole blocks.
#[inline]
pub(super) fn authority_raw_within(rest: &[u8], n: usize) -> Result<(RawHost, u16), AuthorityError> {
    match authority_fast_classified(rest, n, None) {
        Some(fast) => Ok(fast),
        None => authority_raw_slow(&rest[..n]),
    }
}

/// The usual valid targets, `reg-name:port` and `[IPv6]:port`, without rule-by-rule checks: `None` for
/// anything else, which only the full parser may judge. `masks`: the byte classes of `rest[..n]`, when the
/// caller has them already.
#[inline]
pub(super) fn authority_fast_classified(
    rest: &[u8],
    n: usize,
    masks: Option<AuthorityMasks>,
) -> Option<(RawHost, u16)> {
    let input = &rest[..n];
    let fast = match input {
        [b'[', ..] => ipv6_and_port(input).and_then(|(addr, port)| Some((RawHost::Ipv6(addr), parse_port(port).ok()?))),
        _ if n > 64 => None,
        _ => name_authority(input, masks.unwrap_or_else(|| super::chars::authority_masks(rest, n))),
    };
    if let Some(fast) = fast {
        debug_assert_eq!(Ok(fast), authority_raw_slow(input), "fast path disagrees on {input:?}");
    }
    fast
}

fn authority_raw_slow(input: &[u8]) -> Result<(RawHost, u16), AuthorityError> {
    let (host, port) = split(input)?;
    Ok((host, parse_port(port.ok_or(AuthorityError::MissingPort)?)?))
}

/// `[IPv6]:port` with a valid address: the address and the port text, not yet checked; `None` for anything else.
#[inline]
fn ipv6_and_port(input: &[u8]) -> Option<(Ipv6Addr, &[u8])> {
    let [b'[', rest @ ..] = input else { return None };
    let close = memchr::memchr(b']', rest)?;
    let addr = parse_ipv6(&rest[..close])?;
    match &rest[close + 1..] {
        [b':', port @ ..] => Some((addr, port)),
        _ => None,
    }
}

/// The usual target, a valid `reg-name:port` of at most 64 bytes, from one vector pass over its bytes.
/// `None` for anything else (addresses, errors, long names), which the rule-by-rule path then handles.
#[inline]
fn name_authority(input: &[u8], m: AuthorityMasks) -> Option<(RawHost, u16)> {
    // Exactly one colon, with a host before it and the port after it.
    if m.colon == 0 || m.colon & (m.colon - 1) != 0 {
        return None;
    }
    let colon = m.colon.trailing_zeros() as usize;
    let below = |i: usize| if i >= 64 { u64::MAX } else { (1u64 << i) - 1 };
    let host = below(colon);
    if colon == 0 || m.name & host != host {
        return None;
    }
    let port = parse_port(&input[colon + 1..]).ok()?;
    // One trailing dot (a fully qualified name) is allowed; empty labels are not.
    let body_len = if m.dot & (1 << (colon - 1)) != 0 { colon - 1 } else { colon };
    let body = below(body_len);
    let dots = m.dot & body;
    let empty_label = body_len == 0 || dots & 1 != 0 || dots & (dots >> 1) != 0 || dots >> (body_len - 1) != 0;
    // All digits and dots may be an IPv4 address: left to the full parser.
    if empty_label || (m.digit | m.dot) & host == host {
        return None;
    }
    // WHATWG URL's rule: a name ending in a numeric label is an IPv4 address in some other spelling.
    let last_label = if dots == 0 { 0 } else { 64 - dots.leading_zeros() as usize };
    let last = body & !below(last_label);
    if m.digit & last == last || input[last_label] == b'0' {
        return None;
    }
    Some((RawHost::Name(colon), port))
}

/// [`parse_host_field`] without converting the name to text.
pub(super) fn host_field_raw(input: &[u8]) -> Result<(RawHost, Option<u16>), AuthorityError> {
    let (host, port) = split(input)?;
    let port = match port {
        None | Some(b"") => None,
        Some(p) => Some(parse_port(p)?),
    };
    Ok((host, port))
}

/// Splits into a parsed host and the raw port text after the colon (None when there is no colon).
fn split(input: &[u8]) -> Result<(RawHost, Option<&[u8]>), AuthorityError> {
    // Fast path for the common `name`, `name:digits`, `ipv4:digits` shapes; the rest names its error below.
    let (host, port) = match input.iter().rposition(|&b| b == b':') {
        Some(colon) => (&input[..colon], Some(&input[colon + 1..])),
        None => (input, None),
    };
    if port.is_none_or(|p| p.iter().all(u8::is_ascii_digit))
        && let Ok(host) = parse_host_name_or_ipv4(host)
    {
        return Ok((host, port));
    }
    // Fast path for a valid `[IPv6]:digits`.
    if let Some((addr, port)) = ipv6_and_port(input)
        && port.iter().all(u8::is_ascii_digit)
    {
        return Ok((RawHost::Ipv6(addr), Some(port)));
    }
    if input.is_empty() {
        return Err(AuthorityError::Empty);
    }
    if input.contains(&b'@') {
        return Err(AuthorityError::Userinfo);
    }
    if input.iter().any(|b| matches!(b, b'/' | b'?' | b'#')) {
        return Err(AuthorityError::TrailingGarbage);
    }
    if input[0] == b'[' {
        let close = memchr::memchr(b']', input).ok_or(AuthorityError::UnclosedBracket)?;
        let inside = &input[1..close];
        let host = parse_ip_literal(inside)?;
        return match &input[close + 1..] {
            [] => Ok((host, None)),
            [b':', port @ ..] => Ok((host, Some(port))),
            _ => Err(AuthorityError::TrailingGarbage),
        };
    }
    let (host, port) = match memchr::memchr(b':', input) {
        None => (input, None),
        Some(colon) => {
            let rest = &input[colon + 1..];
            if rest.contains(&b':') {
                // `::1:443` or `host:443:443`: say which, since the first is a common client mistake.
                let last = memchr::memrchr(b':', input).unwrap_or(colon);
                if is_ipv6(&input[..last]) || is_ipv6(input) {
                    return Err(AuthorityError::UnbracketedIpv6);
                }
                return Err(AuthorityError::InvalidPort);
            }
            (&input[..colon], Some(rest))
        }
    };
    Ok((parse_host_name_or_ipv4(host)?, port))
}

fn is_ipv6(text: &[u8]) -> bool {
    parse_ipv6(text).is_some()
}

/// RFC 3986 §3.2.2 IPv6address (the RFC 4291 text forms): eight h16 groups, one `::` standing for one or more
/// zero groups, and an optional dotted-decimal IPv4 address as the last 32 bits. The fuzzer checks it against
/// the standard library's parser.
pub fn parse_ipv6(text: &[u8]) -> Option<Ipv6Addr> {
    let n = text.len();
    // The groups are shifted into `bits` as they come; at `::` the groups so far move to `head`, to be placed
    // above the zero groups at the end.
    let mut bits = 0u128;
    let mut count = 0;
    let mut head = None;
    let mut i = 0;
    if text.first() == Some(&b':') {
        if text.get(1) != Some(&b':') {
            return None;
        }
        head = Some((0u128, 0usize));
        i = 2;
        if i == n {
            return Some(Ipv6Addr::UNSPECIFIED);
        }
    }
    loop {
        let start = i;
        let mut value = 0u128;
        while i < n && i - start < 5 {
            let digit = HEX[text[i] as usize];
            if digit > 15 {
                break;
            }
            value = (value << 4) | u128::from(digit);
            i += 1;
        }
        if text.get(i) == Some(&b'.') {
            // An embedded IPv4 address: the last 32 bits.
            if count > 6 {
                return None;
            }
            bits = (bits << 32) | u128::from(u32::from(parse_dotted_decimal(&text[start..])?));
            count += 2;
            break;
        }
        let digits = i - start;
        if digits == 0 || digits > 4 || count == 8 {
            return None;
        }
        bits = (bits << 16) | value;
        count += 1;
        if i == n {
            break;
        }
        if text[i] != b':' {
            return None;
        }
        i += 1;
        match text.get(i) {
            None => return None,
            Some(b':') if head.is_none() => {
                head = Some((bits, count));
                bits = 0;
                i += 1;
                if i == n {
                    break;
                }
            }
            Some(b':') => return None,
            Some(_) => {}
        }
    }
    match head {
        None if count == 8 => Some(Ipv6Addr::from(bits)),
        // The groups before `::` go to the top; `count` includes them, and at most 7 groups may be written.
        Some((high, before)) if count <= 7 => {
            let high = if before == 0 { 0 } else { high << (16 * (8 - before)) };
            Some(Ipv6Addr::from(high | bits))
        }
        _ => None,
    }
}

/// Hex digit values; 0xff for every other byte.
static HEX: [u8; 256] = {
    let mut t = [0xffu8; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        t[i] = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => 0xff,
        };
        i += 1;
    }
    t
};

fn parse_ip_literal(inside: &[u8]) -> Result<RawHost, AuthorityError> {
    if inside.contains(&b'%') {
        return Err(AuthorityError::ZoneId);
    }
    if matches!(inside.first(), Some(b'v' | b'V')) {
        return Err(AuthorityError::IpvFuture);
    }
    if let Some(addr) = parse_ipv6(inside) {
        return Ok(RawHost::Ipv6(addr));
    }
    if inside.iter().all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.') && inside.contains(&b':') {
        return Err(AuthorityError::InvalidIpv6);
    }
    Err(AuthorityError::BracketedNotIpv6)
}

#[inline]
fn parse_port(port: &[u8]) -> Result<u16, AuthorityError> {
    // One pass for the usual 1 to 5 digits without a leading zero; anything else names its error below.
    if let 1..=5 = port.len()
        && (port[0] != b'0' || port.len() == 1)
    {
        let (mut value, mut digits) = (0u32, true);
        for &d in port {
            let x = d.wrapping_sub(b'0');
            digits &= x < 10;
            value = value * 10 + u32::from(x);
        }
        if digits && value != 0 && value <= 65535 {
            return Ok(value as u16);
        }
    }
    parse_port_slow(port)
}

#[cold]
fn parse_port_slow(port: &[u8]) -> Result<u16, AuthorityError> {
    if port.is_empty() {
        return Err(AuthorityError::EmptyPort);
    }
    if !port.iter().all(u8::is_ascii_digit) {
        return Err(AuthorityError::InvalidPort);
    }
    if port.len() > 1 && port[0] == b'0' {
        return Err(AuthorityError::PortLeadingZero);
    }
    if port.len() > 5 {
        return Err(AuthorityError::PortOutOfRange);
    }
    let value = port.iter().fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0'));
    match value {
        1..=65535 => Ok(value as u16),
        _ => Err(AuthorityError::PortOutOfRange),
    }
}

/// Byte classes for host names, as bits, so one branch-free pass can classify a whole name.
const NAME: u8 = 1; // letters, digits, `-`, `_`, `.`
const DIGIT_OR_DOT: u8 = 2;
const DOT: u8 = 4;
const PERCENT: u8 = 8;

static HOST_CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        let mut c = 0;
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.' {
            c |= NAME;
        }
        if b.is_ascii_digit() || b == b'.' {
            c |= DIGIT_OR_DOT;
        }
        if b == b'.' {
            c |= DOT;
        }
        if b == b'%' {
            c |= PERCENT;
        }
        t[i] = c;
        i += 1;
    }
    t
};

fn parse_host_name_or_ipv4(host: &[u8]) -> Result<RawHost, AuthorityError> {
    if host.is_empty() {
        return Err(AuthorityError::Empty);
    }
    // One trailing dot (a fully qualified name) is allowed; empty labels are not.
    let body = host.strip_suffix(b".").unwrap_or(host);
    // One branch-free pass: which classes every byte has, which any byte has, and whether two dots touch
    // (a leading dot counts as touching, via the initial `prev`).
    let (mut all, mut any, mut prev_dot, mut empty_label) = (u8::MAX, 0u8, DOT, false);
    for &b in body {
        let c = HOST_CLASS[b as usize];
        all &= c;
        any |= c;
        empty_label |= prev_dot & c & DOT != 0;
        prev_dot = c & DOT;
    }
    empty_label |= prev_dot != 0;
    if all & DIGIT_OR_DOT != 0
        && body.len() == host.len()
        && let Some(addr) = parse_dotted_decimal(host)
    {
        return Ok(RawHost::Ipv4(addr));
    }
    if any & PERCENT != 0 {
        return Err(AuthorityError::PercentEncoded);
    }
    if host.len() > 253 {
        return Err(AuthorityError::HostTooLong);
    }
    let long_label = body.len() > 63 && body.split(|&b| b == b'.').any(|l| l.len() > 63);
    if all & NAME == 0 || empty_label || long_label {
        return Err(AuthorityError::InvalidRegName);
    }
    let last_label = &body[body.iter().rposition(|&b| b == b'.').map_or(0, |i| i + 1)..];
    // WHATWG URL's rule: a name ending in a numeric label is an IPv4 address in some other spelling.
    let numeric = last_label.iter().all(u8::is_ascii_digit)
        || (last_label.len() > 1
            && (last_label.starts_with(b"0x") || last_label.starts_with(b"0X"))
            && last_label[2..].iter().all(u8::is_ascii_hexdigit));
    if numeric {
        return Err(AuthorityError::AmbiguousNumericHost);
    }
    Ok(RawHost::Name(host.len()))
}

/// RFC 3986 IPv4address: four dec-octets, no leading zeros.
fn parse_dotted_decimal(host: &[u8]) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut parts = host.split(|&b| b == b'.');
    for octet in &mut octets {
        let part = parts.next()?;
        if part.is_empty() || part.len() > 3 || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        if part.len() > 1 && part[0] == b'0' {
            return None;
        }
        let v = part.iter().fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0'));
        *octet = u8::try_from(v).ok()?;
    }
    if parts.next().is_some() {
        return None;
    }
    Some(Ipv4Addr::from(octets))
}

#[cfg(test)]
mod tests {
    use super::*;
    use AuthorityError as E;

    fn ok(s: &str) -> Authority<'_> {
        parse_authority(s.as_bytes()).unwrap_or_else(|e| panic!("{s}: {e}"))
    }
    fn err(s: &str) -> AuthorityError {
        parse_authority(s.as_bytes()).expect_err(s)
    }

    #[test]
    fn accepts_the_three_host_kinds() {
        // RFC 9112 §3.2.3: authority-form = uri-host ":" port; RFC 3986 §3.2.2 host kinds.
        assert_eq!(ok("example.test:443").host, Host::Name("example.test"));
        assert_eq!(ok("127.0.0.1:8080"), Authority { host: Host::Ipv4(Ipv4Addr::LOCALHOST), port: 8080 });
        assert_eq!(ok("[::1]:1").host, Host::Ipv6(Ipv6Addr::LOCALHOST));
        assert_eq!(ok("[::ffff:127.0.0.1]:65535").port, 65535);
        assert_eq!(ok("localhost.:443").host, Host::Name("localhost."));
        assert_eq!(ok("a_b-c.test:443").to_string(), "a_b-c.test:443");
        assert_eq!(ok("[::1]:443").to_string(), "[::1]:443");
    }

    #[test]
    fn port_is_mandatory_and_in_range() {
        // RFC 9110 §9.3.6: no default port; empty or invalid port MUST be rejected.
        assert_eq!(err("example.test"), E::MissingPort);
        assert_eq!(err("[::1]"), E::MissingPort);
        assert_eq!(err("example.test:"), E::EmptyPort);
        assert_eq!(err("example.test:0"), E::PortOutOfRange);
        assert_eq!(err("example.test:65536"), E::PortOutOfRange);
        assert_eq!(err("example.test:99999"), E::PortOutOfRange);
        assert_eq!(err("example.test:4294967739"), E::PortOutOfRange);
        for bad in ["-1", "+443", "0x1bb", "44 3", "443a", "４４３"] {
            assert_eq!(err(&format!("example.test:{bad}")), E::InvalidPort, "{bad}");
        }
        assert_eq!(err("example.test:443:443"), E::InvalidPort);
        assert_eq!(err("example.test:0443"), E::PortLeadingZero);
    }

    #[test]
    fn no_userinfo_path_or_garbage() {
        // RFC 9112 §3.2.3 and App. C.3: userinfo is no longer allowed.
        assert_eq!(err("user:pw@example.test:443"), E::Userinfo);
        assert_eq!(err("@example.test:443"), E::Userinfo);
        for g in ["example.test:443/", "example.test:443/p", "example.test:443?q", "example.test:443#f"] {
            assert_eq!(err(g), E::TrailingGarbage, "{g}");
        }
        assert_eq!(err("[::1]443"), E::TrailingGarbage);
        assert_eq!(err("example.test:443;x"), E::InvalidPort);
    }

    #[test]
    fn ip_literals_are_strict() {
        // RFC 3986 §3.2.2: only IPv6/IPvFuture in brackets; RFC 6874 zone ids are not in RFC 9112's grammar.
        assert_eq!(err("[fe80::1%25eth0]:443"), E::ZoneId);
        assert_eq!(err("[fe80::1%eth0]:443"), E::ZoneId);
        assert_eq!(err("[v1.x]:443"), E::IpvFuture);
        assert_eq!(err("[127.0.0.1]:443"), E::BracketedNotIpv6);
        assert_eq!(err("[target.test]:443"), E::BracketedNotIpv6);
        assert_eq!(err("[::1:443"), E::UnclosedBracket);
        assert_eq!(err("[::1::2]:443"), E::InvalidIpv6);
        assert_eq!(err("[::g]:443"), E::BracketedNotIpv6);
        assert_eq!(err("::1:443"), E::UnbracketedIpv6);
    }

    #[test]
    fn names_are_dns_names() {
        assert_eq!(err("exa%6Dple.test:443"), E::PercentEncoded);
        assert_eq!(err("t\u{e9}st.test:443"), E::InvalidRegName);
        assert_eq!(err("a..b:443"), E::InvalidRegName);
        assert_eq!(err("a\\b:443"), E::InvalidRegName);
        assert_eq!(err(":443"), E::Empty);
        assert_eq!(err(""), E::Empty);
        assert_eq!(err(&format!("{}.test:443", "a".repeat(64))), E::InvalidRegName);
        assert_eq!(err(&format!("{}:443", "a.".repeat(127))), E::HostTooLong);
    }

    #[test]
    fn other_ipv4_spellings_are_refused() {
        // RFC 3986 §7.4: resolvers read these as addresses; a policy checking names would be bypassed.
        for s in ["127.1:443", "0x7f.0.0.1:443", "0177.0.0.1:443", "2130706433:443", "127.0.0.01:443", "1.2.3.256:443"]
        {
            assert_eq!(err(s), E::AmbiguousNumericHost, "{s}");
        }
    }

    #[test]
    fn ipv6_text_forms_match_std() {
        // RFC 3986 §3.2.2 IPv6address / RFC 4291 §2.2 text forms.
        let cases = [
            "::",
            "::1",
            "1::",
            "1:2:3:4:5:6:7:8",
            "1:2:3:4:5:6:7::",
            "::2:3:4:5:6:7:8",
            "1::8",
            "fe80::1:2",
            "::ffff:127.0.0.1",
            "1:2:3:4:5:6:1.2.3.4",
            "::1.2.3.4",
            "1::1.2.3.4",
            "ABCD:ef01::",
            "0000:0::0",
            // Invalid ones.
            "",
            ":",
            ":::",
            "1:::2",
            "1::2::3",
            ":1::",
            "1:",
            "1:2:3:4:5:6:7",
            "1:2:3:4:5:6:7:8:9",
            "12345::",
            "::g",
            "1::1.2.3",
            "1::1.2.3.04",
            "1:2:3:4:5:6:7:1.2.3.4",
            "::1.2.3.4:1",
            "1.2.3.4",
            "::1:",
            "1:2:3:4:5:6:7:8::",
            "::1.2.3.4.5",
        ];
        for c in cases {
            assert_eq!(parse_ipv6(c.as_bytes()), c.parse::<Ipv6Addr>().ok(), "{c:?}");
        }
    }

    #[test]
    fn host_field_port_is_optional() {
        // RFC 9112 §3.2: Host = uri-host [ ":" port ].
        assert_eq!(parse_host_field(b"proxy.test").unwrap().port, None);
        assert_eq!(parse_host_field(b"proxy.test:").unwrap().port, None);
        assert_eq!(parse_host_field(b"[::1]:8443").unwrap().port, Some(8443));
        assert_eq!(parse_host_field(b"a b"), Err(E::InvalidRegName));
        assert_eq!(parse_host_field(b"u@proxy.test"), Err(E::Userinfo));
    }
}
