//! Sharding a run across CI runners (`run --shard I/N`) and putting the reports back together
//! (`report merge`). The assignment is a pure function of the planned items (and of the durations a previous
//! report recorded), so every runner computes the same split without talking to the others.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::scenario::Transport;

/// `I/N`: this runner is shard I (1-based) of N.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
    /// Durations (ms) of (id, transport) from an earlier report, to balance the shards by time.
    pub weights: BTreeMap<(String, Transport), u64>,
}

impl Shard {
    /// Parses `I/N` (1 ≤ I ≤ N).
    pub fn parse(s: &str) -> Result<Shard, String> {
        let (i, n) = s.split_once('/').ok_or_else(|| format!("{s:?}: expected I/N, e.g. 2/4"))?;
        let (i, n): (usize, usize) = (
            i.trim().parse().map_err(|_| format!("{s:?}: {i:?} is not a number"))?,
            n.trim().parse().map_err(|_| format!("{s:?}: {n:?} is not a number"))?,
        );
        if n == 0 || i == 0 || i > n {
            return Err(format!("{s:?}: need 1 ≤ I ≤ N"));
        }
        Ok(Shard { index: i, count: n, weights: BTreeMap::new() })
    }

    pub fn label(&self) -> String {
        format!("{}/{}", self.index, self.count)
    }
}

/// The durations a report recorded, by (id, transport) (for `--shard-durations`).
pub fn durations(report: &Value) -> BTreeMap<(String, Transport), u64> {
    let mut out = BTreeMap::new();
    for r in report["results"].as_array().into_iter().flatten() {
        let Ok(t) = serde_json::from_value::<Transport>(r["transport"].clone()) else {
            continue;
        };
        if let (Some(id), Some(ms)) = (r["id"].as_str(), r["duration_ms"].as_u64()) {
            out.insert((id.to_string(), t), ms);
        }
    }
    out
}

/// The shard (0-based) of each item. Without weights: items in (id, transport) order, dealt round-robin. With
/// weights: longest first onto the least loaded shard (ties to the lower shard); an item the weights do not know
/// counts as their median.
pub fn assign(items: &[(String, Transport)], count: usize, weights: &BTreeMap<(String, Transport), u64>) -> Vec<usize> {
    let count = count.max(1);
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by(|a, b| items[*a].cmp(&items[*b]));
    let mut out = vec![0; items.len()];
    if weights.is_empty() {
        for (k, i) in order.into_iter().enumerate() {
            out[i] = k % count;
        }
        return out;
    }
    let mut known: Vec<u64> = weights.values().copied().collect();
    known.sort_unstable();
    let median = known[known.len() / 2];
    let w = |i: usize| weights.get(&items[i]).copied().unwrap_or(median).max(1);
    // Stable: equal weights keep the (id, transport) order.
    order.sort_by_key(|i| std::cmp::Reverse(w(*i)));
    let mut load = vec![0u64; count];
    for i in order {
        let s = (0..count).min_by_key(|s| (load[*s], *s)).expect("count ≥ 1");
        load[s] += w(i);
        out[i] = s;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(n: usize) -> Vec<(String, Transport)> {
        (0..n).map(|i| (format!("s{i:02}"), if i % 2 == 0 { Transport::Plain } else { Transport::Tls })).collect()
    }

    #[test]
    fn every_item_lands_in_exactly_one_shard() {
        for n in [1, 2, 3, 7] {
            let it = items(23);
            let a = assign(&it, n, &BTreeMap::new());
            assert!(a.iter().all(|s| *s < n));
            let sizes: Vec<usize> = (0..n).map(|s| a.iter().filter(|x| **x == s).count()).collect();
            assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1, "{sizes:?}");
            // The same input gives the same split, whatever the order it comes in.
            let mut rev = it.clone();
            rev.reverse();
            let b = assign(&rev, n, &BTreeMap::new());
            for (k, x) in rev.iter().enumerate() {
                assert_eq!(b[k], a[it.iter().position(|y| y == x).unwrap()]);
            }
        }
    }

    #[test]
    fn durations_balance_the_shards() {
        let it = items(10);
        let mut w = BTreeMap::new();
        w.insert(it[0].clone(), 1000);
        for x in &it[1..] {
            w.insert(x.clone(), 100);
        }
        let a = assign(&it, 2, &w);
        // The long one alone with fewer others: 1000 + 0..1 vs 900.
        let load: Vec<u64> = (0..2).map(|s| (0..10).filter(|i| a[*i] == s).map(|i| w[&it[i]]).sum()).collect();
        assert!(load.iter().max().unwrap() - load.iter().min().unwrap() <= 100, "{load:?}");
        assert_eq!(Shard::parse("2/4").unwrap().index, 2);
        for bad in ["0/2", "3/2", "x/2", "2", "1/0"] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
    }
}
