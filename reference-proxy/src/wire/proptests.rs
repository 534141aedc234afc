//! Property tests: generated valid heads round-trip, single-rule violations give that rule's error, and httparse
//! agrees wherever both accept.

use proptest::prelude::*;

use super::oracle::{self, STRICTER_THAN_HTTPARSE};
use super::*;

#[derive(Debug, Clone)]
struct Generated {
    target: String,
    version: Version,
    fields: Vec<(String, String)>,
}

impl Generated {
    fn render(&self) -> String {
        let mut s = format!("CONNECT {} {}\r\n", self.target, self.version);
        for (n, v) in &self.fields {
            s.push_str(&format!("{n}: {v}\r\n"));
        }
        s.push_str("\r\n");
        s
    }
}

fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z][a-z0-9-]{0,10}(\\.[a-z][a-z0-9_-]{0,10}){0,3}\\.test",
        any::<[u8; 4]>().prop_map(|o| std::net::Ipv4Addr::from(o).to_string()),
        any::<[u16; 8]>().prop_map(|g| format!("[{}]", std::net::Ipv6Addr::from(g))),
        Just("localhost".to_string()),
    ]
}

fn target() -> impl Strategy<Value = String> {
    (host(), 1u16..=65535).prop_map(|(h, p)| format!("{h}:{p}"))
}

fn field_name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,20}".prop_filter("not a special field", |n| {
        !["host", "content-length", "transfer-encoding"].contains(&n.to_ascii_lowercase().as_str())
    })
}

fn field_value() -> impl Strategy<Value = String> {
    // field-vchar with inner SP/HTAB, no surrounding whitespace (RFC 9110 §5.5).
    "([!-~]([ \t!-~]{0,30}[!-~])?)?"
}

fn head() -> impl Strategy<Value = Generated> {
    (
        target(),
        prop_oneof![Just(Version::HTTP_10), Just(Version::HTTP_11)],
        proptest::collection::vec((field_name(), field_value()), 0..8),
        any::<bool>(),
        any::<prop::sample::Index>(),
        prop_oneof![Just("Host"), Just("host"), Just("HOST"), Just("hOsT")],
    )
        .prop_map(|(target, version, mut fields, with_host, at, host_name)| {
            if with_host || version == Version::HTTP_11 {
                let host_value = target.clone();
                let i = at.index(fields.len() + 1);
                fields.insert(i, (host_name.to_string(), host_value));
            }
            Generated { target, version, fields }
        })
}

/// One rule broken on purpose, and the error it must give.
/// Breaks one rule of a valid head: the input, and the error it must give.
type Mutation = fn(&Generated) -> (String, WireError);

fn violation() -> impl Strategy<Value = (Generated, Mutation)> {
    let mutations: Vec<Mutation> = vec![
        |g| {
            let s = g.render().replacen("\r\n\r\n", "\r\nX-Ws : v\r\n\r\n", 1);
            (s, WireError::WhitespaceBeforeColon)
        },
        |g| {
            let s = g.render().replacen("\r\n\r\n", "\r\nX-Fold: a\r\n b\r\n\r\n", 1);
            (s, WireError::ObsFold)
        },
        |g| {
            let s = g.render().replacen("\r\n\r\n", "\r\nX-Nul: a\0b\r\n\r\n", 1);
            (s, WireError::InvalidFieldValue { byte: 0 })
        },
        |g| (g.render().replacen("\r\n", "\n", 1), WireError::BareLf),
        |g| {
            let (host, _) = g.target.rsplit_once(':').unwrap();
            (g.render().replacen(&g.target, host, 1), WireError::Authority(AuthorityError::MissingPort))
        },
        |g| {
            let (host, _) = g.target.rsplit_once(':').unwrap();
            let t = format!("{host}:0");
            (g.render().replacen(&g.target, &t, 1), WireError::Authority(AuthorityError::PortOutOfRange))
        },
        |g| {
            let t = format!("user:pw@{}", g.target);
            (g.render().replacen(&g.target, &t, 1), WireError::Authority(AuthorityError::Userinfo))
        },
        |g| {
            let s = g.render().replacen("\r\n\r\n", "\r\nHost: a.test\r\nHost: a.test\r\n\r\n", 1);
            (s, WireError::DuplicateHost)
        },
        |g| {
            let s = g.render().replacen("\r\n\r\n", "\r\nContent-Length: 5\r\n\r\n", 1);
            (s, WireError::ContentOnConnect { field: "Content-Length" })
        },
        |g| (g.render().replacen("CONNECT", "connect", 1), WireError::AuthorityFormWithoutConnect),
        |g| {
            let v = g.version.to_string();
            (g.render().replacen(&v, "HTTP/2.0", 1), WireError::VersionNotSupported { major: 2, minor: 0 })
        },
    ];
    (head(), proptest::sample::select(mutations))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn valid_heads_round_trip(g in head(), early in proptest::collection::vec(any::<u8>(), 0..16)) {
        let text = g.render();
        let mut input = text.clone().into_bytes();
        input.extend_from_slice(&early);
        let mut p = HeadParser::new(Limits::default());
        prop_assert_eq!(p.advance(&input), Ok(Progress::Complete(text.len())));
        let head = p.head(&input);
        prop_assert_eq!(head.method(), "CONNECT");
        prop_assert_eq!(head.target(), g.target.as_str());
        prop_assert_eq!(head.version(), g.version);
        let fields: Vec<(String, String)> = head
            .fields()
            .map(|f| (f.name.to_string(), String::from_utf8(f.value.to_vec()).unwrap()))
            .collect();
        prop_assert_eq!(fields, g.fields.clone());
        prop_assert_eq!(head.authority().map(|a| !a.to_string().is_empty()), Some(true));
        prop_assert_eq!(&input[head.len()..], &early[..]);
    }

    #[test]
    fn single_violations_give_their_rule((g, mutate) in violation()) {
        let (input, expected) = mutate(&g);
        let got = HeadParser::new(Limits::default()).advance(input.as_bytes());
        prop_assert_eq!(got, Err(expected), "{:?}", input);
    }

    #[test]
    fn agrees_with_httparse_on_valid_heads(g in head()) {
        prop_assert_eq!(oracle::check(g.render().as_bytes()), Ok(()));
    }

    #[test]
    fn agrees_with_httparse_on_violations((g, mutate) in violation()) {
        let (input, _) = mutate(&g);
        prop_assert_eq!(oracle::check(input.as_bytes()), Ok(()));
    }

    #[test]
    fn agrees_with_httparse_on_noise(bytes in proptest::collection::vec(
        prop_oneof![Just(b'\r'), Just(b'\n'), Just(b' '), Just(b':'), any::<u8>(), 0x21u8..0x7f], 0..200)
    ) {
        let mut input = b"CONNECT a.test:1 HTTP/1.1\r\n".to_vec();
        input.extend_from_slice(&bytes);
        prop_assert_eq!(oracle::check(&input), Ok(()));
        prop_assert_eq!(oracle::check(&bytes), Ok(()));
    }

    #[test]
    fn incremental_equals_whole(g in head(), cut in proptest::collection::vec(any::<prop::sample::Index>(), 0..6)) {
        let text = g.render();
        super::fuzz::request_head(text.as_bytes());
        let mut cuts: Vec<usize> = cut.iter().map(|i| i.index(text.len())).collect();
        cuts.sort_unstable();
        let mut p = HeadParser::new(Limits::default());
        for c in cuts {
            prop_assert_eq!(p.advance(&text.as_bytes()[..c]), Ok(Progress::Partial));
        }
        prop_assert_eq!(p.advance(text.as_bytes()), Ok(Progress::Complete(text.len())));
    }
}

proptest! {
    #[test]
    fn ipv6_parser_matches_std(groups in any::<[u16; 8]>(), text in "[0-9a-fA-F:.]{0,45}") {
        let addr = std::net::Ipv6Addr::from(groups);
        prop_assert_eq!(super::parse_ipv6(addr.to_string().as_bytes()), Some(addr));
        prop_assert_eq!(super::parse_ipv6(text.as_bytes()), text.parse::<std::net::Ipv6Addr>().ok(), "{}", text);
    }
}

/// Every documented strictness, shown with an input httparse accepts and we refuse for that reason.
#[test]
fn documented_disagreements_with_httparse() {
    let examples: &[(&str, &str)] = &[
        ("bare-lf", "GET / HTTP/1.1\nHost: a\n\n"),
        ("missing-host", "CONNECT a.test:1 HTTP/1.1\r\n\r\n"),
        ("duplicate-host", "CONNECT a.test:1 HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"),
        ("invalid-host", "CONNECT a.test:1 HTTP/1.1\r\nHost: a b\r\n\r\n"),
        ("content-on-connect", "CONNECT a.test:1 HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n"),
        ("connect-target-not-authority", "CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n"),
        ("authority-form-without-connect", "GET a.test:1 HTTP/1.1\r\nHost: a\r\n\r\n"),
        ("missing-port", "CONNECT a.test HTTP/1.1\r\nHost: a\r\n\r\n"),
        ("port-leading-zero", "CONNECT a.test:0443 HTTP/1.1\r\nHost: a\r\n\r\n"),
        ("userinfo", "CONNECT u@a.test:1 HTTP/1.1\r\nHost: a\r\n\r\n"),
        ("ambiguous-numeric-host", "CONNECT 127.1:443 HTTP/1.1\r\nHost: a\r\n\r\n"),
    ];
    for (kind, input) in examples {
        assert!(STRICTER_THAN_HTTPARSE.contains(kind), "{kind} not documented");
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let theirs = httparse::Request::new(&mut headers).parse(input.as_bytes());
        assert!(matches!(theirs, Ok(httparse::Status::Complete(_))), "httparse refuses {input:?}: {theirs:?}");
        let ours = HeadParser::new(Limits::default()).advance(input.as_bytes()).expect_err(input);
        assert_eq!(ours.kind(), *kind, "{input:?}");
        assert_eq!(oracle::check(input.as_bytes()), Ok(()), "documented, so not a disagreement");
    }
    // And the one case where only we accept: HTTP/1.x minor versions above 1 (RFC 9110 §6.2).
    let input = "CONNECT a.test:1 HTTP/1.2\r\nHost: a\r\n\r\n";
    assert!(HeadParser::new(Limits::default()).advance(input.as_bytes()).is_ok());
    assert_eq!(oracle::check(input.as_bytes()), Ok(()));
}
