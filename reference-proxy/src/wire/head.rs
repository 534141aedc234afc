//! Incremental, zero-copy parsing of an HTTP/1.x request head.
//!
//! [`HeadParser::advance`] is called with the whole buffer received so far, each time it grows. Complete lines
//! are validated as soon as they arrive (so garbage is refused early) and never looked at again; a partial line
//! is resumed where the last scan stopped. When the empty line ending the head arrives, `advance` returns how
//! many octets the head used: anything after that is tunnel data and belongs to the caller.

use std::ops::Range;

use super::authority::{Authority, HostField, parse_authority, parse_host_field};
use super::chars::{invalid_value_byte, is_target_byte, is_tchar};
use super::error::{TargetForm, WireError};

/// Size limits. Exceeding them is an error naming the limit, never an unbounded buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest request line (without CRLF); longer gives 414. RFC 9112 §3 recommends supporting at least 8000.
    pub max_request_line: usize,
    /// Largest whole head, request line and fields and CRLFs; larger gives 431.
    pub max_head: usize,
    /// Most header field lines; more gives 431.
    pub max_fields: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_line: 8192,
            max_head: 32 * 1024,
            max_fields: 100,
        }
    }
}

/// Result of feeding more input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// The head is not complete yet: read more and call again with the grown buffer.
    Partial,
    /// The head is complete and used this many octets of the buffer.
    Complete(usize),
}

/// The HTTP version of the request line (RFC 9112 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    pub major: u8,
    pub minor: u8,
}

impl Version {
    pub const HTTP_10: Version = Version { major: 1, minor: 0 };
    pub const HTTP_11: Version = Version { major: 1, minor: 1 };
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HTTP/{}.{}", self.major, self.minor)
    }
}

/// One header field line, borrowed from the buffer. The value has its surrounding OWS removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field<'a> {
    pub name: &'a str,
    pub value: &'a [u8],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    RequestLine,
    Fields,
    Done,
}

#[derive(Debug, Clone, Default)]
struct Spans {
    method: Range<usize>,
    target: Range<usize>,
    version: Version,
    fields: Vec<(Range<usize>, Range<usize>)>,
    host: Option<usize>,
    content_length: bool,
    transfer_encoding: bool,
}

impl Default for Version {
    fn default() -> Self {
        Version::HTTP_11
    }
}

/// Parses one request head. Reuse it with [`HeadParser::reset`] to keep its field table allocation.
#[derive(Debug, Clone)]
pub struct HeadParser {
    limits: Limits,
    stage: Stage,
    /// Start of the first line not yet consumed.
    line_start: usize,
    /// Where the search for the next LF resumes (at or after `line_start`).
    scan_from: usize,
    is_connect: bool,
    spans: Spans,
}

impl HeadParser {
    pub fn new(limits: Limits) -> Self {
        HeadParser {
            limits,
            stage: Stage::RequestLine,
            line_start: 0,
            scan_from: 0,
            is_connect: false,
            spans: Spans::default(),
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Forgets the last head, keeping the limits and allocations.
    pub fn reset(&mut self) {
        self.stage = Stage::RequestLine;
        self.line_start = 0;
        self.scan_from = 0;
        self.is_connect = false;
        self.spans.fields.clear();
        self.spans.host = None;
        self.spans.content_length = false;
        self.spans.transfer_encoding = false;
    }

    /// Feeds the buffer received so far (it must start with the same bytes as on earlier calls).
    pub fn advance(&mut self, buf: &[u8]) -> Result<Progress, WireError> {
        if self.stage == Stage::Done {
            return Ok(Progress::Complete(self.line_start));
        }
        loop {
            let Some(lf) = memchr::memchr(b'\n', &buf[self.scan_from..]).map(|i| self.scan_from + i) else {
                self.scan_from = buf.len();
                return self.check_partial(buf).map(|()| Progress::Partial);
            };
            let line_end = lf + 1;
            if line_end > self.limits.max_head {
                return Err(self.too_long_error(lf - self.line_start));
            }
            if self.stage == Stage::RequestLine {
                // Same order as on partial input: a bad first byte is reported before anything later in the line.
                if let Some(err) = first_byte_error(buf[self.line_start]) {
                    return Err(err);
                }
            }
            let line = &buf[self.line_start..lf];
            let Some(content) = line.strip_suffix(b"\r") else {
                return Err(WireError::BareLf);
            };
            let start = self.line_start;
            self.line_start = line_end;
            self.scan_from = line_end;
            match self.stage {
                Stage::RequestLine if content.is_empty() => {
                    // RFC 9112 §2.2: a server SHOULD ignore at least one empty line before the request-line.
                }
                Stage::RequestLine => {
                    if content.len() > self.limits.max_request_line {
                        return Err(WireError::RequestLineTooLong {
                            limit: self.limits.max_request_line,
                        });
                    }
                    self.request_line(content, start)?;
                    self.stage = Stage::Fields;
                }
                Stage::Fields if content.is_empty() => {
                    self.finish(buf)?;
                    self.stage = Stage::Done;
                    return Ok(Progress::Complete(line_end));
                }
                Stage::Fields => self.field_line(content, start)?,
                Stage::Done => unreachable!("returned above"),
            }
        }
    }

    /// Checks that an incomplete line already breaks no limit, and refuses a first byte that no request can
    /// start with (a TLS ClientHello sent to a cleartext port starts with 0x16) without waiting for more.
    fn check_partial(&self, buf: &[u8]) -> Result<(), WireError> {
        let pending = buf.len() - self.line_start;
        if buf.len() > self.limits.max_head {
            return Err(self.too_long_error(pending));
        }
        if self.stage == Stage::RequestLine {
            if pending > self.limits.max_request_line + 1 {
                return Err(WireError::RequestLineTooLong {
                    limit: self.limits.max_request_line,
                });
            }
            if let Some(err) = buf.get(self.line_start).and_then(|&b| first_byte_error(b)) {
                return Err(err);
            }
        }
        Ok(())
    }

    fn too_long_error(&self, pending_line: usize) -> WireError {
        if self.stage == Stage::RequestLine && pending_line > self.limits.max_request_line {
            WireError::RequestLineTooLong {
                limit: self.limits.max_request_line,
            }
        } else {
            WireError::HeadTooLarge {
                limit: self.limits.max_head,
            }
        }
    }

    fn request_line(&mut self, line: &[u8], offset: usize) -> Result<(), WireError> {
        if line.contains(&b'\r') {
            return Err(WireError::BareCr);
        }
        if let Some(err) = first_byte_error(line[0]) {
            return Err(err);
        }
        let sp1 = memchr::memchr(b' ', line).ok_or(WireError::RequestLineSyntax)?;
        let method = &line[..sp1];
        if method.is_empty() {
            return Err(WireError::RequestLineSyntax);
        }
        if !method.iter().all(|&b| is_tchar(b)) {
            return Err(WireError::InvalidMethod);
        }
        let rest = &line[sp1 + 1..];
        let sp2 = memchr::memchr(b' ', rest).ok_or(WireError::RequestLineSyntax)?;
        let target = &rest[..sp2];
        let version = &rest[sp2 + 1..];
        if target.is_empty() || version.contains(&b' ') {
            return Err(WireError::RequestLineSyntax);
        }
        if let Some(&byte) = target.iter().find(|&&b| !is_target_byte(b)) {
            return Err(WireError::InvalidTargetByte { byte });
        }
        let version = parse_version(version)?;
        self.is_connect = method == b"CONNECT";
        let form = target_form(target);
        if self.is_connect {
            if form != TargetForm::Authority {
                return Err(WireError::ConnectTargetNotAuthority { form });
            }
            parse_authority(target)?;
        } else if form == TargetForm::Authority {
            return Err(WireError::AuthorityFormWithoutConnect);
        }
        let target_start = offset + sp1 + 1;
        self.spans.method = offset..offset + sp1;
        self.spans.target = target_start..target_start + sp2;
        self.spans.version = version;
        Ok(())
    }

    fn field_line(&mut self, line: &[u8], offset: usize) -> Result<(), WireError> {
        if matches!(line[0], b' ' | b'\t') {
            return Err(if self.spans.fields.is_empty() {
                WireError::WhitespaceBeforeFirstField
            } else {
                WireError::ObsFold
            });
        }
        if self.spans.fields.len() >= self.limits.max_fields {
            return Err(WireError::TooManyFields {
                limit: self.limits.max_fields,
            });
        }
        let colon = memchr::memchr(b':', line).ok_or(WireError::MissingColon)?;
        let name = &line[..colon];
        if matches!(name.last(), Some(b' ' | b'\t')) {
            return Err(WireError::WhitespaceBeforeColon);
        }
        if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
            return Err(WireError::InvalidFieldName);
        }
        let raw = &line[colon + 1..];
        if let Some(byte) = invalid_value_byte(raw) {
            return Err(if byte == b'\r' {
                WireError::BareCr
            } else {
                WireError::InvalidFieldValue { byte }
            });
        }
        let lead = raw.iter().take_while(|&&b| b == b' ' || b == b'\t').count();
        let trail = raw[lead..]
            .iter()
            .rev()
            .take_while(|&&b| b == b' ' || b == b'\t')
            .count();
        let value_start = offset + colon + 1 + lead;
        let value_end = offset + line.len() - trail;
        let index = self.spans.fields.len();
        if name.eq_ignore_ascii_case(b"host") {
            if self.spans.host.is_some() {
                return Err(WireError::DuplicateHost);
            }
            self.spans.host = Some(index);
        } else if name.eq_ignore_ascii_case(b"content-length") {
            self.spans.content_length = true;
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            self.spans.transfer_encoding = true;
        }
        self.spans.fields.push((offset..offset + colon, value_start..value_end));
        Ok(())
    }

    fn finish(&mut self, buf: &[u8]) -> Result<(), WireError> {
        if self.is_connect {
            if self.spans.content_length {
                return Err(WireError::ContentOnConnect {
                    field: "Content-Length",
                });
            }
            if self.spans.transfer_encoding {
                return Err(WireError::ContentOnConnect {
                    field: "Transfer-Encoding",
                });
            }
        }
        match self.spans.host {
            Some(i) => {
                let value = &buf[self.spans.fields[i].1.clone()];
                parse_host_field(value).map_err(WireError::InvalidHost)?;
            }
            None if self.spans.version >= Version::HTTP_11 => return Err(WireError::MissingHost),
            None => {}
        }
        Ok(())
    }

    /// The parsed head. Only meaningful after `advance` returned `Complete` for this same buffer.
    pub fn head<'a>(&'a self, buf: &'a [u8]) -> RequestHead<'a> {
        debug_assert_eq!(self.stage, Stage::Done, "head() before the head was complete");
        RequestHead {
            buf,
            spans: &self.spans,
            len: self.line_start,
        }
    }
}

/// A complete, validated request head: views into the caller's buffer.
#[derive(Debug, Clone, Copy)]
pub struct RequestHead<'a> {
    buf: &'a [u8],
    spans: &'a Spans,
    len: usize,
}

impl<'a> RequestHead<'a> {
    /// Octets the head used; `buf[len..]` is data the client sent after it.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn method(&self) -> &'a str {
        ascii(&self.buf[self.spans.method.clone()])
    }

    pub fn is_connect(&self) -> bool {
        self.method() == "CONNECT"
    }

    /// The request-target as sent.
    pub fn target(&self) -> &'a str {
        ascii(&self.buf[self.spans.target.clone()])
    }

    pub fn target_form(&self) -> TargetForm {
        target_form(self.target().as_bytes())
    }

    /// The tunnel destination of a CONNECT: always the request-target, never the Host field (RFC 9112 §3.3).
    pub fn authority(&self) -> Option<Authority<'a>> {
        if !self.is_connect() {
            return None;
        }
        parse_authority(self.target().as_bytes()).ok()
    }

    pub fn version(&self) -> Version {
        self.spans.version
    }

    pub fn fields(&self) -> impl ExactSizeIterator<Item = Field<'a>> + 'a {
        let buf = self.buf;
        self.spans.fields.iter().map(move |(n, v)| Field {
            name: ascii(&buf[n.clone()]),
            value: &buf[v.clone()],
        })
    }

    /// The first field with this name (case-insensitive).
    pub fn field(&self, name: &str) -> Option<&'a [u8]> {
        self.fields()
            .find(|f| f.name.eq_ignore_ascii_case(name))
            .map(|f| f.value)
    }

    /// The Host field, parsed. It is informational only: it never chooses the tunnel destination.
    pub fn host(&self) -> Option<HostField<'a>> {
        let (_, v) = self.spans.fields.get(self.spans.host?)?;
        parse_host_field(&self.buf[v.clone()]).ok()
    }
}

/// The error for a request line starting with a byte no method starts with (CR may begin an empty line).
fn first_byte_error(first: u8) -> Option<WireError> {
    match first {
        b'\r' | b'\n' => None,
        b' ' | b'\t' => Some(WireError::RequestLineSyntax),
        b if !is_tchar(b) => Some(WireError::InvalidMethod),
        _ => None,
    }
}

/// Method and field names were checked to be tchar, the target to be visible ASCII.
fn ascii(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap_or("")
}

fn parse_version(v: &[u8]) -> Result<Version, WireError> {
    match v {
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor] if major.is_ascii_digit() && minor.is_ascii_digit() => {
            let (major, minor) = (major - b'0', minor - b'0');
            match major {
                // RFC 9110 §6.2: a higher minor version is processed as the highest one implemented.
                1 => Ok(Version { major, minor }),
                _ => Err(WireError::VersionNotSupported { major, minor }),
            }
        }
        _ => Err(WireError::InvalidVersion),
    }
}

/// Classifies a request-target (RFC 9112 §3.2). Anything that is not origin, asterisk or `scheme://` is read as
/// authority-form, so that its errors are reported as authority errors.
pub fn target_form(target: &[u8]) -> TargetForm {
    match target {
        [b'/', ..] => TargetForm::Origin,
        [b'*'] => TargetForm::Asterisk,
        _ if has_scheme(target) => TargetForm::Absolute,
        _ => TargetForm::Authority,
    }
}

/// `scheme "://"`, or a scheme followed by `:` and something that cannot be a port (`urn:x`, `mailto:a@b`).
fn has_scheme(target: &[u8]) -> bool {
    let Some(colon) = memchr::memchr(b':', target) else {
        return false;
    };
    let scheme = &target[..colon];
    let scheme_ok = scheme.first().is_some_and(u8::is_ascii_alphabetic)
        && scheme
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    scheme_ok && target[colon + 1..].starts_with(b"//")
}

/// Parses a whole head in one call with default limits; `Ok(None)` when more input is needed.
pub fn parse_head<'a>(buf: &'a [u8], parser: &'a mut HeadParser) -> Result<Option<RequestHead<'a>>, WireError> {
    parser.reset();
    match parser.advance(buf)? {
        Progress::Partial => Ok(None),
        Progress::Complete(_) => Ok(Some(parser.head(buf))),
    }
}
