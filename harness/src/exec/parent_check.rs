//! The `parent` step: what the instrumented parent proxy received from the proxy under test for this scenario.
//! The report always shows the CONNECT the parent got, so a verdict carries its evidence.

use std::time::Duration;

use tokio::time::{Instant, timeout_at};

use super::{
    State,
    report::{StepReport, StepResult},
};
use crate::{
    origin::parent::ParentRequest,
    scenario::{Level, step::ParentCheck},
};

/// After the expected number of CONNECTs arrived, how long to wait for one too many (a retry), or for bytes
/// after the parent's answer.
const GRACE: Duration = Duration::from_millis(300);

pub(super) async fn parent_check(st: &mut State<'_>, index: usize, c: &ParentCheck) -> StepReport {
    let level: Level = c.level.unwrap_or(st.level);
    let report = |result, detail: String| StepReport::new(index, "parent", level, result, detail);
    let Some(lease) = st.parent else {
        return report(StepResult::Error, "no instrumented parent proxy in this run".into());
    };
    let expanded = {
        let target = c.target.as_deref().map(|t| st.expand(t)).transpose();
        let never = c.never_contains.iter().map(|t| st.expand(t)).collect::<Result<Vec<_>, _>>();
        let fields = c
            .fields
            .iter()
            .map(|(n, t)| st.expand(t).map(|t| (n.clone(), String::from_utf8_lossy(&t).into_owned())))
            .collect::<Result<Vec<_>, _>>();
        (target, never, fields)
    };
    let (target, never, fields) = match expanded {
        (Ok(t), Ok(n), Ok(f)) => (t, n, f),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return report(StepResult::Error, e),
    };
    if lease.reg.script.action == Some(crate::origin::parent::Action::Loop) && !lease.parent().has_loop_target() {
        return report(
            StepResult::Error,
            "the parent cannot make a loop: it knows no plain listener of the proxy under test".into(),
        );
    }
    let reg = &lease.reg;
    let deadline = st.deadline(c.timeout_ms);
    // Wait for the CONNECTs (or the deadline; for "none", only the grace), then a grace for an extra one or for
    // late bytes.
    let want = c.connects.unwrap_or(1) as usize;
    let deadline = if want == 0 { deadline.min(Instant::now() + GRACE) } else { deadline };
    loop {
        let notified = reg.changed();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if (want > 0 && reg.len() >= want) || timeout_at(deadline, notified).await.is_err() {
            break;
        }
    }
    if c.connects.is_some() || c.nothing_after_answer {
        let grace_end = deadline.min(Instant::now() + GRACE);
        while timeout_at(grace_end, reg.changed()).await.is_ok() {}
    }
    let got = reg.requests();
    let mut problems = Vec::new();
    if let Some(n) = c.connects
        && reg.len() != n as usize
    {
        problems.push(format!("the parent received {} CONNECTs for this scenario, expected {n}", reg.len()));
    }
    let checks_first = target.is_some()
        || !c.present.is_empty()
        || !c.absent.is_empty()
        || !c.fields.is_empty()
        || never.iter().any(|n| !n.is_empty())
        || c.nothing_after_answer
        || c.own_credentials;
    let first = got.first();
    match first {
        None if checks_first => problems.push(format!(
            "the parent proxy ({}) received no CONNECT for this scenario: the proxy under test did not use it (is it \
             configured with this parent?)",
            lease.parent().addr()
        )),
        None => {}
        Some(r) => {
            check_request(r, c, target.as_deref(), &never, &fields, &mut problems);
            if c.own_credentials {
                own_credentials(r, lease.parent().credentials(), &mut problems);
            }
        }
    }
    let total = reg.len();
    let evidence = match total {
        0 => "the parent received nothing".to_string(),
        1 => format!("the parent received: {}", got[0].shown()),
        n => format!("the parent received {n} CONNECTs; the first: {}", got[0].shown()),
    };
    if problems.is_empty() {
        report(StepResult::Passed, evidence)
    } else {
        report(StepResult::Mismatch, format!("{}; {evidence}", problems.join("; ")))
    }
}

/// Whether the CONNECT carries exactly the configured credentials (Basic), and nothing else for Proxy-Authorization.
fn own_credentials(r: &ParentRequest, configured: Option<&str>, problems: &mut Vec<String>) {
    use base64::Engine as _;
    let Some(creds) = configured else {
        problems.push("no --upstream-proxy-credentials to compare with".into());
        return;
    };
    let token = base64::engine::general_purpose::STANDARD.encode(creds);
    let got: Vec<&str> = r.values("proxy-authorization").collect();
    // The scheme name is case-insensitive (RFC 9110 §11.1), the token is not.
    let matches =
        |v: &str| v.split_once(' ').is_some_and(|(s, t)| s.eq_ignore_ascii_case("basic") && t.trim() == token);
    if !(got.len() == 1 && matches(got[0])) {
        let user = creds.split(':').next().unwrap_or_default();
        let what = match got.len() {
            0 => "none".to_string(),
            1 => "other credentials".to_string(),
            n => format!("{n} Proxy-Authorization fields"),
        };
        problems.push(format!(
            "expected the configured credentials of {user:?} (--upstream-proxy-credentials), got {what}"
        ));
    }
}

/// The checks on one CONNECT, pure.
fn check_request(
    r: &ParentRequest,
    c: &ParentCheck,
    target: Option<&[u8]>,
    never: &[Vec<u8>],
    fields: &[(String, String)],
    problems: &mut Vec<String>,
) {
    if let Some(why) = &r.malformed {
        problems.push(format!("the parent could not parse the CONNECT it received: {why}"));
    }
    if let Some(t) = target
        && r.target.as_bytes() != t
    {
        problems.push(format!("the request-target was {:?}, expected {:?}", r.target, String::from_utf8_lossy(t)));
    }
    for name in &c.present {
        if r.values(name).next().is_none() {
            problems.push(format!("no {name} field"));
        }
    }
    for name in &c.absent {
        if let Some(v) = r.values(name).next() {
            problems.push(format!("{name}: {v} was forwarded"));
        }
    }
    for (name, text) in fields {
        let joined = r.values(name).collect::<Vec<_>>().join(", ");
        if !joined.to_ascii_lowercase().contains(&text.to_ascii_lowercase()) {
            let shown = if joined.is_empty() { "absent".to_string() } else { format!("{joined:?}") };
            problems.push(format!("{name} was {shown}, expected it to contain {text:?}"));
        }
    }
    for n in never.iter().filter(|n| !n.is_empty()) {
        let n = String::from_utf8_lossy(n);
        if r.shown().to_ascii_lowercase().contains(&n.trim().to_ascii_lowercase()) {
            problems.push(format!("the CONNECT contains {:?}", n.trim()));
        }
    }
    if c.nothing_after_answer && r.before_answer_len > 0 {
        problems.push(format!(
            "{} bytes of the client's reached the parent with the CONNECT, before its answer (forwarded \
             optimistically): {}",
            r.before_answer_len,
            crate::escape::escape(&r.before_answer, 200)
        ));
    }
    if c.nothing_after_answer && r.after_answer_len > 0 {
        problems.push(format!(
            "{} bytes reached the parent after its answer: {}",
            r.after_answer_len,
            crate::escape::escape(&r.after_answer, 200)
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(fields: &[(&str, &str)]) -> ParentRequest {
        ParentRequest {
            request_line: "CONNECT localhost:1 HTTP/1.1".into(),
            target: "localhost:1".into(),
            fields: fields.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect(),
            ..ParentRequest::default()
        }
    }

    fn problems(r: &ParentRequest, c: &ParentCheck, target: Option<&str>, never: Option<&str>) -> Vec<String> {
        let mut p = Vec::new();
        let never: Vec<Vec<u8>> = never.iter().map(|n| n.as_bytes().to_vec()).collect();
        let fields: Vec<(String, String)> = c.fields.iter().map(|(n, t)| (n.clone(), t.clone())).collect();
        check_request(r, c, target.map(str::as_bytes), &never, &fields, &mut p);
        p
    }

    #[test]
    fn each_rule_can_fail() {
        let r = req(&[("Host", "localhost:1"), ("Via", "1.1 a"), ("Via", "1.1 b"), ("X-Secret", "1")]);
        let ok = ParentCheck {
            present: vec!["via".into()],
            absent: vec!["Proxy-Authorization".into()],
            fields: [("Via".to_string(), "1.1 A, 1.1".to_string())].into(),
            ..ParentCheck::default()
        };
        assert!(problems(&r, &ok, Some("localhost:1"), Some("")).is_empty());
        assert_eq!(problems(&r, &ok, Some("127.0.0.1:1"), None).len(), 1);
        let bad = ParentCheck {
            present: vec!["Proxy-Authorization".into()],
            absent: vec!["x-secret".into()],
            fields: [("Via".to_string(), "1.1 c".to_string())].into(),
            ..ParentCheck::default()
        };
        assert_eq!(problems(&r, &bad, None, Some("x-secret: 1")).len(), 4);
        let mut after = req(&[]);
        after.after_answer = b"GET / HTTP/1.1".to_vec();
        after.after_answer_len = 14;
        let nothing = ParentCheck { nothing_after_answer: true, ..ParentCheck::default() };
        assert_eq!(problems(&after, &nothing, None, None).len(), 1);
    }
}
