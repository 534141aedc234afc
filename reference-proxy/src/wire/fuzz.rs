//! Fuzz entry points: the `fuzz/` targets are one line calling these, and the corpus replay test calls them on
//! stable. Each panics when an invariant breaks.

use super::{HeadParser, Limits, Progress, parse_authority, parse_host_field, parse_ipv6};

/// Parses `data` whole, then again fed in pieces (split points taken from the data), and checks both agree:
/// the incremental path must never lose, duplicate or misplace bytes.
pub fn request_head(data: &[u8]) {
    for limits in [Limits::default(), Limits { max_request_line: 64, max_head: 256, max_fields: 4 }] {
        let mut whole = HeadParser::new(limits);
        let expected = whole.advance(data);
        if let Ok(Progress::Complete(len)) = expected {
            assert!(len <= data.len());
            let head = whole.head(data);
            assert_eq!(head.len(), len);
            if head.is_connect() {
                assert!(head.authority().is_some(), "accepted CONNECT without a valid authority");
            }
        }
        let seed = data.iter().fold(0x9e37_79b9_u32, |h, &b| h.rotate_left(5) ^ u32::from(b));
        let mut pieces = HeadParser::new(limits);
        let mut end = 0;
        let mut step = seed;
        let got = loop {
            step = step.wrapping_mul(1_103_515_245).wrapping_add(12345);
            end = (end + 1 + (step >> 16) as usize % 17).min(data.len());
            match pieces.advance(&data[..end]) {
                Ok(Progress::Partial) if end < data.len() => continue,
                other => break other,
            }
        };
        match (&expected, &got) {
            (Ok(a), Ok(b)) => {
                assert_eq!(a, b, "whole and incremental parses differ");
                if let Progress::Complete(_) = a {
                    let (x, y) = (whole.head(data), pieces.head(data));
                    assert_eq!((x.method(), x.target(), x.version()), (y.method(), y.target(), y.version()));
                    assert!(x.fields().eq(y.fields()));
                }
            }
            (Err(a), Err(b)) => assert_eq!(a, b, "whole and incremental parses fail differently"),
            _ => panic!("whole parse {expected:?}, incremental {got:?}"),
        }
    }
}

/// Parses an authority; an accepted one must print to text that parses back to itself.
pub fn authority(data: &[u8]) {
    if let Ok(a) = parse_authority(data) {
        assert!(a.port != 0);
        let printed = a.to_string();
        assert_eq!(parse_authority(printed.as_bytes()), Ok(a), "{printed}");
        let host = parse_host_field(data).expect("a valid authority is a valid Host value");
        assert_eq!((host.host, host.port), (a.host, Some(a.port)));
    }
    let _ = parse_host_field(data);
    // Our IPv6 text parser must read exactly what the standard library's does.
    if let Ok(text) = std::str::from_utf8(data) {
        assert_eq!(parse_ipv6(data), text.parse::<std::net::Ipv6Addr>().ok(), "{text:?}");
    }
}

/// Panics on any undocumented disagreement with httparse.
pub fn differential_httparse(data: &[u8]) {
    if let Err(d) = super::oracle::check(data) {
        panic!("undocumented disagreement with httparse: {d:?} on {:?}", String::from_utf8_lossy(data));
    }
}
