//! `connect-harness report html REPORT.json… -o FILE` and `run --html FILE`: one self-contained HTML page (no
//! network, no external assets) for people: counts per report and transport, the TLS × SNI × Host × target
//! matrix as a grid, every result grouped by RFC section with its quoted requirement, filters, and each result's
//! evidence (transcript, acceptable outcomes, observed response, origins, proxy log) a click away. Several reports
//! side by side make an interop matrix.
//!
//! The page is data plus a renderer: the reports go in as JSON inside `<script type="application/json">` (with
//! `<`, `>` and `&` as `\u` escapes, so nothing a proxy sent can close the element), and `page.js` builds the
//! DOM with `textContent` only, so bytes from the proxy are shown as text and never parsed as HTML. The view's
//! state (filters, the opened result) lives in the URL fragment, so a link opens the same view.

use serde_json::{Value, json};

use super::load;

const CSS: &str = include_str!("html/page.css");
const JS: &str = include_str!("html/page.js");

/// One report on the page, with the label its column carries.
pub struct Input {
    pub label: String,
    pub report: Value,
}

/// Reports read from files, each labelled with its file name without `.json`; two files with one name
/// (a/r.json, b/r.json) are labelled with their paths instead, so the columns can be told apart.
pub fn labelled(files: Vec<(&std::path::Path, Value)>) -> Vec<Input> {
    let without_json = |s: String| s.strip_suffix(".json").map(str::to_string).unwrap_or(s);
    let name = |p: &std::path::Path| {
        without_json(p.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_else(|| p.display().to_string()))
    };
    let names: Vec<String> = files.iter().map(|(p, _)| name(p)).collect();
    files
        .into_iter()
        .zip(&names)
        .map(|((path, report), n)| {
            let label = if names.iter().filter(|m| *m == n).count() > 1 {
                without_json(path.display().to_string())
            } else {
                n.clone()
            };
            Input { label, report }
        })
        .collect()
}

/// The page for these reports (in this order). It depends on nothing but the reports and the harness version (no
/// clock), so a committed page can be checked for staleness by generating it again.
pub fn render(inputs: &[Input]) -> Result<String, String> {
    if inputs.is_empty() {
        return Err("no reports given".into());
    }
    let catalog = catalog_texts();
    let mut reports = Vec::new();
    for i in inputs {
        let m = &i.report["metadata"];
        let mut results: Vec<Value> =
            load::own_results(&i.report).map_err(|e| format!("{}: {e}", i.label))?.into_iter().cloned().collect();
        // Compact (the flag, or, in reports written before it existed, results without their texts): the page then
        // says what was not kept instead of showing nothing.
        let compact = m["compact"].as_bool().unwrap_or(false) || results.iter().any(|r| r.get("title").is_none());
        for r in &mut results {
            fill_texts(r, &catalog);
        }
        reports.push(json!({
            "label": i.label,
            "target": m["target"],
            "transports": m["transports"],
            "start_time": m["start_time"],
            "duration_ms": m["duration_ms"],
            "harness_version": m["harness_version"],
            "findings": i.report["findings"],
            "stale_expectations": i.report["stale_expectations"],
            "compact": compact,
            "results": results,
        }));
    }
    let newest = inputs.iter().filter_map(|i| i.report["metadata"]["start_time"].as_str()).max().unwrap_or("?");
    let data = json!({
        "newest": newest,
        "harness_version": env!("CARGO_PKG_VERSION"),
        "reports": reports,
    });
    let title = if inputs.len() == 1 {
        format!("connect-harness: {}", inputs[0].label)
    } else {
        format!("connect-harness: {} reports", inputs.len())
    };
    Ok(format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; \
         script-src 'unsafe-inline'; img-src data:\">\n\
         <title>{}</title>\n<style>\n{CSS}</style>\n\
         <script>window.__errors = []; window.addEventListener('error', function (e) {{ window.__errors.push(String(e.message)); \
         document.documentElement.setAttribute('data-js-errors', String(window.__errors.length)); }});</script>\n\
         </head>\n<body>\n<noscript>This report is rendered by JavaScript; the data is in the element #data.</noscript>\n\
         <script type=\"application/json\" id=\"data\">{}</script>\n<script>\n{JS}</script>\n</body>\n</html>\n",
        text(&title),
        script_json(&data)
    ))
}

/// The scenario texts of the embedded catalog by id: what a `--compact` report leaves out of results that need no
/// reading.
fn catalog_texts() -> std::collections::HashMap<String, Value> {
    let Ok(loaded) = crate::scenario::load(&crate::scenario::embedded_sources()) else {
        return Default::default();
    };
    loaded
        .iter()
        .map(|l| {
            let s = &l.scenario;
            let texts = json!({"title": s.title, "requirement": s.requirement, "section": s.section,
                "source": format!("{}:{}", l.file, l.line), "catalog": s.catalog});
            (s.id.clone(), texts)
        })
        .collect()
}

/// Adds the catalog's texts to a result that has none of its own.
fn fill_texts(r: &mut Value, catalog: &std::collections::HashMap<String, Value>) {
    let Some(texts) = r["id"].as_str().and_then(|id| catalog.get(id)) else { return };
    let Some(obj) = r.as_object_mut() else { return };
    for (k, v) in texts.as_object().into_iter().flatten() {
        obj.entry(k.clone()).or_insert_with(|| v.clone());
    }
}

/// JSON that can sit inside a `<script>` element: `<`, `>`, `&` and the JavaScript line terminators as `\u`
/// escapes (still the same JSON value).
fn script_json(v: &Value) -> String {
    let s = serde_json::to_string(v).expect("JSON serializes");
    let mut out = String::with_capacity(s.len() + s.len() / 16);
    for c in s.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

/// Text for an HTML element's content.
fn text(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// `run --html FILE`: the page of this run's report, written when the run is done.
pub struct HtmlReporter {
    path: std::path::PathBuf,
    collector: super::json::Collector,
}

impl HtmlReporter {
    pub fn new(path: std::path::PathBuf, transcripts: super::json::Transcripts) -> Self {
        Self { path, collector: super::json::Collector::new(transcripts) }
    }
}

impl super::terminal::Reporter for HtmlReporter {
    fn on_event(&mut self, ev: &crate::runner::Event) -> std::io::Result<()> {
        if let Some(report) = self.collector.on_event(ev) {
            let label = report.metadata.target.clone();
            let report = serde_json::to_value(&report).map_err(std::io::Error::other)?;
            let page = render(&[Input { label, report }]).map_err(std::io::Error::other)?;
            std::fs::write(&self.path, page)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_cannot_close_its_script_element() {
        let hostile = "</script><script>alert(1)</script><!-- & \u{2028}";
        let report = json!({"metadata": {"target": hostile, "transports": ["plain"]}, "findings": [],
            "results": [{"id": "a", "transport": "plain", "verdict": "fail", "reason": hostile}]});
        let page = render(&[Input { label: hostile.into(), report }]).unwrap();
        let start = page.find("id=\"data\">").unwrap() + 10;
        let end = start + page[start..].find("</script>").unwrap();
        let embedded = &page[start..end];
        assert!(!embedded.contains('<'), "{embedded}");
        let back: Value = serde_json::from_str(embedded).unwrap();
        assert_eq!(back["reports"][0]["results"][0]["reason"], hostile);
        assert!(page.contains("<title>connect-harness: &lt;/script&gt;"));
    }

    #[test]
    fn columns_of_one_file_name_are_labelled_by_path() {
        let r = || json!({});
        let (a, b, c) =
            (std::path::Path::new("x/r.json"), std::path::Path::new("y/r.json"), std::path::Path::new("s.json"));
        let labels: Vec<String> = labelled(vec![(a, r()), (b, r()), (c, r())]).into_iter().map(|i| i.label).collect();
        assert_eq!(labels, ["x/r", "y/r", "s"]);
    }

    #[test]
    fn only_own_transports_are_embedded() {
        let report = json!({"metadata": {"transports": ["tls"]}, "findings": [], "results": [
            {"id": "a", "transport": "plain", "verdict": "skip"}, {"id": "a", "transport": "tls", "verdict": "pass"}]});
        let page = render(&[Input { label: "x".into(), report }]).unwrap();
        assert!(page.contains(r#""transport":"tls""#) && !page.contains(r#""transport":"plain""#));
        assert!(render(&[]).is_err());
    }
}
