//! `connect-harness fuzz`: the campaign command and `--replay`.

use std::{io::Write, path::PathBuf, sync::Arc, time::Duration};

use clap::Args;

use super::{CliError, RunArgs, cannot_run, origin_setup_hint, usage};
use crate::{
    exec::Settings,
    exit,
    fuzz::{self, Campaign, Progress, output},
    origin::Pool,
    scenario::Level,
};

#[derive(Debug, Args)]
pub struct FuzzArgs {
    /// Stop after this many cases (across transports). Default: 2000 when --duration is not given.
    #[arg(long, value_name = "N")]
    pub cases: Option<u64>,
    /// Stop after this long, e.g. 60s, 5m (whichever of --cases and --duration comes first).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// The campaign's seed: the same seed and version give the same cases. Default: random (printed).
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Write one reproducer scenario per finding into this directory (`run --scenarios DIR` runs them).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Proxy runs spent shrinking each finding at most.
    #[arg(long, value_name = "N", default_value_t = 150)]
    pub shrink_runs: usize,
    /// A liveness probe (a well-formed CONNECT on a new connection) after every N cases of a worker.
    #[arg(long, value_name = "N", default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..))]
    pub liveness_every: u64,
    /// Rerun one reproducer file written by `--out` (with the proxy flags below) and exit like `run`.
    #[arg(long, value_name = "FILE")]
    pub replay: Option<PathBuf>,
    /// The proxy, TLS, credentials, origin and output flags of `run` (`--report` is the campaign report here,
    /// `--expect` lists known findings by id `fuzz/<signature>`).
    #[command(flatten)]
    pub run: RunArgs,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s.find(|c: char| !c.is_ascii_digit() && c != '.').map_or((s, "s"), |i| s.split_at(i));
    let v: f64 = num.parse().map_err(|_| format!("{s:?}: expected a duration like 30s, 5m or 1h"))?;
    let secs = match unit {
        "s" | "" => v,
        "m" => v * 60.0,
        "h" => v * 3600.0,
        "ms" => v / 1000.0,
        _ => return Err(format!("{s:?}: the unit must be ms, s, m or h")),
    };
    if !(secs > 0.0 && secs <= 7.0 * 86400.0) {
        return Err(format!("{s:?}: between 1ms and 7 days"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A progress bar on a terminal: cases/s, findings, liveness.
struct Bar(indicatif::ProgressBar);

impl Progress for Bar {
    fn case_done(&self, done: u64, findings: usize, alive: bool) {
        self.0.set_position(done);
        self.0.set_message(format!("{findings} findings{}", if alive { "" } else { ", proxy NOT answering" }));
    }
    fn message(&self, text: &str) {
        self.0.println(text);
    }
}

/// `connect-harness fuzz`. Exit codes: 0 no new `must`/`should` finding, 1 a new one, 2 bad usage, 3 the
/// campaign could not run, 4 no case ran.
pub async fn fuzz(args: &FuzzArgs, mut out: Box<dyn Write + Send>, tty: bool) -> Result<u8, CliError> {
    if let Some(file) = &args.replay {
        return replay(args, file, out, tty).await;
    }
    let r = &args.run;
    if r.proxy_http2 {
        // The fuzzer writes HTTP/1.1 request heads; on an HTTP/2 connection they would never reach the proxy as a
        // request, so a campaign would find nothing and look clean.
        return Err(usage(
            "--proxy-http2: the fuzzer writes HTTP/1.1 request bytes and has no HTTP/2 mode yet; fuzz the proxy's \
             HTTP/1.1 listener (without --proxy-http2)",
        ));
    }
    let deviations = super::load_deviations(r)?;
    if let Some(p) = &r.report {
        std::fs::write(p, b"").map_err(|e| usage(format!("--report {}: {e}", p.display())))?;
    }
    let seed = args.seed.unwrap_or_else(|| u64::from(rand::random::<u32>()));
    let cases = match (args.cases, args.duration) {
        (None, None) => Some(2000),
        (c, _) => c,
    };
    let placement = crate::origin::Placement {
        ports: r.origin_ports.clone(),
        addrs: r.origin_addr.clone(),
        sets: r.jobs as usize + 1,
    };
    let pool = Pool::with(placement).await.map_err(|e| cannot_run(origin_setup_hint(e)))?;
    let (put, mut endpoints, label) = super::proxy_under_test(r).await?;
    // The embedded proxy's h2/h2c listeners are for `run`; the fuzzer speaks HTTP/1.1 (see above).
    endpoints.retain(|e| !e.transport.is_h2());
    let campaign = Campaign {
        endpoints,
        settings: Settings { step_timeout: r.timeout, proxy_user: r.proxy_user.clone(), ..Settings::default() },
        seed,
        cases,
        duration: args.duration,
        jobs: r.jobs as usize,
        timeout: r.timeout,
        liveness_every: args.liveness_every,
        shrink_runs: args.shrink_runs,
    };
    let io = |e: std::io::Error| cannot_run(format!("writing output: {e}"));
    writeln!(
        out,
        "Fuzzing {label} ({}) with seed {seed}: {}, {} jobs",
        campaign.endpoints.iter().map(|e| e.transport.as_str()).collect::<Vec<_>>().join(" + "),
        match (cases, args.duration) {
            (Some(n), Some(d)) => format!("{n} cases or {d:?}"),
            (Some(n), None) => format!("{n} cases"),
            (None, Some(d)) => format!("{d:?}"),
            (None, None) => unreachable!("a default applies"),
        },
        campaign.jobs
    )
    .map_err(io)?;
    let progress: Arc<dyn Progress> = if tty {
        let bar = indicatif::ProgressBar::new(cases.unwrap_or(0));
        bar.set_style(
            indicatif::ProgressStyle::with_template("{elapsed_precise} {pos} cases ({per_sec}) {msg}")
                .expect("template"),
        );
        Arc::new(Bar(bar))
    } else {
        Arc::new(fuzz::Quiet)
    };
    let mut outcome = fuzz::run(&campaign, Arc::new(pool), progress).await;
    put.shutdown().await;
    for f in &mut outcome.findings {
        f.known = deviations.reason_for(&output::scenario_id(f), f.transport).map(str::to_string);
    }
    if let Some(dir) = &args.out {
        output::write_reproducers(dir, &mut outcome.findings)
            .map_err(|e| cannot_run(format!("--out {}: {e}", dir.display())))?;
    }
    writeln!(
        out,
        "{} cases in {:.1}s ({:.0} cases/s); {} distinct findings; {} liveness failures",
        outcome.cases,
        outcome.duration_ms as f64 / 1000.0,
        outcome.cases_per_second,
        outcome.findings.len(),
        outcome.unresponsive
    )
    .map_err(io)?;
    let cases_run = outcome.cases;
    let mut new_failures = 0;
    for f in &outcome.findings {
        let v = &f.violation;
        let status = match (&f.known, v.level) {
            (Some(_), _) => "known",
            (None, Level::Must | Level::Should) => {
                new_failures += 1;
                "NEW"
            }
            (None, _) => "observed",
        };
        writeln!(
            out,
            "  {status:<8} {:<6} {:<5} {} [{}] seed {} case {} ×{}{}\n           {}",
            v.level.as_str(),
            f.transport.as_str(),
            v.signature,
            v.catalog,
            f.seed,
            f.first_case,
            f.count,
            if f.reproduced { "" } else { " (did not reproduce when shrunk)" },
            v.detail
        )
        .map_err(io)?;
        if let Some(p) = &f.reproducer {
            writeln!(out, "           reproducer: {p}").map_err(io)?;
        }
    }
    if let Some(p) = &r.report {
        let report = output::CampaignReport {
            schema_version: output::SCHEMA_VERSION,
            tool: format!("connect-harness {}", env!("CARGO_PKG_VERSION")),
            target: label,
            outcome,
        };
        let text = serde_json::to_string_pretty(&report).expect("json");
        std::fs::write(p, text).map_err(|e| cannot_run(format!("--report {}: {e}", p.display())))?;
    }
    Ok(if new_failures > 0 {
        exit::FAILURES
    } else if cases_run == 0 {
        exit::NOTHING_JUDGED
    } else {
        exit::OK
    })
}

/// `fuzz --replay FILE`: runs the reproducer's scenarios like `run --scenarios` (only those).
async fn replay(
    args: &FuzzArgs,
    file: &std::path::Path,
    out: Box<dyn Write + Send>,
    tty: bool,
) -> Result<u8, CliError> {
    let text = std::fs::read_to_string(file).map_err(|e| usage(format!("--replay {}: {e}", file.display())))?;
    let name = file.display().to_string();
    let loaded = crate::scenario::load(&[(name.clone(), text.clone())]).map_err(|e| usage(format!("{e}")))?;
    let dir = std::env::temp_dir().join(format!("connect-harness-replay-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| cannot_run(e.to_string()))?;
    let base = file.file_name().map_or_else(|| "replay.toml".into(), |n| n.to_string_lossy().to_string());
    std::fs::write(dir.join(base), text).map_err(|e| cannot_run(e.to_string()))?;
    let mut run_args = args.run.clone();
    run_args.select.scenarios = Some(dir.clone());
    run_args.select.only = loaded.iter().map(|l| l.scenario.id.clone()).collect();
    let code = super::run(&run_args, out, tty).await;
    let _ = std::fs::remove_dir_all(&dir);
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("60s").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("15").unwrap(), Duration::from_secs(15));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("5y").is_err());
    }
}
