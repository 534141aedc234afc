//! Byte templates with placeholders, parsed (and so validated) when a scenario loads, expanded per run.
//!
//! Placeholders:
//! - `{echo}` `{echo2}` `{silent}` `{banner}` `{sink}` `{closed}` `{tls}` `{http}`: the origin as
//!   `127.0.0.1:PORT`; add `.port`, `.v6` (`[::1]:PORT`), `.name` (`localhost:PORT`), `.host` (the address
//!   alone) or `.port+N` / `.port-N` (the port plus or minus N as a decimal, e.g. `{echo.port+65536}`: a port
//!   that wraps onto the origin in 16 bits).
//! - `{proxy}` (the proxy authority from its URL), `{proxy.name}`, `{proxy.port}`, `{proxy.addr}` (IP:port).
//! - `{target}`: the scenario's target; `{auth}`: a `Proxy-Authorization` line (with CRLF) when credentials
//!   are configured, else nothing; `{auth.basic}`: just the base64 credentials (for hand-built lines);
//!   `{token}`: a string unique to this scenario run; `{protocol}`: the client's protocol version as a Via
//!   received-protocol, "1.1" (plain, tls) or "2" (h2, h2c).
//! - `{hex:16 03 01}`: raw bytes; `{repeat:N:text}`: `text` N times. `{{` and `}}` are literal braces.

use std::fmt;

use super::step::OriginKind;

/// Upper bound on the size of one expanded template (a `{repeat}` cannot make more).
pub const MAX_EXPANDED: usize = 16 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddrForm {
    /// `127.0.0.1:PORT`
    V4,
    /// `[::1]:PORT`
    V6,
    /// `localhost:PORT`
    Name,
    /// `PORT`
    Port,
    /// `PORT+N` or `PORT-N` as a decimal number (may be negative or above 65535): a port that a proxy reading
    /// it into 16 or 32 bits wraps onto this origin, so a wrapped dial is seen at the origin.
    PortOffset(i128),
    /// The origin's address without a port (`127.0.0.1`, or the address the origin set was given; an IPv6
    /// address in brackets, so `{x.host}:{x.port}` is an authority).
    Host,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyPart {
    Authority,
    Name,
    Port,
    Addr,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Lit(Vec<u8>),
    Origin(OriginKind, AddrForm),
    Proxy(ProxyPart),
    Target,
    Auth,
    /// The base64 credentials alone (`{auth.basic}`), for hand-built Proxy-Authorization lines.
    AuthBasic,
    Token,
    Protocol,
    Repeat(usize, Vec<u8>),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Template(pub Vec<Piece>);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError(pub String);

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Values the placeholders expand to in one scenario run.
pub trait Env {
    fn origin(&self, kind: OriginKind, form: &AddrForm) -> String;
    fn proxy(&self, part: &ProxyPart) -> String;
    fn target(&self) -> Vec<u8>;
    fn auth_line(&self) -> Option<String>;
    fn token(&self) -> String;
    /// The protocol version of the client's requests as a Via received-protocol (RFC 9110 §7.6.3): "1.1", or
    /// "2" on the HTTP/2 transports (`{protocol}`).
    fn protocol(&self) -> &'static str {
        "1.1"
    }
}

impl Template {
    pub fn parse(s: &str) -> Result<Template, TemplateError> {
        let mut pieces = Vec::new();
        let mut lit = Vec::new();
        let b = s.as_bytes();
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'{' if b.get(i + 1) == Some(&b'{') => {
                    lit.push(b'{');
                    i += 2;
                }
                b'}' if b.get(i + 1) == Some(&b'}') => {
                    lit.push(b'}');
                    i += 2;
                }
                b'}' => {
                    return Err(TemplateError(format!("unmatched '}}' at byte {i} (write '}}}}' for a brace)")));
                }
                b'{' => {
                    let end = s[i..].find('}').ok_or_else(|| {
                        TemplateError(format!("unclosed '{{' at byte {i} (write '{{{{' for a brace)"))
                    })?;
                    let inner = &s[i + 1..i + end];
                    if !lit.is_empty() {
                        pieces.push(Piece::Lit(std::mem::take(&mut lit)));
                    }
                    pieces.push(parse_placeholder(inner)?);
                    i += end + 1;
                }
                c => {
                    lit.push(c);
                    i += 1;
                }
            }
        }
        if !lit.is_empty() {
            pieces.push(Piece::Lit(lit));
        }
        Ok(Template(pieces))
    }

    /// Whether the template names this origin (so the run knows which origins a scenario uses).
    pub fn origins(&self) -> impl Iterator<Item = OriginKind> + '_ {
        self.0.iter().filter_map(|p| match p {
            Piece::Origin(k, _) => Some(*k),
            _ => None,
        })
    }

    pub fn uses_target(&self) -> bool {
        self.0.iter().any(|p| matches!(p, Piece::Target))
    }

    pub fn expand(&self, env: &dyn Env) -> Vec<u8> {
        let mut out = Vec::new();
        for p in &self.0 {
            match p {
                Piece::Lit(b) => out.extend_from_slice(b),
                Piece::Origin(k, f) => out.extend_from_slice(env.origin(*k, f).as_bytes()),
                Piece::Proxy(part) => out.extend_from_slice(env.proxy(part).as_bytes()),
                Piece::Target => out.extend_from_slice(&env.target()),
                Piece::Auth => {
                    if let Some(line) = env.auth_line() {
                        out.extend_from_slice(line.as_bytes());
                        out.extend_from_slice(b"\r\n");
                    }
                }
                Piece::AuthBasic => {
                    if let Some(line) = env.auth_line() {
                        let token = line.rsplit(' ').next().unwrap_or_default();
                        out.extend_from_slice(token.as_bytes());
                    }
                }
                Piece::Token => out.extend_from_slice(env.token().as_bytes()),
                Piece::Protocol => out.extend_from_slice(env.protocol().as_bytes()),
                Piece::Repeat(n, text) => {
                    for _ in 0..*n {
                        out.extend_from_slice(text);
                    }
                }
            }
        }
        out
    }
}

fn parse_placeholder(inner: &str) -> Result<Piece, TemplateError> {
    if let Some(rest) = inner.strip_prefix("hex:") {
        let digits: String = rest.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        if !digits.len().is_multiple_of(2) || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(TemplateError(format!("{{hex:...}} needs pairs of hex digits, got {rest:?}")));
        }
        let bytes = (0..digits.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).expect("checked hex"))
            .collect();
        return Ok(Piece::Lit(bytes));
    }
    if let Some(rest) = inner.strip_prefix("repeat:") {
        let (n, text) = rest
            .split_once(':')
            .ok_or_else(|| TemplateError(format!("{{repeat:N:text}} expected, got {{{inner}}}")))?;
        let n: usize = n.parse().map_err(|_| TemplateError(format!("{{repeat:N:text}}: {n:?} is not a count")))?;
        if text.is_empty() || n.saturating_mul(text.len()) > MAX_EXPANDED {
            return Err(TemplateError(format!(
                "{{repeat}} must repeat non-empty text to at most {MAX_EXPANDED} bytes"
            )));
        }
        let text = text.replace("\\r", "\r").replace("\\n", "\n");
        return Ok(Piece::Repeat(n, text.into_bytes()));
    }
    let (name, part) = match inner.split_once('.') {
        Some((n, p)) => (n, Some(p)),
        None => (inner, None),
    };
    let unknown = || {
        TemplateError(format!(
            "unknown placeholder {{{inner}}}; known: origins (echo, echo2, silent, banner, sink, closed, tls, unanswered, \
             http, with .port/.v6/.name/.host/.port+N/.port-N), proxy (.name/.port/.addr), target, auth (.basic), token, hex:.., \
             repeat:N:text"
        ))
    };
    if let Some(kind) = OriginKind::from_name(name) {
        let form = match part {
            None => AddrForm::V4,
            Some("port") => AddrForm::Port,
            Some("v6") => AddrForm::V6,
            Some("name") => AddrForm::Name,
            Some("host") => AddrForm::Host,
            Some(p) if p.starts_with("port+") || p.starts_with("port-") => {
                // Bounded, so that expanding can never overflow (2^40 covers every wrap worth testing).
                let n: i128 = p[5..].parse().ok().filter(|n: &i128| *n <= 1 << 40).ok_or_else(unknown)?;
                AddrForm::PortOffset(if p.as_bytes()[4] == b'-' { -n } else { n })
            }
            Some(_) => return Err(unknown()),
        };
        return Ok(Piece::Origin(kind, form));
    }
    Ok(match (name, part) {
        ("proxy", None) => Piece::Proxy(ProxyPart::Authority),
        ("proxy", Some("name")) => Piece::Proxy(ProxyPart::Name),
        ("proxy", Some("port")) => Piece::Proxy(ProxyPart::Port),
        ("proxy", Some("addr")) => Piece::Proxy(ProxyPart::Addr),
        ("target", None) => Piece::Target,
        ("auth", None) => Piece::Auth,
        ("auth", Some("basic")) => Piece::AuthBasic,
        ("token", None) => Piece::Token,
        ("protocol", None) => Piece::Protocol,
        _ => return Err(unknown()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct E;
    impl Env for E {
        fn origin(&self, kind: OriginKind, form: &AddrForm) -> String {
            match form {
                AddrForm::V4 => format!("127.0.0.1:{}", 1000 + kind as u16),
                AddrForm::Port => format!("{}", 1000 + kind as u16),
                AddrForm::V6 => "[::1]:1".into(),
                AddrForm::Name => "localhost:1".into(),
                AddrForm::Host => "127.0.0.1".into(),
                AddrForm::PortOffset(n) => (1000 + kind as i128 + n).to_string(),
            }
        }
        fn proxy(&self, _: &ProxyPart) -> String {
            "proxy.test:8443".into()
        }
        fn target(&self) -> Vec<u8> {
            b"T:1".to_vec()
        }
        fn auth_line(&self) -> Option<String> {
            Some("Proxy-Authorization: Basic eDp5".into())
        }
        fn token(&self) -> String {
            "tok".into()
        }
    }

    #[test]
    fn expands_every_kind() {
        let t = Template::parse("CONNECT {echo} {target}\r\n{auth}{{x}}{hex:00 ff}{repeat:2:ab}{token}{auth.basic}")
            .unwrap();
        assert_eq!(
            t.expand(&E),
            b"CONNECT 127.0.0.1:1000 T:1\r\nProxy-Authorization: Basic eDp5\r\n{x}\x00\xffababtokeDp5".to_vec()
        );
        assert_eq!(t.origins().collect::<Vec<_>>(), vec![OriginKind::Echo]);
        let wrap = Template::parse("{echo.port+65536} {echo.port-65536} {echo.host}").unwrap();
        assert_eq!(wrap.expand(&E), b"66536 -64536 127.0.0.1".to_vec());
    }

    #[test]
    fn rejects_bad_placeholders() {
        for bad in [
            "{ecko}",
            "{echo.port6}",
            "{echo.port+x}",
            "{echo.port*2}",
            "{hex:1}",
            "{repeat:x:a}",
            "{open",
            "close}",
            "{repeat:99999999:ab}",
        ] {
            assert!(Template::parse(bad).is_err(), "{bad}");
        }
    }
}
