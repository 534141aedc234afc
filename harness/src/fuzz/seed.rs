//! Seed heads and byte-level mutation: the grammar of [`super::case`] knows the forms proxies got wrong; the
//! seeds bring what it does not know. They are the CONNECT heads of the scenario catalog and the parser fuzzers'
//! committed corpus (`fuzz/corpus/request_head`, the files named in `fuzz/seeds.list`, which keeps the set fixed
//! so a seed and a version always give the same cases however the corpus grows).
//!
//! A seed is normalised so that what the proxy does stays observable: its request-target and every Host value
//! become the destination origin's address, a `{auth}` line goes before the empty line, and everything after the
//! head is cut. The bytes are kept as a template (`{hex:..}` for control and non-ASCII octets, `{{` for braces),
//! so a finding's reproducer is still a scenario file.
//!
//! Mutations work on that template's tokens (one literal character, or one whole placeholder), so they can delete
//! the port placeholder but never produce half of one. Whatever they produce is judged on the bytes the strict
//! parser sees, not on what the case meant to send (see [`super::oracle`]).

use std::sync::LazyLock;

use proptest::prelude::*;
use serde::{Deserialize, Serialize};

include!(concat!(env!("OUT_DIR"), "/seeds.rs"));

/// Longest seed head kept (a longer head mostly exercises size limits, which the grammar's long fields do).
const MAX_SEED: usize = 1024;

/// One normalised seed head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Seed {
    /// Where it comes from: `scenario <id>` or `corpus request_head/<name>`.
    pub from: String,
    /// The head as a template, naming the echo origin (`{echo.host}:{echo.port}`), ending with the empty line.
    pub head: String,
}

impl Seed {
    /// The head naming `dest` (`echo` or `closed`) instead of the echo origin.
    pub fn head_for(&self, dest: &str) -> String {
        if dest == "echo" { self.head.clone() } else { self.head.replace("{echo.", &format!("{{{dest}.")) }
    }
}

/// Every seed, scenario heads first, each list in a fixed order.
pub static SEEDS: LazyLock<Vec<Seed>> = LazyLock::new(|| {
    let mut out = Vec::new();
    if let Ok(loaded) = crate::scenario::load::load(&crate::scenario::load::embedded_sources()) {
        let mut heads: Vec<(String, String)> = Vec::new();
        for l in &loaded {
            for step in &l.scenario.steps {
                if let crate::scenario::Step::Send(text) = step
                    && let Some(head) = normalise_template(text)
                    && !heads.iter().any(|(_, h)| *h == head)
                {
                    heads.push((l.scenario.id.clone(), head));
                }
            }
        }
        out.extend(heads.into_iter().map(|(id, head)| Seed { from: format!("scenario {id}"), head }));
    }
    for (name, bytes) in CORPUS {
        if let Some(head) = normalise_bytes(bytes)
            && !out.iter().any(|s| s.head == head)
        {
            out.push(Seed { from: format!("corpus request_head/{name}"), head });
        }
    }
    out
});

/// The destination's authority in a seed.
const DEST: &str = "{echo.host}:{echo.port}";

/// A corpus file as a seed head, or `None` when it is not a CONNECT head with an end.
pub fn normalise_bytes(bytes: &[u8]) -> Option<String> {
    normalise_template(&escape(bytes))
}

/// Octets as template text: printable ASCII as itself (braces doubled), CR and LF as themselves, the rest as
/// `{hex:..}`.
pub fn escape(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len());
    let mut hex: Vec<u8> = Vec::new();
    let flush = |s: &mut String, hex: &mut Vec<u8>| {
        if !hex.is_empty() {
            let pairs: Vec<String> = hex.iter().map(|b| format!("{b:02x}")).collect();
            s.push_str(&format!("{{hex:{}}}", pairs.join(" ")));
            hex.clear();
        }
    };
    for &b in bytes {
        match b {
            b'{' | b'}' => {
                flush(&mut s, &mut hex);
                s.push(b as char);
                s.push(b as char);
            }
            b'\r' | b'\n' | 0x20..=0x7e => {
                flush(&mut s, &mut hex);
                s.push(b as char);
            }
            _ => hex.push(b),
        }
    }
    flush(&mut s, &mut hex);
    s
}

/// A template that starts with a CONNECT head, normalised (see the module doc), or `None`.
pub fn normalise_template(text: &str) -> Option<String> {
    let rest = text.strip_prefix("CONNECT ")?;
    let mut lines = rest.split_inclusive('\n');
    let first = lines.next()?;
    if !first.ends_with('\n') {
        return None;
    }
    // The request-target is the text up to the next SP of the request-line.
    let after_target = first.find(' ').unwrap_or(first.len());
    let mut out = format!("CONNECT {DEST}{}", &first[after_target..]);
    // The head ends at the first empty line (or a line of just `{auth}`, which is empty without credentials);
    // what follows is cut. No end, no seed.
    let mut ended = false;
    for line in lines {
        let bare = line.strip_prefix("{auth}").unwrap_or(line);
        if bare == "\r\n" || bare == "\n" {
            out.push_str("{auth}");
            out.push_str(bare);
            ended = true;
            break;
        }
        let (name, value) = line.split_once(':').unwrap_or((line, ""));
        if name.eq_ignore_ascii_case("host") {
            let eol = &value[value.trim_end_matches(['\r', '\n']).len()..];
            out.push_str(&format!("{name}: {DEST}{eol}"));
        } else if !name.eq_ignore_ascii_case("proxy-authorization") {
            out.push_str(line);
        }
    }
    // Only placeholders the fuzzer's origins and run can fill.
    let ok = ended
        && crate::scenario::template::Template::parse(&out).is_ok()
        && placeholders(&out).all(|p| {
            p == "auth" || p == "token" || p.starts_with("hex:") || p.starts_with("repeat:") || p.starts_with("echo.")
        })
        && out.matches("{echo.").count() >= 2
        && out.matches("{auth}").count() == 1;
    (ok && out.len() <= MAX_SEED).then_some(out)
}

/// The placeholder names of a template (the text inside single braces).
fn placeholders(t: &str) -> impl Iterator<Item = &str> {
    tokens(t).into_iter().filter_map(|tok| tok.strip_prefix('{').and_then(|x| x.strip_suffix('}'))).filter(|x| {
        // `{{` and `}}` are literal braces, not placeholders.
        !x.is_empty() && *x != "{" && *x != "}"
    })
}

/// A template's tokens: each literal character (a doubled brace is one token) or a whole placeholder.
pub fn tokens(t: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut i = 0;
    let b = t.as_bytes();
    while i < t.len() {
        let len = if t[i..].starts_with("{{") || t[i..].starts_with("}}") {
            2
        } else if b[i] == b'{' {
            t[i..].find('}').map(|j| j + 1).unwrap_or(t.len() - i)
        } else {
            t[i..].chars().next().map(char::len_utf8).unwrap_or(1)
        };
        out.push(&t[i..i + len]);
        i += len;
    }
    out
}

/// One byte-level change of a head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum Mutation {
    /// Insert an octet before token `at` (a fraction of the length, in 1/256).
    Insert { at: u8, byte: u8 },
    /// Delete `len` tokens from `at`.
    Delete { at: u8, len: u8 },
    /// Repeat one line (the line index, modulo the number of lines).
    DuplicateLine { line: u8 },
}

impl Mutation {
    pub fn describe(&self) -> String {
        match self {
            Mutation::Insert { at, byte } => format!("insert {:?} at {at}/256", *byte as char),
            Mutation::Delete { at, len } => format!("delete {len} at {at}/256"),
            Mutation::DuplicateLine { line } => format!("duplicate line {line}"),
        }
    }
}

/// The octets mutations insert: the separators and terminators parsers disagree on, and a few ordinary ones.
const INSERTED: &[u8] = b"\r\n\0 \t:/@[]0a,;\"%\x0b\x0c\x7f\x80\xff";

/// `head` with the mutations applied in order.
pub fn mutate(head: &str, mutations: &[Mutation]) -> String {
    let mut toks: Vec<String> = tokens(head).into_iter().map(str::to_string).collect();
    for m in mutations {
        let at = |frac: u8, n: usize| n * usize::from(frac) / 256;
        match *m {
            Mutation::Insert { at: f, byte } => {
                let i = at(f, toks.len() + 1);
                toks.insert(i, escape(&[byte]));
            }
            Mutation::Delete { at: f, len } => {
                if toks.is_empty() {
                    continue;
                }
                let i = at(f, toks.len());
                let j = (i + usize::from(len.max(1))).min(toks.len());
                toks.drain(i..j);
            }
            Mutation::DuplicateLine { line } => {
                let ends: Vec<usize> = toks.iter().enumerate().filter(|(_, t)| *t == "\n").map(|(i, _)| i).collect();
                if ends.is_empty() {
                    continue;
                }
                let k = usize::from(line) % ends.len();
                let start = if k == 0 { 0 } else { ends[k - 1] + 1 };
                let copy: Vec<String> = toks[start..=ends[k]].to_vec();
                toks.splice(ends[k] + 1..ends[k] + 1, copy);
            }
        }
    }
    toks.concat()
}

/// The strategy of one mutation.
pub fn mutation() -> SBoxedStrategy<Mutation> {
    prop_oneof![
        3 => (any::<u8>(), proptest::sample::select(INSERTED)).prop_map(|(at, byte)| Mutation::Insert { at, byte }),
        2 => (any::<u8>(), 1u8..4).prop_map(|(at, len)| Mutation::Delete { at, len }),
        1 => any::<u8>().prop_map(|line| Mutation::DuplicateLine { line }),
    ]
    .sboxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_corpus_head_is_normalised_to_the_destination() {
        let got = normalise_bytes(b"CONNECT example.test:443 HTTP/1.1\r\nhost: x\r\nX-A: {\x01}\r\n\r\nrest").unwrap();
        assert_eq!(
            got,
            "CONNECT {echo.host}:{echo.port} HTTP/1.1\r\nhost: {echo.host}:{echo.port}\r\nX-A: {{{hex:01}}}\r\n{auth}\r\n"
        );
        assert!(crate::scenario::template::Template::parse(&got).is_ok());
        assert_eq!(normalise_bytes(b"GET / HTTP/1.1\r\n\r\n"), None);
        assert_eq!(normalise_bytes(b"CONNECT a:1 HTTP/1.1\r\nHost: a:1\r\n"), None, "no end of head");
        let seed = Seed { from: "x".into(), head: got };
        assert!(seed.head_for("closed").starts_with("CONNECT {closed.host}:{closed.port} "));
    }

    #[test]
    fn scenario_heads_keep_their_oddities_and_lose_other_origins() {
        let t = "CONNECT {echo} HTTP/1.1\nHost: {echo}\n{auth}\nEARLY";
        assert_eq!(
            normalise_template(t).unwrap(),
            "CONNECT {echo.host}:{echo.port} HTTP/1.1\nHost: {echo.host}:{echo.port}\n{auth}\n"
        );
        assert_eq!(normalise_template("CONNECT {echo} HTTP/1.1\r\nX: {sink}\r\n\r\n"), None);
        assert!(!SEEDS.is_empty());
        assert!(SEEDS.iter().any(|s| s.from.starts_with("scenario ")));
        assert!(SEEDS.iter().any(|s| s.from.starts_with("corpus ")));
    }

    #[test]
    fn mutations_respect_placeholders() {
        let head = "CONNECT {echo.host}:{echo.port} HTTP/1.1\r\n{auth}\r\n";
        assert_eq!(tokens(head)[8], "{echo.host}");
        // Deleting at the port placeholder removes it whole.
        let i = tokens(head).iter().position(|t| *t == "{echo.port}").unwrap();
        let at = ((i * 256).div_ceil(tokens(head).len())) as u8;
        let got = mutate(head, &[Mutation::Delete { at, len: 1 }]);
        assert_eq!(got, "CONNECT {echo.host}: HTTP/1.1\r\n{auth}\r\n");
        let got = mutate(head, &[Mutation::Insert { at: 0, byte: 0 }, Mutation::DuplicateLine { line: 0 }]);
        assert_eq!(
            got,
            "{hex:00}CONNECT {echo.host}:{echo.port} HTTP/1.1\r\n{hex:00}CONNECT {echo.host}:{echo.port} HTTP/1.1\r\n{auth}\r\n"
        );
        assert!(crate::scenario::template::Template::parse(&got).is_ok());
    }
}
