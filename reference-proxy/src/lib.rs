//! reference-proxy: a correct HTTP/1.1 CONNECT proxy over plain TCP and TLS, and the strict request parser
//! ([`wire`]) it is built on.
//!
//! Start it in-process with [`server::start`] and a [`config::ProxyConfig`] (see
//! [`config::ProxyConfig::for_testing`]), or run the `reference-proxy` binary.

pub mod auth;
pub mod cli;
pub mod config;
mod conn;
mod decision;
pub mod faults;
mod hooks;
pub mod http2;
pub mod policy;
mod relay;
pub mod resolve;
pub mod response;
pub mod server;
mod stream;
pub mod tls;
pub mod upstream;
pub mod wire;
pub mod yardstick;

pub use config::ProxyConfig;
pub use relay::CloseReason;
pub use server::{RunningProxy, StartError, start};
