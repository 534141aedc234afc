//! The `h2_parallel` step (RFC 9113 §5.2, catalog N10/N11): one stalled CONNECT stream must not stall the other
//! streams of the connection. The harness opens the streams, sends into the first one without ever reading it,
//! so the proxy's windows toward the harness and the target's socket fill and the proxy stops releasing that
//! stream's receive window; once the stalled stream stops taking data, it echoes on the others at once. A proxy
//! whose connection-level window is no larger than what one stream may hold, or that serialises its streams'
//! writes, leaves the others waiting.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use rand::{RngCore, SeedableRng, rngs::StdRng};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    task::JoinSet,
    time::{Instant, sleep, timeout_at},
};

use super::{
    State,
    report::{StepReport, StepResult},
};
use crate::{
    client::{Io, h2::H2Error},
    scenario::step::{ConnectRequest, H2Parallel},
};

/// How long the stalled stream must take no more data before the echoes start, and the most it is given.
const STALL_QUIET: Duration = Duration::from_secs(1);
const STALL_MAX: Duration = Duration::from_secs(4);
/// Largest response head read on an extra stream.
const MAX_HEAD: usize = 64 * 1024;

pub(super) async fn run(st: &mut State<'_>, p: &H2Parallel, index: usize, kind: &str) -> StepReport {
    let level = st.level;
    let report = |result, detail: String| StepReport::new(index, kind, level, result, detail);
    if !st.conn.is_h2() {
        return report(StepResult::Error, "h2_parallel needs an HTTP/2 connection".into());
    }
    let request = ConnectRequest { auth: true, ..ConnectRequest::default() };
    let (target, fields, _) = match super::steps::build_h2_connect(st, &request) {
        Ok(b) => b,
        Err(e) => return report(StepResult::Error, e),
    };
    let deadline = st.deadline(None);
    let mut streams: Vec<Box<dyn Io>> = Vec::new();
    for i in 1..=p.streams {
        match st.conn.h2_extra_stream(&target, &fields, deadline).await {
            Ok(s) => streams.push(s),
            Err(H2Error::ReadyTimeout) => {
                return report(
                    StepResult::Inconclusive,
                    format!(
                        "stream {i} of {}: no stream slot before the deadline (the proxy's \
                         SETTINGS_MAX_CONCURRENT_STREAMS leaves no room; allowed, so nothing to judge)",
                        p.streams
                    ),
                );
            }
            Err(e) => return report(StepResult::Mismatch, format!("stream {i} of {} not opened: {e}", p.streams)),
        }
    }
    for (i, s) in streams.iter_mut().enumerate() {
        let which = format!("stream {} of {} to {target}", i + 1, p.streams);
        match read_status(s, deadline).await {
            Ok(status) if (200..300).contains(&status) => {}
            // The proxy may shed load (RFC 9113 §8.7 REFUSED_STREAM; 429, 503): allowed, so nothing to judge.
            Ok(status @ (429 | 503)) => {
                return report(StepResult::Inconclusive, format!("{which} answered :status {status} (load shed)"));
            }
            Err(e) if e.contains("REFUSED_STREAM") => {
                return report(StepResult::Inconclusive, format!("{which}: {e} (load shed)"));
            }
            Ok(status) => return report(StepResult::Mismatch, format!("{which} answered :status {status}, not 2xx")),
            Err(e) => return report(StepResult::Mismatch, format!("{which}: {e}")),
        }
    }
    // The first stream: written into in the background, never read, until the step ends.
    let mut stalled = streams.remove(0);
    let progress = Arc::new(AtomicU64::new(0));
    let counter = progress.clone();
    let stall_bytes = p.stall_bytes;
    let stall_deadline = Instant::now() + STALL_MAX + st.settings.step_timeout;
    // In a JoinSet, so the stalled stream goes (and is reset) with the step, however the step ends.
    let mut staller = JoinSet::new();
    staller.spawn(async move {
        let chunk = vec![0x5a_u8; 64 * 1024];
        let mut sent = 0u64;
        while sent < stall_bytes {
            let n = (stall_bytes - sent).min(chunk.len() as u64) as usize;
            match timeout_at(stall_deadline, stalled.write_all(&chunk[..n])).await {
                Ok(Ok(())) => {
                    sent += n as u64;
                    counter.store(sent, Ordering::Relaxed);
                }
                _ => break,
            }
        }
        // Held (and so never read) until the step aborts this task.
        std::future::pending::<()>().await;
    });
    let started = Instant::now();
    let mut last = u64::MAX;
    let mut quiet_since = Instant::now();
    loop {
        sleep(Duration::from_millis(50)).await;
        let now = progress.load(Ordering::Relaxed);
        if now != last {
            last = now;
            quiet_since = Instant::now();
        }
        if now >= stall_bytes || quiet_since.elapsed() >= STALL_QUIET || started.elapsed() >= STALL_MAX {
            break;
        }
    }
    let stall_note = if last >= stall_bytes {
        return report(
            StepResult::Inconclusive,
            format!(
                "stream 1 took all {stall_bytes} bytes without stalling (the proxy and the target buffered them), \
                 so no stream was stalled to judge the others against; raise stall_bytes"
            ),
        );
    } else if quiet_since.elapsed() < STALL_QUIET {
        // Still taking data when the harness stopped waiting: the other streams would not be measured against a
        // stalled one.
        return report(
            StepResult::Inconclusive,
            format!(
                "stream 1 was still taking data after {} s ({last} bytes): the proxy buffers more than the harness                  waits for, so no stream was stalled to judge the others against",
                STALL_MAX.as_secs()
            ),
        );
    } else {
        format!("stream 1 stalled after taking {last} bytes (never read)")
    };
    st.conn.transcript.event(format!(
        "h2_parallel: {stall_note}; echoing {} bytes on {} streams",
        p.bytes,
        streams.len()
    ));
    let deadline = st.deadline(None);
    let mut echoes = JoinSet::new();
    for (i, s) in streams.into_iter().enumerate() {
        let n = p.bytes as usize;
        echoes.spawn(async move { (i + 2, echo(s, n, deadline).await) });
    }
    let mut failures = Vec::new();
    while let Some(done) = echoes.join_next().await {
        match done {
            Ok((_, Ok(()))) => {}
            Ok((i, Err(e))) => failures.push((i, e)),
            Err(e) => failures.push((0, format!("echo task failed: {e}"))),
        }
    }
    // The stall must have held while the others ran: a stream that took data again was only slow (a busy
    // machine), and the others were not judged against a stalled one.
    let resumed = progress.load(Ordering::Relaxed) != last;
    staller.abort_all();
    if resumed && failures.is_empty() {
        return report(
            StepResult::Inconclusive,
            format!(
                "stream 1 took data again while the others ran ({last} bytes, then more): it was slow, not stalled, \
                 so the others were not judged against a stalled stream"
            ),
        );
    }
    failures.sort();
    let others = p.streams - 1;
    if failures.is_empty() {
        report(
            StepResult::Passed,
            format!("{stall_note}; the other {others} streams each echoed {} bytes byte for byte", p.bytes),
        )
    } else {
        let what: Vec<String> = failures.iter().map(|(i, e)| format!("stream {i}: {e}")).collect();
        report(
            StepResult::Mismatch,
            format!(
                "{stall_note}; {} of the other {others} streams did not echo {} bytes: {} (one stalled stream held \
                 the others, RFC 9113 §5.2)",
                failures.len(),
                p.bytes,
                what.join("; ")
            ),
        )
    }
}

/// Reads an extra stream's rendered response head and returns its status code.
async fn read_status(io: &mut Box<dyn Io>, deadline: Instant) -> Result<u16, String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > MAX_HEAD {
            return Err(format!("a response head over {MAX_HEAD} bytes"));
        }
        match timeout_at(deadline, io.read(&mut byte)).await {
            Err(_) => return Err("no response before the deadline".into()),
            Ok(Err(e)) => return Err(format!("no response: {e}")),
            Ok(Ok(0)) => return Err("the stream ended without a response".into()),
            Ok(Ok(_)) => head.push(byte[0]),
        }
    }
    let line = head.split(|b| *b == b'\r').next().unwrap_or_default();
    let code = line.split(|b| *b == b' ').nth(1).unwrap_or_default();
    std::str::from_utf8(code).ok().and_then(|c| c.parse().ok()).ok_or_else(|| "an unreadable status".into())
}

/// Sends `n` random bytes and reads them back, at once; says how far it got when it did not.
async fn echo(io: Box<dyn Io>, n: usize, deadline: Instant) -> Result<(), String> {
    let mut data = vec![0u8; n];
    StdRng::seed_from_u64(rand::random()).fill_bytes(&mut data);
    let (mut rd, mut wr) = tokio::io::split(io);
    let writer = async {
        match timeout_at(deadline, wr.write_all(&data)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("write failed: {e}")),
            Err(_) => Err("could not send all of it before the deadline".to_string()),
        }
    };
    let reader = async {
        let mut got = Vec::with_capacity(n);
        let mut buf = vec![0u8; 16 * 1024];
        while got.len() < n {
            match timeout_at(deadline, rd.read(&mut buf)).await {
                Err(_) => return Err(format!("{} of {n} bytes back before the deadline", got.len())),
                Ok(Err(e)) => return Err(format!("{} of {n} bytes back, then {e}", got.len())),
                Ok(Ok(0)) => return Err(format!("{} of {n} bytes back, then the stream ended", got.len())),
                Ok(Ok(k)) => got.extend_from_slice(&buf[..k]),
            }
        }
        Ok(got)
    };
    let (wrote, read) = tokio::join!(writer, reader);
    match (read, wrote) {
        (Ok(got), _) if got == data => Ok(()),
        (Ok(got), _) => {
            let at = got.iter().zip(&data).position(|(a, b)| a != b).unwrap_or(n);
            Err(format!("the bytes came back changed (first difference at byte {at})"))
        }
        (Err(r), Err(w)) => Err(format!("{r} ({w})")),
        (Err(r), Ok(())) => Err(r),
    }
}
