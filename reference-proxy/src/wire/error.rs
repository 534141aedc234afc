//! Every way a request head can be rejected, each naming the rule it breaks and the status to answer with.
//!
//! The proxy's error responses and logs are built from these, so a rejected client is told which sentence of
//! which RFC its request broke.

use thiserror::Error;

/// A request head the strict parser refuses. Each variant is one rule.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum WireError {
    /// RFC 9112 §3: "A server that receives a request-target longer than any URI it wishes to parse MUST respond
    /// with a 414 (URI Too Long) status code."
    #[error("request line longer than {limit} octets")]
    RequestLineTooLong { limit: usize },
    /// RFC 6585 §5: 431 when the header section is too large.
    #[error("request header section longer than {limit} octets")]
    HeadTooLarge { limit: usize },
    /// RFC 6585 §5: 431 when there are too many header fields.
    #[error("more than {limit} header fields")]
    TooManyFields { limit: usize },
    /// RFC 9112 §2.2 allows a recipient to accept a bare LF line end (MAY); this parser does not, because two
    /// hops that disagree on line ends disagree on where a message ends.
    #[error("line ended by a bare LF instead of CRLF")]
    BareLf,
    /// RFC 9112 §2.2: "A sender MUST NOT generate a bare CR ... a recipient of such a bare CR MUST consider that
    /// element to be invalid or replace each bare CR with SP".
    #[error("bare CR inside a line")]
    BareCr,
    /// RFC 9110 §9.1 / RFC 9112 §3.1: the method is a token.
    #[error("method is not a token")]
    InvalidMethod,
    /// RFC 9112 §3: request-line = method SP request-target SP HTTP-version, single spaces, no leading or
    /// trailing whitespace.
    #[error("request line is not `method SP request-target SP HTTP-version`")]
    RequestLineSyntax,
    /// RFC 9112 §3.2: "No whitespace is allowed in the request-target"; only visible ASCII is accepted.
    #[error("request-target contains byte 0x{byte:02x}")]
    InvalidTargetByte { byte: u8 },
    /// RFC 9112 §2.3: HTTP-version = HTTP-name "/" DIGIT "." DIGIT, HTTP-name case-sensitive.
    #[error("HTTP-version is not `HTTP/DIGIT.DIGIT`")]
    InvalidVersion,
    /// RFC 9110 §15.6.6: 505 for a major version the server does not support.
    #[error("HTTP/{major}.{minor} is not supported in HTTP/1 syntax")]
    VersionNotSupported { major: u8, minor: u8 },
    /// RFC 9112 §3.2.3: "When making a CONNECT request ... a client MUST send only the host and port of the tunnel
    /// destination as the request-target." Any other form is rejected.
    #[error("CONNECT request-target is in {form} form, not authority-form")]
    ConnectTargetNotAuthority { form: TargetForm },
    /// RFC 9110 §7.1: authority-form and asterisk-form "MUST NOT be used with other methods" than CONNECT and
    /// OPTIONS respectively.
    #[error("authority-form request-target with a method other than CONNECT")]
    AuthorityFormWithoutConnect,
    /// RFC 9112 §3.2.3 / RFC 3986 §3.2: the CONNECT authority is malformed.
    #[error("CONNECT target: {0}")]
    Authority(#[from] AuthorityError),
    /// RFC 9112 §2.2: "A recipient that receives whitespace between the start-line and the first header field
    /// MUST either reject the message as invalid or consume each whitespace-preceded line without further
    /// processing of it". This parser rejects.
    #[error("whitespace between the request line and the first header field")]
    WhitespaceBeforeFirstField,
    /// RFC 9112 §5.2: obs-fold; "A server that receives an obs-fold in a request message ... MUST either reject
    /// the message by sending a 400 (Bad Request) ... or replace each received obs-fold with one or more SP".
    /// This parser rejects.
    #[error("obsolete line folding (obs-fold) in a header field")]
    ObsFold,
    /// RFC 9112 §5.1: "A server MUST reject, with a response status code of 400 (Bad Request), any received
    /// request message that contains whitespace between a header field name and colon."
    #[error("whitespace between a header field name and the colon")]
    WhitespaceBeforeColon,
    /// RFC 9112 §5: field-line = field-name ":" OWS field-value OWS; a line without a colon is not a field line.
    #[error("header line without a colon")]
    MissingColon,
    /// RFC 9110 §5.1: field-name = token (which cannot be empty).
    #[error("header field name is empty or not a token")]
    InvalidFieldName,
    /// RFC 9110 §5.5: "Field values containing CR, LF, or NUL characters are invalid and dangerous ... a
    /// recipient ... MUST either reject the message or replace each of those characters with SP"; other CTLs are
    /// outside field-vchar. This parser rejects.
    #[error("header field value contains byte 0x{byte:02x}")]
    InvalidFieldValue { byte: u8 },
    /// RFC 9112 §3.2: "A server MUST respond with a 400 (Bad Request) status code to any HTTP/1.1 request message
    /// that lacks a Host header field".
    #[error("HTTP/1.1 request without a Host header field")]
    MissingHost,
    /// RFC 9112 §3.2: "... and to any request message that contains more than one Host header field line".
    #[error("more than one Host header field line")]
    DuplicateHost,
    /// RFC 9112 §3.2: "... or a Host header field with an invalid field value."
    #[error("invalid Host header field value: {0}")]
    InvalidHost(AuthorityError),
    /// RFC 9110 §9.3.6: "A CONNECT request message does not have content." Framing fields on a CONNECT are
    /// refused rather than honoured: a proxy that reads a body and one that tunnels it disagree on where the
    /// tunnel starts, which is how requests are smuggled.
    #[error("{field} on a CONNECT request, which has no content")]
    ContentOnConnect { field: &'static str },
}

impl WireError {
    /// The status code to answer with.
    pub fn status(&self) -> u16 {
        match self {
            WireError::RequestLineTooLong { .. } => 414,
            WireError::HeadTooLarge { .. } | WireError::TooManyFields { .. } => 431,
            WireError::VersionNotSupported { .. } => 505,
            _ => 400,
        }
    }

    /// The rule broken, as "RFC NNNN §x.y".
    pub fn rule(&self) -> &'static str {
        match self {
            WireError::RequestLineTooLong { .. } => "RFC 9112 §3",
            WireError::HeadTooLarge { .. } | WireError::TooManyFields { .. } => "RFC 6585 §5",
            WireError::BareLf | WireError::BareCr | WireError::WhitespaceBeforeFirstField => "RFC 9112 §2.2",
            WireError::InvalidMethod => "RFC 9110 §9.1",
            WireError::RequestLineSyntax => "RFC 9112 §3",
            WireError::InvalidTargetByte { .. } => "RFC 9112 §3.2",
            WireError::InvalidVersion => "RFC 9112 §2.3",
            WireError::VersionNotSupported { .. } => "RFC 9110 §15.6.6",
            WireError::ConnectTargetNotAuthority { .. } => "RFC 9112 §3.2.3",
            WireError::AuthorityFormWithoutConnect => "RFC 9110 §7.1",
            WireError::Authority(e) => e.rule(),
            WireError::ObsFold => "RFC 9112 §5.2",
            WireError::WhitespaceBeforeColon => "RFC 9112 §5.1",
            WireError::MissingColon => "RFC 9112 §5",
            WireError::InvalidFieldName => "RFC 9110 §5.1",
            WireError::InvalidFieldValue { .. } => "RFC 9110 §5.5",
            WireError::MissingHost | WireError::DuplicateHost | WireError::InvalidHost(_) => "RFC 9112 §3.2",
            WireError::ContentOnConnect { .. } => "RFC 9110 §9.3.6",
        }
    }

    /// A short stable name for logs and the `Proxy-Status` `details` parameter.
    pub fn kind(&self) -> &'static str {
        match self {
            WireError::RequestLineTooLong { .. } => "request-line-too-long",
            WireError::HeadTooLarge { .. } => "head-too-large",
            WireError::TooManyFields { .. } => "too-many-fields",
            WireError::BareLf => "bare-lf",
            WireError::BareCr => "bare-cr",
            WireError::InvalidMethod => "invalid-method",
            WireError::RequestLineSyntax => "request-line-syntax",
            WireError::InvalidTargetByte { .. } => "invalid-target-byte",
            WireError::InvalidVersion => "invalid-version",
            WireError::VersionNotSupported { .. } => "version-not-supported",
            WireError::ConnectTargetNotAuthority { .. } => "connect-target-not-authority",
            WireError::AuthorityFormWithoutConnect => "authority-form-without-connect",
            WireError::Authority(e) => e.kind(),
            WireError::WhitespaceBeforeFirstField => "whitespace-before-first-field",
            WireError::ObsFold => "obs-fold",
            WireError::WhitespaceBeforeColon => "whitespace-before-colon",
            WireError::MissingColon => "missing-colon",
            WireError::InvalidFieldName => "invalid-field-name",
            WireError::InvalidFieldValue { .. } => "invalid-field-value",
            WireError::MissingHost => "missing-host",
            WireError::DuplicateHost => "duplicate-host",
            WireError::InvalidHost(_) => "invalid-host",
            WireError::ContentOnConnect { .. } => "content-on-connect",
        }
    }
}

/// The four request-target forms of RFC 9112 §3.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetForm {
    Origin,
    Absolute,
    Authority,
    Asterisk,
}

impl std::fmt::Display for TargetForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TargetForm::Origin => "origin",
            TargetForm::Absolute => "absolute",
            TargetForm::Authority => "authority",
            TargetForm::Asterisk => "asterisk",
        })
    }
}

/// A malformed `uri-host ":" port` (RFC 9112 §3.2.3, RFC 3986 §3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum AuthorityError {
    #[error("empty authority")]
    Empty,
    /// RFC 9110 §9.3.6: "There is no default port".
    #[error("no port (CONNECT has no default port)")]
    MissingPort,
    /// RFC 9110 §9.3.6: "A server MUST reject a CONNECT request that targets an empty or invalid port number".
    #[error("empty port")]
    EmptyPort,
    #[error("port is not a decimal number")]
    InvalidPort,
    #[error("port outside 1..=65535")]
    PortOutOfRange,
    /// RFC 3986 allows leading zeros; this parser refuses them so that no two spellings reach one port and a port
    /// list is never matched against a different reading of the same text.
    #[error("port has a leading zero")]
    PortLeadingZero,
    /// RFC 9112 §3.2.3: authority-form = uri-host ":" port, with no userinfo (App. C.3).
    #[error("userinfo (`@`) in the authority")]
    Userinfo,
    /// Anything after the port: a path, query or fragment (RFC 9112 §3.2.3).
    #[error("text after host:port")]
    TrailingGarbage,
    #[error("`[` without a closing `]`")]
    UnclosedBracket,
    /// RFC 6874 zone identifiers are not part of the RFC 9110/9112 grammar.
    #[error("IPv6 zone identifier")]
    ZoneId,
    /// RFC 3986 IPvFuture: no version is defined, so none can be connected to.
    #[error("IPvFuture literal")]
    IpvFuture,
    #[error("invalid IPv6 literal")]
    InvalidIpv6,
    /// RFC 3986 §3.2.2: only IPv6 (or IPvFuture) goes in brackets.
    #[error("bracketed text is not an IPv6 address")]
    BracketedNotIpv6,
    /// An IPv6 address must be bracketed (RFC 3986 §3.2.2).
    #[error("unbracketed IPv6 address")]
    UnbracketedIpv6,
    /// RFC 3986 §3.2.2 allows pct-encoding in a reg-name; decoded and undecoded spellings would be checked
    /// against policy differently, so this parser refuses it.
    #[error("percent-encoded host name")]
    PercentEncoded,
    /// A reg-name must be a DNS host name here: letters, digits, `-`, `_` and dots between non-empty labels of
    /// at most 63 octets.
    #[error("host name is not a valid DNS name")]
    InvalidRegName,
    /// A name whose last label is numeric (`127.1`, `0x7f.1`, `0177.0.0.1`) is read as an IPv4 address by
    /// resolvers, bypassing address policy; RFC 3986 §7.4 warns of exactly this.
    #[error("numeric host name that is not a dotted-decimal IPv4 address")]
    AmbiguousNumericHost,
    #[error("host name longer than 253 octets")]
    HostTooLong,
}

impl AuthorityError {
    pub fn rule(&self) -> &'static str {
        match self {
            AuthorityError::MissingPort
            | AuthorityError::EmptyPort
            | AuthorityError::InvalidPort
            | AuthorityError::PortOutOfRange
            | AuthorityError::PortLeadingZero => "RFC 9110 §9.3.6",
            AuthorityError::Userinfo | AuthorityError::TrailingGarbage | AuthorityError::Empty => "RFC 9112 §3.2.3",
            AuthorityError::AmbiguousNumericHost => "RFC 3986 §7.4",
            _ => "RFC 3986 §3.2.2",
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            AuthorityError::Empty => "authority-empty",
            AuthorityError::MissingPort => "missing-port",
            AuthorityError::EmptyPort => "empty-port",
            AuthorityError::InvalidPort => "invalid-port",
            AuthorityError::PortOutOfRange => "port-out-of-range",
            AuthorityError::PortLeadingZero => "port-leading-zero",
            AuthorityError::Userinfo => "userinfo",
            AuthorityError::TrailingGarbage => "trailing-garbage",
            AuthorityError::UnclosedBracket => "unclosed-bracket",
            AuthorityError::ZoneId => "ipv6-zone-id",
            AuthorityError::IpvFuture => "ipvfuture",
            AuthorityError::InvalidIpv6 => "invalid-ipv6",
            AuthorityError::BracketedNotIpv6 => "bracketed-not-ipv6",
            AuthorityError::UnbracketedIpv6 => "unbracketed-ipv6",
            AuthorityError::PercentEncoded => "percent-encoded-host",
            AuthorityError::InvalidRegName => "invalid-reg-name",
            AuthorityError::AmbiguousNumericHost => "ambiguous-numeric-host",
            AuthorityError::HostTooLong => "host-too-long",
        }
    }
}
