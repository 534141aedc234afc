//! Integration tests of reference-proxy on real loopback sockets (one test binary, see the workspace rules).

mod binary;
mod chained;
mod curl;
mod errors;
#[cfg(feature = "faults")]
mod faults;
mod http2;
mod shutdown;
mod support;
mod tls;
mod tunnel;
