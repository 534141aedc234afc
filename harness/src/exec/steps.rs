//! The step dispatcher and the steps that send. Each step returns a report; none waits without a deadline.

use std::time::Duration;

use tokio::time::Instant;

use super::{
    State, origin_check, parent_check,
    report::{StepReport, StepResult},
    response, tunnel,
};
use crate::{
    client::HeadRead,
    scenario::step::{CloseKind, ConnectRequest, H2Headers, Step, StreamChoice},
};

pub(super) async fn run(st: &mut State<'_>, index: usize, step: &Step) -> StepReport {
    let kind = step.kind();
    let lvl = st.level;
    let ok = |detail: String| StepReport::new(index, kind, lvl, StepResult::Passed, detail);
    let bad = |detail: String| StepReport::new(index, kind, lvl, StepResult::Mismatch, detail);
    let harness = |detail: String| StepReport::new(index, kind, lvl, StepResult::Error, detail);
    // After a tolerated non-2xx answer there is no tunnel: tunnel steps do not apply.
    let tunnel_step = matches!(
        step,
        Step::Echo(_) | Step::ExpectData(_) | Step::ExpectBanner(_) | Step::TlsHandshake(_) | Step::SendRandom(_)
    );
    if tunnel_step && !st.tunnel && st.observed.as_ref().is_some_and(|o| !o.is_success()) {
        return ok("not run: the proxy did not open a tunnel (its answer was acceptable)".into());
    }
    if st.refused_by_policy && !matches!(step, Step::Origin(c) if c.connections == Some(0)) {
        return ok("not run: the proxy refused by policy".into());
    }
    if let Step::Origin(c) = step
        && c.if_rejected
        && st.tunnel
    {
        return ok("not run: the proxy opened a tunnel (an acceptable answer), so the check does not apply".into());
    }
    if let Step::Origin(c) = step
        && c.if_tunnelled
        && !st.tunnel
    {
        return ok(
            "not run: the proxy did not open a tunnel (an acceptable answer), so the check does not apply".into()
        );
    }
    match step {
        Step::Send(text) => match st.expand(text) {
            Err(e) => harness(e),
            Ok(data) => {
                st.note_request(&data);
                send(st, &data, index, kind).await
            }
        },
        Step::SendSlowly(s) => {
            let data = match st.expand(&s.data) {
                Ok(d) => d,
                Err(e) => return harness(e),
            };
            st.note_request(&data);
            for (i, piece) in data.chunks(s.chunk).enumerate() {
                if i > 0 {
                    tokio::time::sleep(Duration::from_millis(s.delay_ms)).await;
                }
                let r = send(st, piece, index, kind).await;
                if r.result != StepResult::Passed {
                    return r;
                }
            }
            ok(format!("sent {} bytes in pieces of {}", data.len(), s.chunk))
        }
        Step::Connect(c) if st.conn.is_h2() => h2_connect(st, c, index, kind).await,
        Step::Connect(c) => match build_connect(st, c) {
            Err(e) => harness(e),
            Ok((data, early)) => {
                st.note_request(&data);
                let r = send(st, &data, index, kind).await;
                if r.result == StepResult::Passed && early > 0 {
                    let tail = data[data.len() - early..].to_vec();
                    st.note_tunnel_sent(&tail);
                }
                r
            }
        },
        Step::SendRandom(n) => tunnel::send_random(st, index, kind, n).await,
        Step::Close(how) => {
            let deadline = st.deadline(None);
            match how {
                CloseKind::Half => match st.conn.shutdown_write(deadline).await {
                    Ok(()) => ok("half-closed".into()),
                    Err(e) => bad(e),
                },
                CloseKind::Full => {
                    st.conn.close(deadline).await;
                    ok("closed".into())
                }
                CloseKind::Reset => {
                    st.conn.reset();
                    ok("reset".into())
                }
            }
        }
        Step::Expect(e) => response::expect(st, index, e).await,
        Step::Echo(n) => tunnel::echo(st, index, *n).await,
        Step::ExpectData(text) => tunnel::expect_data(st, index, kind, text).await,
        Step::ExpectBanner(b) => tunnel::expect_banner(st, index, kind, b).await,
        Step::ExpectEof(e) => tunnel::expect_eof(st, index, kind, e).await,
        Step::ExpectSilence(ms) => tunnel::expect_silence(st, index, kind, ms).await,
        Step::TlsHandshake(t) => tunnel::inner_tls(st, index, t).await,
        Step::Origin(c) => origin_check::origin_check(st, index, c).await,
        Step::Parent(c) => parent_check::parent_check(st, index, c).await,
        Step::H2Headers(h) => h2_headers(st, h, index, kind).await,
        Step::H2Parallel(p) => super::h2_parallel::run(st, p, index, kind).await,
        Step::H2Window(n) => {
            let deadline = st.deadline(None);
            match st.conn.h2_stream_window(*n, deadline).await {
                Ok(()) => ok(format!("SETTINGS_INITIAL_WINDOW_SIZE {n} announced and acknowledged")),
                Err(e @ crate::client::h2::H2Error::Request(_)) => {
                    StepReport::new(index, kind, lvl, StepResult::Error, e.to_string())
                }
                Err(e) => StepReport::new(index, kind, lvl, StepResult::Mismatch, e.to_string()),
            }
        }
    }
}

/// An `h2_headers` step: the fields expanded and written as one HEADERS frame by the harness's own frame
/// writer. A new stream becomes the scenario's stream, so the `expect` that follows reads its answer.
async fn h2_headers(st: &mut State<'_>, h: &H2Headers, index: usize, kind: &str) -> StepReport {
    let level = st.level;
    let report = |result, detail| StepReport::new(index, kind, level, result, detail);
    let mut fields = Vec::new();
    for [name, value] in &h.fields {
        match (st.expand(name), st.expand(value)) {
            (Ok(n), Ok(v)) => fields.push((n, v)),
            (Err(e), _) | (_, Err(e)) => return report(StepResult::Error, e),
        }
    }
    if h.auth
        && h.on == StreamChoice::New
        && let Some(line) = &st.env.auth
        && let Some((name, value)) = crate::scenario::h2::split_field(line.as_bytes())
    {
        fields.push((name.into_bytes(), value));
    }
    // What the policy checks and the SNI control read as "the request": its HTTP/1.1-style rendering.
    let mut rendered = b"HEADERS\r\n".to_vec();
    for (n, v) in &fields {
        rendered.extend_from_slice(n);
        rendered.extend_from_slice(b": ");
        rendered.extend_from_slice(v);
        rendered.extend_from_slice(b"\r\n");
    }
    st.note_request(&rendered);
    let deadline = st.deadline(None);
    let on_current = h.on == StreamChoice::Current;
    let n_fields = fields.len();
    match st.conn.h2_headers(fields, on_current, h.end_stream, deadline).await {
        Ok(()) => report(
            StepResult::Passed,
            format!(
                "HEADERS with {} fields on {}{}",
                n_fields,
                if on_current { "the current stream" } else { "a new stream" },
                if h.end_stream { " with END_STREAM" } else { "" }
            ),
        ),
        Err(e @ crate::client::h2::H2Error::ReadyTimeout) => report(StepResult::TimedOut, e.to_string()),
        Err(e @ crate::client::h2::H2Error::Request(_)) => report(StepResult::Error, e.to_string()),
        Err(e) => report(StepResult::Mismatch, e.to_string()),
    }
}

async fn send(st: &mut State<'_>, data: &[u8], index: usize, kind: &str) -> StepReport {
    let deadline = st.deadline(None);
    match st.conn.write(data, deadline).await {
        Ok(()) => {
            if st.tunnel {
                st.note_tunnel_sent(data);
            }
            StepReport::new(index, kind, st.level, StepResult::Passed, format!("sent {} bytes", data.len()))
        }
        Err(e) if e.contains("timed out") => StepReport::new(index, kind, st.level, StepResult::TimedOut, e),
        Err(e) => {
            // The proxy may have answered before closing; say what it was.
            let quick = Instant::now() + Duration::from_millis(200);
            let answer = match st.conn.read_head(st.settings.head_limit, quick).await {
                HeadRead::Head(h) => format!("; the proxy had answered {} {} {}", h.version, h.status, h.reason),
                _ => String::new(),
            };
            StepReport::new(index, kind, st.level, StepResult::Mismatch, format!("{e}{answer}"))
        }
    }
}

/// A CONNECT stream's authority, fields and early DATA.
pub(super) type H2Request = (String, Vec<(String, Vec<u8>)>, Vec<u8>);

/// A `connect` step over HTTP/2: a CONNECT stream with `:authority` = the target, the extra fields as
/// (lowercased) fields, Proxy-Authorization when configured, and the early bytes as DATA right after HEADERS.
/// Scenarios whose `connect` has no HTTP/2 form (Host lines, a version, connection-specific fields) never get
/// here: they are skipped on the h2 transports ([`crate::scenario::h2::skip_reason`]).
async fn h2_connect(st: &mut State<'_>, c: &ConnectRequest, index: usize, kind: &str) -> StepReport {
    let level = st.level;
    let report = |result, detail| StepReport::new(index, kind, level, result, detail);
    let (target, fields, early) = match build_h2_connect(st, c) {
        Ok(b) => b,
        Err(e) => return report(StepResult::Error, e),
    };
    // What the policy checks and the SNI control read as "the request": its HTTP/1.1 rendering.
    let mut rendered = format!("CONNECT {target} HTTP/2\r\n").into_bytes();
    for (n, v) in &fields {
        rendered.extend_from_slice(format!("{n}: {}\r\n", String::from_utf8_lossy(v)).as_bytes());
    }
    st.note_request(&rendered);
    let deadline = st.deadline(None);
    let early_len = early.len();
    let early_copy = early.clone();
    match st.conn.h2_connect(&target, &fields, early, deadline).await {
        Ok(()) => {
            if early_len > 0 {
                st.note_tunnel_sent(&early_copy);
            }
            report(
                StepResult::Passed,
                format!("HTTP/2 CONNECT stream to {target} ({} fields, {early_len} bytes of DATA)", fields.len()),
            )
        }
        Err(e @ crate::client::h2::H2Error::ReadyTimeout) => report(StepResult::TimedOut, e.to_string()),
        Err(e @ crate::client::h2::H2Error::Request(_)) => report(StepResult::Error, e.to_string()),
        Err(e) => report(StepResult::Mismatch, e.to_string()),
    }
}

/// The `connect` step's stream: the authority, the fields (Proxy-Authorization last, when configured) and the
/// early DATA; the HTTP/2 counterpart of [`build_connect`].
pub(super) fn build_h2_connect(st: &State<'_>, c: &ConnectRequest) -> Result<H2Request, String> {
    let target = match &c.target {
        Some(t) => st.expand(t)?,
        None => st.env.target.clone(),
    };
    let target = String::from_utf8(target).map_err(|_| "the target is not UTF-8".to_string())?;
    let mut fields = Vec::new();
    for f in &c.fields {
        let line = st.expand(f)?;
        let (name, value) = crate::scenario::h2::split_field(&line)
            .ok_or_else(|| format!("{:?} is not a \"Name: value\" field line", String::from_utf8_lossy(&line)))?;
        fields.push((name, value));
    }
    if c.auth
        && let Some(line) = &st.env.auth
        && let Some(field) = crate::scenario::h2::split_field(line.as_bytes())
    {
        fields.push(field);
    }
    let early = match &c.early {
        Some(e) => st.expand(e)?,
        None => Vec::new(),
    };
    Ok((target, fields, early))
}

/// The request bytes, and how many bytes at the end are early tunnel data.
fn build_connect(st: &State<'_>, c: &ConnectRequest) -> Result<(Vec<u8>, usize), String> {
    let target = match &c.target {
        Some(t) => st.expand(t)?,
        None => st.env.target.clone(),
    };
    let mut out = b"CONNECT ".to_vec();
    out.extend_from_slice(&target);
    out.push(b' ');
    out.extend_from_slice(c.version.as_deref().unwrap_or("HTTP/1.1").as_bytes());
    out.extend_from_slice(b"\r\n");
    match &c.host {
        None => {
            out.extend_from_slice(b"Host: ");
            out.extend_from_slice(&target);
            out.extend_from_slice(b"\r\n");
        }
        Some(hosts) => {
            for h in hosts {
                out.extend_from_slice(b"Host: ");
                out.extend_from_slice(&st.expand(h)?);
                out.extend_from_slice(b"\r\n");
            }
        }
    }
    for f in &c.fields {
        out.extend_from_slice(&st.expand(f)?);
        out.extend_from_slice(b"\r\n");
    }
    if c.auth
        && let Some(line) = &st.env.auth
    {
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    let early = match &c.early {
        Some(e) => st.expand(e)?,
        None => Vec::new(),
    };
    out.extend_from_slice(&early);
    Ok((out, early.len()))
}
