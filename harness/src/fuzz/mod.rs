//! `connect-harness fuzz`: grammar-aware fuzzing of a live proxy. Cases come from proptest strategies
//! ([`case`]), run against the proxy with the harness's instrumented origins ([`probe`]), and are judged by
//! oracles ([`oracle`]): liveness, target integrity, nothing acted on after a rejection, well-formedness, and the
//! difference from the strict parser. Each distinct finding (its signature) is shrunk against the live proxy and
//! written as a scenario file, so it becomes a regression check (`run --scenarios DIR`).

pub mod case;
pub mod oracle;
pub mod output;
pub mod probe;
pub mod seed;

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use proptest::strategy::{Strategy, ValueTree};
use serde::Serialize;
use tokio::time::Instant;

use crate::{
    exec::{ProxyEndpoint, Settings},
    origin::{OriginSet, Pool},
    scenario::{OriginKind, Transport},
};
use case::Case;
use oracle::{Oracle, Violation};

/// The origins a fuzz worker holds for its whole life.
const KINDS: [OriginKind; 3] = [OriginKind::Echo, OriginKind::Echo2, OriginKind::Closed];

/// What a campaign does.
#[derive(Clone)]
pub struct Campaign {
    pub endpoints: Vec<ProxyEndpoint>,
    pub settings: Settings,
    pub seed: u64,
    /// Stop after this many cases (across transports)…
    pub cases: Option<u64>,
    /// …or after this long, whichever comes first.
    pub duration: Option<Duration>,
    pub jobs: usize,
    /// Deadline of one case's waits.
    pub timeout: Duration,
    /// A liveness probe after every this many cases of a worker (and after any case the proxy did not answer).
    pub liveness_every: u64,
    /// Bound on the proxy runs spent shrinking one finding.
    pub shrink_runs: usize,
}

/// One distinct finding, shrunk.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Finding {
    #[serde(flatten)]
    pub violation: Violation,
    pub transport: Transport,
    pub seed: u64,
    /// The first case number (of this seed) that showed it.
    pub first_case: u64,
    /// How many cases showed it.
    pub count: u64,
    /// The shrunk case and its bytes as a template (what the reproducer sends).
    pub case: Case,
    pub template: String,
    /// Proxy runs spent shrinking; whether the shrunk case still showed the finding when last run.
    pub shrink_runs: usize,
    pub reproduced: bool,
    /// The reproducer scenario file, when `--out` was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reproducer: Option<String>,
    /// The reason from `--expect`, when the finding is known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub known: Option<String>,
}

/// Progress events for a reporter (a progress bar, or nothing).
pub trait Progress: Send + Sync {
    fn case_done(&self, _done: u64, _findings: usize, _alive: bool) {}
    fn message(&self, _text: &str) {}
}

/// No progress output.
pub struct Quiet;
impl Progress for Quiet {}

/// What a campaign did.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Outcome {
    pub seed: u64,
    pub cases: u64,
    pub duration_ms: u64,
    pub cases_per_second: f64,
    /// Liveness probes that failed (each also a finding, unless the proxy never came back).
    pub unresponsive: u64,
    pub findings: Vec<Finding>,
}

/// First sighting of a signature.
#[derive(Debug, Clone)]
struct Seen {
    violation: Violation,
    transport: usize,
    first_case: u64,
    count: u64,
    /// For liveness: the cases a worker ran since its last good probe (the culprit is among them).
    candidates: Vec<u64>,
}

/// Runs the campaign: the cases, then shrinking of each distinct finding.
pub async fn run(c: &Campaign, pool: Arc<Pool>, progress: Arc<dyn Progress>) -> Outcome {
    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let unresponsive = Arc::new(AtomicU64::new(0));
    let seen: Arc<Mutex<BTreeMap<(String, usize), Seen>>> = Arc::default();
    let stop_at = c.duration.map(|d| started + d);
    let mut workers = tokio::task::JoinSet::new();
    // The latest cases of every worker: a proxy that stops answering stops for all, so the case that stopped
    // it may be another worker's.
    let recent: Arc<Mutex<std::collections::VecDeque<u64>>> = Arc::default();
    let recent_cap = (c.jobs.max(1) as u64 * c.liveness_every * 2).min(4096) as usize;
    for _ in 0..c.jobs.max(1) {
        let recent = recent.clone();
        let (c, pool, next, done, seen, progress, unresponsive) =
            (c.clone(), pool.clone(), next.clone(), done.clone(), seen.clone(), progress.clone(), unresponsive.clone());
        workers.spawn(async move {
            let Ok(set) = pool.lease(&KINDS).await else { return };
            let localhost = KINDS.iter().all(|k| set.on_localhost(*k));
            let strategy = case::strategy();
            let mut since_probe: Vec<u64> = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if c.cases.is_some_and(|n| i >= n) || stop_at.is_some_and(|t| Instant::now() >= t) {
                    break;
                }
                let t = (i % c.endpoints.len() as u64) as usize;
                let ep = &c.endpoints[t];
                let Ok(case) = strategy.new_tree(&mut case::runner_for(c.seed, i)).map(|t| t.current()) else {
                    continue;
                };
                let case = if localhost { case } else { case.without_names() };
                since_probe.push(i);
                {
                    let mut r = recent.lock().expect("recent");
                    if r.len() >= recent_cap {
                        r.pop_front();
                    }
                    r.push_back(i);
                }
                let result = probe::run(&case, &set, ep, &c.settings, c.timeout).await;
                let unanswered = match &result {
                    // An incomplete head is not expected to be answered.
                    Ok(f) => {
                        matches!(f.answer, crate::exec::observe::Observed::Timeout { .. })
                            && !probe::incomplete(&f.parser, &f.parsed)
                    }
                    Err(_) => true,
                };
                if let Ok(facts) = &result {
                    let violations = oracle::judge(&case, facts);
                    let mut s = seen.lock().expect("seen");
                    for v in violations {
                        s.entry((v.signature.clone(), t)).and_modify(|e| e.count += 1).or_insert(Seen {
                            violation: v,
                            transport: t,
                            first_case: i,
                            count: 1,
                            candidates: Vec::new(),
                        });
                    }
                }
                let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                let mut alive = true;
                if unanswered || since_probe.len() as u64 >= c.liveness_every {
                    if let Err(why) = probe::alive(&set, ep, &c.settings, c.timeout).await {
                        alive = false;
                        unresponsive.fetch_add(1, Ordering::Relaxed);
                        let v = liveness_violation(&why);
                        let candidates: Vec<u64> = recent.lock().expect("recent").iter().copied().collect();
                        {
                            let mut s = seen.lock().expect("seen");
                            let e = s.entry((v.signature.clone(), t)).or_insert(Seen {
                                violation: v,
                                transport: t,
                                first_case: i,
                                count: 0,
                                candidates: Vec::new(),
                            });
                            e.count += 1;
                            if e.candidates.is_empty() {
                                e.candidates = candidates;
                            }
                        }
                        progress.message(&format!("the proxy stopped answering after case {i}: {why}"));
                        // Wait (bounded) for it to come back before going on.
                        wait_alive(&set, ep, &c.settings, c.timeout, Duration::from_secs(30)).await;
                    }
                    since_probe.clear();
                }
                let findings = seen.lock().expect("seen").len();
                progress.case_done(n, findings, alive);
            }
        });
    }
    while workers.join_next().await.is_some() {}
    let cases = done.load(Ordering::Relaxed);
    let elapsed = started.elapsed();
    let seen = std::mem::take(&mut *seen.lock().expect("seen"));
    let mut findings = Vec::new();
    if let Ok(set) = pool.lease(&KINDS).await {
        for ((_, t), s) in seen {
            progress.message(&format!("shrinking {} ({})", s.violation.signature, c.endpoints[t].transport.as_str()));
            findings.push(shrink(c, &set, s).await);
        }
    }
    let rank = |l: crate::scenario::Level| match l {
        crate::scenario::Level::Must => 0,
        crate::scenario::Level::Should => 1,
        _ => 2,
    };
    findings.sort_by(|a, b| {
        (rank(a.violation.level), &a.violation.signature, a.transport.as_str()).cmp(&(
            rank(b.violation.level),
            &b.violation.signature,
            b.transport.as_str(),
        ))
    });
    Outcome {
        seed: c.seed,
        cases,
        duration_ms: elapsed.as_millis() as u64,
        cases_per_second: cases as f64 / elapsed.as_secs_f64().max(1e-3),
        unresponsive: unresponsive.load(Ordering::Relaxed),
        findings,
    }
}

fn liveness_violation(why: &str) -> Violation {
    Violation {
        oracle: Oracle::Liveness,
        signature: "liveness/unresponsive".into(),
        level: crate::scenario::Level::Should,
        catalog: "B05".into(),
        requirement: oracle::LIVENESS.into(),
        detail: format!("after the case, a well-formed CONNECT failed: {why}"),
    }
}

/// Polls until the proxy answers a well-formed CONNECT again, at most `limit`.
async fn wait_alive(
    set: &OriginSet,
    ep: &ProxyEndpoint,
    settings: &Settings,
    timeout: Duration,
    limit: Duration,
) -> bool {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if probe::alive(set, ep, settings, timeout).await.is_ok() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

/// Whether `case` shows the finding `signature` on this transport now.
async fn reproduces(c: &Campaign, set: &OriginSet, ep: &ProxyEndpoint, case: &Case, signature: &str) -> bool {
    reproduction(c, set, ep, case, signature).await.is_some()
}

/// The violation `case` shows now with this signature, if it does.
async fn reproduction(
    c: &Campaign,
    set: &OriginSet,
    ep: &ProxyEndpoint,
    case: &Case,
    signature: &str,
) -> Option<Violation> {
    let owned;
    let case = if KINDS.iter().all(|k| set.on_localhost(*k)) {
        case
    } else {
        owned = case.clone().without_names();
        &owned
    };
    if signature == "liveness/unresponsive" {
        // Only a proxy that answered before the case can show that the case stopped it.
        if !wait_alive(set, ep, &c.settings, c.timeout, Duration::from_secs(30)).await {
            return None;
        }
        let _ = probe::run(case, set, ep, &c.settings, c.timeout).await;
        return match probe::alive(set, ep, &c.settings, c.timeout).await {
            Ok(()) => None,
            Err(why) => {
                wait_alive(set, ep, &c.settings, c.timeout, Duration::from_secs(30)).await;
                Some(liveness_violation(&why))
            }
        };
    }
    match probe::run(case, set, ep, &c.settings, c.timeout).await {
        Ok(f) => oracle::judge(case, &f).into_iter().find(|v| v.signature == signature),
        Err(_) => None,
    }
}

/// Shrinks a finding against the live proxy (proptest's simplify/complicate walk, bounded by `shrink_runs`).
async fn shrink(c: &Campaign, set: &OriginSet, s: Seen) -> Finding {
    let ep = &c.endpoints[s.transport];
    let strategy = case::strategy();
    let sig = s.violation.signature.clone();
    let mut runs = 0usize;
    // For liveness, find the culprit among the cases since the last good probe (the last one first).
    let mut first = s.first_case;
    if sig == "liveness/unresponsive" {
        for &i in s.candidates.iter().rev() {
            if runs >= c.shrink_runs + s.candidates.len() {
                break;
            }
            let Ok(candidate) = strategy.new_tree(&mut case::runner_for(c.seed, i)).map(|t| t.current()) else {
                continue;
            };
            runs += 1;
            if reproduces(c, set, ep, &candidate, &sig).await {
                first = i;
                break;
            }
        }
    }
    let mut tree = strategy.new_tree(&mut case::runner_for(c.seed, first)).expect("strategy");
    let mut best = tree.current();
    runs += 1;
    let mut reproduced = reproduces(c, set, ep, &best, &sig).await;
    if reproduced && tree.simplify() {
        while runs < c.shrink_runs {
            runs += 1;
            let cur = tree.current();
            if reproduces(c, set, ep, &cur, &sig).await {
                best = cur;
                if !tree.simplify() {
                    break;
                }
            } else if !tree.complicate() {
                break;
            }
        }
    }
    let mut violation = s.violation;
    if reproduced {
        // The shrunk case, run once more: it must still show the finding (its detail then describes this case).
        runs += 1;
        match reproduction(c, set, ep, &best, &sig).await {
            Some(v) => violation = v,
            None => reproduced = false,
        }
    }
    // What was really sent, when the set is not on 127.0.0.1.
    let best = if KINDS.iter().all(|k| set.on_localhost(*k)) { best } else { best.without_names() };
    Finding {
        template: best.render(),
        violation,
        transport: ep.transport,
        seed: c.seed,
        first_case: s.first_case,
        count: s.count,
        case: best,
        shrink_runs: runs,
        reproduced,
        reproducer: None,
        known: None,
    }
}
