//! `connect-harness report merge SHARD.json… -o ALL.json`: the shards of a run (`run --shard I/N`) as one
//! report, equal to an unsharded run's: every result once, sorted, the summary recounted, the metadata naming
//! the shards. The handshake owner (`tls/handshake-completes`) runs in every shard, judged on that shard's
//! handshakes; the merged report keeps its worst verdict.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::runner::HANDSHAKE_OWNER;

/// How bad a verdict is, for keeping the worst of the owner's verdicts.
fn rank(v: &str) -> u8 {
    match v {
        "error" => 5,
        "fail" => 4,
        "setup" => 3,
        "warn" => 2,
        "pass" => 1,
        _ => 0,
    }
}

/// A transport name with its place in the order a run sorts results in (plain, tls, h2, h2c; unknown last).
fn transport_order(transport: &str) -> (u8, String) {
    let order = serde_json::from_value::<crate::scenario::Transport>(json!(transport))
        .ok()
        .and_then(|t| crate::scenario::Transport::ALL.iter().position(|x| *x == t))
        .unwrap_or(u8::MAX as usize);
    (order as u8, transport.to_string())
}

/// Merges `(name, report)` pairs.
pub fn merge(reports: &[(String, Value)]) -> Result<Value, String> {
    let (first_name, first) = reports.first().ok_or("no reports to merge")?;
    let version = &first["schema_version"];
    let mut results: BTreeMap<(String, (u8, String)), (Value, String)> = BTreeMap::new();
    let mut findings = Vec::new();
    let mut transports: Vec<String> = Vec::new();
    let mut start: Option<String> = None;
    let mut duration = 0u64;
    let mut merged_from = Vec::new();
    for (name, r) in reports {
        if &r["schema_version"] != version {
            return Err(format!(
                "{name}: schema_version {} differs from {first_name}'s {version}",
                r["schema_version"]
            ));
        }
        let list = r["results"].as_array().ok_or_else(|| format!("{name}: not a connect-harness JSON report"))?;
        let md = &r["metadata"];
        for t in md["transports"].as_array().into_iter().flatten().filter_map(Value::as_str) {
            if !transports.iter().any(|x| x == t) {
                transports.push(t.to_string());
            }
        }
        if let Some(s) = md["start_time"].as_str()
            && start.as_deref().is_none_or(|x| s < x)
        {
            start = Some(s.to_string());
        }
        duration = duration.max(md["duration_ms"].as_u64().unwrap_or(0));
        merged_from.push(match md["shard"].as_str() {
            Some(s) => format!("{name} (shard {s})"),
            None => name.clone(),
        });
        findings.extend(r["findings"].as_array().into_iter().flatten().cloned());
        for res in list {
            let key = (
                res["id"].as_str().unwrap_or("?").to_string(),
                transport_order(res["transport"].as_str().unwrap_or("?")),
            );
            match results.get(&key) {
                None => {
                    results.insert(key, (res.clone(), name.clone()));
                }
                Some((have, _)) if key.0 == HANDSHAKE_OWNER => {
                    let worse =
                        rank(res["verdict"].as_str().unwrap_or("")) > rank(have["verdict"].as_str().unwrap_or(""));
                    if worse {
                        results.insert(key, (res.clone(), name.clone()));
                    }
                }
                Some((_, other)) => {
                    return Err(format!(
                        "{} [{}] is in both {other} and {name}: these are not shards of one run",
                        key.0, key.1.1
                    ));
                }
            }
        }
    }
    transports.sort_by_key(|t| transport_order(t));
    let results: Vec<Value> = results.into_values().map(|(v, _)| v).collect();
    let mut metadata = first["metadata"].clone();
    if let Some(m) = metadata.as_object_mut() {
        m.remove("shard");
        m.insert("transports".into(), json!(transports));
        m.insert("duration_ms".into(), json!(duration));
        if let Some(s) = start {
            m.insert("start_time".into(), json!(s));
        }
        m.insert("merged_from".into(), json!(merged_from));
    }
    Ok(json!({
        "schema_version": version,
        "metadata": metadata,
        "summary": summary(&results),
        "findings": findings,
        "results": results,
    }))
}

/// The summary of results, as `Summary::from_results` counts it.
fn summary(results: &[Value]) -> Value {
    let n = |v: &str| results.iter().filter(|r| r["verdict"].as_str() == Some(v)).count();
    let count = |f: fn(&Value) -> bool| results.iter().filter(|r| f(r)).count();
    json!({
        "total": results.len(),
        "passed": n("pass"),
        "failed": n("fail"),
        "warned": n("warn"),
        "observed": n("observed"),
        "skipped": n("skip"),
        "inconclusive": n("inconclusive"),
        "setup_failures": n("setup"),
        "errors": n("error"),
        "expected_failures": count(super::load::is_known_deviation),
        "unexpected_passes": count(super::load::is_unexpected_pass),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(label: &str, rs: &[(&str, &str, &str)]) -> Value {
        json!({
            "schema_version": 2,
            "metadata": { "transports": ["plain", "tls"], "shard": label, "start_time": "2026-01-01T00:00:0".to_string() + &label[..1] + "Z", "duration_ms": 10 },
            "summary": {},
            "findings": [],
            "results": rs.iter().map(|(id, t, v)| json!({"id": id, "transport": t, "verdict": v})).collect::<Vec<_>>(),
        })
    }

    #[test]
    fn shards_join_and_the_owner_keeps_its_worst() {
        let a = shard("1/2", &[("b", "plain", "pass"), (HANDSHAKE_OWNER, "tls", "pass")]);
        let b = shard("2/2", &[("a", "tls", "fail"), (HANDSHAKE_OWNER, "tls", "fail")]);
        let m = merge(&[("a.json".into(), a.clone()), ("b.json".into(), b)]).unwrap();
        let ids: Vec<(&str, &str)> = m["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["id"].as_str().unwrap(), r["verdict"].as_str().unwrap()))
            .collect();
        assert_eq!(ids, vec![("a", "fail"), ("b", "pass"), (HANDSHAKE_OWNER, "fail")]);
        assert_eq!(m["summary"]["total"], 3);
        assert_eq!(m["summary"]["failed"], 2);
        assert!(m["metadata"].get("shard").is_none());
        assert_eq!(m["metadata"]["merged_from"][1], "b.json (shard 2/2)");
        assert_eq!(m["metadata"]["start_time"], "2026-01-01T00:00:01Z");
        // Overlapping shards are refused.
        assert!(merge(&[("a".into(), a.clone()), ("a2".into(), a)]).unwrap_err().contains("not shards of one run"));
    }
}
