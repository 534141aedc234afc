//! Parsing a proxy's response head (pure, no I/O). Lenient about line endings so that a sloppy but
//! readable response is judged on its content; anything unreadable is reported as garbage.

use schemars::JsonSchema;
use serde::Serialize;

use crate::escape;

/// A parsed status line and header section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct ResponseHead {
    pub version: String,
    pub status: u16,
    pub reason: String,
    /// The status line has the SP after the status code, which RFC 9112 §4 requires even when the reason
    /// phrase is empty.
    pub space_after_status: bool,
    /// Field lines in order, names as sent.
    pub fields: Vec<(String, String)>,
    /// Size of the head in bytes, including the empty line.
    pub size: usize,
}

impl ResponseHead {
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn has(&self, name: &str) -> bool {
        self.field(name).is_some()
    }

    /// The body length the head announces: Some(n) for Content-Length, None when close-delimited or chunked.
    pub fn content_length(&self) -> Option<u64> {
        self.field("content-length").and_then(|v| v.trim().parse().ok())
    }

    pub fn is_chunked(&self) -> bool {
        self.field("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    }

    /// `HTTP/1.1 403 Forbidden`, for reports (no trailing space when the reason is empty).
    pub fn status_line(&self) -> String {
        format!("{} {} {}", self.version, self.status, self.reason).trim_end().to_string()
    }
}

/// The offset just past the head's terminating empty line (`\r\n\r\n`, or `\n\n` from a sloppy sender).
pub fn find_head_end(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(p) = memchr_nl(&buf[i..]) {
        let nl = i + p;
        let next = nl + 1;
        if buf.get(next) == Some(&b'\n') {
            return Some(next + 1);
        }
        if buf.get(next) == Some(&b'\r') && buf.get(next + 1) == Some(&b'\n') {
            return Some(next + 2);
        }
        i = next;
    }
    None
}

fn memchr_nl(b: &[u8]) -> Option<usize> {
    b.iter().position(|&c| c == b'\n')
}

/// Parses a complete head (as delimited by [`find_head_end`]).
pub fn parse_head(bytes: &[u8]) -> Result<ResponseHead, String> {
    let garbage = || format!("not an HTTP response: {}", escape::escape(bytes, 80));
    let text = std::str::from_utf8(bytes).map_err(|_| garbage())?;
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let status_line = lines.next().ok_or_else(garbage)?;
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let code = parts.next().unwrap_or_default();
    let reason = parts.next();
    let space_after_status = reason.is_some();
    let reason = reason.unwrap_or_default();
    let version_ok = version.len() == 8
        && version.starts_with("HTTP/")
        && version.as_bytes()[5].is_ascii_digit()
        && version.as_bytes()[6] == b'.'
        && version.as_bytes()[7].is_ascii_digit();
    if !version_ok || code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("invalid status line: {}", escape::escape(status_line.as_bytes(), 80)));
    }
    let status: u16 = code.parse().map_err(|_| garbage())?;
    if !(100..=599).contains(&status) {
        return Err(format!("status code {status} out of range"));
    }
    let mut fields = Vec::new();
    for line in lines {
        if line.is_empty() {
            break;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("invalid field line: {}", escape::escape(line.as_bytes(), 80)))?;
        fields.push((name.to_string(), value.trim().to_string()));
    }
    Ok(ResponseHead {
        version: version.into(),
        status,
        reason: reason.into(),
        space_after_status,
        fields,
        size: bytes.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_2xx() {
        let raw = b"HTTP/1.1 200 Connection Established\r\nProxy-Agent: x\r\n\r\nTUNNEL";
        let end = find_head_end(raw).unwrap();
        assert_eq!(&raw[end..], b"TUNNEL");
        let h = parse_head(&raw[..end]).unwrap();
        assert_eq!((h.status, h.reason.as_str(), h.version.as_str()), (200, "Connection Established", "HTTP/1.1"));
        assert_eq!(h.field("proxy-agent"), Some("x"));
        assert!(!h.has("content-length"));
    }

    #[test]
    fn bare_lf_and_empty_reason() {
        let raw = b"HTTP/1.0 502 \nContent-Length: 3\n\nabc";
        let end = find_head_end(raw).unwrap();
        let h = parse_head(&raw[..end]).unwrap();
        assert_eq!((h.status, h.content_length()), (502, Some(3)));
        assert!(h.space_after_status);
        let h = parse_head(b"HTTP/1.1 200\r\n\r\n").unwrap();
        assert_eq!((h.status, h.reason.as_str()), (200, ""));
        assert!(!h.space_after_status);
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(parse_head(b"SSH-2.0-x\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/1.1 20 OK\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n").is_err());
        assert!(parse_head(b"\xff\xfe\r\n\r\n").is_err());
        assert_eq!(find_head_end(b"HTTP/1.1 200 OK\r\n"), None);
    }
}
