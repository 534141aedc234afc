//! Destination policy: which ports and addresses a tunnel may reach.
//!
//! The policy is applied to the addresses actually connected to (after resolution), so a name cannot smuggle a
//! forbidden address past it. Secure defaults: port 443 only; loopback, private and other non-public ranges are
//! denied unless explicitly allowed; link-local, unspecified, broadcast and multicast are always denied.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::RangeInclusive;
use std::str::FromStr;

use thiserror::Error;

/// A set of ports given as lists and ranges, e.g. `443,8000-9000`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSet {
    ranges: Vec<RangeInclusive<u16>>,
}

impl PortSet {
    /// Every port, 1..=65535.
    pub fn all() -> Self {
        PortSet { ranges: vec![1..=65535] }
    }

    pub fn only(port: u16) -> Self {
        PortSet { ranges: vec![port..=port] }
    }

    pub fn contains(&self, port: u16) -> bool {
        self.ranges.iter().any(|r| r.contains(&port))
    }
}

impl Default for PortSet {
    /// RFC 9110 §9.3.6: proxies SHOULD restrict CONNECT to known ports; 443 is the one every browser needs.
    fn default() -> Self {
        PortSet::only(443)
    }
}

impl fmt::Display for PortSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.ranges.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if r.start() == r.end() {
                write!(f, "{}", r.start())?;
            } else {
                write!(f, "{}-{}", r.start(), r.end())?;
            }
        }
        Ok(())
    }
}

/// A malformed port list or network.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PolicyParseError {
    #[error("invalid port `{0}` (expected 1-65535)")]
    Port(String),
    #[error("invalid port range `{0}` (expected LOW-HIGH with LOW <= HIGH)")]
    Range(String),
    #[error("empty port list")]
    EmptyPorts,
    #[error("invalid network `{0}` (expected ADDRESS/PREFIX, e.g. 10.0.0.0/8 or fc00::/7)")]
    Net(String),
}

fn parse_port(text: &str) -> Result<u16, PolicyParseError> {
    match text.trim().parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(PolicyParseError::Port(text.to_owned())),
    }
}

impl FromStr for PortSet {
    type Err = PolicyParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut ranges = Vec::new();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            match item.split_once('-') {
                Some((lo, hi)) => {
                    let (lo, hi) = (parse_port(lo)?, parse_port(hi)?);
                    if lo > hi {
                        return Err(PolicyParseError::Range(item.to_owned()));
                    }
                    ranges.push(lo..=hi);
                }
                None => {
                    let p = parse_port(item)?;
                    ranges.push(p..=p);
                }
            }
        }
        if ranges.is_empty() {
            return Err(PolicyParseError::EmptyPorts);
        }
        Ok(PortSet { ranges })
    }
}

/// An IP network in CIDR notation. A bare address means a single host (/32 or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// `None` when the prefix is longer than the address.
    pub fn new(addr: IpAddr, prefix: u8) -> Option<Self> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(IpNet { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix_match(u128::from(net.to_bits()) << 96, u128::from(ip.to_bits()) << 96, self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => prefix_match(net.to_bits(), ip.to_bits(), self.prefix),
            _ => false,
        }
    }
}

fn prefix_match(net: u128, ip: u128, prefix: u8) -> bool {
    if prefix == 0 {
        return true;
    }
    let mask = u128::MAX << (128 - u32::from(prefix));
    net & mask == ip & mask
}

impl FromStr for IpNet {
    type Err = PolicyParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || PolicyParseError::Net(s.to_owned());
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s.trim(), None),
        };
        let addr: IpAddr = addr.trim_start_matches('[').trim_end_matches(']').parse().map_err(|_| err())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().map_err(|_| err())?,
            None => max,
        };
        IpNet::new(addr, prefix).ok_or_else(err)
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Why a destination was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum Denial {
    #[error("port {0} is not allowed")]
    Port(u16),
    /// Never reachable whatever the configuration (link-local, unspecified, broadcast, multicast).
    #[error("{0} is a {1} address, which is never allowed")]
    Forbidden(IpAddr, &'static str),
    #[error("{0} is in a denied network")]
    Denied(IpAddr),
    /// The destination is a name and the policy allows IP literals only.
    #[error("destination names are not allowed (this proxy tunnels to IP literals only)")]
    Name,
    /// Loopback, private and similar ranges, closed unless an allowed network covers them.
    #[error("{0} is a {1} address, not allowed by the configuration")]
    NotAllowed(IpAddr, &'static str),
}

/// Which destinations tunnels may reach. See the module documentation for the defaults.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DestinationPolicy {
    pub ports: PortSet,
    /// Networks opened even though they are in a range denied by default (loopback, private...).
    pub allow: Vec<IpNet>,
    /// Networks closed even though they would be allowed; deny wins over allow.
    pub deny: Vec<IpNet>,
    /// Refuse destinations given as names: only IP literals may be tunnelled to (a common operator policy; it
    /// keeps the proxy from resolving names on a client's behalf).
    pub ip_literals_only: bool,
}

impl DestinationPolicy {
    /// Every port, and loopback (127.0.0.0/8, ::1) allowed: for tests and the harness.
    pub fn loopback_any_port() -> Self {
        DestinationPolicy {
            ports: PortSet::all(),
            allow: vec![
                IpNet::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 0)), 8).expect("valid prefix"),
                IpNet::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 128).expect("valid prefix"),
            ],
            deny: Vec::new(),
            ip_literals_only: false,
        }
    }

    pub fn check_port(&self, port: u16) -> Result<(), Denial> {
        if self.ports.contains(port) { Ok(()) } else { Err(Denial::Port(port)) }
    }

    /// Checks one resolved address (IPv4-mapped and NAT64 forms are judged by the IPv4 address they carry).
    pub fn check_addr(&self, ip: IpAddr) -> Result<(), Denial> {
        let ip = canonical(ip);
        if let Some(class) = always_forbidden(ip) {
            return Err(Denial::Forbidden(ip, class));
        }
        if let IpAddr::V6(v6) = ip
            && let Some(v4) = nat64_embedded(v6)
            && let Some(class) = always_forbidden(IpAddr::V4(v4))
        {
            return Err(Denial::Forbidden(ip, class));
        }
        if self.deny.iter().any(|n| n.contains(ip)) {
            return Err(Denial::Denied(ip));
        }
        let restricted = restricted_class(ip).or_else(|| match ip {
            IpAddr::V6(v6) => nat64_embedded(v6).and_then(|v4| restricted_class(IpAddr::V4(v4))),
            IpAddr::V4(_) => None,
        });
        match restricted {
            Some(class) if !self.allow.iter().any(|n| n.contains(ip)) => Err(Denial::NotAllowed(ip, class)),
            _ => Ok(()),
        }
    }
}

/// `::ffff:a.b.c.d` is the IPv4 address a.b.c.d on a dual-stack socket.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_canonical(),
        v4 => v4,
    }
}

/// RFC 6052 well-known NAT64 prefix 64:ff9b::/96: on a NAT64 network this reaches the embedded IPv4 address.
fn nat64_embedded(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    (s[..6] == [0x64, 0xff9b, 0, 0, 0, 0]).then(|| Ipv4Addr::from_bits(v6.to_bits() as u32))
}

fn always_forbidden(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) if v4.is_unspecified() || v4.octets()[0] == 0 => Some("unspecified"),
        IpAddr::V4(v4) if v4.is_link_local() => Some("link-local"),
        IpAddr::V4(v4) if v4.is_broadcast() => Some("broadcast"),
        IpAddr::V4(v4) if v4.is_multicast() => Some("multicast"),
        IpAddr::V6(v6) if v6.is_unspecified() => Some("unspecified"),
        IpAddr::V6(v6) if v6.is_unicast_link_local() => Some("link-local"),
        IpAddr::V6(v6) if v6.is_multicast() => Some("multicast"),
        _ => None,
    }
}

fn restricted_class(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) if v4.is_loopback() => Some("loopback"),
        IpAddr::V4(v4) if v4.is_private() => Some("private"),
        // RFC 6598 shared address space (carrier-grade NAT).
        IpAddr::V4(v4) if v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64 => Some("shared (CGNAT)"),
        // RFC 1112 reserved 240.0.0.0/4 and RFC 6890 IETF protocol assignments 192.0.0.0/24.
        IpAddr::V4(v4) if v4.octets()[0] >= 240 => Some("reserved"),
        IpAddr::V4(v4) if v4.octets()[..3] == [192, 0, 0] => Some("reserved"),
        IpAddr::V6(v6) if v6.is_loopback() => Some("loopback"),
        IpAddr::V6(v6) if v6.is_unique_local() => Some("unique-local"),
        // Deprecated site-local fec0::/10.
        IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfec0 => Some("site-local"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn port_sets_parse_lists_and_ranges() {
        let p: PortSet = "443, 8000-9000,22".parse().unwrap();
        assert!(p.contains(443) && p.contains(8000) && p.contains(9000) && p.contains(22));
        assert!(!p.contains(7999) && !p.contains(9001) && !p.contains(80));
        assert_eq!(p.to_string(), "443,8000-9000,22");
        assert!("0".parse::<PortSet>().is_err());
        assert!("9000-8000".parse::<PortSet>().is_err());
        assert!("".parse::<PortSet>().is_err());
        assert!("65536".parse::<PortSet>().is_err());
        assert!(PortSet::default().contains(443) && !PortSet::default().contains(80));
    }

    #[test]
    fn nets_parse_and_match() {
        let n: IpNet = "10.0.0.0/8".parse().unwrap();
        assert!(n.contains(ip("10.255.1.2")) && !n.contains(ip("11.0.0.1")) && !n.contains(ip("::1")));
        let h: IpNet = "::1".parse().unwrap();
        assert!(h.contains(ip("::1")) && !h.contains(ip("::2")));
        assert!("0.0.0.0/0".parse::<IpNet>().unwrap().contains(ip("203.0.113.9")));
        assert!("10.0.0.0/33".parse::<IpNet>().is_err());
        assert!("nonsense/8".parse::<IpNet>().is_err());
    }

    #[test]
    fn secure_defaults() {
        let p = DestinationPolicy::default();
        assert_eq!(p.check_port(443), Ok(()));
        assert_eq!(p.check_port(25), Err(Denial::Port(25)));
        assert_eq!(p.check_addr(ip("203.0.113.7")), Ok(()));
        for denied in [
            "127.0.0.1",
            "::1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "100.64.0.1",
            "fc00::1",
            "::ffff:127.0.0.1",
            "64:ff9b::7f00:1",
        ] {
            assert!(matches!(p.check_addr(ip(denied)), Err(Denial::NotAllowed(..))), "{denied}");
        }
        for forbidden in ["0.0.0.0", "::", "169.254.169.254", "fe80::1", "224.0.0.1", "ff02::1", "255.255.255.255"] {
            assert!(matches!(p.check_addr(ip(forbidden)), Err(Denial::Forbidden(..))), "{forbidden}");
        }
    }

    #[test]
    fn allow_opens_restricted_ranges_but_never_forbidden_ones() {
        let mut p = DestinationPolicy::loopback_any_port();
        assert_eq!(p.check_addr(ip("127.0.0.1")), Ok(()));
        assert_eq!(p.check_addr(ip("::ffff:127.0.0.2")), Ok(()));
        assert!(p.check_addr(ip("10.0.0.1")).is_err());
        p.allow.push("0.0.0.0/0".parse().unwrap());
        assert!(matches!(p.check_addr(ip("169.254.1.1")), Err(Denial::Forbidden(..))));
        p.deny.push("127.0.0.2/32".parse().unwrap());
        assert_eq!(p.check_addr(ip("127.0.0.2")), Err(Denial::Denied(ip("127.0.0.2"))));
        assert_eq!(p.check_addr(ip("127.0.0.1")), Ok(()));
    }
}
