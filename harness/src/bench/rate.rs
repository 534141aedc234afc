//! Tunnel setup rate: `concurrency` clients, each opening a tunnel to the echo origin (TCP, TLS to a TLS proxy,
//! CONNECT, the 2xx), closing it with a reset (so neither side piles up TIME_WAIT), and starting over, for a
//! fixed time. Counts tunnels per second, the setup latency's percentiles and the errors by kind.

use std::{collections::BTreeMap, time::Duration};

use tokio::time::Instant;

use super::path::{OriginAddrs, Route, To, open};

/// What one setup-rate run saw.
#[derive(Debug, Clone, Default)]
pub struct RateRun {
    pub tunnels: u64,
    pub elapsed: Duration,
    /// Setup latencies of the successful tunnels, in microseconds (sorted).
    pub latencies_us: Vec<u64>,
    pub errors: BTreeMap<String, u64>,
}

impl RateRun {
    pub fn per_second(&self) -> f64 {
        self.tunnels as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The `p`-th percentile latency in milliseconds (nearest rank), if any tunnel opened.
    pub fn percentile_ms(&self, p: f64) -> Option<f64> {
        if self.latencies_us.is_empty() {
            return None;
        }
        let rank = ((p / 100.0) * self.latencies_us.len() as f64).ceil().max(1.0) as usize;
        Some(self.latencies_us[rank.min(self.latencies_us.len()) - 1] as f64 / 1000.0)
    }
}

/// Runs `concurrency` clients for `duration`; no new tunnel starts after it, and one in flight is bounded by
/// `open_timeout`, so a proxy that never answers stops the run at `duration + open_timeout`.
pub async fn run(
    route: &Route,
    origins: &OriginAddrs,
    concurrency: usize,
    duration: Duration,
    open_timeout: Duration,
) -> RateRun {
    let started = Instant::now();
    let stop = started + duration;
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (route, origins) = (route.clone(), *origins);
        set.spawn(async move {
            let mut mine = RateRun::default();
            while Instant::now() < stop {
                let t = Instant::now();
                match open(&route, &origins, To::Echo, t + open_timeout, true).await {
                    Ok(io) => {
                        mine.latencies_us.push(t.elapsed().as_micros() as u64);
                        mine.tunnels += 1;
                        drop(io);
                    }
                    Err(e) => {
                        *mine.errors.entry(e.kind()).or_default() += 1;
                        // A refusing proxy answers at once: do not spin on it.
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
            }
            mine
        });
    }
    let mut all = RateRun::default();
    while let Some(r) = set.join_next().await {
        if let Ok(r) = r {
            all.tunnels += r.tunnels;
            all.latencies_us.extend(r.latencies_us);
            for (k, v) in r.errors {
                *all.errors.entry(k).or_default() += v;
            }
        }
    }
    all.elapsed = started.elapsed();
    all.latencies_us.sort_unstable();
    all
}
