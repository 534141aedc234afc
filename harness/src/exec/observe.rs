//! What the client observed when it read a response, and matching it against acceptable outcomes (pure).

use schemars::JsonSchema;
use serde::Serialize;

use crate::{
    client::{HeadRead, head::ResponseHead},
    escape,
    scenario::step::{After, Outcome},
};

/// The observed result of one `expect` step.
#[derive(Debug, Clone, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Observed {
    /// A parsed response head (after any interim 1xx responses).
    Response {
        head: ResponseHead,
        /// Status codes of interim (1xx) responses that came first.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        interim: Vec<u16>,
        /// Whether the proxy closed the connection after the response, when that was checked.
        #[serde(skip_serializing_if = "Option::is_none")]
        closed_after: Option<bool>,
    },
    /// The connection ended before a complete response head.
    Closed {
        /// Bytes that came before the end, escaped.
        partial: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// Nothing (or no complete head) before the deadline.
    Timeout { partial: String },
    /// Bytes that are not an HTTP response.
    Garbage { detail: String },
    /// The head did not end within the size bound.
    TooLarge { bytes: usize },
}

impl Observed {
    pub fn closed(partial: &[u8], error: Option<String>) -> Self {
        Observed::Closed { partial: escape::escape(partial, 256), error }
    }

    pub fn timeout(partial: &[u8]) -> Self {
        Observed::Timeout { partial: escape::escape(partial, 256) }
    }

    /// What one read of a response head saw; `interim` are the 1xx responses read before it.
    pub fn from_read(read: HeadRead, interim: Vec<u16>) -> Self {
        match read {
            HeadRead::Head(head) => Observed::Response { head, interim, closed_after: None },
            HeadRead::Garbage(detail) => Observed::Garbage { detail },
            HeadRead::TooLarge(bytes) => Observed::TooLarge { bytes },
            HeadRead::Closed { partial, error } => Observed::closed(&partial, error),
            HeadRead::Timeout { partial } => Observed::timeout(&partial),
        }
    }

    /// The 2xx that opened a tunnel, if that is what was observed.
    pub fn is_success(&self) -> bool {
        matches!(self, Observed::Response { head, .. } if (200..300).contains(&head.status))
    }

    /// One line for terminal output and reports.
    pub fn summary(&self) -> String {
        match self {
            Observed::Response { head, interim, closed_after } => {
                let mut s = head.status_line();
                if !interim.is_empty() {
                    s = format!("{interim:?} then {s}");
                }
                let names: Vec<&str> = head.fields.iter().map(|(n, _)| n.as_str()).collect();
                if !names.is_empty() {
                    s.push_str(&format!(" [{}]", names.join(", ")));
                }
                match closed_after {
                    Some(true) => s.push_str(", then closed"),
                    Some(false) => s.push_str(", connection left open"),
                    None => {}
                }
                s
            }
            Observed::Closed { partial, error } => {
                let how = match error {
                    Some(e) => format!("connection failed ({e})"),
                    None => "connection closed".to_string(),
                };
                if partial.is_empty() {
                    format!("{how} without a response")
                } else {
                    format!("{how} after {partial:?}")
                }
            }
            Observed::Timeout { partial } if partial.is_empty() => "no response before the deadline".into(),
            Observed::Timeout { partial } => format!("incomplete response before the deadline: {partial:?}"),
            Observed::Garbage { detail } => detail.clone(),
            Observed::TooLarge { bytes } => format!("response head too large: {bytes} bytes read without its end"),
        }
    }
}

/// Why an outcome does not match, or None when it does.
pub fn mismatch(outcome: &Outcome, observed: &Observed) -> Option<String> {
    match observed {
        Observed::Closed { partial, .. } if outcome.closed && partial.is_empty() => None,
        Observed::Timeout { partial } if outcome.timeout && partial.is_empty() => None,
        Observed::Response { head, closed_after, .. } if !outcome.status.is_empty() => {
            if !outcome.status.matches(head.status) {
                return Some(format!("status {} is not {}", head.status, outcome.status));
            }
            if let Some(f) = outcome.present.iter().find(|f| !head.has(f)) {
                return Some(format!("field {f} is missing"));
            }
            if let Some(f) = outcome.absent.iter().find(|f| head.has(f)) {
                return Some(format!("field {f} is present"));
            }
            for (name, text) in &outcome.fields {
                let value = head.field(name).map(str::to_ascii_lowercase);
                if !value.as_deref().is_some_and(|v| v.contains(&text.to_ascii_lowercase())) {
                    return Some(format!("field {name} does not contain {text:?}"));
                }
            }
            if let Some(v) = &outcome.version
                && &head.version != v
            {
                return Some(format!("version {} is not {v}", head.version));
            }
            if outcome.status_line_spaces && !head.space_after_status {
                return Some(format!(
                    "status line \"{} {}\" lacks the SP after the status code",
                    head.version, head.status
                ));
            }
            match (outcome.then, closed_after) {
                (Some(After::Close), Some(false)) => Some("the connection stayed open".into()),
                (Some(After::Open), Some(true)) => Some("the connection was closed".into()),
                _ => None,
            }
        }
        _ => Some("different kind of outcome".into()),
    }
}

/// The index of the first acceptable outcome that matches.
pub fn first_match(outcomes: &[Outcome], observed: &Observed) -> Option<usize> {
    outcomes.iter().position(|o| mismatch(o, observed).is_none())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::step::{StatusPattern, StatusSet};

    fn resp(status: u16, fields: &[&str], closed_after: Option<bool>) -> Observed {
        Observed::Response {
            head: ResponseHead {
                version: "HTTP/1.1".into(),
                status,
                reason: String::new(),
                space_after_status: true,
                fields: fields.iter().map(|f| (f.to_string(), "x".into())).collect(),
                size: 0,
            },
            interim: vec![],
            closed_after,
        }
    }

    fn status(p: &[&str]) -> StatusSet {
        StatusSet(p.iter().map(|s| StatusPattern::parse(s).unwrap()).collect())
    }

    #[test]
    fn status_classes_and_fields() {
        let o = Outcome { status: status(&["2xx"]), absent: vec!["Content-Length".into()], ..Default::default() };
        assert_eq!(mismatch(&o, &resp(200, &[], None)), None);
        assert!(mismatch(&o, &resp(200, &["content-length"], None)).unwrap().contains("present"));
        assert!(mismatch(&o, &resp(400, &[], None)).unwrap().contains("400"));
        assert!(mismatch(&o, &Observed::closed(b"", None)).is_some());
    }

    #[test]
    fn field_values_and_version() {
        let o = Outcome {
            status: status(&["502"]),
            fields: [("Proxy-Status".to_string(), "Connection_Refused".to_string())].into(),
            version: Some("HTTP/1.1".into()),
            ..Default::default()
        };
        let mut r = resp(502, &[], None);
        assert!(mismatch(&o, &r).unwrap().contains("Proxy-Status"));
        if let Observed::Response { head, .. } = &mut r {
            head.fields.push(("proxy-status".into(), "ref; error=connection_refused".into()));
        }
        assert_eq!(mismatch(&o, &r), None);
        if let Observed::Response { head, .. } = &mut r {
            head.version = "HTTP/1.0".into();
        }
        assert!(mismatch(&o, &r).unwrap().contains("version"));
        let spaces = Outcome { status: status(&["502"]), status_line_spaces: true, ..Default::default() };
        assert_eq!(mismatch(&spaces, &r), None);
        if let Observed::Response { head, .. } = &mut r {
            head.space_after_status = false;
        }
        assert!(mismatch(&spaces, &r).unwrap().contains("lacks the SP"));
    }

    #[test]
    fn closed_timeout_and_then() {
        let closed = Outcome { closed: true, ..Default::default() };
        let timeout = Outcome { timeout: true, ..Default::default() };
        let close_after = Outcome { status: status(&["400", "4xx"]), then: Some(After::Close), ..Default::default() };
        let list = [closed, timeout, close_after];
        assert_eq!(first_match(&list, &Observed::closed(b"", None)), Some(0));
        assert_eq!(first_match(&list, &Observed::closed(b"HTTP/1.1 4", None)), None);
        assert_eq!(first_match(&list, &Observed::timeout(b"")), Some(1));
        assert_eq!(first_match(&list, &resp(403, &[], Some(true))), Some(2));
        assert_eq!(first_match(&list, &resp(403, &[], Some(false))), None);
        assert_eq!(first_match(&list, &Observed::Garbage { detail: "x".into() }), None);
    }
}
