//! The `reference-proxy` binary: flags and an optional TOML file, one log line per connection, graceful
//! shutdown on SIGINT/SIGTERM.

use anyhow::Context as _;
use clap::Parser as _;
use reference_proxy::cli::Args;
use tracing_subscriber::EnvFilter;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let resolved = args.resolve().context("invalid configuration")?;
    init_logging(resolved.log_json);
    raise_fd_limit();
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")?;
    runtime.block_on(run(resolved))
}

fn init_logging(json: bool) {
    use std::io::IsTerminal as _;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Each tunnel needs two descriptors (three or more while splicing): lift the soft limit to the hard one.
fn raise_fd_limit() {
    #[cfg(unix)]
    {
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit/setrlimit with a valid pointer to an rlimit struct.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
                lim.rlim_cur = lim.rlim_max;
                if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                    tracing::warn!("could not raise the open-file limit");
                }
            }
        }
    }
}

async fn run(resolved: reference_proxy::cli::Resolved) -> anyhow::Result<()> {
    // Installed before the listeners are announced, so a signal sent right after start-up is never fatal.
    let signals = Signals::install()?;
    let proxy = reference_proxy::start(resolved.config).await.context("starting the proxy")?;
    if let (Some(path), Some(pem)) = (&resolved.ca_out, proxy.ca_cert_pem()) {
        std::fs::write(path, pem).with_context(|| format!("writing the CA certificate to {}", path.display()))?;
        tracing::info!(path = %path.display(), "wrote the CA certificate");
    }
    // One line per listener on stdout, for scripts (and the benchmark) to find ephemeral ports.
    for addr in proxy.plain_addrs() {
        println!("listening plain {addr}");
    }
    for addr in proxy.tls_addrs() {
        println!("listening tls {addr}");
    }
    signals.wait().await;
    tracing::info!("shutting down: no new connections, draining tunnels");
    proxy.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

/// SIGINT and SIGTERM, both meaning "drain and exit 0".
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl Signals {
    #[cfg(unix)]
    fn install() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
        })
    }

    #[cfg(not(unix))]
    fn install() -> anyhow::Result<Self> {
        Ok(Signals {})
    }

    #[cfg(unix)]
    async fn wait(mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }

    #[cfg(not(unix))]
    async fn wait(self) {
        let _ = tokio::signal::ctrl_c().await;
    }
}
