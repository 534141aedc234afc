//! Parse speed of the strict parser against httparse on the same CONNECT heads, in one run.
//!
//! Prints ns per head and two ratios (below 1.0 means ours is faster): against httparse alone, and against
//! httparse plus the CONNECT checks a proxy built on it must add (target authority, Host, framing fields),
//! which our parser does itself. Run: `cargo bench -p reference-proxy --bench parse [-- NAME]`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use reference_proxy::wire::{HeadParser, Limits, Progress, parse_authority, parse_host_field};

const HEADS: &[(&str, &str)] = &[
    ("minimal", "CONNECT origin.test:443 HTTP/1.1\r\nHost: origin.test:443\r\n\r\n"),
    (
        "curl",
        "CONNECT origin.test:443 HTTP/1.1\r\nHost: origin.test:443\r\nUser-Agent: curl/8.5.0\r\n\
         Proxy-Connection: Keep-Alive\r\n\r\n",
    ),
    (
        "browser",
        "CONNECT accounts.origin.test:443 HTTP/1.1\r\nHost: accounts.origin.test:443\r\n\
         Proxy-Connection: keep-alive\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 \
         (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36\r\n\r\n",
    ),
    (
        "authenticated",
        "CONNECT [2001:db8::1]:8443 HTTP/1.1\r\nHost: [2001:db8::1]:8443\r\nUser-Agent: client/1.0\r\n\
         Proxy-Authorization: Basic dXNlcm5hbWU6cGFzc3dvcmQxMjM0NTY3ODkw\r\nProxy-Connection: keep-alive\r\n\
         X-Request-Id: 5f0c3c1e-8e9a-4d7b-9b1e-2a7c9d3e4f50\r\nX-Forwarded-For: 127.0.0.1\r\n\r\n",
    ),
];

/// Best of several rounds of `iters` calls each, in ns per call, for three functions measured in alternation so
/// that load from elsewhere on the machine hits all alike; the minimum is the least disturbed estimate.
fn measure3(iters: u32, mut a: impl FnMut(), mut b: impl FnMut(), mut c: impl FnMut()) -> [f64; 3] {
    let mut best = [Duration::MAX; 3];
    let round = |f: &mut dyn FnMut(), slot: &mut Duration| {
        let start = Instant::now();
        for _ in 0..iters {
            f();
        }
        *slot = (*slot).min(start.elapsed());
    };
    for _ in 0..31 {
        round(&mut a, &mut best[0]);
        round(&mut b, &mut best[1]);
        round(&mut c, &mut best[2]);
    }
    best.map(|d| d.as_nanos() as f64 / f64::from(iters))
}

/// What a CONNECT proxy built on httparse must still check that our parser checks itself: the method, the
/// authority-form target (with our authority parser, the only strict one at hand), one valid Host on HTTP/1.1,
/// and no Content-Length or Transfer-Encoding.
fn httparse_with_connect_checks(buf: &[u8]) -> bool {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    if !matches!(req.parse(buf), Ok(httparse::Status::Complete(_))) || req.method != Some("CONNECT") {
        return false;
    }
    let Some(target) = req.path.and_then(|p| parse_authority(p.as_bytes()).ok()) else { return false };
    let mut hosts = req.headers.iter().filter(|h| h.name.eq_ignore_ascii_case("host"));
    let host_ok = match (hosts.next(), hosts.next()) {
        (Some(h), None) => parse_host_field(h.value).is_ok(),
        (None, _) => req.version == Some(0),
        _ => false,
    };
    let framing = req
        .headers
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case("content-length") || h.name.eq_ignore_ascii_case("transfer-encoding"));
    black_box(target);
    host_ok && !framing
}

fn main() {
    // `cargo test --benches` runs bench binaries with no `--bench` flag: do one quick pass only.
    let quick = !std::env::args().any(|a| a == "--bench");
    // `PARSE_BENCH_PROFILE=N`: parse with ours only, N rounds over the heads (filtered as below), for a profiler.
    if let Some(rounds) = std::env::var("PARSE_BENCH_PROFILE").ok().and_then(|n| n.parse::<u32>().ok()) {
        let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
        let heads: Vec<_> = HEADS.iter().filter(|(n, _)| filter.as_deref().is_none_or(|f| n.contains(f))).collect();
        if std::env::var_os("PARSE_BENCH_HTTPARSE").is_some() {
            for _ in 0..rounds {
                for (_, head) in &heads {
                    let mut headers = [httparse::EMPTY_HEADER; 32];
                    let mut req = httparse::Request::new(&mut headers);
                    assert!(matches!(req.parse(black_box(head.as_bytes())), Ok(httparse::Status::Complete(_))));
                    black_box(req.path);
                }
            }
            return;
        }
        let mut parser = HeadParser::new(Limits::default());
        for _ in 0..rounds {
            for (_, head) in &heads {
                parser.reset();
                let done = parser.advance(black_box(head.as_bytes()));
                assert!(matches!(done, Ok(Progress::Complete(_))));
                black_box(parser.head(head.as_bytes()).authority());
            }
        }
        return;
    }
    let iters = if quick { 10 } else { 5_000 };
    let mut parser = HeadParser::new(Limits::default());
    let mut total = [0.0; 3];
    println!(
        "{:<14} {:>9} {:>12} {:>18} {:>10} {:>12}",
        "head", "ours ns", "httparse ns", "httparse+checks ns", "ours/raw", "ours/checks"
    );
    // Optional filter: `cargo bench -p reference-proxy --bench parse -- curl` runs only heads whose name contains it.
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    for (name, head) in HEADS.iter().filter(|(n, _)| filter.as_deref().is_none_or(|f| n.contains(f))) {
        let buf = head.as_bytes();
        let t = measure3(
            iters,
            || {
                parser.reset();
                let done = parser.advance(black_box(buf));
                assert!(matches!(done, Ok(Progress::Complete(_))), "{name}: {done:?}");
                black_box(parser.head(buf).authority());
            },
            || {
                let mut headers = [httparse::EMPTY_HEADER; 32];
                let mut req = httparse::Request::new(&mut headers);
                let done = req.parse(black_box(buf));
                assert!(matches!(done, Ok(httparse::Status::Complete(_))));
                black_box(req.path);
            },
            || assert!(httparse_with_connect_checks(black_box(buf))),
        );
        for (sum, v) in total.iter_mut().zip(t) {
            *sum += v;
        }
        println!("{name:<14} {:>9.1} {:>12.1} {:>18.1} {:>10.2} {:>12.2}", t[0], t[1], t[2], t[0] / t[1], t[0] / t[2]);
    }
    let t = total;
    println!("{:<14} {:>9.1} {:>12.1} {:>18.1} {:>10.2} {:>12.2}", "all", t[0], t[1], t[2], t[0] / t[1], t[0] / t[2]);
}
