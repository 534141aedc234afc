//! Step kinds and acceptable outcomes. Each step is a TOML table with exactly one key naming its kind.

use std::{collections::BTreeMap, fmt};

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, de};

use super::model::Level;

/// One action or check in a scenario. Byte strings accept the placeholders of [`crate::scenario::template`].
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Step {
    /// Send these bytes in one write.
    Send(String),
    /// Send bytes in pieces with a pause between them.
    SendSlowly(SendSlowly),
    /// Send a well-formed CONNECT request built from parts.
    Connect(ConnectRequest),
    /// Send this many random bytes into the tunnel (hashed, so an origin check can compare).
    SendRandom(u64),
    /// End the client side: "half" (FIN, keep reading), "full" (close) or "reset" (RST).
    Close(CloseKind),
    /// Read the proxy's response head and match it against acceptable outcomes.
    Expect(Expect),
    /// Through the tunnel to the echo origin: send this many random bytes, read them back, compare.
    Echo(u64),
    /// Read exactly these bytes from the tunnel.
    ExpectData(String),
    /// Read the banner origin's banner through the tunnel, then EOF.
    ExpectBanner(ExpectBanner),
    /// Read until the proxy closes the connection.
    ExpectEof(ExpectEof),
    /// Expect no bytes from the proxy for this many milliseconds.
    ExpectSilence(u64),
    /// TLS handshake through the tunnel with the TLS origin; later steps run inside it.
    TlsHandshake(InnerTls),
    /// Check what an origin recorded for this scenario.
    Origin(OriginCheck),
    /// Check the CONNECT the instrumented parent proxy received (chained scenarios, `needs = ["upstream"]`).
    Parent(ParentCheck),
    /// HTTP/2 only: a HEADERS frame with exactly these fields, through the harness's own frame writer (the
    /// malformed requests the `h2` crate refuses to send).
    H2Headers(H2Headers),
    /// HTTP/2 only: several CONNECT streams on the connection, the first one stalled (the harness sends into it
    /// and never reads), echoes on the others at once (RFC 9113 §5.2).
    H2Parallel(H2Parallel),
    /// HTTP/2 only: announce SETTINGS_INITIAL_WINDOW_SIZE for the streams opened after it (the harness's own frame
    /// writer), once the proxy acknowledged it; a stream's DATA beyond it then ends the connection.
    H2Window(u32),
}

impl Step {
    /// The TOML key of the step kind, used in reports ("step 3 (expect)").
    pub fn kind(&self) -> &'static str {
        match self {
            Step::Send(_) => "send",
            Step::SendSlowly(_) => "send_slowly",
            Step::Connect(_) => "connect",
            Step::SendRandom(_) => "send_random",
            Step::Close(_) => "close",
            Step::Expect(_) => "expect",
            Step::Echo(_) => "echo",
            Step::ExpectData(_) => "expect_data",
            Step::ExpectBanner(_) => "expect_banner",
            Step::ExpectEof(_) => "expect_eof",
            Step::ExpectSilence(_) => "expect_silence",
            Step::TlsHandshake(_) => "tls_handshake",
            Step::Origin(_) => "origin",
            Step::Parent(_) => "parent",
            Step::H2Headers(_) => "h2_headers",
            Step::H2Parallel(_) => "h2_parallel",
            Step::H2Window(_) => "h2_window",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendSlowly {
    pub data: String,
    /// Bytes per write (default 1).
    #[serde(default = "one")]
    pub chunk: usize,
    /// Pause between writes in milliseconds (default 2).
    #[serde(default = "two")]
    pub delay_ms: u64,
}

fn one() -> usize {
    1
}
fn two() -> u64 {
    2
}

/// A CONNECT request assembled from parts: `CONNECT {target} {version}`, Host lines, `{auth}`, extra fields.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ConnectRequest {
    /// Request-target (default: the scenario's `target`).
    #[serde(default)]
    pub target: Option<String>,
    /// Host field lines (default: one, equal to the target; `[]` sends none, two values send two lines).
    #[serde(default)]
    pub host: Option<Vec<String>>,
    /// HTTP-version (default "HTTP/1.1").
    #[serde(default)]
    pub version: Option<String>,
    /// Extra field lines, each "Name: value" without CRLF.
    #[serde(default)]
    pub fields: Vec<String>,
    /// Tunnel bytes sent in the same write, right after the header section.
    #[serde(default)]
    pub early: Option<String>,
    /// Add Proxy-Authorization when credentials are configured (default true).
    #[serde(default = "yes")]
    pub auth: bool,
}

fn yes() -> bool {
    true
}

/// A HEADERS frame written by the harness itself (HTTP/2 transports only): the fields go out exactly as listed,
/// in order and with their case, HPACK-encoded (RFC 7541) by `loona-hpack`; nothing is added but
/// Proxy-Authorization (see `auth`). A scenario with such a step runs its whole connection through the harness's own frames
/// (`connect` steps included), so it can mix malformed and well-formed streams.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct H2Headers {
    /// The field lines as `[name, value]` pairs (templates), pseudo-header fields included, e.g.
    /// `[[":method", "CONNECT"], [":authority", "{target}"], [":path", "/"]]`.
    pub fields: Vec<[String; 2]>,
    /// On which stream: `new` (default: a new stream, which the later steps read and write) or `current` (the
    /// stream opened last, e.g. trailers on a connected CONNECT stream, RFC 9113 §8.5).
    #[serde(default)]
    pub on: StreamChoice,
    /// Set END_STREAM on the frame.
    #[serde(default)]
    pub end_stream: bool,
    /// Append `proxy-authorization` when credentials are configured (default true, as for `connect`): a proxy
    /// that asks for credentials then judges the request itself, not their absence.
    #[serde(default = "yes")]
    pub auth: bool,
}

/// Several CONNECT streams to the scenario's target on the scenario's HTTP/2 connection: the first is stalled
/// (the harness writes `stall_bytes` into it in the background and never reads what comes back, so its windows
/// fill at the proxy), then `bytes` are echoed on each of the others at once. Passes when every other stream
/// gets its bytes back, byte for byte, before the deadline: one stalled tunnel did not stall the rest.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct H2Parallel {
    /// Streams in all, the stalled one included (2 to 64).
    pub streams: u32,
    /// Bytes echoed on each of the other streams.
    pub bytes: u64,
    /// Bytes the harness tries to send into the stalled stream (it stops when the windows are full).
    #[serde(default = "stall_default")]
    pub stall_bytes: u64,
}

fn stall_default() -> u64 {
    32 * 1024 * 1024
}

/// Which stream an `h2_headers` step writes on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamChoice {
    #[default]
    New,
    Current,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseKind {
    Half,
    Full,
    Reset,
}

/// The acceptable outcomes of reading one response. Either a single outcome written inline
/// (`status`, `present`, `absent`, `then`, `closed`, `timeout`) or several in `any_of`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    #[serde(default)]
    pub any_of: Vec<Outcome>,
    #[serde(default)]
    pub status: StatusSet,
    #[serde(default)]
    pub present: Vec<String>,
    #[serde(default)]
    pub absent: Vec<String>,
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub status_line_spaces: bool,
    #[serde(default)]
    pub then: Option<After>,
    #[serde(default)]
    pub closed: bool,
    #[serde(default)]
    pub timeout: bool,
    /// Deadline for this step in milliseconds (default: the run's `--timeout`); keep it short when a
    /// timeout is an acceptable outcome.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Judge a mismatch at this level instead of the scenario's.
    #[serde(default)]
    pub level: Option<Level>,
}

impl Expect {
    /// The acceptable outcomes, whichever way they were written.
    pub fn outcomes(&self) -> Vec<Outcome> {
        if !self.any_of.is_empty() {
            return self.any_of.clone();
        }
        vec![Outcome {
            status: self.status.clone(),
            present: self.present.clone(),
            absent: self.absent.clone(),
            fields: self.fields.clone(),
            version: self.version.clone(),
            status_line_spaces: self.status_line_spaces,
            then: self.then,
            closed: self.closed,
            timeout: self.timeout,
            verdict: None,
            note: None,
        }]
    }

    pub(crate) fn has_inline(&self) -> bool {
        !self.status.0.is_empty()
            || !self.present.is_empty()
            || !self.absent.is_empty()
            || !self.fields.is_empty()
            || self.version.is_some()
            || self.status_line_spaces
            || self.then.is_some()
            || self.closed
            || self.timeout
    }
}

/// One acceptable result of reading a response: a response matching the status set and field rules,
/// the connection closed without a response, or no response before the deadline.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Outcome {
    /// Acceptable final status codes: exact ("400") or classes ("4xx").
    #[serde(default, skip_serializing_if = "StatusSet::is_empty")]
    pub status: StatusSet,
    /// Field names that must be present (case-insensitive).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub present: Vec<String>,
    /// Field names that must be absent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub absent: Vec<String>,
    /// Fields whose value must contain this text (case-insensitive), e.g. `{ "Proxy-Status" = "connection_refused" }`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: BTreeMap<String, String>,
    /// The response's HTTP-version, exactly (e.g. "HTTP/1.1").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The status line has its two spaces, `HTTP-version SP status-code SP [reason-phrase]`, the second one even
    /// when the reason phrase is empty (RFC 9112 §4).
    #[serde(default, skip_serializing_if = "is_false")]
    pub status_line_spaces: bool,
    /// What the proxy must do with the connection after the response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub then: Option<After>,
    /// The proxy closed (or reset) the connection without sending a response.
    #[serde(default, skip_serializing_if = "is_false")]
    pub closed: bool,
    /// Nothing arrived before the deadline.
    #[serde(default, skip_serializing_if = "is_false")]
    pub timeout: bool,
    /// Matching this outcome gives this verdict instead of pass (a tolerated, not preferred, behaviour).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<OutcomeVerdict>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OutcomeVerdict {
    Warn,
    Observed,
}

/// What happens to the connection after a (non-2xx) response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum After {
    /// The proxy closes the connection after the response (and its body).
    Close,
    /// The connection stays open until the step's deadline.
    Open,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if self.closed {
            parts.push("connection closed without a response".to_string());
        }
        if self.timeout {
            parts.push("no response before the deadline".to_string());
        }
        if !self.status.is_empty() {
            parts.push(format!("status {}", self.status));
        }
        if !self.present.is_empty() {
            parts.push(format!("with {}", self.present.join(", ")));
        }
        if !self.absent.is_empty() {
            parts.push(format!("without {}", self.absent.join(", ")));
        }
        for (name, text) in &self.fields {
            parts.push(format!("{name} containing {text:?}"));
        }
        if let Some(v) = &self.version {
            parts.push(format!("as {v}"));
        }
        if self.status_line_spaces {
            parts.push("with SP after the status code".into());
        }
        match self.then {
            Some(After::Close) => parts.push("then close".into()),
            Some(After::Open) => parts.push("then stay open".into()),
            None => {}
        }
        if let Some(v) = self.verdict {
            parts.push(format!("({})", if v == OutcomeVerdict::Warn { "warn" } else { "observed" }));
        }
        write!(f, "{}", parts.join(" "))
    }
}

/// A status code ("404") or class ("4xx").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusPattern {
    Exact(u16),
    Class(u8),
}

impl StatusPattern {
    pub fn matches(self, code: u16) -> bool {
        match self {
            StatusPattern::Exact(c) => c == code,
            StatusPattern::Class(c) => code / 100 == c as u16,
        }
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        let b = s.as_bytes();
        let bad = || format!("invalid status pattern {s:?}: expected a code like \"400\" or a class like \"4xx\"");
        if b.len() != 3 || !(b'1'..=b'5').contains(&b[0]) {
            return Err(bad());
        }
        if &s[1..] == "xx" {
            return Ok(StatusPattern::Class(b[0] - b'0'));
        }
        s.parse::<u16>().map(StatusPattern::Exact).map_err(|_| bad())
    }
}

impl fmt::Display for StatusPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StatusPattern::Exact(c) => write!(f, "{c}"),
            StatusPattern::Class(c) => write!(f, "{c}xx"),
        }
    }
}

/// A set of status patterns; in TOML a code (400), a string ("4xx") or a list of either.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusSet(pub Vec<StatusPattern>);

impl StatusSet {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn matches(&self, code: u16) -> bool {
        self.0.iter().any(|p| p.matches(code))
    }
}

impl fmt::Display for StatusSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|p| p.to_string()).collect();
        write!(f, "{}", parts.join("|"))
    }
}

impl Serialize for StatusSet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|p| p.to_string()))
    }
}

impl JsonSchema for StatusSet {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "StatusSet".into()
    }
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        <Vec<String>>::json_schema(generator)
    }
}

impl<'de> Deserialize<'de> for StatusSet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = StatusSet;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a status code, a class like \"4xx\", or a list of them")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<StatusSet, E> {
                StatusPattern::parse(&v.to_string()).map(|p| StatusSet(vec![p])).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<StatusSet, E> {
                self.visit_i64(v as i64)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<StatusSet, E> {
                StatusPattern::parse(v).map(|p| StatusSet(vec![p])).map_err(E::custom)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<StatusSet, A::Error> {
                let mut out = Vec::new();
                while let Some(one) = seq.next_element::<StatusSet>()? {
                    out.extend(one.0);
                }
                Ok(StatusSet(out))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ExpectBanner {
    #[serde(default)]
    pub level: Option<Level>,
    /// Over TLS, the end must be a TLS close (close_notify), not a bare TCP FIN (RFC 9112 §9.8). Without it an
    /// end right after the whole banner counts, however it came.
    #[serde(default)]
    pub close_notify: bool,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ExpectEof {
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// The end must be an error (a reset) whose description contains this, e.g. "RST_STREAM(CONNECT_ERROR)" on
    /// the HTTP/2 transports ("" takes any error); a clean EOF is then a mismatch. Without it, either end passes.
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub level: Option<Level>,
}

/// A TLS client handshake through the tunnel to the TLS origin, whose certificate is pinned.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct InnerTls {
    /// SNI for the inner handshake (default "target.test").
    #[serde(default)]
    pub sni: Option<String>,
    #[serde(default)]
    pub alpn: Vec<String>,
}

/// Declares the origin kinds once: the enum (with its TOML names), [`OriginKind::ALL`] and the names come from
/// here, so a new kind is one entry (plus its server in `origin::servers`).
macro_rules! origin_kinds {
    ($($(#[doc = $doc:literal])+ $variant:ident = $name:literal,)+) => {
        /// Which origin a check or placeholder names.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema, PartialOrd, Ord)]
        pub enum OriginKind {
            $($(#[doc = $doc])+ #[serde(rename = $name)] $variant,)+
        }

        impl OriginKind {
            /// Every kind, in declaration order (the order of the ports in an origin set).
            pub const ALL: &'static [OriginKind] = &[$(OriginKind::$variant,)+];

            /// The name used in TOML and placeholders.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(OriginKind::$variant => $name,)+
                }
            }
        }
    };
}

origin_kinds! {
    /// Echoes every byte back.
    Echo = "echo",
    /// A second echo, to tell which of two targets the proxy dialled.
    Echo2 = "echo2",
    /// Accepts and never sends.
    Silent = "silent",
    /// Sends a banner on accept, then closes (server-first, like SSH).
    Banner = "banner",
    /// Counts and hashes what it receives, never sends.
    Sink = "sink",
    /// A port nobody listens on.
    Closed = "closed",
    /// TLS server with its own certificate; records SNI and ALPN, then echoes.
    Tls = "tls",
    /// Answers any HTTP request with 200 and a small body.
    Http = "http",
    /// A port where the TCP handshake never completes: a listener whose accept queue is full drops every SYN
    /// (a black hole on loopback). A proxy may only answer with a timeout or an error, never a 2xx.
    Unanswered = "unanswered",
}

impl OriginKind {
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|k| k.as_str() == s)
    }
}

/// Facts an origin must have recorded for this scenario.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OriginCheck {
    pub name: OriginKind,
    /// Exact number of accepted connections (waits up to the deadline for a non-zero count).
    #[serde(default)]
    pub connections: Option<u32>,
    /// The origin received exactly the tunnel bytes the client sent (count and SHA-256).
    #[serde(default)]
    pub received_all_sent: bool,
    /// The origin received bytes starting with this (placeholders allowed).
    #[serde(default)]
    pub received_prefix: Option<String>,
    /// The first connection's bytes must not contain this (e.g. a smuggled request).
    #[serde(default)]
    pub never_received: Option<String>,
    /// How the first connection must have ended: "eof" (the proxy closed its side cleanly, a FIN) or "error"
    /// (a reset); implies `ended`.
    #[serde(default)]
    pub end: Option<crate::origin::record::ConnEnd>,
    /// The first connection has ended (waits for it); the report says how (EOF, error/reset).
    #[serde(default)]
    pub ended: bool,
    /// TLS origin: the SNI it was offered ("" for none).
    #[serde(default)]
    pub sni: Option<String>,
    /// TLS origin: the ALPN protocols it was offered.
    #[serde(default)]
    pub alpn: Option<Vec<String>>,
    /// Check only when the proxy did not open a tunnel: a scenario that tolerates a 2xx (e.g. a large header
    /// section a proxy may accept) checks "nothing dialled" only after a rejection.
    #[serde(default)]
    pub if_rejected: bool,
    /// Check only when the proxy opened a tunnel: a scenario that tolerates a refusal (e.g. a 400 to a Host that
    /// differs from the target) checks where the tunnel went only when there is one.
    #[serde(default)]
    pub if_tunnelled: bool,
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    #[serde(default)]
    pub level: Option<Level>,
    /// What a connection that should not have happened proves (placeholders allowed), added to the failure:
    /// e.g. "the proxy dialled port {echo.port}, which is {echo.port+65536} mod 65536".
    #[serde(default)]
    pub evidence: Option<String>,
}

impl OriginCheck {
    /// Whether the check asks anything at all.
    pub fn checks_something(&self) -> bool {
        self.connections.is_some()
            || self.ended
            || self.end.is_some()
            || self.received_all_sent
            || self.received_prefix.is_some()
            || self.never_received.is_some()
            || self.sni.is_some()
            || self.alpn.is_some()
    }
}

/// What the instrumented parent proxy must have received from the proxy under test for this scenario.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ParentCheck {
    /// Exact number of CONNECTs the parent received (waits for them, then briefly for any extra one).
    #[serde(default)]
    pub connects: Option<u32>,
    /// The request-target of the first CONNECT, exactly (placeholders allowed).
    #[serde(default)]
    pub target: Option<String>,
    /// Field names the first CONNECT must carry.
    #[serde(default)]
    pub present: Vec<String>,
    /// Field names it must not carry.
    #[serde(default)]
    pub absent: Vec<String>,
    /// Fields whose values (several lines joined with ", ") must contain this text, case-insensitively.
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
    /// The first CONNECT's head must not contain any of these texts, case-insensitively (placeholders allowed; a
    /// text that expands to nothing, e.g. `{auth.basic}` without credentials, checks nothing).
    #[serde(default)]
    pub never_contains: Vec<String>,
    /// Nothing reached the parent after its (non-2xx) answer.
    #[serde(default)]
    pub nothing_after_answer: bool,
    /// The first CONNECT carries the credentials the proxy under test is configured to present to its parent
    /// (`--upstream-proxy-credentials`; the scenario needs "upstream-credentials").
    #[serde(default)]
    pub own_credentials: bool,
    /// Judge a mismatch at this level instead of the scenario's.
    #[serde(default)]
    pub level: Option<Level>,
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

impl ParentCheck {
    pub(crate) fn checks_something(&self) -> bool {
        self.connects.is_some()
            || self.target.is_some()
            || !self.present.is_empty()
            || !self.absent.is_empty()
            || !self.fields.is_empty()
            || !self.never_contains.is_empty()
            || self.nothing_after_answer
            || self.own_credentials
    }
}
