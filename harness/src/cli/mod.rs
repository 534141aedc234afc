//! Command-line interface: argument types (clap derive) and the `list` / `run` / `schema` commands.

mod bench;
mod fuzz;
mod proxy;
mod report;

pub use bench::{BenchArgs, ServeReferenceArgs, bench, serve_reference};
pub use fuzz::{FuzzArgs, fuzz};
pub use report::{ReportArgs, report};

pub use proxy::{
    EMBEDDED_NAMES, EMBEDDED_PARENT_CREDENTIALS, ProxyUnderTest, ProxyUrl, embedded_config, embedded_proxy,
    external_proxy, parse_proxy_url, start_chained_reference, start_reference,
};

use std::{
    io::{IsTerminal, Write},
    net::SocketAddr,
    path::PathBuf,
    sync::Arc,
    time::Duration,
};

use clap::{Args, Parser, Subcommand, ValueEnum};
use globset::{Glob, GlobSet, GlobSetBuilder};
use tokio::sync::mpsc;

use crate::{
    exec::Settings,
    exit,
    expect::Deviations,
    origin::Pool,
    report::{
        json::{JsonReporter, Transcripts},
        junit::JunitReporter,
        terminal::{Reporter, TerminalReporter},
    },
    runner::{self, RunSpec},
    scenario::{self, Level, Loaded},
};

/// Conformance test harness for HTTP CONNECT proxies.
#[derive(Debug, Parser)]
#[command(name = "connect-harness", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the scenarios (embedded, plus --scenarios DIR).
    List(ListArgs),
    /// Run the scenarios against a proxy (the embedded reference proxy when --proxy is not given).
    Run(Box<RunArgs>),
    /// Print the JSON Schema of the --report file (of `run`; with --fuzz, of `fuzz`).
    Schema(SchemaArgs),
    /// Print the interop matrix (Markdown) built from JSON reports named <proxy>-<version>-<transport>.json.
    Matrix(MatrixArgs),
    /// Fuzz a proxy (the embedded reference proxy when --proxy is not given): generated CONNECT requests judged
    /// by oracles; each finding shrunk and written as a reproducer scenario (--out).
    Fuzz(Box<FuzzArgs>),
    /// Measure proxies (the embedded reference proxy when --proxy is not given) beside the direct path:
    /// throughput through one tunnel, tunnel setup rate, memory per idle tunnel; CPU and memory with --pid.
    Bench(Box<BenchArgs>),
    /// Work with JSON reports: `diff OLD NEW` (exit 1 on a regression), `markdown REPORT` (a summary), `html
    /// REPORT… -o FILE` (a page), `merge SHARD… -o FILE` (one report from shards).
    Report(ReportArgs),
    /// The embedded reference proxy in its own process (for `bench`); prints its addresses as one JSON line and
    /// runs until standard input closes.
    #[command(hide = true)]
    ServeReference(ServeReferenceArgs),
}

#[derive(Debug, Args)]
pub struct SchemaArgs {
    /// The schema of the `fuzz --report` campaign report instead.
    #[arg(long, conflicts_with = "bench")]
    pub fuzz: bool,
    /// The schema of the `bench --report` report instead.
    #[arg(long)]
    pub bench: bool,
}

#[derive(Debug, Args)]
pub struct MatrixArgs {
    /// The JSON reports (--report files), one matrix column each.
    #[arg(required = true, value_name = "REPORT.json")]
    pub reports: Vec<PathBuf>,
    /// Print nothing; exit 1 when FILE differs from the matrix (the staleness check for reports/README.md).
    #[arg(long, value_name = "FILE")]
    pub check: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct Selection {
    /// Also load every *.toml scenario file in this directory.
    #[arg(long, value_name = "DIR")]
    pub scenarios: Option<PathBuf>,
    /// Run only scenarios whose id matches this glob (repeatable).
    #[arg(long, value_name = "PATTERN")]
    pub only: Vec<String>,
    /// Leave out scenarios whose id matches this glob (repeatable).
    #[arg(long, value_name = "PATTERN")]
    pub skip: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub select: Selection,
    /// Print JSON (one array of scenario objects) instead of a table.
    #[arg(long, conflicts_with = "markdown")]
    pub json: bool,
    /// Print the Markdown catalog (what `scenarios/README.md` holds) instead of a table.
    #[arg(long)]
    pub markdown: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum FailOn {
    Must,
    Should,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Color {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub select: Selection,
    /// The proxy under test: http://HOST:PORT or https://HOST:PORT. The host of an https URL is the SNI
    /// name and the name its certificate is checked against. Without it, the embedded reference proxy runs.
    #[arg(long, value_name = "URL")]
    pub proxy: Option<String>,
    /// Speak HTTP/2 to the proxy (RFC 9113 §8.5; each CONNECT a stream): with https://, TLS with ALPN h2 (the
    /// `h2` transport); with http://, HTTP/2 with prior knowledge (the `h2c` transport). Scenarios that have no
    /// HTTP/2 meaning (HTTP/1.1 request syntax) are skipped with that reason.
    #[arg(long, requires = "proxy")]
    pub proxy_http2: bool,
    /// Connect here instead of resolving the URL's host (like curl's --connect-to).
    #[arg(long, value_name = "IP:PORT", requires = "proxy")]
    pub proxy_addr: Option<SocketAddr>,
    /// PEM file with the CA certificate(s) that sign the proxy's certificate (https proxies).
    #[arg(long, value_name = "FILE", requires = "proxy", conflicts_with = "proxy_insecure")]
    pub proxy_cacert: Option<PathBuf>,
    /// Do not verify the proxy's certificate (https proxies).
    #[arg(long, requires = "proxy")]
    pub proxy_insecure: bool,
    /// Credentials for Proxy-Authorization (Basic); enables the authentication scenarios.
    #[arg(long, value_name = "USER:PASS")]
    pub proxy_user: Option<String>,
    /// The proxy under test sends its CONNECTs to a parent proxy at 127.0.0.1:PORT: the harness runs its
    /// instrumented parent there and the chained scenarios (`needs = ["upstream"]`) run; without it they are
    /// skipped. The embedded reference proxy runs a chained instance of its own (on an ephemeral port unless
    /// this is given). See the README, "Chained proxies", for Squid, Apache and tinyproxy configuration lines.
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub upstream_proxy_port: Option<u16>,
    /// USER:PASS the proxy under test presents to its parent: chained/11.7.2/own-credentials-presented checks
    /// that the parent receives exactly these (the parent never refuses a CONNECT for them).
    #[arg(long, value_name = "USER:PASS", requires = "upstream_proxy_port")]
    pub upstream_proxy_credentials: Option<String>,
    /// Scenarios run at once (they are I/O-bound, so this may exceed the core count).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub jobs: u16,
    /// Deadline of each step, in seconds (fractions allowed).
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = parse_secs)]
    pub timeout: Duration,
    /// Write the JSON report here.
    #[arg(long, value_name = "FILE.json")]
    pub report: Option<PathBuf>,
    /// Write a JUnit XML report here.
    #[arg(long, value_name = "FILE.xml")]
    pub junit: Option<PathBuf>,
    /// Write a self-contained HTML page of the run here (the same as `report html` on the --report file).
    #[arg(long, value_name = "FILE.html")]
    pub html: Option<PathBuf>,
    /// Which results keep their wire transcript and proxy-log lines in the --report and --html files: `all`,
    /// `failures` (only fail, warn, error, setup and results the --expect file lists) or `none`.
    #[arg(long, value_enum, default_value_t = Transcripts::All)]
    pub transcripts: Transcripts,
    /// Write the --report compactly: one result per line, results that need no reading reduced to their verdict
    /// (the scenario texts are in the catalog of this version), no rows for transports that did not run, at most
    /// 20 proxy-log lines per result. With --transcripts failures, about 6x smaller.
    #[arg(long, requires = "report")]
    pub compact: bool,
    /// Which verdicts fail the run: `must` (fail only) or `should` (fail and warn).
    #[arg(long, value_enum, default_value_t = FailOn::Must)]
    pub fail_on: FailOn,
    /// Known deviations of this proxy (TOML: `[[deviation]]` tables with `id` = GLOB and `reason`).
    #[arg(long, value_name = "FILE")]
    pub expect: Option<PathBuf>,
    /// Ports the origins may listen on, e.g. 20000-20019 (so a proxy's port ACL can allow them), or one port
    /// such as 443: with fewer ports than an origin set needs (9), each origin gets its own loopback address
    /// (127.0.0.1, 127.0.0.2, ...) on those ports, so a proxy that allows CONNECT only to 443 is tested with
    /// its policy untouched (ports below 1024 need root).
    #[arg(long, value_name = "FIRST-LAST|PORT", value_parser = parse_port_range)]
    pub origin_ports: Option<std::ops::RangeInclusive<u16>>,
    /// A local address for the origins instead of 127.0.0.1 (repeatable), e.g. an address of another interface
    /// when the proxy's policy refuses loopback destinations or the proxy runs elsewhere. Scenarios that reach
    /// the origins by `localhost` or a loopback literal then need 127.0.0.1 among these, else they are skipped.
    #[arg(long, value_name = "ADDR")]
    pub origin_addr: Vec<std::net::IpAddr>,
    /// Declared policy: the ports the proxy allows tunnels to, e.g. 443,20000-20031. With it, the `policy/port-*`
    /// scenarios are judged against this list instead of only recorded.
    #[arg(long, value_name = "LIST", value_parser = parse_port_set)]
    pub policy_ports: Option<reference_proxy::config::PortSet>,
    /// Declared policy: a network the proxy allows beyond public addresses, e.g. 127.0.0.0/8 (repeatable). With
    /// this or --policy-deny, the `policy/address-*` scenarios are judged (loopback, private and link-local are
    /// otherwise taken as denied; unspecified, broadcast and multicast always).
    #[arg(long, value_name = "NET", value_parser = parse_net)]
    pub policy_allow: Vec<reference_proxy::config::IpNet>,
    /// Declared policy: a network the proxy denies (repeatable).
    #[arg(long, value_name = "NET", value_parser = parse_net)]
    pub policy_deny: Vec<reference_proxy::config::IpNet>,
    /// Colour in terminal output.
    #[arg(long, value_enum, default_value_t = Color::Auto)]
    pub color: Color,
    /// Run only shard I of N (e.g. 2/4) of the scenario × transport runs, for splitting a run across CI runners;
    /// join the shards' reports with `connect-harness report merge`.
    #[arg(long, value_name = "I/N", value_parser = crate::shard::Shard::parse)]
    pub shard: Option<crate::shard::Shard>,
    /// A report of an earlier run whose durations balance the shards by time (else they are balanced by count).
    #[arg(long, value_name = "REPORT.json", requires = "shard")]
    pub shard_durations: Option<PathBuf>,
    /// A log file of the proxy (repeatable): the lines it gains while a scenario runs go into that scenario's
    /// result (bounded; marked approximate when --jobs > 1, since scenarios then overlap).
    #[arg(long, value_name = "FILE")]
    pub proxy_log: Vec<PathBuf>,
}

fn parse_secs(s: &str) -> Result<Duration, String> {
    let v: f64 = s.parse().map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !(v > 0.0 && v <= 3600.0) {
        return Err("the timeout must be more than 0 and at most 3600 seconds".into());
    }
    Ok(Duration::from_secs_f64(v))
}

fn parse_port_set(s: &str) -> Result<reference_proxy::config::PortSet, String> {
    s.parse().map_err(|e: reference_proxy::policy::PolicyParseError| e.to_string())
}

fn parse_net(s: &str) -> Result<reference_proxy::config::IpNet, String> {
    s.parse().map_err(|e: reference_proxy::policy::PolicyParseError| e.to_string())
}

/// The declared destination policy: the embedded proxy's own, or what the `--policy-*` flags say.
fn declared_policy(args: &RunArgs) -> Option<Arc<crate::policy::DeclaredPolicy>> {
    use reference_proxy::config::{DestinationPolicy, PortSet};
    if args.proxy.is_none() {
        let embedded = reference_proxy::ProxyConfig::for_testing().policy;
        return Some(Arc::new(crate::policy::DeclaredPolicy::of(&embedded)));
    }
    let addresses = (!args.policy_allow.is_empty() || !args.policy_deny.is_empty()).then(|| DestinationPolicy {
        ports: PortSet::all(),
        allow: args.policy_allow.clone(),
        deny: args.policy_deny.clone(),
        ip_literals_only: false,
    });
    if args.policy_ports.is_none() && addresses.is_none() {
        return None;
    }
    Some(Arc::new(crate::policy::DeclaredPolicy { ports: args.policy_ports.clone(), addresses, names: None }))
}

fn parse_port_range(s: &str) -> Result<std::ops::RangeInclusive<u16>, String> {
    let (a, b) = match s.split_once('-') {
        Some(pair) => pair,
        None if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => (s, s),
        None => return Err(format!("{s:?}: expected FIRST-LAST, e.g. 20000-20019, or one port such as 443")),
    };
    let a: u16 = a.trim().parse().map_err(|_| format!("{a:?} is not a port"))?;
    let b: u16 = b.trim().parse().map_err(|_| format!("{b:?} is not a port"))?;
    if a == 0 || a > b {
        return Err(format!("{s:?}: need 1 <= FIRST <= LAST"));
    }
    Ok(a..=b)
}

/// An origin setup error, with what to do about the usual causes.
fn origin_setup_hint(e: crate::origin::OriginError) -> String {
    let mut m = e.to_string();
    if let crate::origin::OriginError::Bind { addr, source, .. } = &e {
        if source.kind() == std::io::ErrorKind::PermissionDenied && addr.port() < 1024 {
            m.push_str(" (ports below 1024 need root, or CAP_NET_BIND_SERVICE)");
        } else if source.kind() == std::io::ErrorKind::AddrNotAvailable {
            m.push_str(" (--origin-addr must be an address of this machine)");
        }
    }
    m
}

/// A failure of the command itself, with the exit code it maps to.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct CliError {
    pub code: u8,
    pub message: String,
}

pub(crate) fn usage(message: impl Into<String>) -> CliError {
    CliError { code: exit::USAGE, message: message.into() }
}

pub(crate) fn cannot_run(message: impl Into<String>) -> CliError {
    CliError { code: exit::CANNOT_RUN, message: message.into() }
}

fn glob_set(patterns: &[String], flag: &str) -> Result<Option<GlobSet>, CliError> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        b.add(Glob::new(p).map_err(|e| usage(format!("{flag} {p:?}: {e}")))?);
    }
    Ok(Some(b.build().map_err(|e| usage(format!("{flag}: {e}")))?))
}

/// Loads and filters the scenarios for `list` and `run`.
pub fn select(sel: &Selection) -> Result<Vec<Arc<Loaded>>, CliError> {
    pick(catalog(sel)?, sel)
}

/// Every scenario: the embedded catalog and `--scenarios DIR`, before `--only`/`--skip`.
fn catalog(sel: &Selection) -> Result<Vec<Arc<Loaded>>, CliError> {
    let mut sources = scenario::embedded_sources();
    if let Some(dir) = &sel.scenarios {
        sources.extend(scenario::read_dir(dir).map_err(|e| usage(e.to_string()))?);
    }
    scenario::load(&sources).map_err(|e| usage(format!("bad scenario file:\n{e}")))
}

/// The scenarios of `all` that `--only`/`--skip` select.
fn pick(all: Vec<Arc<Loaded>>, sel: &Selection) -> Result<Vec<Arc<Loaded>>, CliError> {
    let only = glob_set(&sel.only, "--only")?;
    let skip = glob_set(&sel.skip, "--skip")?;
    let picked: Vec<_> = all
        .into_iter()
        .filter(|l| only.as_ref().is_none_or(|g| g.is_match(&l.scenario.id)))
        .filter(|l| skip.as_ref().is_none_or(|g| !g.is_match(&l.scenario.id)))
        .collect();
    if picked.is_empty() && (only.is_some() || skip.is_some()) {
        return Err(usage("no scenario matches the --only/--skip patterns"));
    }
    Ok(picked)
}

/// `connect-harness list`.
pub fn list(args: &ListArgs, out: &mut dyn Write) -> Result<u8, CliError> {
    let picked = select(&args.select)?;
    let io = |e: std::io::Error| cannot_run(format!("writing output: {e}"));
    if args.markdown {
        let mut sources = scenario::embedded_sources();
        if let Some(dir) = &args.select.scenarios {
            sources.extend(scenario::read_dir(dir).map_err(|e| usage(e.to_string()))?);
        }
        write!(out, "{}", scenario::readme::render(&sources, &picked)).map_err(io)?;
    } else if args.json {
        let v: Vec<serde_json::Value> = picked
            .iter()
            .map(|l| {
                let s = &l.scenario;
                serde_json::json!({
                    "id": s.id, "title": s.title, "level": s.level, "section": s.section,
                    "requirement": s.requirement, "transports": s.transports, "catalog": s.catalog,
                    "needs": s.needs, "faults": s.faults, "source": format!("{}:{}", l.file, l.line),
                    "generated_from": l.generated_from,
                })
            })
            .collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&v).expect("json")).map_err(io)?;
    } else {
        for l in &picked {
            let s = &l.scenario;
            let t: Vec<&str> = s.transports.iter().map(|t| t.as_str()).collect();
            writeln!(out, "{:<58} {:<8} {:<9} {:<18} {}", s.id, s.level.as_str(), t.join(","), s.section, s.title)
                .map_err(io)?;
        }
        writeln!(out, "{} scenarios", picked.len()).map_err(io)?;
    }
    Ok(exit::OK)
}

/// `--expect FILE`, parsed (no deviations without it); checks `--proxy-user` too, which `run` and `fuzz` share.
fn load_deviations(args: &RunArgs) -> Result<Deviations, CliError> {
    if let Some(u) = &args.proxy_user
        && !u.contains(':')
    {
        return Err(usage("--proxy-user must be USER:PASS"));
    }
    let Some(p) = &args.expect else { return Ok(Deviations::default()) };
    let text = std::fs::read_to_string(p).map_err(|e| usage(format!("--expect {}: {e}", p.display())))?;
    Deviations::parse(&p.display().to_string(), &text).map_err(usage)
}

/// The proxy the flags name (the embedded reference proxy without `--proxy`), its endpoints and its label.
async fn proxy_under_test(
    args: &RunArgs,
) -> Result<(ProxyUnderTest, Vec<crate::exec::ProxyEndpoint>, String), CliError> {
    Ok(match &args.proxy {
        None => {
            let (p, e) = embedded_proxy(args.proxy_user.as_deref()).await?;
            (p, e, "embedded reference proxy".to_string())
        }
        Some(url) => (ProxyUnderTest::External, external_proxy(args, url).await?, url.clone()),
    })
}

/// The instrumented parent proxy and who uses it: the proxy under test itself (`--upstream-proxy-port`), or for
/// the embedded target a chained reference proxy started here (returned, to be shut down after the run).
async fn chained_setup(
    args: &RunArgs,
    endpoints: &[crate::exec::ProxyEndpoint],
) -> Result<(Option<runner::Chained>, Option<reference_proxy::RunningProxy>), CliError> {
    use crate::origin::parent::Parent;
    let at = |port: u16| std::net::SocketAddr::from(([127, 0, 0, 1], port));
    if let Some(c) = &args.upstream_proxy_credentials
        && !c.contains(':')
    {
        return Err(usage("--upstream-proxy-credentials must be USER:PASS"));
    }
    // A loop goes back to the chained proxy's plain listener, as a client would reach it.
    let loop_to = |endpoints: &[crate::exec::ProxyEndpoint]| {
        endpoints
            .iter()
            .find(|e| e.transport == scenario::Transport::Plain)
            .map(|e| crate::origin::parent::LoopTarget { addr: e.addr, client_credentials: args.proxy_user.clone() })
    };
    match (&args.proxy, args.upstream_proxy_port) {
        (Some(_), None) => Ok((None, None)),
        (Some(_), Some(port)) => {
            let parent = Parent::start(at(port), args.upstream_proxy_credentials.clone())
                .await
                .map_err(|e| cannot_run(format!("--upstream-proxy-port: {e}")))?;
            if let Some(t) = loop_to(endpoints) {
                parent.set_loop_target(t);
            }
            Ok((Some(runner::Chained { parent, endpoints: endpoints.to_vec() }), None))
        }
        (None, port) => {
            let creds = args.upstream_proxy_credentials.clone().unwrap_or(proxy::EMBEDDED_PARENT_CREDENTIALS.into());
            let parent =
                Parent::start(at(port.unwrap_or(0)), Some(creds)).await.map_err(|e| cannot_run(e.to_string()))?;
            let config = proxy::embedded_config(args.proxy_user.as_deref())?;
            let (running, endpoints) = proxy::start_chained_reference(config, &parent).await?;
            if let Some(t) = loop_to(&endpoints) {
                parent.set_loop_target(t);
            }
            Ok((Some(runner::Chained { parent, endpoints }), Some(running)))
        }
    }
}

/// `connect-harness run`: everything but process setup. Output goes to `out`.
pub async fn run(args: &RunArgs, out: Box<dyn Write + Send>, stdout_is_tty: bool) -> Result<u8, CliError> {
    let all = catalog(&args.select)?;
    let deviations = load_deviations(args)?;
    if let Some(file) = &args.expect {
        // Against the whole catalog, not the --only selection: an entry that names no scenario at all is a typo or
        // a renamed scenario, and would otherwise pass silently forever.
        let unmatched = deviations.unmatched(all.iter().map(|l| l.scenario.id.as_str()));
        if !unmatched.is_empty() {
            return Err(usage(format!(
                "--expect {}: no scenario matches {} (a typo, or a scenario renamed since? `connect-harness list` \
                 shows the ids)",
                file.display(),
                unmatched.iter().map(|u| format!("{u:?}")).collect::<Vec<_>>().join(", ")
            )));
        }
    }
    let scenarios = pick(all, &args.select)?;
    let mut shard = args.shard.clone();
    if let (Some(sh), Some(p)) = (&mut shard, &args.shard_durations) {
        let text = std::fs::read_to_string(p).map_err(|e| usage(format!("--shard-durations {}: {e}", p.display())))?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| usage(format!("--shard-durations {}: not a JSON report: {e}", p.display())))?;
        sh.weights = crate::shard::durations(&v);
        if sh.weights.is_empty() {
            return Err(usage(format!("--shard-durations {}: no results with durations", p.display())));
        }
    }
    // Fail before running for an unwritable report path, not after.
    for (flag, path) in [("--report", &args.report), ("--junit", &args.junit), ("--html", &args.html)] {
        if let Some(p) = path {
            std::fs::write(p, b"").map_err(|e| usage(format!("{flag} {}: {e}", p.display())))?;
        }
    }
    let placement = crate::origin::Placement {
        ports: args.origin_ports.clone(),
        addrs: args.origin_addr.clone(),
        // At least 8 sets, so that with few jobs a set can rest (QUARANTINE) while others are in use.
        sets: (args.jobs as usize).max(8),
    };
    let pool = Pool::with(placement).await.map_err(|e| cannot_run(origin_setup_hint(e)))?;
    let (put, endpoints, label) = proxy_under_test(args).await?;
    let fail_on = match args.fail_on {
        FailOn::Must => Level::Must,
        FailOn::Should => Level::Should,
    };
    let color = match args.color {
        Color::Always => true,
        Color::Never => false,
        Color::Auto => {
            stdout_is_tty
                && std::env::var_os("NO_COLOR").is_none()
                && std::env::var("TERM").ok().as_deref() != Some("dumb")
        }
    };
    let mut reporters: Vec<Box<dyn Reporter>> =
        vec![Box::new(TerminalReporter::new(out, color, stdout_is_tty, fail_on))];
    if let Some(p) = &args.report {
        reporters.push(Box::new(JsonReporter::new(p.clone(), args.transcripts, args.compact)));
    }
    if let Some(p) = &args.junit {
        reporters.push(Box::new(JunitReporter::new(p.clone())));
    }
    if let Some(p) = &args.html {
        reporters.push(Box::new(crate::report::html::HtmlReporter::new(p.clone(), args.transcripts)));
    }
    // On GitHub Actions, the job page shows this file: a summary of the run goes there.
    if let Some(p) = std::env::var_os("GITHUB_STEP_SUMMARY").filter(|p| !p.is_empty()) {
        reporters.push(Box::new(crate::report::markdown::StepSummaryReporter::new(p.into())));
    }
    let mut settings = Settings {
        step_timeout: args.timeout,
        proxy_user: args.proxy_user.clone(),
        proxy_logs: crate::proxy_log::ProxyLogs::new(args.proxy_log.clone(), args.jobs > 1),
        policy: declared_policy(args),
        origin_ports: args.origin_ports.clone(),
        ..Settings::default()
    };
    // The parent first: a proxy under test configured with it reaches nothing (not even the preflight's origin)
    // until it listens.
    let (chained, chained_proxy) = match chained_setup(args, &endpoints).await {
        Ok(c) => c,
        Err(e) => {
            put.shutdown().await;
            return Err(e);
        }
    };
    // The preflight: what the proxy's policy allows; stop here when even the IPv4 tunnel is refused.
    let pre = crate::preflight::run(&endpoints, &settings, &pool).await;
    if let Some(message) = pre.blocked() {
        put.shutdown().await;
        if let Some(p) = chained_proxy {
            p.shutdown().await;
        }
        let mut m = message;
        for p in &pre.probes {
            m.push_str(&format!("  preflight {p}\n"));
        }
        return Err(cannot_run(m.trim_end().to_string()));
    }
    settings.preflight = Some(Arc::new(pre));
    let spec = RunSpec {
        chained,
        scenarios,
        endpoints,
        settings,
        jobs: args.jobs as usize,
        deviations,
        target_label: label,
        fail_on,
        shard,
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    let consumer = tokio::task::spawn_blocking(move || {
        let mut first_error = None;
        while let Some(ev) = rx.blocking_recv() {
            for r in &mut reporters {
                if let Err(e) = r.on_event(&ev)
                    && first_error.is_none()
                {
                    first_error = Some(e);
                }
            }
        }
        first_error
    });
    let outcome = runner::run(spec, Arc::new(pool), tx).await;
    let write_error = consumer.await.map_err(|e| cannot_run(format!("reporter failed: {e}")))?;
    put.shutdown().await;
    if let Some(p) = chained_proxy {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), p.shutdown()).await;
    }
    if let Some(e) = write_error {
        return Err(cannot_run(format!("writing a report failed: {e}")));
    }
    Ok(exit::for_results(&outcome.results, fail_on, outcome.stale.len()))
}

/// `connect-harness matrix`: the matrix on `out`, or with `--check FILE` whether FILE is up to date.
pub fn matrix(args: &MatrixArgs, out: &mut dyn Write) -> Result<u8, CliError> {
    let text = crate::matrix::render(&args.reports).map_err(|e| usage(e.to_string()))?;
    match &args.check {
        None => {
            out.write_all(text.as_bytes()).map_err(|e| cannot_run(format!("writing output: {e}")))?;
            Ok(exit::OK)
        }
        Some(file) => {
            let have = std::fs::read_to_string(file).unwrap_or_default();
            if have == text {
                Ok(exit::OK)
            } else {
                eprintln!(
                    "connect-harness: {} is stale relative to the reports; regenerate it with `connect-harness matrix \
                     REPORT.json... > {}`",
                    file.display(),
                    file.display()
                );
                Ok(exit::FAILURES)
            }
        }
    }
}

/// Whether stdout is a terminal (for colour and the progress bar).
pub fn stdout_is_tty() -> bool {
    std::io::stdout().is_terminal()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_values() {
        assert_eq!(parse_port_range("20000-20019").unwrap(), 20000..=20019);
        assert!(parse_port_range("20019-20000").is_err());
        assert!(parse_port_range("x-1").is_err());
        assert_eq!(parse_port_range("443").unwrap(), 443..=443);
        assert!(parse_secs("0").is_err());
        assert_eq!(parse_secs("0.5").unwrap(), Duration::from_millis(500));
    }
}
