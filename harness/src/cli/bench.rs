//! `connect-harness bench`: flags, the subjects (the direct path, the yardstick, the proxies), the embedded
//! reference proxy as a child process (so its CPU time and memory are its own, not the client's), and output.

use std::{
    io::{BufRead, BufReader, Write},
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Arc,
    time::Duration,
};

use clap::Args;

use super::{CliError, cannot_run, parse_secs, proxy, usage};
use crate::{
    bench::{
        self, BenchSpec, Phase, Subject,
        origins::Origins,
        path::{OriginAddrs, ProxyPath, Route},
        report::{BenchReport, SubjectInfo, SubjectKind},
    },
    client::tls::ProxyTrust,
    exec::ProxyEndpoint,
    exit,
    scenario::Transport,
};

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// A proxy to measure, as URL or LABEL=URL (repeatable: all are measured in one run, interleaved). Without
    /// it, the embedded reference proxy (plain and TLS listeners), started as its own process.
    #[arg(long, value_name = "[LABEL=]URL")]
    pub proxy: Vec<String>,
    /// Also measure the embedded reference proxy beside the --proxy ones (the peers' comparison).
    #[arg(long)]
    pub reference: bool,
    /// Speak HTTP/2 to the --proxy ones (https:// with ALPN h2, http:// with prior knowledge): each is then
    /// measured with one CONNECT stream per connection and, in the throughput phase, with --h2-streams streams
    /// sharing one connection. (The embedded reference proxy is always measured over HTTP/2 as well.)
    #[arg(long)]
    pub proxy_http2: bool,
    /// CONNECT streams sharing one HTTP/2 connection in the multi-stream throughput rows (all open at once, so at
    /// most the proxy's SETTINGS_MAX_CONCURRENT_STREAMS: 100 for the reference proxy, and for most servers).
    #[arg(long, value_name = "N", default_value_t = 32, value_parser = clap::value_parser!(u16).range(2..=100))]
    pub h2_streams: u16,
    /// Add the bare splice relay (no HTTP) as a row: the yardstick of what relaying costs on this machine.
    #[arg(long)]
    pub yardstick: bool,
    /// PEM file with the CA certificate(s) of the https proxies.
    #[arg(long, value_name = "FILE", conflicts_with = "proxy_insecure")]
    pub proxy_cacert: Option<PathBuf>,
    /// Do not verify the https proxies' certificates.
    #[arg(long)]
    pub proxy_insecure: bool,
    /// Credentials for Proxy-Authorization (Basic), sent to every proxy.
    #[arg(long, value_name = "USER:PASS")]
    pub proxy_user: Option<String>,
    /// The proxy's processes, for CPU and memory: [LABEL=]PID[,PID...] (repeatable; without LABEL, for the only
    /// --proxy). Include every worker of a multi-process proxy.
    #[arg(long, value_name = "[LABEL=]PIDS")]
    pub pid: Vec<String>,
    /// Process groups of the proxy: [LABEL=]PGID[,PGID...]; their members are looked up at every reading, so
    /// workers a pre-forking proxy starts later count too.
    #[arg(long, value_name = "[LABEL=]PGIDS")]
    pub pgid: Vec<String>,
    /// The phases to run.
    #[arg(long, value_enum, value_delimiter = ',', default_values = ["throughput", "rate", "idle"])]
    pub phases: Vec<Phase>,
    /// Clients opening tunnels at once in the setup-rate phase (a list).
    #[arg(long, value_delimiter = ',', default_values = ["1", "32", "256"], value_parser = clap::value_parser!(u16).range(1..=4096))]
    pub concurrency: Vec<u16>,
    /// Idle tunnels to hold open in the memory phase (a list).
    #[arg(long, value_delimiter = ',', default_values = ["1000", "5000"], value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub tunnels: Vec<u32>,
    /// Seconds each measured run aims at (throughput bytes are calibrated to it; a rate run lasts it).
    #[arg(long, value_name = "SECS", default_value = "3", value_parser = parse_secs)]
    pub seconds: Duration,
    /// Repetitions of every measurement (figures are medians).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=100))]
    pub rounds: u16,
    /// Deadline of one tunnel's setup, in seconds.
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = parse_secs)]
    pub timeout: Duration,
    /// The address the origins listen on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1")]
    pub origin_addr: IpAddr,
    /// The origins' ports: sink, source and echo on PORT, PORT+1 and PORT+2 (for a proxy that allows CONNECT
    /// only to some ports); 0 picks free ports.
    #[arg(long, value_name = "PORT", default_value_t = 0)]
    pub origin_port: u16,
    /// Write the JSON report here (schema: `connect-harness schema --bench`).
    #[arg(long, value_name = "FILE.json")]
    pub report: Option<PathBuf>,
    /// Write the tables (Markdown) here as well.
    #[arg(long, value_name = "FILE.md")]
    pub markdown: Option<PathBuf>,
    /// Compare two reports instead of measuring: every figure both have, with the ratio B/A.
    #[arg(long, num_args = 2, value_names = ["A.json", "B.json"], conflicts_with_all = ["proxy", "reference", "yardstick", "report"])]
    pub compare: Vec<PathBuf>,
}

/// The hidden `serve-reference` subcommand: the embedded reference proxy in its own process, for `bench`.
#[derive(Debug, Args)]
pub struct ServeReferenceArgs {
    #[arg(long, value_name = "USER:PASS")]
    pub proxy_user: Option<String>,
    /// HTTP/2 on the listeners (only for the HTTP/2 subjects, so the HTTP/1.1 ones do not pay for the h2c
    /// preface check).
    #[arg(long)]
    pub h2: bool,
}

/// What `serve-reference` prints on its first line.
#[derive(serde::Serialize, serde::Deserialize)]
struct Served {
    plain: SocketAddr,
    tls: SocketAddr,
    ca_pem: String,
}

/// Runs the embedded reference proxy until standard input closes (the parent's end).
pub async fn serve_reference(args: &ServeReferenceArgs) -> Result<u8, CliError> {
    bench::procfs::raise_fd_limit();
    // The embedded proxy as `run` starts it, but with the production connection limit (the testing one, 1000, is
    // below the idle phase's 5000 tunnels).
    let mut config = reference_proxy::ProxyConfig::for_testing();
    config.limits.max_connections = reference_proxy::config::ProxyLimits::default().max_connections;
    if let Some(user) = &args.proxy_user {
        let mut auth = reference_proxy::config::Auth::new("connect-harness");
        auth.add(user).map_err(|e| usage(format!("--proxy-user: {e}")))?;
        config.auth = Some(auth);
    }
    // The HTTP/2 subjects: the TLS listener offers ALPN h2 too.
    config.http2.enabled = args.h2;
    let (running, endpoints) = proxy::start_reference(config).await?;
    let p = proxy::ProxyUnderTest::Embedded(running);
    let proxy::ProxyUnderTest::Embedded(running) = &p else { return Err(cannot_run("no embedded proxy")) };
    let plain = endpoints.iter().find(|e| e.transport == Transport::Plain).map(|e| e.addr);
    let tls = endpoints.iter().find(|e| e.transport == Transport::Tls).map(|e| e.addr);
    let (Some(plain), Some(tls), Some(ca_pem)) = (plain, tls, running.ca_cert_pem()) else {
        return Err(cannot_run("the embedded proxy lacks a listener"));
    };
    let line = serde_json::to_string(&Served { plain, tls, ca_pem: ca_pem.to_string() }).expect("serializes");
    println!("{line}");
    let _ = std::io::stdout().flush();
    let _ = tokio::task::spawn_blocking(|| {
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
    })
    .await;
    p.shutdown().await;
    Ok(exit::OK)
}

/// The reference proxy child; killed when dropped.
struct ReferenceChild(Child);

impl Drop for ReferenceChild {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_reference_child(exe: &Path, proxy_user: Option<&str>, h2: bool) -> Result<(ReferenceChild, Served), CliError> {
    let mut cmd = Command::new(exe);
    cmd.arg("serve-reference").stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null());
    if let Some(u) = proxy_user {
        cmd.args(["--proxy-user", u]);
    }
    if h2 {
        cmd.arg("--h2");
    }
    let mut child = cmd.spawn().map_err(|e| {
        cannot_run(format!("could not start the reference proxy ({} serve-reference): {e}", exe.display()))
    })?;
    let out = child.stdout.take().expect("piped");
    let child = ReferenceChild(child);
    let mut line = String::new();
    BufReader::new(out)
        .read_line(&mut line)
        .map_err(|e| cannot_run(format!("the reference proxy child said nothing: {e}")))?;
    let served: Served = serde_json::from_str(&line)
        .map_err(|e| cannot_run(format!("the reference proxy child printed {line:?}: {e}")))?;
    Ok((child, served))
}

/// `[LABEL=]URL` → (label, url).
fn labelled(s: &str) -> (Option<&str>, &str) {
    match s.split_once('=') {
        Some((l, u)) if !l.contains("://") => (Some(l), u),
        _ => (None, s),
    }
}

/// `--pid` / `--pgid` values: (the label, if any; the ids).
type Ids = Vec<(Option<String>, Vec<u32>)>;

/// Parses `--pid` / `--pgid` values, `[LABEL=]N[,N...]`, each checked to exist.
fn parse_ids(values: &[String], flag: &str) -> Result<Ids, CliError> {
    let mut out = Vec::new();
    for p in values {
        let (label, list) = match p.split_once('=') {
            Some((l, rest)) => (Some(l.to_string()), rest),
            None => (None, p.as_str()),
        };
        let ids = list
            .split(',')
            .map(|x| x.trim().parse::<u32>().map_err(|_| usage(format!("{flag} {p:?}: {x:?} is not a process id"))))
            .collect::<Result<Vec<_>, _>>()?;
        for id in &ids {
            let exists = if flag == "--pgid" {
                !bench::procfs::group_members(*id).is_empty()
            } else {
                bench::procfs::cpu_seconds(*id).is_ok()
            };
            if !exists {
                return Err(usage(format!("{flag} {p:?}: no process {id}")));
            }
        }
        out.push((label, ids));
    }
    Ok(out)
}

/// The ids given for `label` (or without a label).
fn ids_for(ids: &Ids, label: &str) -> Vec<u32> {
    ids.iter().filter(|(l, _)| l.as_deref().is_none_or(|l| l == label)).flat_map(|(_, p)| p.iter().copied()).collect()
}

/// `connect-harness bench`. `exe` is the `connect-harness` binary (for the reference proxy child).
pub async fn bench(args: &BenchArgs, exe: &Path, out: &mut (dyn Write + Send)) -> Result<u8, CliError> {
    if !args.compare.is_empty() {
        let read = |p: &PathBuf| -> Result<BenchReport, CliError> {
            let text = std::fs::read_to_string(p).map_err(|e| usage(format!("--compare {}: {e}", p.display())))?;
            serde_json::from_str(&text)
                .map_err(|e| usage(format!("--compare {}: not a bench report: {e}", p.display())))
        };
        let (a, b) = (read(&args.compare[0])?, read(&args.compare[1])?);
        let _ = write!(out, "{}", bench::report::compare(&a, &b));
        return Ok(exit::OK);
    }
    let fd_limit = bench::procfs::raise_fd_limit();
    let pids = parse_ids(&args.pid, "--pid")?;
    let pgids = parse_ids(&args.pgid, "--pgid")?;
    if pids.iter().chain(&pgids).any(|(l, _)| l.is_none()) && args.proxy.len() != 1 {
        return Err(usage("--pid or --pgid without LABEL= needs exactly one --proxy"));
    }
    let origins = Origins::start(args.origin_addr, args.origin_port).map_err(|e| {
        cannot_run(format!(
            "the bench origins could not listen on {} (--origin-port {}): {e}",
            args.origin_addr, args.origin_port
        ))
    })?;
    let addrs = OriginAddrs { sink: origins.sink, source: origins.source, echo: origins.echo };
    let mut subjects = vec![Subject {
        info: SubjectInfo {
            label: "direct".into(),
            kind: SubjectKind::Direct,
            transport: None,
            url: None,
            pids: vec![],
            pgids: vec![],
            streams: None,
        },
        route: Route::Direct,
    }];
    if args.yardstick {
        let relays = [addrs.sink, addrs.source, addrs.echo]
            .map(|a| bench::yardstick::start(a).map_err(|e| cannot_run(format!("the yardstick relay: {e}"))));
        let [a, b, c] = relays;
        subjects.push(Subject {
            info: SubjectInfo {
                label: "splice relay (yardstick)".into(),
                kind: SubjectKind::Yardstick,
                transport: None,
                url: None,
                pids: vec![],
                pgids: vec![],
                streams: None,
            },
            route: Route::Yardstick([a?, b?, c?]),
        });
    }
    // One reference proxy process per subject, so each row's CPU and memory are that listener's alone. Over
    // HTTP/2 (the TLS listener with ALPN h2): one stream per connection, and --h2-streams on one connection.
    let mut children = Vec::new();
    if args.proxy.is_empty() || args.reference {
        let multi = usize::from(args.h2_streams);
        for (transport, streams) in
            [(Transport::Plain, 1), (Transport::Tls, 1), (Transport::H2, 1), (Transport::H2, multi)]
        {
            let (c, served) = start_reference_child(exe, args.proxy_user.as_deref(), transport.is_h2())?;
            let pid = c.0.id();
            let tls_ep = |transport| -> Result<ProxyEndpoint, CliError> {
                Ok(ProxyEndpoint {
                    transport,
                    addr: served.tls,
                    host: "proxy.test".into(),
                    port: served.tls.port(),
                    trust: Some(ProxyTrust::from_pem(&served.ca_pem).map_err(cannot_run)?),
                })
            };
            let (label, ep) = match transport {
                Transport::Plain => (
                    "reference-proxy".to_string(),
                    ProxyEndpoint {
                        transport,
                        addr: served.plain,
                        host: served.plain.ip().to_string(),
                        port: served.plain.port(),
                        trust: None,
                    },
                ),
                Transport::Tls => ("reference-proxy tls".to_string(), tls_ep(transport)?),
                Transport::H2 if streams == 1 => ("reference-proxy h2".to_string(), tls_ep(transport)?),
                Transport::H2 => (format!("reference-proxy h2 ×{streams}"), tls_ep(transport)?),
                Transport::H2c => continue,
            };
            subjects.push(proxy_subject(&label, None, ep, vec![pid], streams, args)?);
            children.push(c);
        }
    }
    for p in &args.proxy {
        let (label, url) = labelled(p);
        let u = proxy::parse_proxy_url(url).map_err(|e| usage(format!("--proxy: {e}")))?;
        let access = proxy::ProxyAccess {
            addr: None,
            cacert: args.proxy_cacert.as_deref(),
            insecure: args.proxy_insecure,
            timeout: args.timeout,
        };
        let mut ep = proxy::describe_proxy(&u, &access).await?;
        let label = label.unwrap_or(url).to_string();
        let mut variants = vec![(label.clone(), 1)];
        if args.proxy_http2 {
            ep.transport = if ep.transport == Transport::Tls { Transport::H2 } else { Transport::H2c };
            let multi = usize::from(args.h2_streams);
            variants.push((format!("{label} ×{multi}"), multi));
        }
        for (name, streams) in variants {
            let mut s = proxy_subject(&name, Some(url), ep.clone(), ids_for(&pids, &label), streams, args)?;
            s.info.pgids = ids_for(&pgids, &label);
            subjects.push(s);
        }
    }
    for (l, _) in pids.iter().chain(&pgids).filter(|(l, _)| l.is_some()) {
        if !subjects.iter().any(|s| Some(&s.info.label) == l.as_ref()) {
            return Err(usage(format!("--pid/--pgid {}=…: no --proxy has that label", l.as_deref().unwrap_or(""))));
        }
    }
    let spec = BenchSpec {
        subjects,
        origins: addrs,
        phases: args.phases.clone(),
        concurrency: args.concurrency.iter().map(|c| usize::from(*c)).collect(),
        tunnels: args.tunnels.iter().map(|t| *t as usize).collect(),
        seconds: args.seconds.as_secs_f64(),
        rounds: usize::from(args.rounds),
        open_timeout: args.timeout,
        fd_limit,
    };
    let progress = Lines;
    let report = bench::run(&spec, &progress).await;
    drop(children);
    drop(origins);
    let md = report.to_markdown();
    let _ = write!(out, "\n{md}");
    if let Some(p) = &args.report {
        let json = serde_json::to_string_pretty(&report).expect("report serializes");
        std::fs::write(p, json + "\n").map_err(|e| cannot_run(format!("--report {}: {e}", p.display())))?;
    }
    if let Some(p) = &args.markdown {
        std::fs::write(p, md).map_err(|e| cannot_run(format!("--markdown {}: {e}", p.display())))?;
    }
    Ok(exit_code(&report))
}

/// 0 every proxy measured in every phase; 1 a proxy failed somewhere (a stalled or refusing proxy, a transfer
/// that did not complete); 4 no proxy measured at all.
fn exit_code(report: &BenchReport) -> u8 {
    let proxies: Vec<&str> =
        report.subjects.iter().filter(|s| s.kind == SubjectKind::Proxy).map(|s| s.label.as_str()).collect();
    let measured = |label: &str| {
        report.throughput.iter().any(|r| r.subject == label && r.gib_per_s.is_some())
            || report.rate.iter().any(|r| r.subject == label && r.tunnels_per_s > 0.0)
            || report.idle.iter().any(|r| r.subject == label && r.opened > 0)
    };
    let failed = |label: &str| {
        report.throughput.iter().any(|r| r.subject == label && r.error.is_some())
            || report.rate.iter().any(|r| r.subject == label && (r.stalled || r.tunnels_per_s == 0.0))
            || report.idle.iter().any(|r| r.subject == label && r.opened < r.requested)
    };
    if !proxies.iter().any(|l| measured(l)) {
        exit::NOTHING_JUDGED
    } else if proxies.iter().any(|l| failed(l)) {
        exit::FAILURES
    } else {
        exit::OK
    }
}

fn proxy_subject(
    label: &str,
    url: Option<&str>,
    ep: ProxyEndpoint,
    pids: Vec<u32>,
    streams: usize,
    args: &BenchArgs,
) -> Result<Subject, CliError> {
    let transport = ep.transport;
    let path = ProxyPath::new(ep, args.proxy_user.as_deref())
        .map_err(|e| usage(format!("{label}: {e}")))?
        .with_streams(streams);
    Ok(Subject {
        info: SubjectInfo {
            label: label.into(),
            kind: SubjectKind::Proxy,
            transport: Some(transport),
            url: url.map(str::to_string),
            pids,
            pgids: Vec::new(),
            streams: (streams > 1).then_some(streams),
        },
        route: Route::Proxy(Arc::new(path)),
    })
}

/// Progress as lines on standard error.
struct Lines;
impl bench::Progress for Lines {
    fn message(&self, text: &str) {
        eprintln!("bench: {text}");
    }
}
