//! The runner: plans scenario × transport items, runs them concurrently, judges each, and emits events
//! for the reporters (terminal, JSON, JUnit) to consume.

use std::{
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use tokio::sync::{Semaphore, mpsc};

use crate::{
    exec::{self, ProxyEndpoint, Settings, report::StepResult},
    expect::Deviations,
    judge::{Verdict, judge},
    origin::Pool,
    report::{Metadata, ScenarioResult, Summary},
    scenario::{
        Loaded, Needs, Step, Transport,
        template::{AddrForm, Piece, Template},
    },
};

/// What reporters receive, in order: `Started`, then one `Finished` per item, then `Done`.
#[derive(Debug, Clone)]
pub enum Event {
    Started {
        total: usize,
        metadata: Box<Metadata>,
    },
    Finished(Box<ScenarioResult>),
    Done {
        metadata: Box<Metadata>,
        summary: Summary,
        findings: Vec<crate::report::findings::Finding>,
        /// `--expect` entries that no longer describe the proxy.
        stale: Vec<crate::expect::Stale>,
    },
}

/// Everything a run needs.
pub struct RunSpec {
    pub scenarios: Vec<Arc<Loaded>>,
    /// One endpoint per transport the proxy offers.
    pub endpoints: Vec<ProxyEndpoint>,
    pub settings: Settings,
    pub jobs: usize,
    pub deviations: Deviations,
    pub target_label: String,
    pub fail_on: crate::scenario::Level,
    /// Run only this shard's items (`--shard I/N`); the handshake owner runs in every shard (`report merge`
    /// keeps its worst verdict).
    pub shard: Option<crate::shard::Shard>,
    /// The instrumented parent proxy and the endpoints of the proxy that uses it, for chained scenarios
    /// (`needs = ["upstream"]`); without it they are skipped.
    pub chained: Option<Chained>,
}

/// A proxy under test configured with the harness's parent proxy.
#[derive(Clone)]
pub struct Chained {
    pub parent: Arc<crate::origin::parent::Parent>,
    /// Where to reach the chained proxy: the proxy under test itself (`--upstream-proxy-port`), or the embedded
    /// reference proxy's chained instance.
    pub endpoints: Vec<ProxyEndpoint>,
}

/// The endpoints a scenario runs against: the chained proxy's for chained scenarios.
fn endpoints_for<'a>(s: &crate::scenario::Scenario, spec: &'a RunSpec) -> &'a [ProxyEndpoint] {
    match &spec.chained {
        Some(c) if s.needs.contains(&Needs::Upstream) => &c.endpoints,
        _ => &spec.endpoints,
    }
}

/// Why an item cannot run here, if it cannot.
fn skip_reason(loaded: &Loaded, transport: Transport, spec: &RunSpec, pool: &Pool) -> Option<String> {
    let ipv6 = pool.ipv6();
    let s = &loaded.scenario;
    if s.needs.contains(&Needs::Upstream) && spec.chained.is_none() {
        return Some(
            "needs the proxy under test chained to the harness's parent proxy (--upstream-proxy-port; README, \
             \"Chained proxies\")"
                .into(),
        );
    }
    if s.needs.contains(&Needs::UpstreamCredentials)
        && spec.chained.as_ref().is_some_and(|c| c.parent.credentials().is_none())
    {
        return Some("needs the credentials the proxy presents to its parent (--upstream-proxy-credentials)".into());
    }
    if !endpoints_for(s, spec).iter().any(|e| e.transport == transport) {
        return Some(format!("the proxy under test has no {} transport", transport.as_str()));
    }
    if transport.is_h2()
        && let Some(reason) = crate::scenario::h2::skip_reason(s)
    {
        return Some(reason);
    }
    if s.needs.contains(&Needs::Auth) && spec.settings.proxy_user.is_none() {
        return Some("needs proxy credentials (--proxy-user)".into());
    }
    if (s.needs.contains(&Needs::Ipv6) || uses_v6(loaded)) && !ipv6 {
        return Some("needs an IPv6 loopback address for the origins".into());
    }
    pool.localhost_unavailable(&loaded.localhost_origins())
}

fn uses_v6(loaded: &Loaded) -> bool {
    let mut texts = vec![loaded.scenario.target.as_str()];
    for step in &loaded.scenario.steps {
        match step {
            Step::Send(t) => texts.push(t),
            Step::Connect(c) => {
                texts.extend(c.target.as_deref());
                texts.extend(c.host.iter().flatten().map(String::as_str));
            }
            _ => {}
        }
    }
    texts
        .iter()
        .filter_map(|t| Template::parse(t).ok())
        .any(|t| t.0.iter().any(|p| matches!(p, Piece::Origin(_, AddrForm::V6))))
}

fn base_result(loaded: &Loaded, transport: Transport) -> ScenarioResult {
    let s = &loaded.scenario;
    let acceptable = s
        .steps
        .iter()
        .enumerate()
        .filter_map(|(i, st)| match st {
            Step::Expect(e) => Some(format!(
                "step {}: {}",
                i + 1,
                e.outcomes().iter().map(|o| o.to_string()).collect::<Vec<_>>().join(" | ")
            )),
            _ => None,
        })
        .collect();
    ScenarioResult {
        id: s.id.clone(),
        title: s.title.clone(),
        level: s.level,
        requirement: s.requirement.clone(),
        section: s.section.clone(),
        transport,
        verdict: Verdict::Skip,
        reason: None,
        acceptable,
        observed: None,
        steps: Vec::new(),
        origins: Vec::new(),
        tls: None,
        transcript: None,
        duration_ms: 0,
        started_ms: 0,
        deviation: None,
        proxy_log: Vec::new(),
        source: format!("{}:{}", loaded.file, loaded.line),
        catalog: s.catalog.clone(),
    }
}

/// A generous overall bound per scenario, a safety net behind the per-step deadlines.
fn overall_deadline(loaded: &Loaded, step: Duration) -> Duration {
    let bulk: u64 = loaded
        .scenario
        .steps
        .iter()
        .map(|s| match s {
            Step::Echo(n) | Step::SendRandom(n) => *n * 1000 / exec::MIN_RATE,
            _ => 0,
        })
        .sum();
    step * (loaded.scenario.steps.len() as u32 + 3) + Duration::from_millis(bulk) + Duration::from_secs(5)
}

/// The scenario that owns the requirement that the proxy completes TLS handshakes: it runs after every other
/// scenario and fails when any of their handshakes failed twice (those are `setup` results of their own).
pub const HANDSHAKE_OWNER: &str = "tls/handshake-completes";

/// Runs one scenario on one transport and judges it; `t0` is the run's start.
async fn run_one(
    loaded: Arc<Loaded>,
    transport: Transport,
    spec: Arc<RunSpec>,
    pool: Arc<Pool>,
    t0: Instant,
) -> ScenarioResult {
    let loaded = crate::policy::apply(&loaded, spec.settings.policy.as_deref());
    let mut result = base_result(&loaded, transport);
    if let Some(reason) = skip_reason(&loaded, transport, &spec, &pool) {
        result.reason = Some(reason);
    } else {
        let ep = endpoints_for(&loaded.scenario, &spec)
            .iter()
            .find(|e| e.transport == transport)
            .expect("checked in skip_reason");
        // Leased before the clock starts: waiting for a set (one on 127.0.0.1, say) is not the scenario's time.
        let origins = pool.lease_with(&loaded.origins(), &loaded.localhost_origins()).await;
        let t = Instant::now();
        result.started_ms = t.duration_since(t0).as_millis() as u64;
        let logs = &spec.settings.proxy_logs;
        let marks = (!logs.is_empty()).then(|| logs.mark());
        let limit = overall_deadline(&loaded, spec.settings.step_timeout);
        let executed = match &origins {
            Ok(o) => {
                let parent = match &spec.chained {
                    Some(c) if loaded.scenario.needs.contains(&Needs::Upstream) => {
                        Some(c.parent.register(&o.ports(), loaded.scenario.parent.clone().unwrap_or_default()))
                    }
                    _ => None,
                };
                tokio::time::timeout(limit, exec::execute(&loaded, ep, &spec.settings, o, parent.as_ref())).await
            }
            Err(e) => {
                let report = exec::report::StepReport::new(
                    0,
                    "origins",
                    loaded.scenario.level,
                    StepResult::Error,
                    e.to_string(),
                );
                Ok(exec::Execution::failed(report, crate::client::transcript::Transcript::empty(), None))
            }
        };
        match executed {
            Ok(ex) => {
                let (verdict, reason) = judge(loaded.scenario.level, &ex.steps);
                result.verdict = verdict;
                result.reason = reason;
                result.steps = ex.steps;
                result.origins = ex.origins;
                result.observed = ex.observed;
                result.tls = ex.tls;
                result.transcript = Some(ex.transcript);
            }
            Err(_) => {
                result.verdict = Verdict::Error;
                result.reason = Some(format!("the scenario exceeded its overall deadline of {limit:?}"));
                result.steps = vec![exec::report::StepReport::new(
                    0,
                    "scenario",
                    loaded.scenario.level,
                    StepResult::Error,
                    "overall deadline exceeded",
                )];
            }
        }
        result.duration_ms = t.elapsed().as_millis() as u64;
        if let Some(marks) = marks {
            tokio::time::sleep(crate::proxy_log::SETTLE).await;
            result.proxy_log = logs.since(&marks);
        }
    }
    result.verdict = match result.verdict {
        Verdict::Skip if result.reason.is_none() => Verdict::Error,
        v => v,
    };
    result
}

/// The owner scenario's verdict, given the setup failures of the run: a passing owner fails when other
/// scenarios' handshakes failed twice.
fn judge_owner(owner: &mut ScenarioResult, others: &[ScenarioResult]) {
    let failed: Vec<&ScenarioResult> =
        others.iter().filter(|r| r.transport == owner.transport && r.verdict == Verdict::Setup).collect();
    if failed.is_empty() || !matches!(owner.verdict, Verdict::Pass | Verdict::Observed) {
        return;
    }
    let first = failed.iter().map(|r| r.started_ms).min().unwrap_or(0);
    owner.verdict = Verdict::Fail;
    owner.reason = Some(format!(
        "{} connection(s) or TLS handshake(s) of other scenarios did not complete, twice each (first at +{:.1}s, e.g. {}): the proxy \
         neither completed them nor aborted them with an alert (see the report's findings)",
        failed.len(),
        first as f64 / 1000.0,
        failed.iter().take(3).map(|r| r.id.as_str()).collect::<Vec<_>>().join(", ")
    ));
}

/// Runs every item; returns results sorted by id then transport. Events go to `tx` as items finish.
pub async fn run(spec: RunSpec, pool: Arc<Pool>, tx: mpsc::UnboundedSender<Event>) -> Outcome {
    let mut spec = spec;
    let started_at = SystemTime::now();
    let t0 = Instant::now();
    if spec.settings.preflight.is_none() {
        let pre = crate::preflight::run(&spec.endpoints, &spec.settings, &pool).await;
        spec.settings.preflight = Some(Arc::new(pre));
    }
    let jobs = spec.jobs.max(1).min(pool.capacity().unwrap_or(usize::MAX));
    let mut transports: Vec<Transport> = spec.endpoints.iter().map(|e| e.transport).collect();
    transports.sort();
    transports.dedup();
    let mut metadata = Metadata {
        harness_version: env!("CARGO_PKG_VERSION").to_string(),
        target: spec.target_label.clone(),
        transports,
        start_time: crate::report::rfc3339(started_at),
        duration_ms: 0,
        jobs,
        step_timeout_ms: spec.settings.step_timeout.as_millis() as u64,
        fail_on: spec.fail_on,
        preflight: spec.settings.preflight.as_ref().map(|p| p.probes.clone()).unwrap_or_default(),
        shard: spec.shard.as_ref().map(|s| s.label()),
        merged_from: Vec::new(),
        compact: false,
    };
    let items: Vec<(Arc<Loaded>, Transport)> =
        spec.scenarios.iter().flat_map(|l| l.scenario.transports.iter().map(move |t| (l.clone(), *t))).collect();
    let (owners, items): (Vec<_>, Vec<_>) = items.into_iter().partition(|(l, _)| l.scenario.id == HANDSHAKE_OWNER);
    let items = match &spec.shard {
        None => items,
        Some(sh) => {
            let keys: Vec<(String, Transport)> = items.iter().map(|(l, t)| (l.scenario.id.clone(), *t)).collect();
            let mine = crate::shard::assign(&keys, sh.count, &sh.weights);
            items.into_iter().zip(mine).filter(|(_, s)| *s + 1 == sh.index).map(|(x, _)| x).collect()
        }
    };
    let _ = tx.send(Event::Started { total: items.len() + owners.len(), metadata: Box::new(metadata.clone()) });

    let sem = Arc::new(Semaphore::new(jobs));
    let spec = Arc::new(spec);
    let mut set = tokio::task::JoinSet::new();
    for (loaded, transport) in items {
        let (sem, spec, pool, tx) = (sem.clone(), spec.clone(), pool.clone(), tx.clone());
        set.spawn(async move {
            let _permit = sem.acquire_owned().await.expect("semaphore never closes");
            let mut result = run_one(loaded, transport, spec.clone(), pool, t0).await;
            spec.deviations.apply(&mut result);
            let _ = tx.send(Event::Finished(Box::new(result.clone())));
            result
        });
    }
    let mut results = Vec::new();
    while let Some(r) = set.join_next().await {
        match r {
            Ok(r) => results.push(r),
            Err(e) => tracing::error!("scenario task failed: {e}"),
        }
    }
    for (loaded, transport) in owners {
        let mut result = run_one(loaded, transport, spec.clone(), pool.clone(), t0).await;
        judge_owner(&mut result, &results);
        spec.deviations.apply(&mut result);
        let _ = tx.send(Event::Finished(Box::new(result.clone())));
        results.push(result);
    }
    results.sort_by(|a, b| (&a.id, a.transport).cmp(&(&b.id, b.transport)));
    metadata.duration_ms = t0.elapsed().as_millis() as u64;
    let summary = Summary::from_results(&results);
    let findings = crate::report::findings::unresponsive(&results);
    // One shard sees only part of an entry's results: staleness is a question for the whole run.
    let stale = if spec.shard.is_some() { Vec::new() } else { spec.deviations.stale(&results) };
    let _ = tx.send(Event::Done { metadata: Box::new(metadata.clone()), summary, findings, stale: stale.clone() });
    Outcome { results, metadata, stale }
}

/// What a run ended with (besides the events).
pub struct Outcome {
    /// Sorted by id, then transport.
    pub results: Vec<ScenarioResult>,
    pub metadata: Metadata,
    pub stale: Vec<crate::expect::Stale>,
}

/// Runs without reporters (for tests and library users): the results, sorted by id then transport.
pub async fn run_quiet(spec: RunSpec, pool: Arc<Pool>) -> Vec<ScenarioResult> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let drain = tokio::spawn(async move { while rx.recv().await.is_some() {} });
    let results = run(spec, pool, tx).await.results;
    let _ = drain.await;
    results
}
