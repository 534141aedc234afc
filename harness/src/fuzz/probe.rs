//! Running one case against the live proxy: write it (split as the case says), read the answer, probe the
//! tunnel, and collect what the origins recorded. Every wait has a deadline.

use std::time::Duration;

use tokio::time::Instant;

use super::{
    case::{Case, Dest},
    oracle::{Facts, Parsed},
};
use crate::{
    client::{HeadRead, ReadEvent, transcript::Transcript},
    exec::{ProxyEndpoint, RunEnv, Settings, connect, observe::Observed},
    origin::OriginSet,
    scenario::{OriginKind, template::Template},
};

/// How long a refused connection is watched for a smuggled request being acted on.
const AFTER_REFUSAL: Duration = Duration::from_millis(150);
/// How long the answer to a head the strict parser finds incomplete is awaited.
const INCOMPLETE_WAIT: Duration = Duration::from_millis(300);
/// Bytes sent through a tunnel to check it relays intact.
const PROBE: &[u8] = b"connect-harness fuzz probe 0123456789";

/// Why a case could not be run at all.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProbeError {
    /// The proxy could not be reached (a liveness problem, not a result of this case).
    #[error("the proxy could not be reached: {0}")]
    Unreachable(String),
    /// The case does not render (a bug of the generator).
    #[error("the case does not render: {0}")]
    Render(String),
}

/// The bytes of a case for this run's origins and credentials.
pub fn render(
    case: &Case,
    set: &OriginSet,
    ep: &ProxyEndpoint,
    settings: &Settings,
    token: &str,
) -> Result<Vec<u8>, ProbeError> {
    let env = RunEnv::new(set, ep, settings.proxy_user.as_deref(), token);
    let t = Template::parse(&case.render()).map_err(|e| ProbeError::Render(e.0))?;
    Ok(t.expand(&env))
}

/// The strict parser's verdict on bytes (an incomplete head is not an error).
pub fn parser_verdict(bytes: &[u8]) -> Result<(), reference_proxy::wire::WireError> {
    read_head(bytes, b"").0
}

/// The strict parser's verdict on bytes, and what it read when the head is complete; `dest` is the authority
/// (`127.0.0.1:PORT`) of the case's destination.
pub fn read_head(bytes: &[u8], dest: &[u8]) -> (Result<(), reference_proxy::wire::WireError>, Option<Parsed>) {
    use reference_proxy::wire::{HeadParser, Limits, parse_authority, parse_head};
    let mut p = HeadParser::new(Limits::default());
    match parse_head(bytes, &mut p) {
        Err(e) => (Err(e), None),
        Ok(None) => (Ok(()), None),
        Ok(Some(head)) => {
            let want = parse_authority(dest).ok();
            let names_dest = head.authority().map(|a| want.is_some_and(|w| names(a, w)));
            (Ok(()), Some(Parsed { method: head.method().to_string(), names_dest }))
        }
    }
}

/// Whether the strict parser found no error and no end of the head.
pub fn incomplete(parser: &Result<(), reference_proxy::wire::WireError>, parsed: &Option<Parsed>) -> bool {
    parser.is_ok() && parsed.is_none()
}

/// Whether authority `a` reaches the origin at `want`: the same port, and the same address or, for an origin on
/// 127.0.0.1, one of the names the grammar uses for it (the origins also listen on ::1).
fn names(a: reference_proxy::wire::Authority<'_>, want: reference_proxy::wire::Authority<'_>) -> bool {
    use reference_proxy::wire::Host;
    let loopback = |h: Host<'_>| match h {
        Host::Ipv4(ip) => ip == std::net::Ipv4Addr::LOCALHOST,
        Host::Ipv6(ip) => ip == std::net::Ipv6Addr::LOCALHOST,
        Host::Name(n) => n.trim_end_matches('.').eq_ignore_ascii_case("localhost"),
    };
    a.port == want.port && (a.host == want.host || (loopback(want.host) && loopback(a.host)))
}

/// Runs one case with the origins of `set` (whose log is cleared first).
pub async fn run(
    case: &Case,
    set: &OriginSet,
    ep: &ProxyEndpoint,
    settings: &Settings,
    timeout: Duration,
) -> Result<Facts, ProbeError> {
    set.log.clear();
    let token = format!("fz{:012x}", rand::random::<u64>() >> 16);
    let bytes = render(case, set, ep, settings, &token)?;
    let dest = format!("{{{d}.host}}:{{{d}.port}}", d = case.dest.placeholder());
    let dest = Template::parse(&dest).map_err(|e| ProbeError::Render(e.0))?.expand(&RunEnv::new(
        set,
        ep,
        settings.proxy_user.as_deref(),
        &token,
    ));
    let (parser, parsed) = read_head(&bytes, &dest);
    let choice = connect::TlsChoice { sni: Some(ep.host.clone()), alpn: Vec::new(), h2_frames: false };
    let mut conn = match connect::open(ep, settings, &choice, Transcript::empty()).await {
        Ok((conn, _)) => conn,
        Err((e, _, _)) => return Err(ProbeError::Unreachable(e.to_string())),
    };
    // A head the strict parser finds incomplete normally gets no answer: a proxy that answers it does so at once,
    // so the wait is short (a campaign would otherwise spend most of its time on them).
    let deadline = Instant::now() + if incomplete(&parser, &parsed) { timeout.min(INCOMPLETE_WAIT) } else { timeout };
    let cuts = case.cut_points(bytes.len());
    let mut from = 0;
    let mut write_failed = false;
    for end in cuts.into_iter().chain([bytes.len()]) {
        if conn.write(&bytes[from..end], deadline).await.is_err() {
            write_failed = true;
            break;
        }
        from = end;
    }
    // The answer, after any interim 1xx responses (bounded).
    let mut answer = Observed::timeout(b"");
    let mut interim = Vec::new();
    for _ in 0..4 {
        let read = conn.read_head(64 * 1024, deadline).await;
        match read {
            HeadRead::Head(h) if (100..200).contains(&h.status) => interim.push(h.status),
            other => {
                answer = Observed::from_read(other, interim.clone());
                break;
            }
        }
    }
    if write_failed && matches!(answer, Observed::Timeout { .. }) {
        answer = Observed::closed(b"", Some("the proxy closed before the request was written".into()));
    }
    let mut tunnel_intact = None;
    if answer.is_success() && case.dest == Dest::Echo && !case.is_forward_request() {
        // What the echo origin returns: whatever followed the head (early bytes, a pipelined request), then the
        // probe. A proxy may drop early data (RFC 2817 §5.2 is de facto), so the probe alone also counts.
        let rest = after_head(&bytes).to_vec();
        let _ = conn.write(PROBE, deadline).await;
        let want_full = [rest.as_slice(), PROBE].concat();
        let probe_deadline = Instant::now() + timeout.min(Duration::from_secs(2));
        // Stop early when the early bytes were dropped and only the probe came back.
        let probe_only = |buf: &[u8]| !rest.is_empty() && buf == PROBE;
        while conn.buf.len() < want_full.len() && !probe_only(&conn.buf) {
            match conn.read_more(want_full.len() - conn.buf.len(), probe_deadline).await {
                ReadEvent::Data(_) => {}
                _ => break,
            }
        }
        tunnel_intact = Some(conn.buf == want_full || conn.buf == PROBE);
    } else if !answer.is_success() {
        // Give a proxy that acts on what followed the refusal the time to do it.
        let _ = conn.drain_to_eof(64 * 1024, Instant::now() + AFTER_REFUSAL).await;
    }
    conn.reset_quietly();
    let early = super::case::EARLY.replace("{token}", &token);
    let records = set.log.snapshot();
    let count = |k: OriginKind| records.iter().filter(|r| r.report.origin == k).count();
    let echo_got_early = case.early
        && records.iter().any(|r| r.report.origin == OriginKind::Echo && contains(&r.kept, early.as_bytes()));
    Ok(Facts {
        answer,
        echo_connections: count(OriginKind::Echo),
        echo2_connections: count(OriginKind::Echo2),
        echo_got_early,
        tunnel_intact,
        parser,
        parsed,
    })
}

/// Whether a well-formed CONNECT to the echo origin still gets a 2xx (the liveness oracle).
pub async fn alive(set: &OriginSet, ep: &ProxyEndpoint, settings: &Settings, timeout: Duration) -> Result<(), String> {
    match run(&Case::well_formed(), set, ep, settings, timeout).await {
        Ok(f) if f.answer.is_success() => Ok(()),
        Ok(f) => Err(format!("a well-formed CONNECT got {}", f.answer.summary())),
        Err(e) => Err(e.to_string()),
    }
}

/// The bytes after the first empty line (CRLF CRLF, or LF LF).
fn after_head(bytes: &[u8]) -> &[u8] {
    let crlf = memfind(bytes, b"\r\n\r\n").map(|i| i + 4);
    let lf = memfind(bytes, b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => &bytes[a.min(b)..],
        (Some(a), None) | (None, Some(a)) => &bytes[a..],
        (None, None) => &[],
    }
}

fn memfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    memfind(hay, needle).is_some()
}
