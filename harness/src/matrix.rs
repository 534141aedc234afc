//! `connect-harness matrix`: the interop matrix (`reports/README.md`) from JSON reports named
//! `<proxy>-<version>-<transport>.json`, so a reader sees every proxy × transport at a glance.
//!
//! Reports are read as plain JSON (not the typed [`crate::report::Report`]) so older reports still render.
//! Only results of a report's own transports count: the harness lists the other transport's scenarios as skipped.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    path::{Path, PathBuf},
};

use serde_json::Value;

use crate::report::load::{VERDICT_ORDER as ORDER, verdict};

#[derive(Debug, thiserror::Error)]
pub enum MatrixError {
    #[error("{0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("{0}: not a connect-harness JSON report: {1}")]
    Parse(PathBuf, String),
    #[error("{0}: the file name must be <proxy>-<version>-<transport>.json (transport: plain, tls, h2 or h2c)")]
    Name(PathBuf),
    #[error("no reports given")]
    Empty,
}

/// One report: a matrix column.
struct Column {
    proxy: String,
    version: String,
    transport: String,
    file: String,
    /// Results of the report's own transports.
    results: Vec<Value>,
}

/// Splits `squid-5.7-tls.json` into ("squid", "5.7", "tls").
fn split_name(path: &Path) -> Option<(String, String, String)> {
    let stem = path.file_name()?.to_str()?.strip_suffix(".json")?;
    let (rest, transport) = stem.rsplit_once('-')?;
    let (proxy, version) = rest.split_once('-')?;
    // A configuration of a proxy is named with a dot: `squid.default`, `apache2.iponly`.
    let proxy_ok = !proxy.is_empty()
        && !proxy.starts_with('.')
        && proxy.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.');
    let version_ok = version.starts_with(|c: char| c.is_ascii_digit())
        && version.bytes().all(|b| b.is_ascii_alphanumeric() || b"._+~".contains(&b));
    (proxy_ok && version_ok && matches!(transport, "plain" | "tls" | "h2" | "h2c"))
        .then(|| (proxy.to_string(), version.to_string(), transport.to_string()))
}

fn load(path: &Path) -> Result<Column, MatrixError> {
    let (proxy, version, transport) = split_name(path).ok_or_else(|| MatrixError::Name(path.into()))?;
    let text = std::fs::read_to_string(path).map_err(|e| MatrixError::Read(path.into(), e))?;
    let v: Value = serde_json::from_str(&text).map_err(|e| MatrixError::Parse(path.into(), e.to_string()))?;
    let results = crate::report::load::own_results(&v)
        .map_err(|e| MatrixError::Parse(path.into(), e))?
        .into_iter()
        .cloned()
        .collect();
    let file = path.file_name().and_then(|f| f.to_str()).unwrap_or_default().to_string();
    Ok(Column { proxy, version, transport, file, results })
}

/// The deviation of a result: (reason, unexpected pass).
fn deviation(r: &Value) -> Option<(&str, bool)> {
    let d = r.get("deviation")?;
    Some((d["reason"].as_str().unwrap_or(""), d["unexpected_pass"].as_bool().unwrap_or(false)))
}

fn count_text(results: &[Value]) -> String {
    let n = |v: &str| results.iter().filter(|r| verdict(r) == v).count();
    let parts: Vec<String> =
        ORDER.iter().filter(|v| n(v) > 0 || matches!(**v, "pass" | "fail")).map(|v| format!("{} {v}", n(v))).collect();
    let known = results.iter().filter(|r| deviation(r).is_some_and(|(_, unexpected)| !unexpected)).count();
    format!("{} runs: {} ({known} known deviations)", results.len(), parts.join(", "))
}

fn cell(r: &Value) -> String {
    let v = verdict(r);
    let mut c = match v {
        "fail" => "**FAIL**".to_string(),
        "warn" => "*warn*".to_string(),
        "error" => "ERROR".to_string(),
        "inconclusive" => "_inconclusive_".to_string(),
        "setup" => "SETUP".to_string(),
        other => other.to_string(),
    };
    if matches!(v, "fail" | "warn" | "observed" | "inconclusive")
        && let Some(status) = r["observed"]["head"]["status"].as_u64()
    {
        let _ = write!(c, " {status}");
    }
    if let Some((_, unexpected)) = deviation(r) {
        c.push(if unexpected { '‡' } else { '†' });
    }
    c
}

/// Renders the matrix (Markdown) from the given reports, in proxy, version, transport order.
pub fn render(paths: &[PathBuf]) -> Result<String, MatrixError> {
    if paths.is_empty() {
        return Err(MatrixError::Empty);
    }
    let mut cols = paths.iter().map(|p| load(p)).collect::<Result<Vec<_>, _>>()?;
    cols.sort_by(|a, b| (&a.proxy, &a.version, &a.transport).cmp(&(&b.proxy, &b.version, &b.transport)));
    let mut rows: BTreeMap<&str, BTreeMap<usize, &Value>> = BTreeMap::new();
    for (ci, c) in cols.iter().enumerate() {
        for r in &c.results {
            rows.entry(r["id"].as_str().unwrap_or("?")).or_default().insert(ci, r);
        }
    }
    let mut o = String::new();
    let mut w = |line: &str| {
        o.push_str(line);
        o.push('\n');
    };
    w("# Interop matrix: connect-harness against real CONNECT proxies");
    w("");
    w("<!-- Generated from the JSON reports in this directory by interop/run-matrix; do not edit. CI fails when");
    w("     this file is stale (a new report without regenerating it). -->");
    w("");
    w("Each proxy runs from its Debian package in a private network namespace with only loopback, configured as a");
    w("forward proxy allowing CONNECT to the harness's origin ports (`interop/launch`), once per transport: `plain`");
    w("(HTTP to the proxy), `tls` (HTTPS to the proxy: Apache `SSLEngine on`, Squid `https_port`) and `h2` (HTTP/2");
    w("over TLS, every CONNECT a stream: nghttpx in its HTTP/2 proxy mode in front of Squid). Regenerate");
    w("with `interop/run-matrix` (as root; see interop/README.md), which also fails on any result that differs from");
    w("the proxy's expectations file `interop/<proxy>/expect.toml`.");
    w("");
    w("## Summary");
    w("");
    w("| proxy | version | transport | result | report |");
    w("| --- | --- | --- | --- | --- |");
    for c in &cols {
        w(&format!(
            "| {} | {} | {} | {} | [{}]({}) |",
            c.proxy,
            c.version,
            c.transport,
            count_text(&c.results),
            c.file,
            c.file
        ));
    }
    w("");
    w("Cells: `pass`; **FAIL** (a MUST not met); *warn* (a SHOULD not met); `observed` (recorded, not judged);");
    w("after a fail, warn or observed verdict, the status code of the proxy's last response;");
    w("_inconclusive_ (the proxy refused the destination by its policy, so the requirement was not exercised);");
    w("SETUP (our TLS handshake or connection to the proxy failed twice: not the scenario's requirement);");
    w("`skip` (not applicable, e.g. needs credentials); `–` the scenario does not exist on that transport.");
    w("A dagger (†) marks a known deviation listed in the proxy's expectations file; ‡ an unexpected pass.");
    w("");
    w("## Matrix");
    w("");
    let heads: Vec<String> = cols.iter().map(|c| format!("{} {} {}", c.proxy, c.version, c.transport)).collect();
    w(&format!("| scenario | {} |", heads.join(" | ")));
    w(&format!("| --- |{}", " --- |".repeat(cols.len())));
    for (id, by_col) in &rows {
        let cells: Vec<String> =
            (0..cols.len()).map(|ci| by_col.get(&ci).map(|r| cell(r)).unwrap_or_else(|| "–".into())).collect();
        w(&format!("| `{id}` | {} |", cells.join(" | ")));
    }
    w("");
    w("## Known deviations");
    w("");
    let mut any = false;
    for c in &cols {
        let mut devs: Vec<&Value> = c.results.iter().filter(|r| deviation(r).is_some()).collect();
        if devs.is_empty() {
            continue;
        }
        any = true;
        devs.sort_by_key(|r| r["id"].as_str().unwrap_or(""));
        w(&format!("### {} {} {}", c.proxy, c.version, c.transport));
        w("");
        // One bullet per reason, in order of first appearance.
        let mut by_reason: Vec<(&str, Vec<String>)> = Vec::new();
        for r in devs {
            let (reason, unexpected) = deviation(r).expect("filtered");
            let tag = if unexpected { "unexpected pass" } else { verdict(r) };
            let entry = format!("`{}` ({tag})", r["id"].as_str().unwrap_or("?"));
            match by_reason.iter_mut().find(|(re, _)| *re == reason) {
                Some((_, ids)) => ids.push(entry),
                None => by_reason.push((reason, vec![entry])),
            }
        }
        for (reason, ids) in by_reason {
            w(&format!("- {}: {reason}", ids.join(", ")));
        }
        w("");
    }
    if !any {
        w("None.");
        w("");
    }
    Ok(o)
}

/// The report files in `dir` named like matrix columns (for the staleness test and `interop/run-matrix`).
pub fn reports_in(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> =
        std::fs::read_dir(dir)?.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| split_name(p).is_some()).collect();
    v.sort();
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let s = |n: &str| split_name(Path::new(n));
        assert_eq!(s("squid-5.7-tls.json"), Some(("squid".into(), "5.7".into(), "tls".into())));
        assert_eq!(s("apache2-2.4.71-plain.json"), Some(("apache2".into(), "2.4.71".into(), "plain".into())));
        assert_eq!(s("squid.default-5.7-plain.json"), Some(("squid.default".into(), "5.7".into(), "plain".into())));
        assert_eq!(s("nghttpx-1.52.0-h2.json"), Some(("nghttpx".into(), "1.52.0".into(), "h2".into())));
        for bad in ["squid-5.7-quic.json", "squid-tls.json", "squid-5.7-tls.xml", "Squid-5.7-tls.json", "x-v1-tls.json"]
        {
            assert_eq!(s(bad), None, "{bad}");
        }
    }
}
