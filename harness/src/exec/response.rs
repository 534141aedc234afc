//! The `expect` step: reading the proxy's response and matching it against the acceptable outcomes.

use tokio::time::Instant;

use super::{
    State,
    observe::{Observed, first_match, mismatch},
    report::{StepReport, StepResult},
};
use crate::{
    client::{HeadRead, ReadEvent},
    preflight::Destination,
    scenario::step::Expect,
};

const BLOCK: usize = 64 * 1024;

pub(super) async fn expect(st: &mut State<'_>, index: usize, e: &Expect) -> StepReport {
    let level = e.level.unwrap_or(st.level);
    let outcomes = e.outcomes();
    let deadline = st.deadline(e.timeout_ms);
    let limit = st.settings.head_limit;
    let mut interim = Vec::new();
    let observed = loop {
        match st.conn.read_head(limit, deadline).await {
            HeadRead::Head(h) if (100..200).contains(&h.status) && h.status != 101 && interim.len() < 8 => {
                interim.push(h.status)
            }
            read => break Observed::from_read(read, interim),
        }
    };
    let observed = match observed {
        Observed::Response { head, interim, .. }
            if !(200..300).contains(&head.status) && outcomes.iter().any(|o| o.then.is_some()) =>
        {
            let closed = closes_after(st, &head, deadline).await;
            Observed::Response { head, interim, closed_after: Some(closed) }
        }
        other => other,
    };
    let matched = first_match(&outcomes, &observed);
    let summary = observed.summary();
    let mut r = match matched {
        Some(i) => {
            let result = match outcomes[i].verdict {
                Some(v) => StepResult::Tolerated(v),
                None => StepResult::Passed,
            };
            let mut r =
                StepReport::new(index, "expect", level, result, format!("{summary} (acceptable: {})", outcomes[i]));
            if let Some(note) = &outcomes[i].note {
                r.detail.push_str(&format!("; {note}"));
            }
            r
        }
        None => {
            let timed_out = matches!(observed, Observed::Timeout { .. });
            let result = if timed_out { StepResult::TimedOut } else { StepResult::Mismatch };
            let why = match outcomes.as_slice() {
                [one] => match mismatch(one, &observed) {
                    Some(m) if !m.starts_with("different kind") => format!("{summary}: {m}"),
                    _ => summary.clone(),
                },
                many => format!("{summary}: none of the {} acceptable outcomes", many.len()),
            };
            StepReport::new(index, "expect", level, result, why)
        }
    };
    if let Some(why) = policy_refusal(st, &observed, matched.is_some()) {
        r.result = StepResult::Inconclusive;
        r.detail = format!("{summary}: {why}");
        st.refused_by_policy = true;
    }
    if matched.is_none() || outcomes.len() > 1 {
        r.acceptable = outcomes.iter().map(|o| o.to_string()).collect();
    }
    r.observed = Some(summary);
    if observed.is_success() && matched.is_some() {
        st.tunnel = true;
    }
    st.observed = Some(observed);
    r
}

/// Why this answer is the proxy's access policy rather than a judgement of the request, if it is: its status is
/// the policy answer (403, or what the preflight's refusals got), the declared policy (if any) does not allow
/// the destination, and either no acceptable outcome matched or the preflight shows every CONNECT to this kind
/// of destination refused (so an "acceptable" rejection proves nothing either). Scenarios that probe the
/// policy itself are judged as they are.
fn policy_refusal(st: &State<'_>, observed: &Observed, matched: bool) -> Option<String> {
    if st.policy_probe {
        return None;
    }
    let Observed::Response { head, .. } = observed else { return None };
    let pre = st.settings.preflight.as_deref();
    let statuses = pre.map_or_else(|| vec![403], |p| p.policy_statuses(st.transport));
    if !statuses.contains(&head.status) {
        return None;
    }
    let dest = st.last_target.as_deref().and_then(Destination::parse);
    if let (Some(declared), Some(d)) = (st.settings.policy.as_deref(), &dest)
        && declared.allows_destination(d) == Some(true)
    {
        return None;
    }
    let like = match (pre, &dest) {
        (Some(p), Some(d)) => p.refused_like(st.transport, d),
        _ => None,
    };
    // Unless the preflight saw this kind of destination refused, an acceptable answer stands, and so does any
    // answer to a kind of destination the preflight tunnelled to (it is the proxy's answer to the request).
    let tunnelled = || matches!((pre, &dest), (Some(p), Some(d)) if p.tunnelled_like(st.transport, d));
    if like.is_none() && (matched || tunnelled()) {
        return None;
    }
    let fields = crate::preflight::refusal_fields(head);
    let fields = if fields.is_empty() { String::new() } else { format!(" ({fields})") };
    let mut why = format!(
        "refused by the proxy's access policy{fields}, so the requirement was not exercised (inconclusive; declare \
         the policy with --policy-ports/--policy-allow to judge such a refusal as a failure)"
    );
    if let Some(p) = like {
        why.push_str(&format!("; the preflight CONNECT to {} ({}) got {}", p.target, p.kind.as_str(), p.detail));
    }
    Some(why)
}

/// After a non-2xx response: skip its body (bounded), then see whether the proxy closes before the deadline.
async fn closes_after(st: &mut State<'_>, head: &crate::client::head::ResponseHead, deadline: Instant) -> bool {
    const BODY_LIMIT: usize = 1 << 20;
    if let Some(len) = head.content_length() {
        let len = (len as usize).min(BODY_LIMIT);
        match st.conn.fill(len, deadline).await {
            ReadEvent::Data(_) => {
                st.conn.buf.drain(..len);
            }
            ReadEvent::Eof | ReadEvent::Error(_) => return true,
            ReadEvent::Timeout => return false,
        }
    } else if head.is_chunked() {
        loop {
            if st.conn.buf.windows(5).any(|w| w == b"0\r\n\r\n") {
                st.conn.buf.clear();
                break;
            }
            if st.conn.buf.len() > BODY_LIMIT {
                break;
            }
            match st.conn.read_more(BLOCK, deadline).await {
                ReadEvent::Data(_) => {}
                ReadEvent::Eof | ReadEvent::Error(_) => return true,
                ReadEvent::Timeout => return false,
            }
        }
    }
    // Close-delimited body, or after the body: anything until EOF counts as "closed" if EOF comes.
    let (_, ev) = st.conn.drain_to_eof(BODY_LIMIT, deadline).await;
    matches!(ev, ReadEvent::Eof | ReadEvent::Error(_))
}
