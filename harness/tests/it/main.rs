//! Integration tests of the harness: the full catalog against the embedded reference proxy, hostile proxies,
//! the CLI (exit codes, errors, reports) and the committed report schema.

mod bench;
mod catalog;
mod cli;
mod embedded;
mod external;
mod fuzz;
mod hostile;
mod html;
mod matrix;
mod negative;
mod reports;
mod schema;
mod support;
mod verdicts;
