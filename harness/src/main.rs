//! `connect-harness`: conformance test harness for HTTP CONNECT proxies. The work is in the library.

use std::process::ExitCode;

use clap::Parser;
use harness::cli::{self, Cli, Command};

fn main() -> ExitCode {
    let args = Cli::parse();
    match real_main(args) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let code = e.downcast_ref::<cli::CliError>().map(|c| c.code).unwrap_or(harness::exit::CANNOT_RUN);
            eprintln!("connect-harness: {e:#}");
            ExitCode::from(code)
        }
    }
}

fn real_main(args: Cli) -> anyhow::Result<u8> {
    match args.command {
        Command::List(a) => Ok(cli::list(&a, &mut std::io::stdout().lock())?),
        Command::Matrix(a) => Ok(cli::matrix(&a, &mut std::io::stdout().lock())?),
        Command::Report(a) => Ok(cli::report(&a, &mut std::io::stdout().lock())?),
        Command::Schema(a) => {
            if a.fuzz {
                print!("{}", harness::fuzz::output::schema_json());
            } else if a.bench {
                print!("{}", harness::bench::report::schema_json());
            } else {
                print!("{}", harness::report::schema_json());
            }
            Ok(harness::exit::OK)
        }
        Command::Fuzz(a) => {
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            let tty = cli::stdout_is_tty();
            Ok(rt.block_on(cli::fuzz(&a, Box::new(std::io::stdout()), tty))?)
        }
        Command::Bench(a) => {
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            let exe = std::env::current_exe()?;
            Ok(rt.block_on(cli::bench(&a, &exe, &mut std::io::stdout()))?)
        }
        Command::ServeReference(a) => {
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            Ok(rt.block_on(cli::serve_reference(&a))?)
        }
        Command::Run(a) => {
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            let tty = cli::stdout_is_tty();
            Ok(rt.block_on(cli::run(&a, Box::new(std::io::stdout()), tty))?)
        }
    }
}
