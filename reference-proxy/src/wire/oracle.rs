//! Cross-check against httparse: where both accept a head they must agree on it, and every case where only
//! httparse accepts must be one of our documented strictnesses.

use super::{HeadParser, Limits, Progress, WireError};

/// The rules on which this parser is deliberately stricter than httparse (or checks what httparse leaves to
/// its caller). A head httparse accepts may be refused by us only with one of these.
pub const STRICTER_THAN_HTTPARSE: &[&str] = &[
    // RFC 9112 §2.2 MAY accept bare LF; httparse does, we do not.
    "bare-lf",
    // Semantics httparse leaves to its caller (RFC 9112 §3.2, §3.2.3; RFC 9110 §7.1, §9.3.6).
    "missing-host",
    "duplicate-host",
    "invalid-host",
    "content-on-connect",
    "connect-target-not-authority",
    "authority-form-without-connect",
    // Every authority error: httparse does not parse request-targets.
    "authority-empty",
    "missing-port",
    "empty-port",
    "invalid-port",
    "port-out-of-range",
    "port-leading-zero",
    "userinfo",
    "trailing-garbage",
    "unclosed-bracket",
    "ipv6-zone-id",
    "ipvfuture",
    "invalid-ipv6",
    "bracketed-not-ipv6",
    "unbracketed-ipv6",
    "percent-encoded-host",
    "invalid-reg-name",
    "ambiguous-numeric-host",
    "host-too-long",
    // Our limits (httparse's is the caller's header array).
    "request-line-too-long",
    "head-too-large",
    "too-many-fields",
    // httparse accepts obs-text (0x80..) in the request-target; we accept visible ASCII only.
    "invalid-target-byte",
];

/// How the two parsers disagreed on one input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disagreement {
    /// We accepted and httparse did not (only allowed for HTTP/1.2..1.9, which httparse does not know).
    OnlyOursAccepts { httparse: String },
    /// httparse accepted and we refused for a reason not in [`STRICTER_THAN_HTTPARSE`].
    UndocumentedRejection { kind: &'static str },
    /// Both accepted but read different things.
    DifferentReading { what: &'static str },
}

/// Runs both parsers on `input` and reports any undocumented disagreement.
pub fn check(input: &[u8]) -> Result<(), Disagreement> {
    let mut ours = HeadParser::new(Limits::default());
    let ours_result = ours.advance(input);
    let mut headers = [httparse::EMPTY_HEADER; 128];
    let mut req = httparse::Request::new(&mut headers);
    let theirs = req.parse(input);
    match (ours_result, theirs) {
        (Ok(Progress::Complete(len)), Ok(httparse::Status::Complete(their_len))) => {
            let head = ours.head(input);
            if len != their_len {
                return Err(Disagreement::DifferentReading { what: "head length" });
            }
            if Some(head.method()) != req.method {
                return Err(Disagreement::DifferentReading { what: "method" });
            }
            if Some(head.target()) != req.path {
                return Err(Disagreement::DifferentReading { what: "target" });
            }
            if req.version != Some(head.version().minor) {
                return Err(Disagreement::DifferentReading { what: "version" });
            }
            if head.fields().len() != req.headers.len() {
                return Err(Disagreement::DifferentReading { what: "field count" });
            }
            for (a, b) in head.fields().zip(req.headers.iter()) {
                // Both drop surrounding OWS per RFC 9112 §5; normalise in case an httparse version keeps some.
                if a.name != b.name || a.value != trim_ows(b.value) {
                    return Err(Disagreement::DifferentReading { what: "field" });
                }
            }
            Ok(())
        }
        (Ok(Progress::Complete(_)), other) => {
            let version_httparse_lacks = ours.head(input).version().minor > 1;
            if version_httparse_lacks && other.is_err() {
                Ok(())
            } else {
                Err(Disagreement::OnlyOursAccepts { httparse: format!("{other:?}") })
            }
        }
        (Err(e), Ok(httparse::Status::Complete(_))) if !documented(&e) => {
            Err(Disagreement::UndocumentedRejection { kind: e.kind() })
        }
        _ => Ok(()),
    }
}

fn documented(e: &WireError) -> bool {
    STRICTER_THAN_HTTPARSE.contains(&e.kind())
}

fn trim_ows(v: &[u8]) -> &[u8] {
    let start = v.iter().position(|&b| b != b' ' && b != b'\t').unwrap_or(v.len());
    let end = v.iter().rposition(|&b| b != b' ' && b != b'\t').map_or(start, |i| i + 1);
    &v[start..end]
}
