//! The connect-harness library: scenario engine, instrumented origins, client driver, verdicts and reports.
//!
//! Flow of a run: [`scenario`] loads TOML scenarios (embedded and `--scenarios DIR`, matrices expanded);
//! [`runner`] runs each scenario on each transport concurrently; for one run it leases a set of [`origin`]s,
//! and [`exec`] connects through [`client`] (plain or TLS, every wait with a deadline) and executes the steps;
//! [`judge`] turns the step results into a verdict (pure); the runner emits events that the terminal, JSON and
//! JUnit consumers in [`report`] render. [`cli`] wires it to the `connect-harness` binary; [`exit`] holds the
//! exit codes; [`expect`] reads known deviations.

pub mod bench;
pub mod cli;
pub mod client;
pub mod escape;
pub mod exec;
pub mod exit;
pub mod expect;
pub mod fuzz;
pub mod judge;
pub mod matrix;
pub mod origin;
pub mod policy;
pub mod preflight;
pub mod proxy_log;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod shard;
