//! The parent proxy's answer to our CONNECT: a strict HTTP/1 response-head parser (no I/O).
//!
//! Used only when the proxy chains to an upstream proxy. As strict as the request parser, for the same reason:
//! a response the proxy repairs is one the client may read differently. RFC 9112 §5.2 lets a proxy either
//! unfold obs-fold or answer 502; this parser refuses it (the caller answers 502).

use super::chars::{tchar_prefix, valid_value_prefix};

/// Largest response head accepted from a parent.
pub const MAX_RESPONSE_HEAD: usize = 16 * 1024;

/// What is wrong with a response head, naming the rule broken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    #[error("the status line is not `HTTP/1.x SP 3DIGIT SP reason` (RFC 9112 §4)")]
    StatusLine,
    #[error("a field line is not `token \":\" OWS value OWS` (RFC 9112 §5)")]
    FieldLine,
    #[error("obs-fold in a response field (RFC 9112 §5.2: a proxy replaces such a response with 502)")]
    ObsFold,
    #[error("a line ends without CR LF (RFC 9112 §2.2)")]
    BareLf,
    #[error("the response head is larger than {MAX_RESPONSE_HEAD} bytes")]
    TooLarge,
}

/// A parsed response head (owned: it outlives the read buffer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    pub minor_version: u8,
    pub status: u16,
    pub reason: String,
    /// Field lines in order; values are printable ASCII with OWS trimmed (other octets become `?`).
    pub fields: Vec<(String, String)>,
}

impl ResponseHead {
    /// Every value of a field, in order.
    pub fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.fields.iter().filter(move |(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Parses a response head at the start of `buf`: `Ok(None)` when it is not complete yet, else the head and
/// the number of octets it used (what follows is tunnel data from the parent).
pub fn parse_response(buf: &[u8]) -> Result<Option<(ResponseHead, usize)>, ResponseError> {
    let Some(end) = memchr::memmem::find(buf, b"\r\n\r\n") else {
        if buf.len() > MAX_RESPONSE_HEAD {
            return Err(ResponseError::TooLarge);
        }
        // A complete line must still be well-formed: garbage is refused without waiting for the deadline.
        if let Some(nl) = memchr::memchr(b'\n', buf) {
            if nl == 0 || buf[nl - 1] != b'\r' {
                return Err(ResponseError::BareLf);
            }
            status_line(&buf[..nl - 1])?;
        } else if buf.len() >= 5 && !buf.starts_with(b"HTTP/") {
            return Err(ResponseError::StatusLine);
        }
        return Ok(None);
    };
    if end + 4 > MAX_RESPONSE_HEAD {
        return Err(ResponseError::TooLarge);
    }
    let head = &buf[..end];
    if memchr::memchr_iter(b'\n', head).any(|i| i == 0 || head[i - 1] != b'\r') {
        return Err(ResponseError::BareLf);
    }
    let mut lines = memchr::memmem::find_iter(head, b"\r\n").chain(std::iter::once(head.len())).scan(0, |start, e| {
        let line = &head[*start..e];
        *start = e + 2;
        Some(line)
    });
    let (minor_version, status, reason) = status_line(lines.next().unwrap_or_default())?;
    let mut fields = Vec::new();
    for line in lines {
        if line.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
            return Err(ResponseError::ObsFold);
        }
        let name_len = tchar_prefix(line);
        if name_len == 0 || line.get(name_len) != Some(&b':') {
            return Err(ResponseError::FieldLine);
        }
        let value = trim_ows(&line[name_len + 1..]);
        if valid_value_prefix(value) != value.len() {
            return Err(ResponseError::FieldLine);
        }
        let name = String::from_utf8_lossy(&line[..name_len]).into_owned();
        fields.push((name, printable(value)));
    }
    Ok(Some((ResponseHead { minor_version, status, reason, fields }, end + 4)))
}

/// `HTTP/1.x SP 3DIGIT SP reason` (the second SP is required even with an empty reason).
fn status_line(line: &[u8]) -> Result<(u8, u16, String), ResponseError> {
    let bad = ResponseError::StatusLine;
    let rest = line.strip_prefix(b"HTTP/1.").ok_or(bad.clone())?;
    let (&minor, rest) = rest.split_first().ok_or(bad.clone())?;
    if !minor.is_ascii_digit() {
        return Err(bad);
    }
    let rest = rest.strip_prefix(b" ").ok_or(bad.clone())?;
    if rest.len() < 4 || !rest[..3].iter().all(u8::is_ascii_digit) || rest[3] != b' ' {
        return Err(bad);
    }
    let status = (rest[0] - b'0') as u16 * 100 + (rest[1] - b'0') as u16 * 10 + (rest[2] - b'0') as u16;
    if !(100..=599).contains(&status) {
        return Err(bad);
    }
    let reason = &rest[4..];
    if reason.iter().any(|&b| b < 0x20 && b != b'\t' || b == 0x7f) {
        return Err(bad);
    }
    Ok((minor - b'0', status, printable(reason)))
}

fn trim_ows(v: &[u8]) -> &[u8] {
    let start = v.iter().position(|b| *b != b' ' && *b != b'\t').unwrap_or(v.len());
    let end = v.iter().rposition(|b| *b != b' ' && *b != b'\t').map_or(start, |e| e + 1);
    &v[start..end]
}

fn printable(v: &[u8]) -> String {
    v.iter().map(|&b| if (0x20..0x7f).contains(&b) || b == b'\t' { b as char } else { '?' }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_response_and_says_where_it_ends() {
        let buf = b"HTTP/1.1 502 Bad Gateway\r\nProxy-Status: up; error=connection_refused\r\nX:  a b \r\n\r\ntail";
        let (head, n) = parse_response(buf).unwrap().unwrap();
        assert_eq!((head.minor_version, head.status, head.reason.as_str()), (1, 502, "Bad Gateway"));
        assert_eq!(head.values("proxy-status").collect::<Vec<_>>(), ["up; error=connection_refused"]);
        assert_eq!(head.values("x").next(), Some("a b"));
        assert_eq!(&buf[n..], b"tail");
        let (empty_reason, _) = parse_response(b"HTTP/1.0 200 \r\n\r\n").unwrap().unwrap();
        assert_eq!((empty_reason.status, empty_reason.reason.as_str()), (200, ""));
    }

    #[test]
    fn incomplete_heads_wait_and_garbage_is_refused_early() {
        assert_eq!(parse_response(b"HTTP/1.1 200 OK\r\nVia: 1.1 x\r\n"), Ok(None));
        assert_eq!(parse_response(b"HTT"), Ok(None));
        assert_eq!(parse_response(b"garbage"), Err(ResponseError::StatusLine));
        assert_eq!(parse_response(b"HTTP/1.1 2OO OK\r\n"), Err(ResponseError::StatusLine));
        assert_eq!(parse_response(b"HTTP/1.1 200\r\n\r\n"), Err(ResponseError::StatusLine));
        assert_eq!(parse_response(b"HTTP/1.1 200 OK\n\n"), Err(ResponseError::BareLf));
        assert_eq!(parse_response(b"HTTP/1.1 200 OK\r\nA: b\r\n c\r\n\r\n"), Err(ResponseError::ObsFold));
        assert_eq!(parse_response(b"HTTP/1.1 200 OK\r\nA b\r\n\r\n"), Err(ResponseError::FieldLine));
        assert_eq!(parse_response(b"HTTP/1.1 200 OK\r\nA: b\nC: d\r\n\r\n"), Err(ResponseError::BareLf));
        assert_eq!(parse_response(&vec![b'H'; 8][..]), Err(ResponseError::StatusLine));
        let mut big = b"HTTP/1.1 200 OK\r\n".to_vec();
        big.resize(MAX_RESPONSE_HEAD + 10, b'a');
        assert_eq!(parse_response(&big), Err(ResponseError::TooLarge));
    }
}
