//! Reading JSON reports back (for `matrix`, `report diff|markdown|html`): as plain JSON rather than the typed
//! [`super::Report`], so reports of older harness versions still load. The helpers here are the one place that
//! knows which results of a report count and what a known deviation looks like.

use serde_json::Value;

/// Verdicts in the order reports list their counts.
pub const VERDICT_ORDER: [&str; 8] = ["pass", "fail", "warn", "observed", "inconclusive", "setup", "skip", "error"];

/// The transports a report ran (`metadata.transports`).
pub fn own_transports(report: &Value) -> Vec<&str> {
    report["metadata"]["transports"].as_array().into_iter().flatten().filter_map(Value::as_str).collect()
}

/// The results of a report's own transports: the harness also lists the other transport's scenarios as skipped,
/// and those say nothing about the proxy. A report without a transport list keeps every result.
pub fn own_results(report: &Value) -> Result<Vec<&Value>, String> {
    if let Some(v) = report["schema_version"].as_u64()
        && v > u64::from(super::SCHEMA_VERSION)
    {
        return Err(format!(
            "schema_version {v} is newer than this harness reads ({}): use a newer connect-harness",
            super::SCHEMA_VERSION
        ));
    }
    let own = own_transports(report);
    let results = report["results"].as_array().ok_or("not a connect-harness JSON report (no results)")?;
    for (i, r) in results.iter().enumerate() {
        for field in ["id", "transport", "verdict"] {
            if !r[field].is_string() {
                return Err(format!("results[{i}]: no {field} (not a connect-harness JSON report)"));
            }
        }
    }
    Ok(results.iter().filter(|r| own.is_empty() || own.contains(&r["transport"].as_str().unwrap_or(""))).collect())
}

/// The result's verdict (`?` when missing).
pub fn verdict(r: &Value) -> &str {
    r["verdict"].as_str().unwrap_or("?")
}

/// Whether the result matched an `--expect` entry as a known deviation (not an unexpected pass).
pub fn is_known_deviation(r: &Value) -> bool {
    r.get("deviation").is_some_and(|d| d.is_object() && !d["unexpected_pass"].as_bool().unwrap_or(false))
}

/// Whether the result passed although an `--expect` entry lists it.
pub fn is_unexpected_pass(r: &Value) -> bool {
    r["deviation"]["unexpected_pass"].as_bool().unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn only_own_transports_count() {
        let r = json!({"metadata": {"transports": ["tls"]}, "results": [
            {"id": "a", "transport": "plain", "verdict": "skip"},
            {"id": "a", "transport": "tls", "verdict": "fail", "deviation": {"reason": "x", "unexpected_pass": false}},
        ]});
        let own = super::own_results(&r).unwrap();
        assert_eq!(own.len(), 1);
        assert!(super::is_known_deviation(own[0]));
        assert!(super::own_results(&json!({"metadata": {}})).is_err());
    }
}
