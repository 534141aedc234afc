//! The `origin` step: checking what an origin recorded for this scenario, waiting (with a deadline) until
//! what is looked for could have happened.

use std::time::Duration;

use sha2::Digest;
use tokio::time::{Instant, timeout_at};

use super::{
    State,
    report::{StepReport, StepResult},
};
use crate::{
    escape,
    origin::Snapshot,
    scenario::{Level, step::OriginCheck},
};

/// How long "no connection" waits for a connection the proxy may already have made to be accepted and recorded.
const NO_CONNECTION_GRACE: Duration = Duration::from_millis(150);

pub(super) async fn origin_check(st: &mut State<'_>, index: usize, c: &OriginCheck) -> StepReport {
    let level: Level = c.level.unwrap_or(st.level);
    let deadline = st.deadline(c.timeout_ms);
    let kind = c.name;
    let prefix = match c.received_prefix.as_deref().map(|p| st.expand(p)).transpose() {
        Ok(p) => p,
        Err(e) => return StepReport::new(index, "origin", level, StepResult::Error, e),
    };
    let never = match c.never_received.as_deref().map(|p| st.expand(p)).transpose() {
        Ok(p) => p,
        Err(e) => return StepReport::new(index, "origin", level, StepResult::Error, e),
    };
    let sent_len = st.sent_len;
    let sent_sha: [u8; 32] = st.sent_hash.clone().finalize().into();
    let mine = |all: Vec<Snapshot>| all.into_iter().filter(|s| s.report.origin == kind).collect::<Vec<_>>();
    // Wait until what we look for could have happened ("zero connections": see the grace below).
    let ready = |conns: &[Snapshot]| -> bool {
        let want_conns = c.connections.unwrap_or(0) as usize;
        if conns.len() < want_conns {
            return false;
        }
        let first = conns.first();
        let ended = first.is_some_and(|f| f.report.end.is_some());
        if c.received_all_sent && !(ended || first.is_some_and(|f| f.report.bytes_in >= sent_len)) {
            return false;
        }
        if let Some(p) = &prefix
            && !(ended || first.is_some_and(|f| f.kept.len() >= p.len()))
        {
            return false;
        }
        if (c.ended || c.end.is_some()) && !ended {
            return false;
        }
        if (c.sni.is_some() || c.alpn.is_some()) && first.is_none() {
            return false;
        }
        true
    };
    let log = st.origins.log.clone();
    // "No connection" is judged after a short grace: a connection the proxy already made can still be waiting
    // in the origin's accept queue. It ends early when a connection shows up (the check has then failed).
    if c.connections == Some(0) {
        let grace_end = deadline.min(Instant::now() + NO_CONNECTION_GRACE);
        loop {
            let notified = log.changed();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if !mine(log.snapshot()).is_empty() || timeout_at(grace_end, notified).await.is_err() {
                break;
            }
        }
    }
    let (conns, in_time) = loop {
        let notified = log.changed();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let conns = mine(log.snapshot());
        if ready(&conns) {
            break (conns, true);
        }
        if Instant::now() >= deadline || timeout_at(deadline, notified).await.is_err() {
            let conns = mine(log.snapshot());
            let ok = ready(&conns);
            break (conns, ok);
        }
    };
    let mut problems = Vec::new();
    if let Some(want) = c.connections
        && conns.len() != want as usize
    {
        let mut p = format!("{} accepted {} connections, expected {want}", kind.as_str(), conns.len());
        if conns.len() > want as usize
            && let Some(e) = &c.evidence
        {
            match st.expand(e) {
                Ok(e) => p.push_str(&format!(": {}", String::from_utf8_lossy(&e))),
                Err(e) => return StepReport::new(index, "origin", level, StepResult::Error, e),
            }
        }
        problems.push(p);
    }
    let first = conns.first();
    if c.received_all_sent {
        match first {
            None => problems.push(format!("{} received nothing (no connection)", kind.as_str())),
            Some(f) if f.report.bytes_in != sent_len || f.sha256 != sent_sha => problems.push(format!(
                "{} received {} bytes (sha256 {}), the client sent {sent_len} tunnel bytes (sha256 {})",
                kind.as_str(),
                f.report.bytes_in,
                &f.report.sha256_in[..16],
                &escape::hex(&sent_sha)[..16]
            )),
            Some(_) => {}
        }
    }
    if let Some(p) = &prefix {
        match first {
            Some(f) if f.kept.starts_with(p) => {}
            Some(f) => problems.push(format!(
                "{} received {:?}, expected it to start with {:?}",
                kind.as_str(),
                escape::escape(&f.kept, 80),
                escape::escape(p, 80)
            )),
            None => problems.push(format!("{} received nothing (no connection)", kind.as_str())),
        }
    }
    if let Some(n) = &never
        && let Some(f) = conns.iter().find(|f| f.kept.windows(n.len().max(1)).any(|w| w == n.as_slice()))
    {
        problems.push(format!(
            "{} received the forbidden bytes {:?} (first bytes {:?})",
            kind.as_str(),
            escape::escape(n, 80),
            f.report.first_bytes
        ));
    }
    if (c.ended || c.end.is_some()) && first.is_none_or(|f| f.report.end.is_none()) {
        problems.push(format!("{}: the connection has not ended", kind.as_str()));
    }
    if let (Some(want), Some(got)) = (c.end, first.and_then(|f| f.report.end))
        && want != got
    {
        problems.push(format!("{}: the connection ended {got:?}, expected {want:?}", kind.as_str()));
    }
    if let Some(want) = &c.sni {
        let got = first.and_then(|f| f.report.sni.clone()).unwrap_or_default();
        if first.is_none() || &got != want {
            problems.push(format!("tls origin was offered SNI {got:?}, expected {want:?}"));
        }
    }
    if let Some(want) = &c.alpn {
        let got = first.map(|f| f.report.alpn_offered.clone()).unwrap_or_default();
        if first.is_none() || &got != want {
            problems.push(format!("tls origin was offered ALPN {got:?}, expected {want:?}"));
        }
    }
    let summary = format!(
        "{}: {} connection(s){}",
        kind.as_str(),
        conns.len(),
        first
            .map(|f| {
                let end = f.report.end.map(|e| format!(", ended: {e:?}")).unwrap_or_default();
                format!(", first received {} bytes{end}", f.report.bytes_in)
            })
            .unwrap_or_default()
    );
    if problems.is_empty() {
        StepReport::new(index, "origin", level, StepResult::Passed, summary)
    } else {
        let result = if in_time { StepResult::Mismatch } else { StepResult::TimedOut };
        let mut r = StepReport::new(index, "origin", level, result, problems.join("; "));
        r.observed = Some(summary);
        r
    }
}
