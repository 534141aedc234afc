//! Reading scenario files: embedded ones, plus `--scenarios DIR`. Errors name file, line and field.

use std::{collections::HashMap, fmt, path::Path, sync::Arc};

use serde::Deserialize;

use super::{
    matrix::Matrix,
    model::{Scenario, Sni},
    step::{Expect, OriginKind, Outcome, Step},
    template::Template,
};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded.rs"));
}

/// The scenario files compiled into the binary: (file name, contents).
pub fn embedded_sources() -> Vec<(String, String)> {
    embedded::EMBEDDED.iter().map(|(n, s)| (format!("scenarios/{n}"), s.to_string())).collect()
}

/// A scenario with where it came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub scenario: Scenario,
    pub file: String,
    pub line: usize,
    /// For generated scenarios, the axis variants it came from.
    pub generated_from: Option<String>,
}

impl Loaded {
    /// Origins named anywhere in the scenario's templates.
    pub fn origins(&self) -> Vec<OriginKind> {
        let mut v: Vec<OriginKind> = templates_of(&self.scenario)
            .filter_map(|(_, s)| Template::parse(s).ok())
            .flat_map(|t| t.origins().collect::<Vec<_>>())
            .collect();
        for s in &self.scenario.steps {
            if let Step::Origin(c) = s {
                v.push(c.name);
            }
        }
        v.sort();
        v.dedup();
        v
    }

    /// Origins the scenario reaches through 127.0.0.1 or ::1 rather than through the origin's own address: by
    /// `.name` (`localhost:PORT`), `.v6` (`[::1]:PORT`), or a hand-written host before the origin's port
    /// (`127.0.0.1:{echo.port}`). The run must give these a set on 127.0.0.1 (see `origin::Pool`).
    pub fn localhost_origins(&self) -> Vec<OriginKind> {
        use super::template::{AddrForm, Piece};
        let mut v = Vec::new();
        for t in templates_of(&self.scenario).filter_map(|(_, s)| Template::parse(s).ok()) {
            for (i, piece) in t.0.iter().enumerate() {
                let Piece::Origin(kind, form) = piece else { continue };
                let hand_written_host = matches!(form, AddrForm::Port | AddrForm::PortOffset(_))
                    && i > 0
                    && match &t.0[i - 1] {
                        Piece::Lit(b) if b.ends_with(b":") => {
                            !(b.as_slice() == b":" && i >= 2 && matches!(t.0[i - 2], Piece::Origin(_, AddrForm::Host)))
                        }
                        _ => false,
                    };
                if matches!(form, AddrForm::Name | AddrForm::V6) || hand_written_host {
                    v.push(*kind);
                }
            }
        }
        v.sort();
        v.dedup();
        v
    }
}

/// One problem in a scenario file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    /// Dotted path of the offending field inside the scenario, when known.
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// Every problem found while loading; loading reports them all, not just the first.
#[derive(Debug, Clone, thiserror::Error)]
pub struct LoadErrors(pub Vec<LoadError>);

impl fmt::Display for LoadErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    /// Free text describing the file's RFC area.
    #[serde(default)]
    #[allow(dead_code)]
    area: Option<String>,
    #[serde(default)]
    scenario: Vec<toml::Spanned<Scenario>>,
    #[serde(default)]
    matrix: Vec<toml::Spanned<Matrix>>,
}

/// The key whose value starts at `offset` (`title = 3` gives `title`), so a type error names its field; `None`
/// when the offset is a key itself (serde's unknown-field message names it already).
fn key_before(src: &str, offset: usize) -> Option<String> {
    let before = src.get(..offset)?;
    let line = &before[before.rfind('\n').map_or(0, |i| i + 1)..];
    let key = line[..line.rfind('=')?].trim_end();
    let start =
        key.rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')).map_or(0, |i| i + 1);
    let key = &key[start..];
    (!key.is_empty()).then(|| key.to_string())
}

fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let before = &src[..offset.min(src.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
    (line, col)
}

/// Reads every `*.toml` file in `dir` (sorted by name).
pub fn read_dir(dir: &Path) -> Result<Vec<(String, String)>, LoadErrors> {
    let err = |m: String| {
        LoadErrors(vec![LoadError { file: dir.display().to_string(), line: 0, column: 0, field: None, message: m }])
    };
    let rd = std::fs::read_dir(dir).map_err(|e| err(format!("cannot read scenario directory: {e}")))?;
    let mut paths: Vec<_> =
        rd.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|x| x == "toml")).collect();
    paths.sort();
    let mut out = Vec::new();
    for p in paths {
        let text = std::fs::read_to_string(&p).map_err(|e| err(format!("{}: {e}", p.display())))?;
        out.push((p.display().to_string(), text));
    }
    Ok(out)
}

/// Parses and validates scenario sources; ids must be unique across all of them.
pub fn load(sources: &[(String, String)]) -> Result<Vec<Arc<Loaded>>, LoadErrors> {
    let mut errors = Vec::new();
    let mut out: Vec<Arc<Loaded>> = Vec::new();
    let mut seen: HashMap<String, (String, usize)> = HashMap::new();
    for (file, src) in sources {
        let doc: FileDoc = match toml::from_str(src) {
            Ok(d) => d,
            Err(e) => {
                let (line, column) = e.span().map(|s| line_col(src, s.start)).unwrap_or((0, 0));
                errors.push(LoadError {
                    file: file.clone(),
                    line,
                    column,
                    field: e.span().and_then(|s| key_before(src, s.start)),
                    message: e.message().to_string(),
                });
                continue;
            }
        };
        let mut found: Vec<(Scenario, usize, usize, Option<String>)> = Vec::new();
        for sp in doc.scenario {
            let (line, col) = line_col(src, sp.span().start);
            found.push((sp.into_inner(), line, col, None));
        }
        for sp in doc.matrix {
            let (line, col) = line_col(src, sp.span().start);
            let m = sp.into_inner();
            match m.expand() {
                Err(message) => errors.push(LoadError {
                    file: file.clone(),
                    line,
                    column: col,
                    field: Some("matrix".into()),
                    message,
                }),
                Ok(list) => {
                    for ex in list {
                        match toml::Value::Table(ex.table).try_into::<Scenario>() {
                            Ok(s) => found.push((s, line, col, Some(ex.label))),
                            Err(e) => errors.push(LoadError {
                                file: file.clone(),
                                line,
                                column: col,
                                field: Some("matrix.template".into()),
                                message: format!("combination [{}]: {}", ex.label, e.message()),
                            }),
                        }
                    }
                }
            }
        }
        for (s, line, column, generated_from) in found {
            for (field, message) in validate(&s) {
                let field = match &generated_from {
                    Some(g) => format!("{field} (matrix combination [{g}])"),
                    None => field,
                };
                errors.push(LoadError { file: file.clone(), line, column, field: Some(field), message });
            }
            if let Some((f, l)) = seen.get(&s.id) {
                errors.push(LoadError {
                    file: file.clone(),
                    line,
                    column,
                    field: Some("id".into()),
                    message: format!("duplicate id {:?} (first defined at {f}:{l})", s.id),
                });
                continue;
            }
            seen.insert(s.id.clone(), (file.clone(), line));
            out.push(Arc::new(Loaded { scenario: s, file: file.clone(), line, generated_from }));
        }
    }
    if errors.is_empty() { Ok(out) } else { Err(LoadErrors(errors)) }
}

/// Every template string in a scenario, with its field path.
fn templates_of(s: &Scenario) -> impl Iterator<Item = (String, &String)> {
    let mut v: Vec<(String, &String)> = vec![("target".into(), &s.target)];
    for (i, step) in s.steps.iter().enumerate() {
        let p = format!("step[{i}].{}", step.kind());
        match step {
            Step::Send(x) | Step::ExpectData(x) => v.push((p, x)),
            Step::SendSlowly(x) => v.push((format!("{p}.data"), &x.data)),
            Step::Connect(c) => {
                if let Some(t) = &c.target {
                    v.push((format!("{p}.target"), t));
                }
                for h in c.host.iter().flatten() {
                    v.push((format!("{p}.host"), h));
                }
                for f in &c.fields {
                    v.push((format!("{p}.fields"), f));
                }
                if let Some(e) = &c.early {
                    v.push((format!("{p}.early"), e));
                }
            }
            Step::Origin(o) => {
                if let Some(x) = &o.received_prefix {
                    v.push((format!("{p}.received_prefix"), x));
                }
                if let Some(x) = &o.never_received {
                    v.push((format!("{p}.never_received"), x));
                }
            }
            Step::H2Headers(h) => {
                for [name, value] in &h.fields {
                    v.push((format!("{p}.fields"), name));
                    v.push((format!("{p}.fields"), value));
                }
            }
            Step::Parent(c) => {
                if let Some(x) = &c.target {
                    v.push((format!("{p}.target"), x));
                }
                for x in &c.never_contains {
                    v.push((format!("{p}.never_contains"), x));
                }
            }
            _ => {}
        }
    }
    v.into_iter()
}

/// Checks the rules serde cannot express. Returns (field, message) pairs.
pub fn validate(s: &Scenario) -> Vec<(String, String)> {
    let mut errs = Vec::new();
    let ok_id = !s.id.is_empty()
        && s.id.bytes().all(|b| b.is_ascii_alphanumeric() || b"._/-+:".contains(&b))
        && !s.id.starts_with('/');
    if !ok_id {
        errs.push(("id".into(), format!("{:?}: use letters, digits and . _ / - + : (like rfc9110/9.3.6/slug)", s.id)));
    }
    for (i, step) in s.steps.iter().enumerate() {
        if let Step::H2Parallel(p) = step
            && !(2..=64).contains(&p.streams)
        {
            errs.push((format!("step[{i}].h2_parallel.streams"), format!("{}: between 2 and 64", p.streams)));
        }
        if let Step::H2Window(n) = step
            && !(1..=0x7fff_ffff).contains(n)
        {
            errs.push((format!("step[{i}].h2_window"), format!("{n}: between 1 and 2^31-1 (RFC 9113 §6.5.2)")));
        }
    }
    let h2_only = s.uses_h2_frames() || s.steps.iter().any(|st| matches!(st, Step::H2Parallel(_)));
    if h2_only && !s.transports.iter().all(|t| t.is_h2()) {
        errs.push((
            "transports".into(),
            "a scenario with h2_headers, h2_window or h2_parallel steps runs only on HTTP/2: set transports = [\"h2\", \"h2c\"]"
                .into(),
        ));
    }
    if let Some(p) = &s.policy {
        let bad_addr =
            p.address.as_deref().is_some_and(|a| a.trim_matches(['[', ']']).parse::<std::net::IpAddr>().is_err());
        if bad_addr || (p.port.is_none() && p.address.is_none()) {
            errs.push(("policy".into(), "give a port and/or an IP address".into()));
        }
    }
    if s.steps.is_empty() {
        errs.push(("step".into(), "a scenario needs at least one [[scenario.step]]".into()));
    }
    if s.transports.is_empty() {
        errs.push(("transports".into(), "list at least one of \"plain\", \"tls\", \"h2\", \"h2c\"".into()));
    }
    let tls_settings =
        s.tls.sni != Sni::ProxyName || !s.tls.alpn.is_empty() || s.tls.may_refuse || !s.tls.expect_alpn.is_empty();
    if tls_settings && !s.transports.iter().any(|t| t.is_tls()) {
        errs.push((
            "tls".into(),
            "TLS settings on a scenario that does not run over TLS (add \"tls\" to transports)".into(),
        ));
    }
    if let Sni::Literal(name) = &s.tls.sni
        && rustls_pki_types::ServerName::try_from(name.as_str()).is_err()
    {
        errs.push(("tls.sni".into(), format!("{name:?} is not a valid server name")));
    }
    for (field, text) in templates_of(s) {
        if let Err(e) = Template::parse(text) {
            errs.push((field, e.0));
        }
    }
    for kind in &s.requirement_at {
        // `setup` is the TLS connection to the proxy (step 0), where the ALPN and handshake checks are judged.
        let setup = kind == "setup" && s.transports.iter().any(|t| t.is_tls());
        if !s.steps.iter().any(|step| step.kind() == kind) && !setup {
            let kinds: Vec<&str> = s.steps.iter().map(Step::kind).collect();
            errs.push((
                "requirement_at".into(),
                format!("{kind:?} is not a step of this scenario (its steps: {})", kinds.join(", ")),
            ));
        }
    }
    if let Some(script) = &s.parent {
        if !s.needs.contains(&crate::scenario::Needs::Upstream) {
            errs.push(("parent".into(), "a parent script needs `needs = [\"upstream\"]`".into()));
        }
        if script.respond.is_some() && script.action.is_some() {
            errs.push(("parent".into(), "respond and action exclude each other".into()));
        }
    }
    for (i, step) in s.steps.iter().enumerate() {
        let p = format!("step[{i}].{}", step.kind());
        match step {
            Step::Expect(e) => validate_expect(&p, e, &mut errs),
            Step::SendSlowly(x) if x.chunk == 0 => errs.push((format!("{p}.chunk"), "must be at least 1".into())),
            Step::Echo(0) | Step::SendRandom(0) => errs.push((p, "the byte count must be at least 1".into())),
            Step::Echo(n) | Step::SendRandom(n) if *n > 1 << 30 => errs.push((p, "at most 1 GiB".into())),
            Step::Origin(o) if !o.checks_something() => errs.push((
                p,
                "an origin check needs at least one of connections, ended, received_all_sent, received_prefix, \
                 never_received, sni, alpn"
                    .into(),
            )),
            Step::Parent(c) if !c.checks_something() => errs.push((
                p,
                "a parent check needs at least one of connects, target, present, absent, fields, never_contains, \
                 nothing_after_answer, own_credentials"
                    .into(),
            )),
            Step::Parent(_) if !s.needs.contains(&crate::scenario::Needs::Upstream) => {
                errs.push((p, "a parent check needs `needs = [\"upstream\"]`".into()))
            }
            Step::Parent(c) if c.own_credentials && !s.needs.contains(&crate::scenario::Needs::UpstreamCredentials) => {
                errs.push((p, "own_credentials needs `needs = [\"upstream\", \"upstream-credentials\"]`".into()))
            }
            Step::Origin(o) if o.if_rejected && o.if_tunnelled => {
                errs.push((p, "if_rejected and if_tunnelled exclude each other".into()))
            }
            Step::Origin(o) if (o.sni.is_some() || o.alpn.is_some()) && o.name != OriginKind::Tls => {
                errs.push((p, "sni/alpn are recorded only by the tls origin".into()))
            }
            _ => {}
        }
    }
    errs
}

fn validate_expect(p: &str, e: &Expect, errs: &mut Vec<(String, String)>) {
    if !e.any_of.is_empty() && e.has_inline() {
        errs.push((p.into(), "write the outcome inline or in any_of, not both".into()));
        return;
    }
    if e.any_of.is_empty() && !e.has_inline() {
        errs.push((p.into(), "no acceptable outcome: give status, closed, timeout or any_of".into()));
        return;
    }
    for (i, o) in e.outcomes().iter().enumerate() {
        let f = if e.any_of.is_empty() { p.to_string() } else { format!("{p}.any_of[{i}]") };
        if let Some(m) = outcome_problem(o) {
            errs.push((f, m));
        }
    }
}

fn outcome_problem(o: &Outcome) -> Option<String> {
    let kinds = (!o.status.is_empty()) as u8 + o.closed as u8 + o.timeout as u8;
    if kinds != 1 {
        return Some("an outcome is exactly one of: a status set, closed = true, timeout = true".into());
    }
    let response_rules = !o.present.is_empty()
        || !o.absent.is_empty()
        || !o.fields.is_empty()
        || o.version.is_some()
        || o.then.is_some();
    if o.status.is_empty() && response_rules {
        return Some("present/absent/fields/version/then apply only to an outcome with a status".into());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(src: &str) -> Result<Vec<Arc<Loaded>>, LoadErrors> {
        load(&[("f.toml".into(), src.into())])
    }

    const OK: &str = r#"
[[scenario]]
id = "rfc9110/9.3.6/x"
title = "t"
section = "RFC 9110 §9.3.6"
requirement = "r"
level = "must"

[[scenario.step]]
connect = {}

[[scenario.step]]
expect = { status = "2xx", absent = ["content-length"] }

[[scenario.step]]
echo = 10
"#;

    #[test]
    fn loads_a_valid_file() {
        let v = one(OK).unwrap();
        assert_eq!(v[0].scenario.steps.len(), 3);
        assert_eq!(v[0].line, 2);
        assert_eq!(v[0].origins(), vec![OriginKind::Echo]);
    }

    #[test]
    fn unknown_field_names_line_and_field() {
        let src = OK.replace("echo = 10", "echoo = 10");
        let e = one(&src).unwrap_err().0;
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].line, 16, "{}", e[0]);
        assert!(e[0].message.contains("echoo"), "{}", e[0]);
    }

    #[test]
    fn bad_placeholder_and_bad_outcome_are_reported_with_field() {
        let src = OK.replace("connect = {}", "send = \"CONNECT {ecko}\"").replace("status = \"2xx\", ", "");
        let e = one(&src).unwrap_err().0;
        assert!(e.iter().any(|x| x.field.as_deref() == Some("step[0].send") && x.message.contains("ecko")), "{e:?}");
        assert!(e.iter().any(|x| x.field.as_deref() == Some("step[1].expect")), "{e:?}");
    }

    #[test]
    fn type_errors_name_line_and_field() {
        let e = one("[[scenario]]\nid = \"a\"\ntitle = 3\n").unwrap_err().0;
        assert_eq!((e[0].line, e[0].field.as_deref()), (3, Some("title")), "{e:?}");
        let e = one("[[scenario]]\nid = \"a\"\ntitle = \"t\"\nsection = \"s\"\nrequirement = \"r\"\nlevel = \"must\"\n[[scenario.step]]\nconnect = { version = 11 }\n")
            .unwrap_err()
            .0;
        assert_eq!((e[0].line, e[0].field.as_deref()), (8, Some("version")), "{e:?}");
        assert!(e[0].to_string().contains(":8:") && e[0].to_string().contains("version: "), "{}", e[0]);
    }

    #[test]
    fn duplicate_ids_are_errors() {
        let e = load(&[("a.toml".into(), OK.into()), ("b.toml".into(), OK.into())]).unwrap_err().0;
        assert!(e[0].message.contains("duplicate id") && e[0].message.contains("a.toml:2"), "{}", e[0]);
    }

    #[test]
    fn bad_status_pattern_is_an_error() {
        let e = one(&OK.replace("\"2xx\"", "\"2x\"")).unwrap_err().0;
        assert!(e[0].message.contains("status pattern"), "{}", e[0]);
        assert_eq!(e[0].line, 13);
    }

    #[test]
    fn embedded_scenarios_load() {
        let v = load(&embedded_sources()).unwrap_or_else(|e| panic!("{e}"));
        assert!(!v.is_empty());
    }
}
