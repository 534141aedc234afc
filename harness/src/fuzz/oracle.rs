//! The oracles: pure functions from what one case sent and what was observed (the proxy's answer, what the
//! origins recorded, what came back through the tunnel) to violations. Each violation names its oracle, the
//! catalog row and RFC sentence it rests on, its level, and a signature that groups equal findings.

use serde::{Deserialize, Serialize};

use super::case::{Case, Dest, PortForm, Target};
use crate::{exec::observe::Observed, scenario::Level};

/// The oracle a finding comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Oracle {
    /// After the case, the proxy still answers a well-formed CONNECT.
    Liveness,
    /// A tunnel reaches exactly the origin the request-target names.
    TargetIntegrity,
    /// Nothing sent after a refused request reaches an origin.
    NothingAfterRejection,
    /// The response is well-formed; a 2xx has no framing fields; tunnel bytes are intact.
    WellFormed,
    /// The proxy and the strict parser disagree on accepting the bytes.
    Differential,
}

impl Oracle {
    pub fn as_str(self) -> &'static str {
        match self {
            Oracle::Liveness => "liveness",
            Oracle::TargetIntegrity => "target-integrity",
            Oracle::NothingAfterRejection => "nothing-after-rejection",
            Oracle::WellFormed => "well-formed",
            Oracle::Differential => "differential",
        }
    }
}

/// One broken expectation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Violation {
    pub oracle: Oracle,
    /// Groups equal findings: the oracle and the distinguishing fact (stable across shrinking).
    pub signature: String,
    pub level: Level,
    /// Catalog row (docs/requirements.md).
    pub catalog: String,
    /// The RFC sentence.
    pub requirement: String,
    /// What happened.
    pub detail: String,
}

/// What one case observed.
#[derive(Debug, Clone)]
pub struct Facts {
    pub answer: Observed,
    /// Connections the echo origin, the second echo origin and the closed port got (the closed port never
    /// accepts, so it is always 0; kept for symmetry).
    pub echo_connections: usize,
    pub echo2_connections: usize,
    /// Whether the echo origin received the early tunnel bytes, when they were sent.
    pub echo_got_early: bool,
    /// After a 2xx to the echo origin: whether the probe bytes came back intact (None: not probed).
    pub tunnel_intact: Option<bool>,
    /// The strict parser's verdict on the bytes: `Ok` or the error's kind.
    pub parser: Result<(), reference_proxy::wire::WireError>,
    /// What the strict parser read, when it read a complete head without error.
    pub parsed: Option<Parsed>,
}

/// The strict parser's reading of a complete head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub method: String,
    /// Whether the request-target is an authority naming the case's destination origin (`None`: not in
    /// authority form).
    pub names_dest: Option<bool>,
}

const TARGET: &str = "If the request-target is in authority-form, the target URI's authority component is the request-target. (RFC 9112 §3.3)";
const PORT: &str = "A server MUST reject a CONNECT request that targets an empty or invalid port number, typically by responding with a 400 (Bad Request) status code. (RFC 9110 §9.3.6)";
const NO_2XX: &str = "Any 2xx (Successful) response indicates that the sender (and all inbound proxies) will switch to tunnel mode immediately after the response header section. (RFC 9110 §9.3.6; a 2xx without the upstream connection is RFC 2817 §5.3's \"MUST NOT\")";
const FRAMING: &str = "A server MUST NOT send any Transfer-Encoding or Content-Length header fields in a 2xx (Successful) response to CONNECT. (RFC 9110 §9.3.6)";
const STATUS_LINE: &str = "status-line = HTTP-version SP status-code SP [ reason-phrase ] (RFC 9112 §4)";
const BLIND: &str =
    "A tunnel acts as a blind relay between two connections without changing the messages. (RFC 9110 §3.7)";
const REJECT_CLOSE: &str = "proxy servers MUST close the underlying connection when rejecting a CONNECT request (draft-ietf-httpbis-optimistic-upgrade; so `should` here); RFC 9110 §9.3.6 makes bytes after a CONNECT tunnel data, never a request";
const GRAMMAR: &str = "When a server ... receives a sequence of octets that does not match the HTTP-message grammar aside from the robustness exceptions listed above, the server SHOULD respond with a 400 (Bad Request) response and close the connection. (RFC 9112 §2.2)";
pub const LIVENESS: &str = "A server SHOULD respond with a 400 (Bad Request) to a request it cannot parse and close the connection (RFC 9112 §2.2): one malformed request must not stop the proxy from serving the next client.";

fn v(oracle: Oracle, fact: &str, level: Level, catalog: &str, requirement: &str, detail: String) -> Violation {
    Violation {
        oracle,
        signature: format!("{}/{fact}", oracle.as_str()),
        level,
        catalog: catalog.into(),
        requirement: requirement.into(),
        detail,
    }
}

/// The catalog row and level of a parser error the RFC requires a rejection for; `None` for errors where
/// leniency is allowed (replace with SP, ignore the line) or at most a SHOULD.
pub fn must_reject(e: &reference_proxy::wire::WireError) -> Option<(&'static str, &'static str)> {
    use reference_proxy::wire::{AuthorityError as A, WireError as W};
    Some(match e {
        W::Authority(A::MissingPort) => (
            "A01",
            "A server MUST reject a CONNECT request that targets an empty or invalid port number (RFC 9110 §9.3.6)",
        ),
        W::Authority(A::EmptyPort | A::InvalidPort | A::PortOutOfRange) => ("A02", PORT),
        W::MissingHost | W::DuplicateHost => (
            "C01",
            "A server MUST respond with a 400 (Bad Request) status code to any HTTP/1.1 request message that lacks a Host header field and to any request message that contains more than one Host header field line (RFC 9112 §3.2)",
        ),
        W::InvalidHost(_) => (
            "C02",
            "A server MUST respond with a 400 (Bad Request) status code to any request message that contains ... a Host header field with an invalid field value (RFC 9112 §3.2)",
        ),
        W::WhitespaceBeforeColon => (
            "D01",
            "A server MUST reject, with a response status code of 400 (Bad Request), any received request message that contains whitespace between a header field name and colon (RFC 9112 §5.1)",
        ),
        _ => return None,
    })
}

/// Judges one case. `closed_after_reject`: after a refusal, whether the proxy closed the connection.
pub fn judge(case: &Case, f: &Facts) -> Vec<Violation> {
    let mut out = Vec::new();
    // A forward-proxy request (`GET http://…/`) gets the origin's answer, not a tunnel: only the status line is
    // judged.
    let forward = case.is_forward_request();
    let tunnelled = f.answer.is_success() && !forward;
    // Well-formedness of the answer.
    match &f.answer {
        Observed::Garbage { .. } => out.push(v(
            Oracle::WellFormed,
            "unparseable-response",
            Level::Must,
            "F04",
            STATUS_LINE,
            format!("the answer is not an HTTP response: {}", f.answer.summary()),
        )),
        Observed::Response { head, .. } => {
            if !head.space_after_status {
                out.push(v(
                    Oracle::WellFormed,
                    "no-space-after-status",
                    Level::Must,
                    "F04",
                    STATUS_LINE,
                    format!("status line {:?} has no SP after the status code", head.status_line()),
                ));
            }
            if tunnelled {
                for name in ["content-length", "transfer-encoding"] {
                    if head.fields.iter().any(|(n, _)| n.eq_ignore_ascii_case(name)) {
                        out.push(v(
                            Oracle::WellFormed,
                            &format!("{name}-in-2xx"),
                            Level::Must,
                            "F01",
                            FRAMING,
                            format!("the 2xx carries {name}"),
                        ));
                    }
                }
            }
        }
        _ => {}
    }
    let parser_ok = f.parser.is_ok();
    if tunnelled && case.is_raw() {
        raw_target_integrity(case, f, &mut out);
    } else if tunnelled {
        // Target integrity.
        let names_echo =
            case.dest == Dest::Echo && matches!(case.target, Target::Authority(_, p) if p.names_destination());
        if !wrong_or_no_upstream(case, f, &mut out) && !names_echo {
            // The echo origin got the tunnel although the target does not name its port correctly.
            let fact = match case.target {
                Target::Authority(_, p) => format!("port-{p:?}").to_lowercase(),
                other => format!("target-{other:?}").to_lowercase(),
            };
            let (catalog, req) = match (&f.parser, case.target) {
                (Err(e), _) if must_reject(e).is_some() => must_reject(e).expect("checked"),
                (_, Target::Authority(_, PortForm::TrailingPath)) => ("A10", GRAMMAR),
                (_, Target::Authority(..)) => ("A02", PORT),
                _ => ("A08", GRAMMAR),
            };
            let level = if must_reject_target(case) { Level::Must } else { Level::Should };
            out.push(v(
                Oracle::TargetIntegrity,
                &fact,
                level,
                catalog,
                req,
                format!(
                    "the target {:?} is not a valid authority for the echo origin, yet the proxy tunnelled to it",
                    case.target_text()
                ),
            ));
        }
        if f.tunnel_intact == Some(false) {
            out.push(v(
                Oracle::WellFormed,
                "tunnel-bytes-altered",
                Level::Must,
                "G01",
                BLIND,
                "the bytes sent through the tunnel did not come back from the echo origin unchanged".into(),
            ));
        }
    } else if matches!(&f.answer, Observed::Response { head, .. } if head.status >= 300)
        || matches!(f.answer, Observed::Closed { .. })
    {
        // Nothing acted on after a rejection (a refusal, or a close without an answer; not bytes that are no
        // response at all, which may be the request itself relayed back by an origin).
        if case.pipelined && f.echo2_connections > 0 {
            out.push(v(
                Oracle::NothingAfterRejection,
                "pipelined-connect-after-refusal",
                Level::Should,
                "H05",
                REJECT_CLOSE,
                format!("after {} the pipelined CONNECT reached the second echo origin", f.answer.summary()),
            ));
        }
        if case.early && f.echo_got_early {
            out.push(v(
                Oracle::NothingAfterRejection,
                "early-bytes-after-refusal",
                Level::Should,
                "H05",
                REJECT_CLOSE,
                format!("after {} the early tunnel bytes reached the echo origin", f.answer.summary()),
            ));
        }
    }
    // Differential: the proxy's accept/reject against the strict parser's.
    if forward {
        return out;
    }
    if tunnelled && !parser_ok {
        let e = f.parser.as_ref().expect_err("checked");
        let already = out.iter().any(|x| x.oracle == Oracle::TargetIntegrity);
        if let Some((catalog, req)) = must_reject(e)
            && !already
        {
            out.push(v(
                Oracle::Differential,
                &format!("accepts-{}", e.kind()),
                Level::Must,
                catalog,
                req,
                format!("the proxy tunnelled a request the RFC requires it to reject ({e})"),
            ));
        } else if must_reject(e).is_none() {
            out.push(v(
                Oracle::Differential,
                &format!("lenient-{}", e.kind()),
                Level::Observed,
                "B02",
                GRAMMAR,
                format!("the proxy tunnelled a request the strict parser refuses ({e}): it is more lenient"),
            ));
        }
    } else if parser_ok
        && (if case.is_raw() {
            f.parsed.as_ref().is_some_and(|p| p.method == "CONNECT" && p.names_dest == Some(true))
        } else {
            case.method == "CONNECT"
        })
        && matches!(&f.answer, Observed::Response { head, .. } if matches!(head.status, 400 | 414 | 431 | 505))
        && case.dest == Dest::Echo
    {
        let status = match &f.answer {
            Observed::Response { head, .. } => head.status,
            _ => 0,
        };
        out.push(v(
            Oracle::Differential,
            &format!("strict-{status}"),
            Level::Observed,
            "B02",
            GRAMMAR,
            format!("the proxy refused with {status} a request the strict parser accepts: it is stricter"),
        ));
    }
    out
}

/// After a tunnel opened: a connection at the second echo origin (named only by Host or by the pipelined
/// CONNECT), and a 2xx with no connection at the named origin. Returns whether the latter was found (the target
/// checks then have nothing to add).
fn wrong_or_no_upstream(case: &Case, f: &Facts, out: &mut Vec<Violation>) -> bool {
    if f.echo2_connections > 0 {
        let what = if case.pipelined { "pipelined-connect-acted-on" } else { "routed-by-host" };
        out.push(v(
            Oracle::TargetIntegrity,
            what,
            Level::Must,
            if case.pipelined { "J10" } else { "C03" },
            TARGET,
            format!(
                "the proxy answered {} and the second echo origin (named only by {}) got a connection",
                f.answer.summary(),
                if case.pipelined { "the pipelined CONNECT, which is tunnel data" } else { "the Host field" }
            ),
        ));
    }
    if case.dest == Dest::Closed || f.echo_connections == 0 {
        let why = if case.dest == Dest::Closed {
            "for a port where nothing listens"
        } else {
            "but the named origin got no connection"
        };
        out.push(v(
            Oracle::TargetIntegrity,
            "2xx-without-upstream",
            Level::Must,
            "F03",
            NO_2XX,
            format!("the proxy answered {} {why}", f.answer.summary()),
        ));
        return true;
    }
    false
}

/// Target integrity of a tunnel opened for a seed or mutated head: judged by what the strict parser reads in the
/// bytes. A head it refuses is left to the differential oracle (which knows the rejections the RFC requires).
fn raw_target_integrity(case: &Case, f: &Facts, out: &mut Vec<Violation>) {
    if wrong_or_no_upstream(case, f, out) {
        return;
    }
    if f.parser.is_err() {
        return;
    }
    match &f.parsed {
        None => out.push(v(
            Oracle::Differential,
            "accepts-incomplete-head",
            Level::Observed,
            "B02",
            GRAMMAR,
            "the proxy tunnelled for bytes in which the strict parser finds no end of the head".into(),
        )),
        Some(Parsed { names_dest: Some(true), .. }) => {}
        Some(Parsed { names_dest: Some(false), .. }) => out.push(v(
            Oracle::TargetIntegrity,
            "tunnel-elsewhere",
            Level::Must,
            "A11",
            TARGET,
            "the request-target is an authority naming another destination, yet the echo origin got the tunnel".into(),
        )),
        Some(Parsed { names_dest: None, .. }) => out.push(v(
            Oracle::TargetIntegrity,
            "target-not-authority",
            Level::Should,
            "A09",
            GRAMMAR,
            "the request-target is not in authority form, yet the proxy tunnelled to the echo origin".into(),
        )),
    }
}

/// Whether the RFC requires the case's target to be rejected (a MUST): a missing, empty or invalid port (`N;x`
/// is an invalid port number, as in the scenario `rfc9112/3.2.3/port-semicolon-param`; `N/x` is text after a
/// valid authority, a SHOULD).
fn must_reject_target(case: &Case) -> bool {
    use super::case::PortForm::*;
    matches!(
        case.target,
        Target::Authority(_, Missing | Empty | Plus65536 | Minus65536 | Plus2Pow32 | PlusSign | Suffix)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::head::ResponseHead;
    use crate::fuzz::case::{HostField, HostForm, PortForm};

    fn answer(status: u16, fields: &[(&str, &str)]) -> Observed {
        Observed::Response {
            head: ResponseHead {
                version: "HTTP/1.1".into(),
                status,
                reason: "X".into(),
                space_after_status: true,
                fields: fields.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect(),
                size: 0,
            },
            interim: Vec::new(),
            closed_after: None,
        }
    }

    fn facts(answer: Observed) -> Facts {
        Facts {
            answer,
            echo_connections: 1,
            echo2_connections: 0,
            echo_got_early: false,
            tunnel_intact: Some(true),
            parser: Ok(()),
            parsed: None,
        }
    }

    #[test]
    fn a_correct_tunnel_has_no_violation() {
        assert!(judge(&Case::well_formed(), &facts(answer(200, &[]))).is_empty());
    }

    #[test]
    fn wrapped_port_tunnel_is_a_must_finding() {
        let mut c = Case::well_formed();
        c.target = Target::Authority(HostForm::Ipv4, PortForm::Plus65536);
        let mut f = facts(answer(200, &[]));
        f.parser =
            Err(reference_proxy::wire::WireError::Authority(reference_proxy::wire::AuthorityError::PortOutOfRange));
        let got = judge(&c, &f);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(
            (got[0].oracle, got[0].level, got[0].signature.as_str()),
            (Oracle::TargetIntegrity, Level::Must, "target-integrity/port-plus65536")
        );
    }

    #[test]
    fn host_routing_and_smuggling_and_framing() {
        let mut c = Case::well_formed();
        c.host = HostField::OtherOrigin;
        let mut f = facts(answer(200, &[("Content-Length", "0")]));
        f.echo_connections = 0;
        f.echo2_connections = 1;
        let sigs: Vec<String> = judge(&c, &f).into_iter().map(|v| v.signature).collect();
        assert!(sigs.contains(&"target-integrity/routed-by-host".to_string()), "{sigs:?}");
        assert!(sigs.contains(&"well-formed/content-length-in-2xx".to_string()), "{sigs:?}");
        let mut c = Case::well_formed();
        c.pipelined = true;
        let mut f = facts(answer(400, &[]));
        f.echo2_connections = 1;
        let got = judge(&c, &f);
        assert_eq!(got[0].signature, "nothing-after-rejection/pipelined-connect-after-refusal");
        assert_eq!(got[0].level, Level::Should);
    }

    #[test]
    fn a_2xx_to_a_closed_port_is_a_tunnel_to_nowhere() {
        let mut c = Case::well_formed();
        c.dest = Dest::Closed;
        let mut f = facts(answer(200, &[]));
        f.echo_connections = 0;
        let got = judge(&c, &f);
        assert_eq!(got[0].signature, "target-integrity/2xx-without-upstream");
    }

    #[test]
    fn raw_heads_are_judged_by_the_parser_reading() {
        let mut c = Case::well_formed();
        c.mutations = vec![crate::fuzz::seed::Mutation::Delete { at: 250, len: 2 }];
        let sig = |parsed: Option<Parsed>| {
            let mut f = facts(answer(200, &[]));
            f.parsed = parsed;
            judge(&c, &f).into_iter().map(|v| (v.signature, v.level)).collect::<Vec<_>>()
        };
        let p = |names_dest| Some(Parsed { method: "CONNECT".into(), names_dest });
        assert_eq!(sig(p(Some(true))), vec![]);
        assert_eq!(sig(p(Some(false))), vec![("target-integrity/tunnel-elsewhere".into(), Level::Must)]);
        assert_eq!(sig(p(None)), vec![("target-integrity/target-not-authority".into(), Level::Should)]);
        assert_eq!(sig(None), vec![("differential/accepts-incomplete-head".into(), Level::Observed)]);
        // A head the parser refuses goes to the differential oracle, at the level the RFC gives the rejection.
        let mut f = facts(answer(200, &[]));
        f.parser = Err(reference_proxy::wire::WireError::Authority(reference_proxy::wire::AuthorityError::InvalidPort));
        let got = judge(&c, &f);
        assert_eq!((got.len(), got[0].oracle, got[0].level), (1, Oracle::Differential, Level::Must), "{got:?}");
    }
}
