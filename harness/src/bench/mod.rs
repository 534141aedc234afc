//! `connect-harness bench`: how fast a proxy is and what a tunnel costs, measured beside the direct path (and,
//! with `--yardstick`, a bare splice relay) in the same run, so every figure is also a ratio. Phases:
//! throughput through one tunnel (upload, download, echo; over HTTP/2 also split over many CONNECT streams on
//! one connection), the tunnel setup rate at several concurrencies, and the proxy's memory per idle tunnel. CPU and memory come from `/proc` for the processes named with `--pid`.
//!
//! Subjects are measured interleaved (every round goes through all of them, starting one further each round)
//! so drift on a busy machine touches them alike; figures are medians over the rounds.

pub mod idle;
pub mod origins;
pub mod path;
pub mod procfs;
pub mod rate;
pub mod report;
pub mod throughput;
pub mod yardstick;

use std::{collections::BTreeMap, time::Duration};

use tokio::time::Instant;

use path::{OriginAddrs, Route};
use report::{BenchReport, IdleRow, Machine, RateRow, SubjectInfo, SubjectKind, ThroughputRow, median};
use throughput::Direction;

/// The phases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Phase {
    Throughput,
    Rate,
    Idle,
}

/// One thing measured: the direct path, the yardstick, or a proxy endpoint.
#[derive(Clone)]
pub struct Subject {
    pub info: SubjectInfo,
    pub route: Route,
}

/// What to measure.
pub struct BenchSpec {
    /// Direct first (the baseline); then the yardstick and the proxies.
    pub subjects: Vec<Subject>,
    pub origins: OriginAddrs,
    pub phases: Vec<Phase>,
    pub concurrency: Vec<usize>,
    pub tunnels: Vec<usize>,
    pub seconds: f64,
    pub rounds: usize,
    /// Deadline of a tunnel's setup.
    pub open_timeout: Duration,
    /// The open-file limit in force.
    pub fd_limit: u64,
}

/// Progress lines for the terminal (or nothing).
pub trait Progress: Send + Sync {
    fn message(&self, _text: &str) {}
}

/// No progress output.
pub struct Quiet;
impl Progress for Quiet {}

/// Bytes of the warm-up run that sizes a subject's runs, and the bounds of a run's size.
const CALIBRATE: u64 = 128 << 20;
const MIN_BYTES: u64 = 32 << 20;
const MAX_BYTES: u64 = 64 << 30;

/// Runs the phases.
pub async fn run(spec: &BenchSpec, progress: &dyn Progress) -> BenchReport {
    let mut report = BenchReport {
        tool: format!("connect-harness {}", env!("CARGO_PKG_VERSION")),
        started: crate::report::rfc3339(std::time::SystemTime::now()),
        machine: Machine {
            cpus: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            kernel: kernel(),
            fd_limit: spec.fd_limit,
        },
        seconds: spec.seconds,
        rounds: spec.rounds,
        subjects: spec.subjects.iter().map(|s| s.info.clone()).collect(),
        throughput: Vec::new(),
        rate: Vec::new(),
        idle: Vec::new(),
        notes: Vec::new(),
    };
    for s in &spec.subjects {
        if s.info.kind == SubjectKind::Proxy && !s.info.accounted() {
            report.notes.push(format!("{}: no --pid or --pgid, so no CPU or memory figures", s.info.label));
        }
    }
    if spec.phases.contains(&Phase::Throughput) {
        throughput_phase(spec, &mut report, progress).await;
    }
    // Idle before rate: the rate phase's hundreds of concurrent tunnels leave memory the allocator keeps, which
    // would hide what idle tunnels cost.
    if spec.phases.contains(&Phase::Idle) {
        idle_phase(spec, &mut report, progress).await;
    }
    if spec.phases.contains(&Phase::Rate) {
        rate_phase(spec, &mut report, progress).await;
    }
    report
}

fn kernel() -> String {
    let read = |p: &str| std::fs::read_to_string(p).map(|s| s.trim().to_string()).unwrap_or_default();
    format!("{} {}", read("/proc/sys/kernel/ostype"), read("/proc/sys/kernel/osrelease")).trim().to_string()
}

/// The subject's CPU seconds so far: its processes', or for the yardstick its pump threads'.
fn cpu(info: &SubjectInfo) -> Option<f64> {
    if info.kind == SubjectKind::Yardstick {
        return Some(yardstick::cpu_seconds());
    }
    procfs::usage(&info.processes()).ok().flatten().map(|u| u.cpu_seconds)
}

/// The deadline of one throughput run: generous against a slow path (a stall ends it sooner, see
/// [`throughput::STALL`]).
fn transfer_deadline(spec: &BenchSpec) -> Instant {
    Instant::now() + Duration::from_secs_f64((spec.seconds * 20.0).max(30.0))
}

async fn throughput_phase(spec: &BenchSpec, report: &mut BenchReport, progress: &dyn Progress) {
    // Warm-up (unmeasured) of every subject and direction, which also sizes its runs: each subject moves what it
    // moves in about `seconds`, so a slow proxy is measured as slow, not cut off. A subject that fails it is
    // reported and skipped.
    let mut failed: BTreeMap<(usize, Direction), String> = BTreeMap::new();
    let mut sizes: BTreeMap<(usize, Direction), u64> = BTreeMap::new();
    for (i, s) in spec.subjects.iter().enumerate() {
        for d in Direction::ALL {
            let r =
                throughput::transfer(&s.route, &spec.origins, d, CALIBRATE, spec.open_timeout, transfer_deadline(spec))
                    .await;
            match r {
                Ok(t) => {
                    let rate = CALIBRATE as f64 / t.as_secs_f64().max(1e-6);
                    sizes.insert((i, d), ((rate * spec.seconds) as u64).clamp(MIN_BYTES, MAX_BYTES) & !((1 << 20) - 1));
                }
                Err(e) => {
                    progress.message(&format!("{} {}: {e}", s.info.label, d.as_str()));
                    failed.insert((i, d), e.to_string());
                }
            }
        }
    }
    progress.message(&format!("throughput: {} rounds", spec.rounds));
    let n = spec.subjects.len();
    let mut runs: BTreeMap<(usize, Direction), (Vec<f64>, Vec<f64>)> = BTreeMap::new();
    for round in 0..spec.rounds {
        for d in Direction::ALL {
            for k in 0..n {
                let i = (k + round) % n;
                if failed.contains_key(&(i, d)) {
                    continue;
                }
                let s = &spec.subjects[i];
                let bytes = sizes[&(i, d)];
                let cpu0 = cpu(&s.info);
                let r =
                    throughput::transfer(&s.route, &spec.origins, d, bytes, spec.open_timeout, transfer_deadline(spec))
                        .await;
                let cpu1 = cpu(&s.info);
                match r {
                    Ok(t) => {
                        let gib = bytes as f64 / (1u64 << 30) as f64;
                        let e = runs.entry((i, d)).or_default();
                        e.0.push(gib / t.as_secs_f64().max(1e-9));
                        if let (Some(a), Some(b)) = (cpu0, cpu1) {
                            let relayed = if d == Direction::Echo { 2.0 * gib } else { gib };
                            e.1.push((b - a) / relayed);
                        }
                    }
                    Err(e) => {
                        progress.message(&format!("{} {}: {e}", s.info.label, d.as_str()));
                        failed.insert((i, d), e.to_string());
                    }
                }
            }
        }
        progress.message(&format!("throughput: round {} of {} done", round + 1, spec.rounds));
    }
    for d in Direction::ALL {
        let direct = runs.get(&(0, d)).and_then(|r| median(&r.0));
        for (i, s) in spec.subjects.iter().enumerate() {
            let r = runs.get(&(i, d));
            let g = r.and_then(|r| median(&r.0));
            report.throughput.push(ThroughputRow {
                subject: s.info.label.clone(),
                direction: d,
                bytes: sizes.get(&(i, d)).copied().unwrap_or(0),
                gib_per_s: g,
                runs: r.map(|r| r.0.clone()).unwrap_or_default(),
                vs_direct: g.zip(direct).map(|(g, d)| g / d),
                cpu_s_per_gib: r.and_then(|r| median(&r.1)),
                error: failed.get(&(i, d)).cloned(),
            });
        }
    }
}

async fn rate_phase(spec: &BenchSpec, report: &mut BenchReport, progress: &dyn Progress) {
    // The yardstick is a throughput yardstick: a thread pair per connection, set up one at a time, says nothing
    // about setup rates.
    // Nor do the multi-stream HTTP/2 subjects: their tunnels are set up as the one-stream subject's are.
    let subjects: Vec<&Subject> =
        spec.subjects.iter().filter(|s| s.info.kind != SubjectKind::Yardstick && s.info.streams.is_none()).collect();
    let n = subjects.len();
    let duration = Duration::from_secs_f64(spec.seconds);
    for &c in &spec.concurrency {
        let mut runs: Vec<Vec<(rate::RateRun, Option<f64>)>> = vec![Vec::new(); n];
        for round in 0..spec.rounds {
            for k in 0..n {
                let i = (k + round) % n;
                let s = subjects[i];
                let cpu0 = cpu(&s.info);
                let r = rate::run(&s.route, &spec.origins, c, duration, spec.open_timeout).await;
                let cpu1 = cpu(&s.info);
                let per_tunnel =
                    cpu0.zip(cpu1).filter(|_| r.tunnels > 0).map(|(a, b)| (b - a) * 1000.0 / r.tunnels as f64);
                runs[i].push((r, per_tunnel));
                // Let the previous subject's closed connections settle before the next measures.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        for (i, s) in subjects.iter().enumerate() {
            let mut rs = std::mem::take(&mut runs[i]);
            rs.sort_by(|a, b| a.0.per_second().total_cmp(&b.0.per_second()));
            let mid = &rs[rs.len() / 2].0;
            let mut errors = BTreeMap::new();
            for (r, _) in &rs {
                for (k, v) in &r.errors {
                    *errors.entry(k.clone()).or_default() += v;
                }
            }
            let total: u64 = rs.iter().map(|(r, _)| r.tunnels).sum();
            let row = RateRow {
                subject: s.info.label.clone(),
                concurrency: c,
                tunnels_per_s: mid.per_second(),
                runs: rs.iter().map(|(r, _)| r.per_second()).collect(),
                p50_ms: mid.percentile_ms(50.0),
                p99_ms: mid.percentile_ms(99.0),
                cpu_ms_per_tunnel: median(&rs.iter().filter_map(|(_, c)| *c).collect::<Vec<_>>()),
                stalled: total == 0 && errors.contains_key("timeout"),
                errors,
            };
            progress.message(&format!(
                "rate: {} C={c}: {:.0} tunnels/s{}",
                row.subject,
                row.tunnels_per_s,
                if row.stalled { " (stalled)" } else { "" }
            ));
            report.rate.push(row);
        }
    }
}

async fn idle_phase(spec: &BenchSpec, report: &mut BenchReport, progress: &dyn Progress) {
    // Each tunnel holds two of our descriptors (the client's, and the origin's: the origins run here).
    let fits = (spec.fd_limit.saturating_sub(512) / 2) as usize;
    // Each subject's memory before its first round: freed tunnels of an earlier round stay with the allocator,
    // so a later round measured from its own start would look almost free.
    let mut baseline: BTreeMap<String, Option<procfs::Usage>> = BTreeMap::new();
    let mut noted_shared = false;
    for &want in &spec.tunnels {
        // Subjects that share processes (a proxy's plain and TLS listeners): the later one in a round is measured
        // from the RSS the earlier one's round left, not from the baseline, which would count both.
        let mut seen: Vec<(Vec<u32>, Vec<u32>)> = Vec::new();
        let n = if want > fits {
            report.notes.push(format!(
                "idle: {want} tunnels need {} open files here and the limit is {}; measured {fits}",
                2 * want + 512,
                spec.fd_limit
            ));
            fits
        } else {
            want
        };
        for s in spec.subjects.iter().filter(|s| s.info.kind == SubjectKind::Proxy && s.info.streams.is_none()) {
            let key = (s.info.pids.clone(), s.info.pgids.clone());
            let shared = s.info.accounted() && seen.contains(&key);
            seen.push(key);
            let before = if shared {
                if !noted_shared {
                    noted_shared = true;
                    report.notes.push(format!(
                        "idle: {} shares processes with a subject measured before it in the same round; its figures \
                         start from the RSS that round left (memory the allocator kept from it may be reused, so they \
                         can read low)",
                        s.info.label
                    ));
                }
                procfs::usage(&s.info.processes()).ok().flatten()
            } else {
                *baseline
                    .entry(s.info.label.clone())
                    .or_insert_with(|| procfs::usage(&s.info.processes()).ok().flatten())
            };
            let held = idle::hold(&s.route, &spec.origins, n, spec.open_timeout, 64.max(n as u64 / 20)).await;
            tokio::time::sleep(Duration::from_millis(500)).await;
            let with = procfs::usage(&s.info.processes()).ok().flatten();
            let opened = held.tunnels.len();
            let per = |a: u64, b: u64| (opened > 0).then(|| (b as f64 - a as f64) / opened as f64);
            let row = IdleRow {
                subject: s.info.label.clone(),
                requested: n,
                opened,
                errors: held.errors.clone(),
                rss_before_kib: before.map(|u| u.rss_kib),
                rss_with_kib: with.map(|u| u.rss_kib),
                rss_kib_per_tunnel: before.zip(with).and_then(|(a, b)| per(a.rss_kib, b.rss_kib)),
                pss_kib_per_tunnel: before.zip(with).and_then(|(a, b)| per(a.pss_kib, b.pss_kib)),
            };
            progress.message(&format!("idle: {} {} of {n} tunnels open", s.info.label, opened));
            drop(held);
            // Give the proxy time to close the tunnels before the next subject (or count) measures.
            tokio::time::sleep(Duration::from_millis(1000)).await;
            report.idle.push(row);
        }
    }
}
