//! What one fuzz case sends: a CONNECT-shaped request built from grammar parts, each part drawn from forms that
//! real proxies have got wrong (request-target forms, port spellings, Host variants, field-line oddities, line
//! endings, pipelined requests, early tunnel bytes, how the bytes are split into writes).
//!
//! A case renders to a *template* (the scenario placeholders: `{echo}`, `{echo.port+65536}`, `{auth}`…), so the
//! same text is both what the fuzzer sends and the `send` step of the reproducer scenario it writes.
//! Generation and shrinking are proptest strategies: the case number and the seed pick the random stream, so a
//! campaign is reproducible whatever `--jobs` is.

use proptest::prelude::*;
use serde::{Deserialize, Serialize};

use super::seed::{Mutation, SEEDS, Seed};

/// Which origin the request-target names. The fuzzer knows where a correct proxy must (or must not) connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum Dest {
    /// The echo origin: a tunnel must reach it, and nothing else.
    Echo,
    /// A port nobody listens on: a 2xx is a tunnel to nowhere.
    Closed,
}

impl Dest {
    pub fn placeholder(self) -> &'static str {
        match self {
            Dest::Echo => "echo",
            Dest::Closed => "closed",
        }
    }
}

/// How the host of an authority-form target is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum HostForm {
    Ipv4,
    Ipv6,
    Localhost,
    UpperCase,
    TrailingDot,
    BracketedIpv4,
    Userinfo,
}

/// How the port of an authority-form target is written (`p` is the destination's port).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum PortForm {
    Exact,
    LeadingZero,
    Plus65536,
    Minus65536,
    Plus2Pow32,
    PlusSign,
    Empty,
    Missing,
    Suffix,
    TrailingPath,
}

impl PortForm {
    /// Whether the port names the destination as RFC 9110 §9.3.6 reads it (a leading zero is the same number).
    pub fn names_destination(self) -> bool {
        matches!(self, PortForm::Exact | PortForm::LeadingZero)
    }
}

/// The request-target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum Target {
    Authority(HostForm, PortForm),
    /// `http://127.0.0.1:p/`
    Absolute,
    /// `/` (Host names the destination)
    Origin,
    /// `*`
    Asterisk,
}

/// The Host field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum HostField {
    SameAsTarget,
    Absent,
    /// Naming the second echo origin (a proxy that routes by Host goes there).
    OtherOrigin,
    Twice,
    NoPort,
    /// `Host: a b` (not a valid value)
    Invalid,
    /// ` Host: …` right after the request-line
    Indented,
}

/// One extra field line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum Extra {
    ContentLength(String),
    TransferEncoding(String),
    /// A field whose value is `len` × `a`.
    Long(u16),
    /// `X-F: a\0b`
    Nul,
    /// `X-F: a` folded onto the next line
    Folded,
    /// `X-F : a`
    SpaceBeforeColon,
    /// `X-F: a\rb` (a bare CR)
    BareCr,
    /// `Connection: close`
    ConnectionClose,
    /// `Expect: 100-continue`
    Expect100,
    /// `Upgrade: websocket`
    Upgrade,
    /// A line without a colon.
    NoColon,
}

/// Line endings of the head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum Eol {
    Crlf,
    Lf,
    /// CRLF, except a bare LF after the request-line.
    MixedLf,
}

/// One fuzz case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Case {
    pub method: String,
    pub dest: Dest,
    pub target: Target,
    pub version: String,
    pub host: HostField,
    pub extras: Vec<Extra>,
    pub eol: Eol,
    /// A second, well-formed CONNECT to the second echo origin in the same write, right after the head.
    pub pipelined: bool,
    /// Tunnel bytes in the same write as the head.
    pub early: bool,
    /// Where the bytes are cut into writes, as fractions of the length in 1/256.
    pub splits: Vec<u8>,
    /// A seed head sent instead of the grammar's (method, target, version, Host, extras and line ends are then
    /// unused; `dest`, `pipelined`, `early` and `splits` still apply).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<Seed>,
    /// Byte-level changes of the head, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mutations: Vec<Mutation>,
}

/// The early tunnel bytes (recognisable in an origin's record).
pub const EARLY: &str = "EARLY-{token}.";

impl Case {
    /// The well-formed CONNECT to the echo origin (the liveness probe, and the base that shrinking approaches).
    pub fn well_formed() -> Case {
        Case {
            method: "CONNECT".into(),
            dest: Dest::Echo,
            target: Target::Authority(HostForm::Ipv4, PortForm::Exact),
            version: "HTTP/1.1".into(),
            host: HostField::SameAsTarget,
            extras: Vec::new(),
            eol: Eol::Crlf,
            pipelined: false,
            early: false,
            splits: Vec::new(),
            seed: None,
            mutations: Vec::new(),
        }
    }

    /// Whether the head is not the grammar's own (a seed, or mutated): the oracles then judge the bytes by what
    /// the strict parser reads in them, not by the parts the case was built from.
    pub fn is_raw(&self) -> bool {
        self.seed.is_some() || !self.mutations.is_empty()
    }

    /// Whether this is a forward-proxy request (a method other than CONNECT, in any case, with a target that is
    /// not in authority form): its 2xx is a response from the origin, not a tunnel.
    pub fn is_forward_request(&self) -> bool {
        !self.is_raw() && !self.method.eq_ignore_ascii_case("CONNECT") && !matches!(self.target, Target::Authority(..))
    }

    /// The case for origins that are not on 127.0.0.1 (`--origin-addr`, or one address per origin with
    /// `--origin-ports 443`): the forms that reach an origin by the name `localhost` or `[::1]` become the IPv4
    /// literal, since they would reach some other origin there.
    pub fn without_names(mut self) -> Case {
        if let Target::Authority(h, p) = self.target
            && matches!(h, HostForm::Ipv6 | HostForm::Localhost | HostForm::UpperCase | HostForm::TrailingDot)
        {
            self.target = Target::Authority(HostForm::Ipv4, p);
        }
        self
    }

    /// The authority the target names, as a template.
    fn authority(&self, host: HostForm, port: PortForm) -> String {
        let d = self.dest.placeholder();
        let h = match host {
            HostForm::Ipv4 => format!("{{{d}.host}}"),
            HostForm::Ipv6 => "[::1]".to_string(),
            HostForm::Localhost => "localhost".to_string(),
            HostForm::UpperCase => "LOCALHOST".to_string(),
            HostForm::TrailingDot => "localhost.".to_string(),
            HostForm::BracketedIpv4 => format!("[{{{d}.host}}]"),
            HostForm::Userinfo => format!("user@{{{d}.host}}"),
        };
        let p = match port {
            PortForm::Exact => format!(":{{{d}.port}}"),
            PortForm::LeadingZero => format!(":0{{{d}.port}}"),
            PortForm::Plus65536 => format!(":{{{d}.port+65536}}"),
            PortForm::Minus65536 => format!(":{{{d}.port-65536}}"),
            PortForm::Plus2Pow32 => format!(":{{{d}.port+4294967296}}"),
            PortForm::PlusSign => format!(":+{{{d}.port}}"),
            PortForm::Empty => ":".to_string(),
            PortForm::Missing => String::new(),
            PortForm::Suffix => format!(":{{{d}.port}};x"),
            PortForm::TrailingPath => format!(":{{{d}.port}}/x"),
        };
        format!("{h}{p}")
    }

    /// The request-target as a template.
    pub fn target_text(&self) -> String {
        match self.target {
            Target::Authority(h, p) => self.authority(h, p),
            Target::Absolute => format!("http://{{{}}}/", self.dest.placeholder()),
            Target::Origin => "/".into(),
            Target::Asterisk => "*".into(),
        }
    }

    /// The whole of what the client writes, as a template (placeholders and `{hex:…}` for control bytes).
    pub fn render(&self) -> String {
        let mut s = match &self.seed {
            Some(seed) => seed.head_for(self.dest.placeholder()),
            None => self.grammar_head(),
        };
        if !self.mutations.is_empty() {
            s = super::seed::mutate(&s, &self.mutations);
        }
        if self.pipelined {
            s.push_str("CONNECT {echo2} HTTP/1.1\r\nHost: {echo2}\r\n{auth}\r\n");
        }
        if self.early {
            s.push_str(EARLY);
        }
        s
    }

    /// The head the grammar parts make, as a template.
    fn grammar_head(&self) -> String {
        let eol = match self.eol {
            Eol::Crlf | Eol::MixedLf => "\r\n",
            Eol::Lf => "\n",
        };
        let d = self.dest.placeholder();
        let mut s = format!("{} {} {}", self.method, self.target_text(), self.version);
        s.push_str(if self.eol == Eol::MixedLf { "\n" } else { eol });
        let host_value = match self.target {
            Target::Authority(h, p) if p.names_destination() && h != HostForm::Userinfo => self.authority(h, p),
            _ => format!("{{{d}}}"),
        };
        match self.host {
            HostField::SameAsTarget => s.push_str(&format!("Host: {host_value}{eol}")),
            HostField::Absent => {}
            HostField::OtherOrigin => s.push_str(&format!("Host: {{echo2}}{eol}")),
            HostField::Twice => s.push_str(&format!("Host: {host_value}{eol}Host: {host_value}{eol}")),
            HostField::NoPort => s.push_str(&format!("Host: {{{d}.host}}{eol}")),
            HostField::Invalid => s.push_str(&format!("Host: a b{eol}")),
            HostField::Indented => s.push_str(&format!(" Host: {{echo2}}{eol}Host: {host_value}{eol}")),
        }
        for e in &self.extras {
            match e {
                Extra::ContentLength(v) => s.push_str(&format!("Content-Length: {v}{eol}")),
                Extra::TransferEncoding(v) => s.push_str(&format!("Transfer-Encoding: {v}{eol}")),
                Extra::Long(n) => s.push_str(&format!("X-Long: {{repeat:{n}:a}}{eol}")),
                Extra::Nul => s.push_str(&format!("X-F: a{{hex:00}}b{eol}")),
                Extra::Folded => s.push_str(&format!("X-F: a{eol} b{eol}")),
                Extra::SpaceBeforeColon => s.push_str(&format!("X-F : a{eol}")),
                Extra::BareCr => s.push_str(&format!("X-F: a{{hex:0d}}b{eol}")),
                Extra::ConnectionClose => s.push_str(&format!("Connection: close{eol}")),
                Extra::Expect100 => s.push_str(&format!("Expect: 100-continue{eol}")),
                Extra::Upgrade => s.push_str(&format!("Upgrade: websocket{eol}Connection: Upgrade{eol}")),
                Extra::NoColon => s.push_str(&format!("X-No-Colon{eol}")),
            }
        }
        s.push_str("{auth}");
        s.push_str(eol);
        s
    }

    /// The write boundaries for a rendering of `len` bytes (strictly increasing, inside the bytes).
    pub fn cut_points(&self, len: usize) -> Vec<usize> {
        let mut cuts: Vec<usize> =
            self.splits.iter().map(|f| len * usize::from(*f) / 256).filter(|c| *c > 0 && *c < len).collect();
        cuts.sort_unstable();
        cuts.dedup();
        cuts
    }

    /// A short description of what is unusual about the case (for findings and ids).
    pub fn features(&self) -> Vec<String> {
        let base = Case::well_formed();
        let mut f = Vec::new();
        if let Some(seed) = &self.seed {
            f.push(format!("seed head ({})", seed.from));
        }
        for m in &self.mutations {
            f.push(m.describe());
        }
        if self.dest != base.dest {
            f.push("target: a closed port".into());
        }
        if self.seed.is_none() {
            self.grammar_features(&base, &mut f);
        }
        if self.pipelined {
            f.push("pipelined CONNECT".into());
        }
        if self.early {
            f.push("early tunnel bytes".into());
        }
        if !self.splits.is_empty() {
            f.push(format!("{} writes", self.splits.len() + 1));
        }
        f
    }

    fn grammar_features(&self, base: &Case, f: &mut Vec<String>) {
        if self.method != base.method {
            f.push(format!("method {:?}", self.method));
        }
        if self.target != base.target {
            f.push(format!("target {:?}", self.target));
        }
        if self.version != base.version {
            f.push(format!("version {:?}", self.version));
        }
        if self.host != base.host {
            f.push(format!("Host {:?}", self.host));
        }
        for e in &self.extras {
            f.push(format!("{e:?}"));
        }
        if self.eol != base.eol {
            f.push(format!("line ends {:?}", self.eol));
        }
    }
}

/// Mostly the usual value, sometimes one of the odd ones (a well-formed request must stay common, or every case
/// is rejected before it exercises the proxy's tunnel and routing).
fn usual<T: Clone + std::fmt::Debug + Send + Sync + 'static>(common: T, odd: Vec<T>) -> SBoxedStrategy<T> {
    let n = odd.len() as u32;
    prop_oneof![3 * n.max(1) => Just(common), n.max(1) => proptest::sample::select(odd)].sboxed()
}

fn host_form() -> SBoxedStrategy<HostForm> {
    use HostForm::*;
    usual(Ipv4, vec![Ipv6, Localhost, UpperCase, TrailingDot, BracketedIpv4, Userinfo])
}

fn port_form() -> SBoxedStrategy<PortForm> {
    use PortForm::*;
    usual(Exact, vec![LeadingZero, Plus65536, Minus65536, Plus2Pow32, PlusSign, Empty, Missing, Suffix, TrailingPath])
}

fn target() -> SBoxedStrategy<Target> {
    prop_oneof![
        12 => (host_form(), port_form()).prop_map(|(h, p)| Target::Authority(h, p)),
        1 => Just(Target::Absolute),
        1 => Just(Target::Origin),
        1 => Just(Target::Asterisk),
    ]
    .sboxed()
}

fn extra() -> SBoxedStrategy<Extra> {
    prop_oneof![
        1 => proptest::sample::select(vec!["0", "5", "-1", "1, 2", "18446744073709551616", "x"])
            .prop_map(|v| Extra::ContentLength(v.to_string())),
        1 => proptest::sample::select(vec!["chunked", "gzip", "chunked, gzip", "identity"])
            .prop_map(|v| Extra::TransferEncoding(v.to_string())),
        1 => proptest::sample::select(vec![100u16, 1000, 4000, 9000, 40000]).prop_map(Extra::Long),
        4 => proptest::sample::select(vec![
            Extra::Nul,
            Extra::Folded,
            Extra::SpaceBeforeColon,
            Extra::BareCr,
            Extra::ConnectionClose,
            Extra::Expect100,
            Extra::Upgrade,
            Extra::NoColon,
        ]),
    ]
    .sboxed()
}

/// The strategy of all cases. Shrinking moves each part toward [`Case::well_formed`].
pub fn strategy() -> SBoxedStrategy<Case> {
    let method =
        usual("CONNECT".to_string(), vec!["connect".into(), "Connect".into(), "GET".into(), "CONNECTX".into()]);
    let version = usual(
        "HTTP/1.1".to_string(),
        vec!["HTTP/1.0".into(), "HTTP/1.2".into(), "http/1.1".into(), "HTTP/2.0".into(), "HTTP/1".into()],
    );
    let dest = prop_oneof![9 => Just(Dest::Echo), 1 => Just(Dest::Closed)];
    let host = {
        use HostField::*;
        usual(SameAsTarget, vec![Absent, OtherOrigin, Twice, NoPort, Invalid, Indented])
    };
    let extras = proptest::collection::vec(extra(), 0..3);
    let eol = usual(Eol::Crlf, vec![Eol::Lf, Eol::MixedLf]);
    let flags = (proptest::bool::weighted(0.2), proptest::bool::weighted(0.2));
    let splits = proptest::collection::vec(any::<u8>(), 0..3);
    // A quarter of the cases send a seed head, a quarter mutate their head (shrinking drops both first).
    let seed = if SEEDS.is_empty() {
        Just(None).sboxed()
    } else {
        prop_oneof![3 => Just(None), 1 => proptest::sample::select(&SEEDS[..]).prop_map(Some)].sboxed()
    };
    let mutations = prop_oneof![3 => Just(Vec::new()), 1 => proptest::collection::vec(super::seed::mutation(), 1..4)];
    (method, dest, target(), version, host, extras, eol, flags, splits, (seed, mutations))
        .prop_map(
            |(method, dest, target, version, host, extras, eol, (pipelined, early), splits, (seed, mutations))| Case {
                method,
                dest,
                target,
                version,
                host,
                extras,
                eol,
                pipelined,
                early,
                splits,
                seed,
                mutations,
            },
        )
        .sboxed()
}

/// The random stream of case `index` of a campaign with `seed`.
pub fn runner_for(seed: u64, index: u64) -> proptest::test_runner::TestRunner {
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    bytes[8..16].copy_from_slice(&index.to_le_bytes());
    bytes[16..24].copy_from_slice(b"connectf");
    TestRunner::new_with_rng(Config::default(), TestRng::from_seed(RngAlgorithm::ChaCha, &bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::ValueTree;

    #[test]
    fn the_same_seed_and_index_give_the_same_case() {
        let s = strategy();
        let a = s.new_tree(&mut runner_for(7, 42)).unwrap().current();
        let b = s.new_tree(&mut runner_for(7, 42)).unwrap().current();
        let c = s.new_tree(&mut runner_for(8, 42)).unwrap().current();
        assert_eq!(a, b);
        let differs = (0..20).any(|i| s.new_tree(&mut runner_for(7, i)).unwrap().current() != c);
        assert!(differs);
    }

    #[test]
    fn every_rendering_is_a_valid_template() {
        let s = strategy();
        for i in 0..500 {
            let case = s.new_tree(&mut runner_for(1, i)).unwrap().current();
            let text = case.render();
            crate::scenario::template::Template::parse(&text).unwrap_or_else(|e| panic!("{text:?}: {}", e.0));
        }
        let wf = Case::well_formed().render();
        assert_eq!(wf, "CONNECT {echo.host}:{echo.port} HTTP/1.1\r\nHost: {echo.host}:{echo.port}\r\n{auth}\r\n");
    }
}
