//! reference-proxy: a correct HTTP/1.1 CONNECT proxy over plain TCP and TLS, and the strict request parser
//! ([`wire`]) it is built on.

pub mod wire;
