//! Judging the SNI checks by difference: when a TLS scenario with `compare_sni` did not get the answer it
//! expects, the same request goes out once more on a new connection with a control SNI (none; or the target's
//! name when the scenario sent none). An answer that depends on the SNI, a 421, or a refusal that names SNI is
//! the proxy comparing SNI with the request (a failure); the same refusal both ways is about something else,
//! most often the proxy's destination policy, so the scenario is `inconclusive`.

use tokio::time::Instant;

use super::{
    ProxyEndpoint, Settings, connect,
    observe::Observed,
    report::{StepReport, StepResult},
};
use crate::{client::transcript::Transcript, scenario::Scenario};

/// The control's SNI: none, or the target's host when the scenario itself sent none.
pub(super) fn control_sni(sent: Option<&str>, target_host: &str) -> Option<String> {
    match sent {
        Some(_) => None,
        None => Some(target_host.to_string()),
    }
}

/// How an answer is compared: the status code, or what happened instead of a response.
fn answer_key(o: &Observed) -> String {
    match o {
        Observed::Response { head, .. } => head.status.to_string(),
        Observed::Closed { .. } => "closed".into(),
        Observed::Timeout { .. } => "timeout".into(),
        Observed::Garbage { .. } => "garbage".into(),
        Observed::TooLarge { .. } => "too large".into(),
    }
}

/// Whether a response says it is about SNI (421 Misdirected Request, or SNI named in the reason or a field).
pub(super) fn names_sni(o: &Observed) -> bool {
    let Observed::Response { head, .. } = o else { return false };
    if head.status == 421 {
        return true;
    }
    let mentions = |t: &str| {
        let t = t.to_ascii_lowercase();
        t.contains("sni") || t.contains("server name") || t.contains("servername") || t.contains("misdirected")
    };
    mentions(&head.reason) || head.fields.iter().any(|(_, v)| mentions(v))
}

/// The verdict of the comparison for the step that read the main answer.
pub(super) fn judge(
    main: &Observed,
    control: &Observed,
    sni: Option<&str>,
    control_sni: Option<&str>,
    policy_statuses: &[u16],
) -> (StepResult, String) {
    let show = |s: Option<&str>| s.map_or_else(|| "no SNI".to_string(), |n| format!("SNI {n:?}"));
    if main.is_success() {
        // A tunnel where a refusal was expected is judged as it is: no SNI comparison can excuse it.
        return (StepResult::Mismatch, format!("{} (the same with the control)", main.summary()));
    }
    if names_sni(main) {
        return (
            StepResult::Mismatch,
            format!(
                "the refusal is about SNI ({}); the control with {} got {}",
                main.summary(),
                show(control_sni),
                control.summary()
            ),
        );
    }
    if answer_key(main) != answer_key(control) {
        return (
            StepResult::Mismatch,
            format!(
                "the answer depends on the SNI: with {} the proxy answered {}; with the control ({}) it answered {}",
                show(sni),
                main.summary(),
                show(control_sni),
                control.summary()
            ),
        );
    }
    let refusal = matches!(main, Observed::Response { head, .. } if policy_statuses.contains(&head.status));
    if !refusal {
        return (
            StepResult::Mismatch,
            format!(
                "{} with {} and the same with the control ({}): not about SNI, but not what is expected either",
                main.summary(),
                show(sni),
                show(control_sni)
            ),
        );
    }
    (
        StepResult::Inconclusive,
        format!(
            "the proxy answered {} with {} and the same with the control ({}): the refusal is not about SNI (its \
             policy or its Host handling), so the SNI requirement was not exercised",
            main.summary(),
            show(sni),
            show(control_sni)
        ),
    )
}

/// What the main exchange sent and got, for the comparison.
pub(super) struct MainAnswer<'a> {
    /// The first request the client sent (repeated on the control connection).
    pub request: Option<&'a [u8]>,
    pub observed: Option<&'a Observed>,
    pub sni_sent: Option<&'a str>,
    pub target_host: &'a str,
}

/// Runs the control exchange when the scenario asks for it and its first `expect` step did not pass, and
/// rewrites that step's result by the comparison.
pub(super) async fn compare_sni(
    steps: &mut [StepReport],
    scn: &Scenario,
    ep: &ProxyEndpoint,
    settings: &Settings,
    main: MainAnswer<'_>,
    transcript: &mut Transcript,
) {
    let MainAnswer { request, observed, sni_sent, target_host } = main;
    let (Some(request), Some(main)) = (request, observed) else { return };
    let Some(step) = steps.iter_mut().find(|s| s.kind == "expect") else { return };
    // A refusal the scenario tolerates (e.g. a 400 to a Host that differs from the target) is compared too: it
    // is tolerated only when it is not about SNI.
    let tolerated = matches!(step.result, StepResult::Tolerated(_));
    if !(tolerated || matches!(step.result, StepResult::Mismatch | StepResult::TimedOut | StepResult::Inconclusive))
        || main.is_success()
    {
        return;
    }
    let control = control_sni(sni_sent, target_host);
    if super::connect::sni_sent(control.as_deref()).as_deref() == sni_sent {
        // The control would send the same SNI (e.g. an IP-literal target): nothing to compare.
        return;
    }
    let choice =
        connect::TlsChoice { sni: control.clone(), alpn: scn.tls.alpn.clone(), h2_frames: scn.uses_h2_frames() };
    transcript.event(format!("control: the same request with {}", control.as_deref().unwrap_or("no SNI")));
    let mut conn = match connect::open(ep, settings, &choice, Transcript::empty()).await {
        Ok((conn, _)) => conn,
        Err((e, _, _)) => {
            step.detail.push_str(&format!("; the control connection (other SNI) could not be opened: {e}"));
            return;
        }
    };
    let deadline = Instant::now() + settings.step_timeout;
    if let Err(e) = conn.write(request, deadline).await {
        step.detail.push_str(&format!("; the control request could not be sent: {e}"));
        return;
    }
    let observed = Observed::from_read(conn.read_head(settings.head_limit, deadline).await, Vec::new());
    conn.reset_quietly();
    transcript.event(format!("control answer: {}", observed.summary()));
    let statuses = settings.preflight.as_deref().map_or_else(|| vec![403], |p| p.policy_statuses(ep.transport));
    let (result, detail) = judge(main, &observed, sni_sent, control.as_deref(), &statuses);
    let about_sni = names_sni(main) || answer_key(main) != answer_key(&observed);
    if tolerated && !about_sni {
        step.detail
            .push_str(&format!("; the control ({}) got the same answer", control.as_deref().unwrap_or("no SNI")));
        return;
    }
    step.result = result;
    step.detail = detail;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::head::ResponseHead;

    fn resp(status: u16, reason: &str) -> Observed {
        Observed::Response {
            head: ResponseHead {
                version: "HTTP/1.1".into(),
                status,
                reason: reason.into(),
                space_after_status: true,
                fields: Vec::new(),
                size: 0,
            },
            interim: vec![],
            closed_after: None,
        }
    }

    #[test]
    fn difference_fails_sameness_is_inconclusive() {
        let sni = Some("proxy.test");
        assert_eq!(judge(&resp(400, "Bad Request"), &resp(200, "OK"), sni, None, &[403]).0, StepResult::Mismatch);
        assert_eq!(judge(&resp(421, "x"), &resp(421, "x"), sni, None, &[403]).0, StepResult::Mismatch);
        assert_eq!(
            judge(&resp(400, "SNI mismatch"), &resp(400, "SNI mismatch"), sni, None, &[403]).0,
            StepResult::Mismatch
        );
        assert_eq!(
            judge(&resp(403, "Forbidden"), &resp(403, "Forbidden"), sni, None, &[403]).0,
            StepResult::Inconclusive
        );
        assert_eq!(judge(&resp(200, "OK"), &resp(200, "OK"), sni, None, &[403]).0, StepResult::Mismatch);
        assert_eq!(judge(&resp(502, "x"), &resp(502, "x"), sni, None, &[403]).0, StepResult::Mismatch);
        assert_eq!(control_sni(None, "localhost"), Some("localhost".into()));
        assert_eq!(control_sni(Some("proxy.test"), "localhost"), None);
    }
}
