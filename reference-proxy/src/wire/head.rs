//! Incremental, zero-copy parsing of an HTTP/1.x request head.
//!
//! [`HeadParser::advance`] is called with the whole buffer received so far, each time it grows. Complete lines
//! are validated as soon as they arrive (so garbage is refused early) and never looked at again; a partial line
//! is resumed where the last scan stopped. When the empty line ending the head arrives, `advance` returns how
//! many octets the head used: anything after that is tunnel data and belongs to the caller.

use std::ops::Range;

use super::authority::{
    Authority, HostField, RawHost, authority_fast_classified, authority_raw_within, host_field_raw, parse_host_field,
};
use super::chars::{field_line_scan, target_scan, tchar_prefix, valid_value_prefix, visible_prefix};
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
        Limits { max_request_line: 8192, max_head: 32 * 1024, max_fields: 100 }
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
    pub const HTTP_2: Version = Version { major: 2, minor: 0 };
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
    /// The CONNECT destination, parsed once when the request line arrived.
    authority: Option<(usize, RawHost, u16)>,
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
    /// Start of the first line not yet consumed: completed lines are never scanned again.
    line_start: usize,
    is_connect: bool,
    spans: Spans,
}

/// What scanning one line found.
#[derive(Debug, PartialEq, Eq)]
enum Line {
    /// The line is not complete within the bytes available.
    Partial,
    /// A complete line of this many octets, CRLF included.
    Done(usize),
}

/// How far a line may extend, and the error for a line that does not end by then.
struct Window<'b> {
    bytes: &'b [u8],
    /// Which limit, if any, cut `bytes` short of the end of the input.
    cut: Cut,
    limits: Limits,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Cut {
    None,
    RequestLine,
    Head,
}

impl Window<'_> {
    /// Running out of bytes: wait for more, unless a limit cut the window.
    fn exhausted(&self) -> Result<Line, WireError> {
        match self.cut {
            Cut::None => Ok(Line::Partial),
            Cut::RequestLine => Err(WireError::RequestLineTooLong { limit: self.limits.max_request_line }),
            Cut::Head => Err(WireError::HeadTooLarge { limit: self.limits.max_head }),
        }
    }

    /// The error for a CR at `i`: a line end if LF follows, else a bare CR (RFC 9112 §2.2).
    fn cr_at(&self, i: usize, line_end: WireError) -> Result<Line, WireError> {
        match self.bytes.get(i + 1) {
            None => self.exhausted(),
            Some(b'\n') => Err(line_end),
            Some(_) => Err(WireError::BareCr),
        }
    }
}

impl HeadParser {
    pub fn new(limits: Limits) -> Self {
        HeadParser { limits, stage: Stage::RequestLine, line_start: 0, is_connect: false, spans: Spans::default() }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Forgets the last head, keeping the limits and allocations.
    pub fn reset(&mut self) {
        self.stage = Stage::RequestLine;
        self.line_start = 0;
        self.is_connect = false;
        self.spans.fields.clear();
        self.spans.host = None;
        self.spans.authority = None;
        self.spans.content_length = false;
        self.spans.transfer_encoding = false;
    }

    /// Feeds the buffer received so far (it must start with the same bytes as on earlier calls).
    ///
    /// Errors are found in input order, the same whether the input arrives whole or in pieces: a limit is
    /// reported at the first octet beyond it, a bad octet as soon as it arrives.
    pub fn advance(&mut self, buf: &[u8]) -> Result<Progress, WireError> {
        if self.stage == Stage::RequestLine && self.line_start == 0 {
            self.fast_connect_line(buf);
        }
        loop {
            if self.stage == Stage::Fields {
                self.fast_fields(buf)?;
            }
            let at = self.line_start;
            let step = match self.stage {
                Stage::Done => return Ok(Progress::Complete(at)),
                Stage::RequestLine => {
                    let w = self.window(buf, Some(self.limits.max_request_line.saturating_add(2)));
                    match w.bytes {
                        // RFC 9112 §2.2: a server SHOULD ignore at least one empty line before the request-line.
                        [b'\r', b'\n', ..] => Line::Done(2),
                        _ => self.request_line(&w, at)?,
                    }
                }
                Stage::Fields => {
                    let w = self.window(buf, None);
                    match w.bytes {
                        [b'\r', b'\n', ..] => {
                            self.finish(buf)?;
                            self.stage = Stage::Done;
                            self.line_start = at + 2;
                            return Ok(Progress::Complete(at + 2));
                        }
                        _ => self.field_line(&w, at)?,
                    }
                }
            };
            match step {
                Line::Partial => return Ok(Progress::Partial),
                Line::Done(n) => self.line_start = at + n,
            }
        }
    }

    /// The bytes the current line may use: up to the end of the input, the head limit, and `line_limit` octets.
    fn window<'b>(&self, buf: &'b [u8], line_limit: Option<usize>) -> Window<'b> {
        let head_end = self.limits.max_head;
        let line_end = line_limit.map_or(usize::MAX, |l| self.line_start.saturating_add(l));
        let end = buf.len().min(head_end).min(line_end).max(self.line_start);
        let cut = match buf.len() > end {
            false => Cut::None,
            true if end == line_end => Cut::RequestLine,
            true => Cut::Head,
        };
        Window { bytes: &buf[self.line_start..end], cut, limits: self.limits }
    }

    /// `method SP request-target SP HTTP-version CRLF`, in one pass.
    fn request_line(&mut self, w: &Window<'_>, offset: usize) -> Result<Line, WireError> {
        let b = w.bytes;
        let method_end = if b.starts_with(b"CONNECT ") { 7 } else { tchar_prefix(b) };
        match b.get(method_end) {
            None => return w.exhausted(),
            Some(b' ') if method_end > 0 => {}
            Some(b' ' | b'\t') => return Err(WireError::RequestLineSyntax),
            Some(b'\n') => return Err(WireError::BareLf),
            Some(b'\r') => return w.cr_at(method_end, WireError::RequestLineSyntax),
            Some(_) => return Err(WireError::InvalidMethod),
        }
        let target_start = method_end + 1;
        let target_end = target_start + visible_prefix(&b[target_start..]);
        match b.get(target_end) {
            None => return w.exhausted(),
            Some(b' ') if target_end > target_start => {}
            Some(b' ') => return Err(WireError::RequestLineSyntax),
            Some(b'\n') => return Err(WireError::BareLf),
            Some(b'\r') => return w.cr_at(target_end, WireError::RequestLineSyntax),
            Some(&byte) => return Err(WireError::InvalidTargetByte { byte }),
        }
        let version_start = target_end + 1;
        let (version, version_end) = match usual_version(b.get(version_start..version_start + 10)) {
            Some(version) => (version, version_start + 8),
            None => {
                let version_end = version_start + visible_prefix(&b[version_start..]);
                match b.get(version_end) {
                    None => return w.exhausted(),
                    Some(b'\r') => match b.get(version_end + 1) {
                        None => return w.exhausted(),
                        Some(b'\n') => {}
                        Some(_) => return Err(WireError::BareCr),
                    },
                    Some(b'\n') => return Err(WireError::BareLf),
                    Some(_) => return Err(WireError::RequestLineSyntax),
                }
                (parse_version(&b[version_start..version_end])?, version_end)
            }
        };
        let method = &b[..method_end];
        let target = &b[target_start..target_end];
        self.is_connect = method_end == 7 && method == b"CONNECT";
        if self.is_connect {
            // A target that parses as an authority is in authority-form (the other forms contain `/` or `*`);
            // only a target that does not is classified, to say which form it was.
            let (host, port) = match authority_raw_within(&b[target_start..], target.len()) {
                Ok(parsed) => parsed,
                Err(e) => match target_form(target) {
                    TargetForm::Authority => return Err(e.into()),
                    form => return Err(WireError::ConnectTargetNotAuthority { form }),
                },
            };
            self.spans.authority = Some((offset + target_start, host, port));
        } else if target_form(target) == TargetForm::Authority {
            return Err(WireError::AuthorityFormWithoutConnect);
        }
        self.spans.method = offset..offset + method_end;
        self.spans.target = offset + target_start..offset + target_end;
        self.spans.version = version;
        self.stage = Stage::Fields;
        Ok(Line::Done(version_end + 2))
    }

    /// Takes a plainly valid `CONNECT reg-name:port HTTP/1.1` (or `[IPv6]:port`, or HTTP/1.0) line at the start
    /// of the input, the usual first line, at once; any other start is left to [`Self::request_line`].
    fn fast_connect_line(&mut self, buf: &[u8]) {
        let limit = buf.len().min(self.limits.max_head).min(self.limits.max_request_line.saturating_add(2));
        let b = &buf[..limit];
        if !b.starts_with(b"CONNECT ") {
            return;
        }
        // Byte classes serve reg-names only; an IPv6 literal is parsed on its own.
        let (target_len, masks) = match b.get(8) {
            Some(b'[') => (visible_prefix(&b[8..]), None),
            _ => target_scan(&b[8..]),
        };
        let target_end = 8 + target_len;
        if b.get(target_end) != Some(&b' ') {
            return;
        }
        let Some(version) = usual_version(b.get(target_end + 1..target_end + 11)) else {
            return;
        };
        if target_end == 8 {
            return;
        }
        let Some((host, port)) = authority_fast_classified(&b[8..], target_len, masks) else {
            return;
        };
        self.is_connect = true;
        self.spans.authority = Some((8, host, port));
        self.spans.method = 0..7;
        self.spans.target = 8..target_end;
        self.spans.version = version;
        self.stage = Stage::Fields;
        self.line_start = target_end + 11;
        #[cfg(debug_assertions)]
        {
            // The rule-by-rule path must read the line the same way (fuzz builds check this on every input).
            let mut twin = HeadParser::new(self.limits);
            let w = twin.window(buf, Some(twin.limits.max_request_line.saturating_add(2)));
            let line = twin.request_line(&w, 0);
            assert_eq!(line.ok(), Some(Line::Done(self.line_start)), "fast request line disagrees");
            assert_eq!(twin.spans.authority, self.spans.authority);
            assert_eq!((&twin.spans.target, twin.spans.version), (&self.spans.target, self.spans.version));
        }
    }

    /// Takes the plainly valid, complete field lines from `line_start` on, one vector pass each, with none of
    /// the per-line bookkeeping of [`Self::advance`]. It stops before any other line (the empty line, an error, a
    /// partial line, a second Host), which [`Self::field_line`] then examines rule by rule.
    fn fast_fields(&mut self, buf: &[u8]) -> Result<(), WireError> {
        let end = buf.len().min(self.limits.max_head);
        let mut at = self.line_start;
        while at < end {
            let b = &buf[at..end];
            if b[0] == b'\r' {
                // Most likely the empty line that ends the head.
                break;
            }
            let Some((name_end, stop)) = field_line_scan(b) else { break };
            if b.get(stop..stop + 2) != Some(b"\r\n") || self.spans.fields.len() >= self.limits.max_fields {
                break;
            }
            #[cfg(debug_assertions)]
            let mut twin = self.clone();
            self.add_field(b, at, name_end, stop)?;
            #[cfg(debug_assertions)]
            {
                // The rule-by-rule path must read the line the same way (fuzz builds check this on every input).
                let w = Window { bytes: b, cut: Cut::None, limits: self.limits };
                assert_eq!(twin.field_line(&w, at).ok(), Some(Line::Done(stop + 2)), "fast field line disagrees");
                assert_eq!(twin.spans.fields.last(), self.spans.fields.last());
                assert_eq!(twin.spans.host, self.spans.host);
            }
            at += stop + 2;
        }
        self.line_start = at;
        Ok(())
    }

    /// Records the valid field line `b[..stop]` whose name ends at `name_end`.
    #[inline(always)]
    fn add_field(&mut self, b: &[u8], offset: usize, name_end: usize, stop: usize) -> Result<(), WireError> {
        let raw_start = name_end + 1;
        let raw = &b[raw_start..stop];
        let ows = |c: &u8| *c == b' ' || *c == b'\t';
        // Usually one SP before the value and none after it.
        let lead = match raw {
            [b' ', next, ..] if !ows(next) => 1,
            _ => raw.iter().take_while(|c| ows(c)).count(),
        };
        let trail = match raw.last() {
            Some(c) if ows(c) => raw[lead..].iter().rev().take_while(|c| ows(c)).count(),
            _ => 0,
        };
        let name = &b[..name_end];
        let index = self.spans.fields.len();
        // Only three names matter to the parser; their lengths tell most others apart at once.
        match name.len() {
            // Tchar bytes OR 0x20 give "host" only from the letters of "host" in either case.
            4 if u32::from_le_bytes([name[0], name[1], name[2], name[3]]) | 0x2020_2020
                == u32::from_le_bytes(*b"host") =>
            {
                if self.spans.host.is_some() {
                    return Err(WireError::DuplicateHost);
                }
                self.spans.host = Some(index);
            }
            14 if name.eq_ignore_ascii_case(b"content-length") => self.spans.content_length = true,
            17 if name.eq_ignore_ascii_case(b"transfer-encoding") => self.spans.transfer_encoding = true,
            _ => {}
        }
        let value = offset + raw_start + lead..offset + stop - trail;
        self.spans.fields.push((offset..offset + name_end, value));
        Ok(())
    }

    /// `field-name ":" OWS field-value OWS CRLF`, checked rule by rule, so the first error in input order is the
    /// one reported.
    fn field_line(&mut self, w: &Window<'_>, offset: usize) -> Result<Line, WireError> {
        let b = w.bytes;
        match b.first() {
            None => return w.exhausted(),
            Some(b' ' | b'\t') if self.spans.fields.is_empty() => return Err(WireError::WhitespaceBeforeFirstField),
            Some(b' ' | b'\t') => return Err(WireError::ObsFold),
            Some(b'\n') => return Err(WireError::BareLf),
            Some(b'\r') => return w.cr_at(0, WireError::BareCr),
            Some(_) => {}
        }
        if self.spans.fields.len() >= self.limits.max_fields {
            return Err(WireError::TooManyFields { limit: self.limits.max_fields });
        }
        let name_end = tchar_prefix(b);
        match b.get(name_end) {
            None => return w.exhausted(),
            Some(b':') if name_end > 0 => {}
            Some(b' ' | b'\t') => {
                // Whitespace then a colon is the RFC 9112 §5.1 case; whitespace inside a name is not a token.
                let after = b[name_end..].iter().position(|&c| c != b' ' && c != b'\t').map(|i| name_end + i);
                return match after.map(|i| b[i]) {
                    None => w.exhausted(),
                    Some(b':') => Err(WireError::WhitespaceBeforeColon),
                    Some(_) => Err(WireError::InvalidFieldName),
                };
            }
            Some(b'\n') => return Err(WireError::BareLf),
            Some(b'\r') => return w.cr_at(name_end, WireError::MissingColon),
            Some(_) => return Err(WireError::InvalidFieldName),
        }
        let raw_start = name_end + 1;
        let value_len = valid_value_prefix(&b[raw_start..]);
        let stop = raw_start + value_len;
        match b.get(stop) {
            None => return w.exhausted(),
            Some(b'\r') => match b.get(stop + 1) {
                None => return w.exhausted(),
                Some(b'\n') => {}
                Some(_) => return Err(WireError::BareCr),
            },
            Some(b'\n') => return Err(WireError::BareLf),
            Some(&byte) => return Err(WireError::InvalidFieldValue { byte }),
        }
        self.add_field(b, offset, name_end, stop)?;
        Ok(Line::Done(stop + 2))
    }

    fn finish(&mut self, buf: &[u8]) -> Result<(), WireError> {
        if self.is_connect {
            if self.spans.content_length {
                return Err(WireError::ContentOnConnect { field: "Content-Length" });
            }
            if self.spans.transfer_encoding {
                return Err(WireError::ContentOnConnect { field: "Transfer-Encoding" });
            }
        }
        match self.spans.host {
            Some(i) => {
                let value = &buf[self.spans.fields[i].1.clone()];
                // A Host equal to a valid CONNECT target (the usual case) is valid without parsing it again.
                let target = &buf[self.spans.target.clone()];
                let same_as_target = self.spans.authority.is_some() && same_bytes(value, target);
                if !same_as_target {
                    host_field_raw(value).map_err(WireError::InvalidHost)?;
                }
            }
            None if self.spans.version >= Version::HTTP_11 => return Err(WireError::MissingHost),
            None => {}
        }
        Ok(())
    }

    /// The parsed head. Only meaningful after `advance` returned `Complete` for this same buffer.
    pub fn head<'a>(&'a self, buf: &'a [u8]) -> RequestHead<'a> {
        debug_assert_eq!(self.stage, Stage::Done, "head() before the head was complete");
        RequestHead { buf, spans: &self.spans, len: self.line_start }
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
        let &(start, host, port) = self.spans.authority.as_ref()?;
        Some(Authority { host: host.to_host(&self.buf[start..]), port })
    }

    pub fn version(&self) -> Version {
        self.spans.version
    }

    pub fn fields(&self) -> impl ExactSizeIterator<Item = Field<'a>> + 'a {
        let buf = self.buf;
        self.spans.fields.iter().map(move |(n, v)| Field { name: ascii(&buf[n.clone()]), value: &buf[v.clone()] })
    }

    /// The first field with this name (case-insensitive).
    pub fn field(&self, name: &str) -> Option<&'a [u8]> {
        self.fields().find(|f| f.name.eq_ignore_ascii_case(name)).map(|f| f.value)
    }

    /// The Host field, parsed. It is informational only: it never chooses the tunnel destination.
    pub fn host(&self) -> Option<HostField<'a>> {
        let (_, v) = self.spans.fields.get(self.spans.host?)?;
        parse_host_field(&self.buf[v.clone()]).ok()
    }
}

/// Slice equality without a call for the short strings compared here (a Host value and a target).
#[inline]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Method and field names were checked to be tchar, the target to be visible ASCII.
fn ascii(bytes: &[u8]) -> &str {
    super::chars::ascii_str(bytes)
}

/// `HTTP/1.1` or `HTTP/1.0` straight to CRLF, as the ten bytes `ten` (the usual case, which skips the scan
/// and [`parse_version`]); `None` for anything else, including fewer bytes.
#[inline]
fn usual_version(ten: Option<&[u8]>) -> Option<Version> {
    let &[a, b, c, d, e, f, g, h, b'\r', b'\n'] = ten? else { return None };
    match u64::from_le_bytes([a, b, c, d, e, f, g, h]) {
        w if w == u64::from_le_bytes(*b"HTTP/1.1") => Some(Version::HTTP_11),
        w if w == u64::from_le_bytes(*b"HTTP/1.0") => Some(Version::HTTP_10),
        _ => None,
    }
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

/// `scheme "://"`: the absolute-form a client could mean (`urn:x` style targets read as authority-form and fail
/// there, with a port error).
fn has_scheme(target: &[u8]) -> bool {
    let Some(colon) = memchr::memchr(b':', target) else {
        return false;
    };
    if !target[colon + 1..].starts_with(b"//") {
        return false;
    }
    let scheme = &target[..colon];
    scheme.first().is_some_and(u8::is_ascii_alphabetic)
        && scheme.iter().all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
}

/// Parses a whole head in one call with default limits; `Ok(None)` when more input is needed.
pub fn parse_head<'a>(buf: &'a [u8], parser: &'a mut HeadParser) -> Result<Option<RequestHead<'a>>, WireError> {
    parser.reset();
    match parser.advance(buf)? {
        Progress::Partial => Ok(None),
        Progress::Complete(_) => Ok(Some(parser.head(buf))),
    }
}
