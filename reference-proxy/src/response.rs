//! The proxy's own responses: the 2xx that opens a tunnel and the error responses that refuse one.
//!
//! Every error carries a `Proxy-Status` field (RFC 9209) naming the error type, a short `text/plain` body with
//! its `Content-Length`, and `Connection: close`: the connection is closed after it, so nothing the client sent
//! after a refused request is ever acted on.

use std::fmt::Write as _;

/// The success response. RFC 9110 §9.3.6: no Content-Length or Transfer-Encoding in a 2xx to CONNECT.
pub const ESTABLISHED: &[u8] = b"HTTP/1.1 200 Connection Established\r\n\r\n";

/// RFC 9209 §2.3 error types used by the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    DnsTimeout,
    DnsError,
    DestinationIpProhibited,
    DestinationIpUnroutable,
    DestinationUnavailable,
    ConnectionRefused,
    ConnectionTimeout,
    HttpRequestError,
    HttpRequestDenied,
    ProxyInternalResponse,
    ConnectionLimitReached,
    ProxyInternalError,
    ProxyLoopDetected,
    ProxyConfigurationError,
    ConnectionTerminated,
    HttpResponseIncomplete,
    HttpResponseTimeout,
    HttpResponseHeaderSectionSize,
    HttpProtocolError,
    TlsProtocolError,
    TlsCertificateError,
}

impl ErrorType {
    pub fn token(self) -> &'static str {
        match self {
            ErrorType::DnsTimeout => "dns_timeout",
            ErrorType::DnsError => "dns_error",
            ErrorType::DestinationIpProhibited => "destination_ip_prohibited",
            ErrorType::DestinationIpUnroutable => "destination_ip_unroutable",
            ErrorType::DestinationUnavailable => "destination_unavailable",
            ErrorType::ConnectionRefused => "connection_refused",
            ErrorType::ConnectionTimeout => "connection_timeout",
            ErrorType::HttpRequestError => "http_request_error",
            ErrorType::HttpRequestDenied => "http_request_denied",
            ErrorType::ProxyInternalResponse => "proxy_internal_response",
            ErrorType::ConnectionLimitReached => "connection_limit_reached",
            ErrorType::ProxyInternalError => "proxy_internal_error",
            ErrorType::ProxyLoopDetected => "proxy_loop_detected",
            ErrorType::ProxyConfigurationError => "proxy_configuration_error",
            ErrorType::ConnectionTerminated => "connection_terminated",
            ErrorType::HttpResponseIncomplete => "http_response_incomplete",
            ErrorType::HttpResponseTimeout => "http_response_timeout",
            ErrorType::HttpResponseHeaderSectionSize => "http_response_header_section_size",
            ErrorType::HttpProtocolError => "http_protocol_error",
            ErrorType::TlsProtocolError => "tls_protocol_error",
            ErrorType::TlsCertificateError => "tls_certificate_error",
        }
    }
}

/// A refusal, before any tunnel exists.
#[derive(Debug, Clone)]
pub struct ErrorResponse {
    pub status: u16,
    pub error: ErrorType,
    /// Goes in the `details` parameter and the body; a short human-readable reason.
    pub details: String,
    /// Extra fields, e.g. `Proxy-Authenticate` or `Allow`.
    pub fields: Vec<(&'static str, String)>,
    /// When the refusal comes from (or happened at) a parent proxy: what its `Proxy-Status` member says.
    pub chain: Option<Chain>,
}

/// The parent proxy's part of a refusal (RFC 9209 §2: the list is in hop order, the nearest proxy last).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    /// The parent's `Proxy-Status` members, kept before this proxy's.
    pub prior: Option<String>,
    /// `received-status` (§2.1.3): the status the parent sent.
    pub received_status: Option<u16>,
    /// `next-hop` (§2.1.2): the parent.
    pub next_hop: String,
    /// The parent's refusal is passed on: this proxy's member has no `error` of its own.
    pub relayed: bool,
}

impl ErrorResponse {
    pub fn new(status: u16, error: ErrorType, details: impl Into<String>) -> Self {
        ErrorResponse { status, error, details: details.into(), fields: Vec::new(), chain: None }
    }

    pub fn with_field(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.fields.push((name, value.into()));
        self
    }

    /// Serializes the response; `proxy_name` is the RFC 9209 member name (an sf-token).
    pub fn to_bytes(&self, proxy_name: &str) -> Vec<u8> {
        let body = self.body();
        let mut out = String::with_capacity(256 + body.len());
        let _ = write!(out, "HTTP/1.1 {} {}\r\n", self.status, reason(self.status));
        let _ = write!(out, "Proxy-Status: {}\r\n", self.proxy_status(proxy_name));
        for (name, value) in self.field_values() {
            let _ = write!(out, "{name}: {value}\r\n");
        }
        let _ = write!(
            out,
            "Content-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        out.into_bytes()
    }

    /// The `Proxy-Status` value: the parent's members (if any), then this proxy's.
    pub fn proxy_status(&self, proxy_name: &str) -> String {
        let mut out = String::with_capacity(128);
        if let Some(prior) = self.chain.as_ref().and_then(|c| c.prior.as_deref()) {
            let _ = write!(out, "{}, ", printable(prior));
        }
        out.push_str(proxy_name);
        if !self.chain.as_ref().is_some_and(|c| c.relayed) {
            let _ = write!(out, "; error={}", self.error.token());
        }
        if let Some(chain) = &self.chain {
            if let Some(status) = chain.received_status {
                let _ = write!(out, "; received-status={status}");
            }
            let _ = write!(out, "; next-hop=\"{}\"", sf_string_content(&chain.next_hop));
        }
        let _ = write!(out, "; details=\"{}\"", sf_string_content(&self.details));
        out
    }

    /// The extra fields with printable values.
    pub fn field_values(&self) -> impl Iterator<Item = (&'static str, String)> + '_ {
        self.fields.iter().map(|(n, v)| (*n, printable(v)))
    }

    /// The `text/plain` body.
    pub fn body(&self) -> String {
        format!("{} {}: {}\n", self.status, reason(self.status), printable(&self.details))
    }
}

/// RFC 8941 §3.3.3 sf-string: printable ASCII with `"` and `\` escaped.
fn sf_string_content(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c => push_printable(&mut out, c),
        }
    }
    out
}

/// Field values and bodies stay printable ASCII whatever a detail string holds.
fn printable(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        push_printable(&mut out, c);
    }
    out
}

/// One character as printable ASCII: the section sign of rule names ("RFC 9110 §9.3.6") is spelled out, anything
/// else outside printable ASCII becomes `?`.
fn push_printable(out: &mut String, c: char) {
    match c {
        ' '..='~' => out.push(c),
        '§' => out.push_str("section "),
        _ => out.push('?'),
    }
}

/// Reason phrases for the statuses the proxy sends.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "Connection Established",
        400 => "Bad Request",
        403 => "Forbidden",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        414 => "URI Too Long",
        421 => "Misdirected Request",
        431 => "Request Header Fields Too Large",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Error",
    }
}

/// RFC 8941 §3.3.4 sf-token: `( ALPHA / "*" ) *( tchar / ":" / "/" )`.
pub fn is_token(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'*')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~:/".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_response_shape() {
        let r = ErrorResponse::new(403, ErrorType::DestinationIpProhibited, "10.0.0.1 is \"private\"")
            .with_field("X-Test", "a\r\nb");
        let text = String::from_utf8(r.to_bytes("reference-proxy")).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 403 Forbidden\r\n"));
        assert!(head.contains(
            "\r\nProxy-Status: reference-proxy; error=destination_ip_prohibited; details=\"10.0.0.1 is \\\"private\\\"\"\r\n"
        ));
        assert!(head.contains("\r\nX-Test: a??b\r\n"));
        assert!(head.contains("\r\nConnection: close"));
        assert!(head.contains(&format!("\r\nContent-Length: {}", body.len())));
        assert!(body.starts_with("403 Forbidden: "));
    }

    #[test]
    fn rule_names_stay_readable_in_ascii() {
        let r = ErrorResponse::new(400, ErrorType::HttpRequestError, "missing-port (RFC 9110 §9.3.6), caf\u{e9}");
        let text = String::from_utf8(r.to_bytes("reference-proxy")).unwrap();
        assert!(text.contains("details=\"missing-port (RFC 9110 section 9.3.6), caf?\""), "{text}");
        assert!(text.is_ascii());
    }
}
