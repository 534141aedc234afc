//! Which scenarios mean something over HTTP/2 (transports `h2` and `h2c`), decided from the scenario alone so a
//! skip is the same in every run and says why.
//!
//! Over HTTP/2 a `connect` step becomes a CONNECT stream (`:authority` = its target, its fields as fields), the
//! tunnel bytes DATA frames, a half-close END_STREAM and a reset RST_STREAM ([`crate::client::h2`]). What has no
//! such form is HTTP/1.1 syntax: raw request bytes, the request line's version, Host field lines, a second request
//! on the connection, and the connection-specific fields that make an HTTP/2 request malformed (RFC 9113
//! §8.2.2; the `h2/` scenarios send those with `h2_headers` steps, through the harness's own frames).

use super::{
    Scenario, Step,
    step::OriginKind,
    template::{AddrForm, Env, ProxyPart, Template},
};

/// Field names that are connection-specific (RFC 9113 §8.2.2): a request carrying one is malformed in HTTP/2.
pub const CONNECTION_SPECIFIC: [&str; 6] =
    ["connection", "proxy-connection", "keep-alive", "transfer-encoding", "upgrade", "te"];

/// Why the scenario does not run over HTTP/2, or `None` when it does.
pub fn skip_reason(s: &Scenario) -> Option<String> {
    let http1 = |what: &str| Some(format!("HTTP/1.1 syntax with no HTTP/2 form: {what}"));
    // A scenario written for HTTP/2 (only h2 transports) may open several streams on its connection.
    let native = s.transports.iter().all(|t| t.is_h2());
    let mut connects = 0;
    for step in &s.steps {
        match step {
            Step::Send(_) | Step::SendSlowly(_) if connects == 0 => {
                return http1("the scenario writes its own request bytes");
            }
            Step::Expect(e) if e.outcomes().iter().any(|o| o.version.is_some() || o.status_line_spaces) => {
                return http1("the status line (an HTTP/2 response has only :status)");
            }
            Step::Connect(c) => {
                connects += 1;
                let target = c.target.as_deref().unwrap_or(&s.target);
                if let Some(why) = not_an_authority(&s.target, target) {
                    return Some(why);
                }
                if connects > 1 && !native {
                    return http1("a second request on the same connection (HTTP/1.1 connection reuse)");
                }
                if c.version.is_some() {
                    return http1("the request line's HTTP-version");
                }
                if c.host.is_some() {
                    return http1("Host field lines (HTTP/2 carries the authority in :authority)");
                }
                for f in &c.fields {
                    let Some((name, _)) = split_field(f.as_bytes()) else {
                        return http1(&format!("the field line {f:?}"));
                    };
                    if CONNECTION_SPECIFIC.contains(&name.as_str()) || name == "host" {
                        return http1(&format!(
                            "the field {name} (connection-specific: a malformed HTTP/2 request, RFC 9113 §8.2.2)"
                        ));
                    }
                }
            }
            _ => {}
        }
    }
    if !s.tls.alpn.is_empty() {
        return http1("the scenario's own ALPN offer");
    }
    None
}

/// Why the target, expanded with example ports, is not something the `h2` crate sends as `:authority`.
fn not_an_authority(scenario_target: &str, target: &str) -> Option<String> {
    let expand = |text: &str, env: &Example| Template::parse(text).ok().map(|t| t.expand(env));
    let base = expand(scenario_target, &Example(Vec::new())).unwrap_or_default();
    let bytes = expand(target, &Example(base))?;
    match http::uri::Authority::try_from(bytes.as_slice()) {
        Ok(_) => None,
        Err(_) => Some(format!(
            "the target {:?} has no HTTP/2 form the harness can send yet (the h2 crate accepts only a valid \
             :authority; an h2_headers step sends it)",
            String::from_utf8_lossy(&bytes)
        )),
    }
}

/// Placeholder values of the shape a run gives them, to tell whether a target is a valid authority.
struct Example(Vec<u8>);

impl Env for Example {
    fn origin(&self, _: OriginKind, form: &AddrForm) -> String {
        let port = 20000i128;
        match form {
            AddrForm::V4 => format!("127.0.0.1:{port}"),
            AddrForm::V6 => format!("[::1]:{port}"),
            AddrForm::Name => format!("localhost:{port}"),
            AddrForm::Port => port.to_string(),
            AddrForm::PortOffset(n) => (port + n).to_string(),
            AddrForm::Host => "127.0.0.1".into(),
        }
    }
    fn proxy(&self, part: &ProxyPart) -> String {
        match part {
            ProxyPart::Authority | ProxyPart::Addr => "127.0.0.1:3128".into(),
            ProxyPart::Name => "127.0.0.1".into(),
            ProxyPart::Port => "3128".into(),
        }
    }
    fn target(&self) -> Vec<u8> {
        self.0.clone()
    }
    fn auth_line(&self) -> Option<String> {
        None
    }
    fn token(&self) -> String {
        "ch-0".into()
    }
}

/// A "Name: value" field line as an HTTP/2 field: the name lowercased (RFC 9113 §8.2.1), the value without the
/// optional whitespace around it; `None` when the name is not a token or the line has no colon.
pub fn split_field(line: &[u8]) -> Option<(String, Vec<u8>)> {
    let colon = line.iter().position(|&b| b == b':')?;
    let name = &line[..colon];
    let tchar = |b: &u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b);
    if name.is_empty() || !name.iter().all(tchar) {
        return None;
    }
    let value = line[colon + 1..].trim_ascii();
    Some((String::from_utf8_lossy(name).to_ascii_lowercase(), value.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_split_and_lowercase() {
        assert_eq!(split_field(b"X-Test:  a b "), Some(("x-test".into(), b"a b".to_vec())));
        assert_eq!(split_field(b"Bad Name: v"), None);
        assert_eq!(split_field(b"no colon"), None);
    }

    fn scenario(steps: &str) -> Scenario {
        let text = format!(
            "id = \"x/y/z\"\ntitle = \"t\"\nsection = \"s\"\nrequirement = \"r\"\nlevel = \"observed\"\n{steps}"
        );
        toml::from_str(&text).unwrap()
    }

    #[test]
    fn http1_syntax_is_skipped_with_a_reason() {
        let ok = scenario("[[step]]\nconnect = { fields = [\"X-A: 1\"] }\n[[step]]\nsend = \"tunnel bytes\"\n");
        assert_eq!(skip_reason(&ok), None);
        for (steps, why) in [
            ("[[step]]\nsend = \"CONNECT a:1 HTTP/1.1\\r\\n\\r\\n\"\n", "request bytes"),
            ("[[step]]\nconnect = { version = \"HTTP/1.0\" }\n", "HTTP-version"),
            ("[[step]]\nconnect = { host = [] }\n", "Host field lines"),
            ("[[step]]\nconnect = { fields = [\"Connection: close\"] }\n", "connection"),
            ("[[step]]\nconnect = {}\n[[step]]\nconnect = {}\n", "second request"),
            ("[[step]]\nconnect = { target = \"local%68ost:1\" }\n", "no HTTP/2 form"),
            (
                "[[step]]\nconnect = {}\n[[step]]\nexpect = { status = \"2xx\", version = \"HTTP/1.1\" }\n",
                "status line",
            ),
        ] {
            let reason = skip_reason(&scenario(steps)).expect(steps);
            assert!(reason.contains(why), "{steps}: {reason}");
        }
    }
}
