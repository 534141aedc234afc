//! The strict HTTP/1 request-head parser: no I/O, no allocation per request once warmed up, fuzzed.
//!
//! Strictness is deliberate. Where RFC 9112 lets a recipient choose between rejecting and repairing input (bare
//! LF line ends, obs-fold, CR or NUL in values, whitespace before the first field) this parser rejects, because
//! a proxy that repairs what the next hop rejects (or the reverse) is where request smuggling lives. Every
//! rejection is a [`WireError`] variant naming the rule and the status code to send.

mod authority;
mod chars;
mod error;
pub mod fuzz;
mod head;
pub mod oracle;
mod response;

pub use authority::{Authority, Host, HostField, parse_authority, parse_host_field, parse_ipv6};
pub use error::{AuthorityError, TargetForm, WireError};
pub use head::{Field, HeadParser, Limits, Progress, RequestHead, Version, parse_head, target_form};
pub use response::{MAX_RESPONSE_HEAD, ResponseError, ResponseHead, parse_response};

#[cfg(test)]
mod corpus_replay;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
