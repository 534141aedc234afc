//! One test per rule, each citing its section.

use super::*;

fn parse(input: &str) -> Result<Progress, WireError> {
    HeadParser::new(Limits::default()).advance(input.as_bytes())
}

fn err(input: &str) -> WireError {
    parse(input).expect_err(input)
}

fn complete(input: &str) -> usize {
    match parse(input) {
        Ok(Progress::Complete(n)) => n,
        other => panic!("{input:?}: {other:?}"),
    }
}

const OK: &str = "CONNECT origin.test:443 HTTP/1.1\r\nHost: origin.test:443\r\n\r\n";

#[test]
fn valid_connect_head_reports_its_length_and_keeps_early_data() {
    // RFC 9110 §9.3.6: data after the header section is tunnel data, never part of the head.
    let input = format!("{OK}\x16\x03\x01early");
    let mut p = HeadParser::new(Limits::default());
    assert_eq!(p.advance(input.as_bytes()), Ok(Progress::Complete(OK.len())));
    let head = p.head(input.as_bytes());
    assert_eq!(head.method(), "CONNECT");
    assert_eq!(head.target(), "origin.test:443");
    assert_eq!(head.version(), Version::HTTP_11);
    assert_eq!(head.authority().unwrap().to_string(), "origin.test:443");
    assert_eq!(&input.as_bytes()[head.len()..], b"\x16\x03\x01early");
}

#[test]
fn partial_input_needs_more_and_resumes() {
    let mut p = HeadParser::new(Limits::default());
    for end in 0..OK.len() {
        assert_eq!(p.advance(&OK.as_bytes()[..end]), Ok(Progress::Partial), "at {end}");
    }
    assert_eq!(p.advance(OK.as_bytes()), Ok(Progress::Complete(OK.len())));
    // Asking again after completion is idempotent.
    assert_eq!(p.advance(OK.as_bytes()), Ok(Progress::Complete(OK.len())));
}

#[test]
fn reset_parser_parses_a_second_head() {
    let mut p = HeadParser::new(Limits::default());
    assert!(matches!(p.advance(OK.as_bytes()), Ok(Progress::Complete(_))));
    p.reset();
    let other = "CONNECT [::1]:8443 HTTP/1.0\r\n\r\n";
    assert_eq!(p.advance(other.as_bytes()), Ok(Progress::Complete(other.len())));
    assert_eq!(p.head(other.as_bytes()).target(), "[::1]:8443");
}

#[test]
fn fields_are_zero_copy_and_trimmed() {
    // RFC 9112 §5: field-line = field-name ":" OWS field-value OWS.
    let input =
        "CONNECT a.test:1 HTTP/1.1\r\nHost:a.test\r\nX-A: \t v a l \t\r\nproxy-authorization: Basic eA==\r\n\r\n";
    let mut p = HeadParser::new(Limits::default());
    complete(input);
    p.advance(input.as_bytes()).unwrap();
    let head = p.head(input.as_bytes());
    let fields: Vec<_> = head.fields().map(|f| (f.name, f.value)).collect();
    assert_eq!(fields, [("Host", &b"a.test"[..]), ("X-A", b"v a l"), ("proxy-authorization", b"Basic eA==")]);
    assert_eq!(head.field("Proxy-Authorization"), Some(&b"Basic eA=="[..]));
    let value = head.field("x-a").unwrap();
    let range = value.as_ptr() as usize - input.as_ptr() as usize;
    assert_eq!(&input[range..range + value.len()], "v a l", "value borrows the input");
}

#[test]
fn leading_empty_lines_are_ignored() {
    // RFC 9112 §2.2: a server SHOULD ignore at least one empty line received before the request-line.
    let input = format!("\r\n\r\n{OK}");
    assert_eq!(complete(&input), input.len());
}

#[test]
fn bare_lf_is_refused() {
    // RFC 9112 §2.2 lets a recipient accept a bare LF (MAY); we refuse it (see module docs).
    assert_eq!(err("CONNECT a.test:1 HTTP/1.1\nHost: a.test\r\n\r\n"), WireError::BareLf);
    assert_eq!(err("CONNECT a.test:1 HTTP/1.1\r\nHost: a.test\n\r\n"), WireError::BareLf);
    assert_eq!(err("CONNECT a.test:1 HTTP/1.1\r\nHost: a.test\r\n\n"), WireError::BareLf);
}

#[test]
fn bare_cr_is_invalid() {
    // RFC 9112 §2.2: a bare CR MUST be treated as invalid (or replaced by SP).
    assert_eq!(err("CONNECT a.test:1\rHTTP/1.1\r\nHost: a\r\n\r\n"), WireError::BareCr);
    assert_eq!(err("CONNECT a.test:1 HTTP/1.1\r\nX: a\rb\r\nHost: a\r\n\r\n"), WireError::BareCr);
}

#[test]
fn method_is_a_case_sensitive_token() {
    // RFC 9112 §3.1: "The request method is case-sensitive." A lowercase connect is another method, and
    // authority-form with another method is refused (RFC 9110 §7.1).
    assert_eq!(err("connect a.test:1 HTTP/1.1\r\nHost: a\r\n\r\n"), WireError::AuthorityFormWithoutConnect);
    assert_eq!(err("Connect a.test:1 HTTP/1.1\r\nHost: a\r\n\r\n"), WireError::AuthorityFormWithoutConnect);
    assert_eq!(err("GET a.test:1 HTTP/1.1\r\nHost: a\r\n\r\n"), WireError::AuthorityFormWithoutConnect);
    assert_eq!(err("CON\"NECT a.test:1 HTTP/1.1\r\n\r\n"), WireError::InvalidMethod);
    // A TLS ClientHello sent to a cleartext port is refused at its first byte.
    let mut p = HeadParser::new(Limits::default());
    assert_eq!(p.advance(b"\x16\x03\x01\x02\x00"), Err(WireError::InvalidMethod));
    // Other methods in origin/absolute form parse: the proxy answers them 501 itself.
    assert!(matches!(parse("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), Ok(Progress::Complete(_))));
    assert!(matches!(parse("GET http://a.test/ HTTP/1.1\r\nHost: a\r\n\r\n"), Ok(Progress::Complete(_))));
}

#[test]
fn request_line_has_single_spaces() {
    // RFC 9112 §3: request-line = method SP request-target SP HTTP-version.
    for bad in [
        "CONNECT  a.test:1 HTTP/1.1\r\n",
        " CONNECT a.test:1 HTTP/1.1\r\n",
        "CONNECT a.test:1  HTTP/1.1\r\n",
        "CONNECT a.test:1 HTTP/1.1 \r\n",
        "CONNECT a.test:1\r\n",
        "CONNECT\r\n",
    ] {
        assert_eq!(err(bad), WireError::RequestLineSyntax, "{bad:?}");
    }
    // HTAB is not a separator (RFC 9112 §3 MAY parse on whitespace; we do not), nor allowed in a target.
    assert_eq!(err("CONNECT\ta.test:1 HTTP/1.1\r\n"), WireError::RequestLineSyntax);
    assert_eq!(err("CONNECT a.test:1\tHTTP/1.1\r\n"), WireError::InvalidTargetByte { byte: b'\t' });
}

#[test]
fn version_syntax_and_support() {
    // RFC 9112 §2.3: HTTP-version = HTTP-name "/" DIGIT "." DIGIT, case-sensitive.
    for bad in ["http/1.1", "HTTP/1.10", "HTTP/01.1", "HTTP/1", "HTTP/1.1x", "HTTPS/1.1"] {
        assert_eq!(err(&format!("CONNECT a.test:1 {bad}\r\n")), WireError::InvalidVersion, "{bad}");
    }
    // RFC 9110 §15.6.6: 505 for an unsupported major version.
    let e = err("CONNECT a.test:1 HTTP/2.0\r\n");
    assert_eq!((e.clone(), e.status()), (WireError::VersionNotSupported { major: 2, minor: 0 }, 505));
    // RFC 9110 §6.2: a higher minor version is processed as the highest supported one.
    assert!(matches!(parse("CONNECT a.test:1 HTTP/1.9\r\nHost: a\r\n\r\n"), Ok(Progress::Complete(_))));
}

#[test]
fn connect_requires_authority_form() {
    // RFC 9112 §3.2.3: a CONNECT request-target is only the host and port.
    let cases = [
        ("CONNECT https://a.test:443/ HTTP/1.1\r\n", TargetForm::Absolute),
        ("CONNECT http://a.test:80 HTTP/1.1\r\n", TargetForm::Absolute),
        ("CONNECT //a.test:443 HTTP/1.1\r\n", TargetForm::Origin),
        ("CONNECT / HTTP/1.1\r\n", TargetForm::Origin),
        ("CONNECT * HTTP/1.1\r\n", TargetForm::Asterisk),
    ];
    for (input, form) in cases {
        assert_eq!(err(input), WireError::ConnectTargetNotAuthority { form }, "{input:?}");
    }
    // RFC 9110 §9.3.6: no default port, empty or invalid ports MUST be rejected.
    assert_eq!(err("CONNECT a.test HTTP/1.1\r\n"), WireError::Authority(AuthorityError::MissingPort));
    assert_eq!(err("CONNECT a.test:0 HTTP/1.1\r\n"), WireError::Authority(AuthorityError::PortOutOfRange));
    assert_eq!(err("CONNECT u@a.test:1 HTTP/1.1\r\n"), WireError::Authority(AuthorityError::Userinfo));
    assert_eq!(err("CONNECT a.test HTTP/1.1\r\n").status(), 400);
    assert_eq!(err("CONNECT a.t\u{e9}st:1 HTTP/1.1\r\n"), WireError::InvalidTargetByte { byte: 0xc3 });
}

#[test]
fn field_syntax_rules() {
    let head = |fields: &str| format!("CONNECT a.test:1 HTTP/1.1\r\n{fields}\r\n");
    // RFC 9112 §5.1: whitespace between field name and colon MUST be rejected with 400.
    assert_eq!(err(&head("Host : a.test\r\n")), WireError::WhitespaceBeforeColon);
    assert_eq!(err(&head("Host: a\r\nProxy-Authorization\t: x\r\n")), WireError::WhitespaceBeforeColon);
    // RFC 9112 §5.2: obs-fold rejected.
    assert_eq!(err(&head("Host: a\r\nX-A: a\r\n b\r\n")), WireError::ObsFold);
    // RFC 9112 §2.2: whitespace-preceded line after the request line.
    assert_eq!(err(&head(" Host: a\r\n")), WireError::WhitespaceBeforeFirstField);
    // RFC 9110 §5.5: CR, LF, NUL and other CTLs in values.
    assert_eq!(err(&head("Host: a\r\nX-A: a\0b\r\n")), WireError::InvalidFieldValue { byte: 0 });
    assert_eq!(err(&head("Host: a\r\nX-A: a\x7fb\r\n")), WireError::InvalidFieldValue { byte: 0x7f });
    assert!(matches!(parse(&head("Host: a\r\nX-A: caf\u{e9}\r\n")), Ok(Progress::Complete(_))), "obs-text ok");
    // RFC 9110 §5.1: field-name = token; RFC 9112 §5: a field line has a colon.
    assert_eq!(err(&head("Host: a\r\n: v\r\n")), WireError::InvalidFieldName);
    assert_eq!(err(&head("Host: a\r\nX\"A: v\r\n")), WireError::InvalidFieldName);
    assert_eq!(err(&head("Host: a\r\ngarbage-line\r\n")), WireError::MissingColon);
}

#[test]
fn host_rules() {
    // RFC 9112 §3.2: 400 for HTTP/1.1 without Host, more than one Host, or an invalid Host.
    assert_eq!(err("CONNECT a.test:1 HTTP/1.1\r\n\r\n"), WireError::MissingHost);
    assert_eq!(err("CONNECT a.test:1 HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n"), WireError::DuplicateHost);
    assert_eq!(
        err("CONNECT a.test:1 HTTP/1.1\r\nHost: a b\r\n\r\n"),
        WireError::InvalidHost(AuthorityError::InvalidRegName)
    );
    assert_eq!(err("CONNECT a.test:1 HTTP/1.1\r\nHost: \r\n\r\n"), WireError::InvalidHost(AuthorityError::Empty));
    // HTTP/1.0 without Host is fine (Host is required for HTTP/1.1 only).
    assert!(matches!(parse("CONNECT a.test:1 HTTP/1.0\r\n\r\n"), Ok(Progress::Complete(_))));
}

#[test]
fn host_never_chooses_the_destination() {
    // RFC 9112 §3.3: for authority-form the target URI's authority is the request-target.
    let input = "CONNECT 127.0.0.1:2000 HTTP/1.1\r\nHost: 127.0.0.1:3000\r\n\r\n";
    let mut p = HeadParser::new(Limits::default());
    p.advance(input.as_bytes()).unwrap();
    let head = p.head(input.as_bytes());
    assert_eq!(head.authority().unwrap().port, 2000);
    assert_eq!(head.host().unwrap().port, Some(3000));
}

#[test]
fn framing_fields_on_connect_are_refused() {
    // RFC 9110 §9.3.6: "A CONNECT request message does not have content."
    let cl = "CONNECT a.test:1 HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(err(cl), WireError::ContentOnConnect { field: "Content-Length" });
    let te = "CONNECT a.test:1 HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(err(te), WireError::ContentOnConnect { field: "Transfer-Encoding" });
}

#[test]
fn limits_give_414_and_431() {
    let limits = Limits { max_request_line: 40, max_head: 120, max_fields: 2 };
    let run = |s: &str| HeadParser::new(limits).advance(s.as_bytes());
    // RFC 9112 §3: 414 for a request line longer than the server parses (even before its end arrives).
    let long = format!("CONNECT {}.test:1 HTTP/1.1\r\n", "a".repeat(40));
    assert_eq!(run(&long), Err(WireError::RequestLineTooLong { limit: 40 }));
    assert_eq!(run(&long[..50]), Err(WireError::RequestLineTooLong { limit: 40 }));
    assert_eq!(run(&long).unwrap_err().status(), 414);
    // RFC 6585 §5: 431 for too many fields or too large a header section.
    let many = "CONNECT a.test:1 HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n";
    assert_eq!(run(many), Err(WireError::TooManyFields { limit: 2 }));
    let big = format!("CONNECT a.test:1 HTTP/1.1\r\nHost: a\r\nA: {}\r\n\r\n", "x".repeat(100));
    assert_eq!(run(&big), Err(WireError::HeadTooLarge { limit: 120 }));
    assert_eq!(run(&big[..121]), Err(WireError::HeadTooLarge { limit: 120 }), "refused before the end");
    assert_eq!(run(&big).unwrap_err().status(), 431);
}

#[test]
fn every_error_names_a_rule_and_a_status() {
    let samples = [
        err("CONNECT a.test HTTP/1.1\r\n"),
        err("CONNECT a.test:1 HTTP/1.1\r\nHost : a\r\n\r\n"),
        err("CONNECT a.test:1 HTTP/3.0\r\n"),
    ];
    for e in samples {
        assert!(e.rule().starts_with("RFC "), "{e:?}");
        assert!((400..600).contains(&e.status()));
        assert!(!e.kind().is_empty() && !e.to_string().is_empty());
    }
}
