//! Parse speed of the strict parser against httparse on the same CONNECT heads, in one run.
//!
//! Prints ns per head for each and the ratio ours / httparse (below 1.0 means ours is faster). Both parse the
//! whole head from one buffer; ours also validates the authority, the Host field and CONNECT framing rules,
//! which httparse leaves to its caller. Run: `cargo bench -p reference-proxy --bench parse`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use reference_proxy::wire::{HeadParser, Limits, Progress};

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

/// Best of several rounds of `iters` calls each, in ns per call, for two functions measured in alternation so
/// that load from elsewhere on the machine hits both alike; the minimum is the least disturbed estimate.
fn measure_pair(iters: u32, mut a: impl FnMut(), mut b: impl FnMut()) -> (f64, f64) {
    let mut best = (Duration::MAX, Duration::MAX);
    for _ in 0..31 {
        let start = Instant::now();
        for _ in 0..iters {
            a();
        }
        best.0 = best.0.min(start.elapsed());
        let start = Instant::now();
        for _ in 0..iters {
            b();
        }
        best.1 = best.1.min(start.elapsed());
    }
    let per_call = |d: Duration| d.as_nanos() as f64 / f64::from(iters);
    (per_call(best.0), per_call(best.1))
}

fn main() {
    // `cargo test --benches` runs bench binaries with no `--bench` flag: do one quick pass only.
    let quick = !std::env::args().any(|a| a == "--bench");
    let iters = if quick { 10 } else { 5_000 };
    let mut parser = HeadParser::new(Limits::default());
    let mut total = (0.0, 0.0);
    println!("{:<14} {:>12} {:>14} {:>8}", "head", "ours ns", "httparse ns", "ratio");
    // Optional filter: `cargo bench -p reference-proxy --bench parse -- curl` runs only heads whose name contains it.
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    for (name, head) in HEADS.iter().filter(|(n, _)| filter.as_deref().is_none_or(|f| n.contains(f))) {
        let buf = head.as_bytes();
        let (ours, theirs) = measure_pair(
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
        );
        total.0 += ours;
        total.1 += theirs;
        println!("{name:<14} {ours:>12.1} {theirs:>14.1} {:>8.2}", ours / theirs);
    }
    println!("{:<14} {:>12.1} {:>14.1} {:>8.2}", "all", total.0, total.1, total.0 / total.1);
}
