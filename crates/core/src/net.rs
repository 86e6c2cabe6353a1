//! Network restrictions: the allowed networks of clients, grants and tokens (the `cidr`
//! claim), and where a request really comes from behind trusted proxies (RFC 7239
//! `Forwarded`, or `X-Forwarded-For`).

use std::net::IpAddr;

use ipnet::IpNet;

/// Parses CIDR strings (a bare address counts as a /32 or /128). An IPv4-mapped IPv6
/// network (`::ffff:10.0.0.0/104`) becomes the IPv4 network it names, as addresses are
/// compared in their canonical form (see [`allows`]).
///
/// # Errors
/// The first string that is neither.
pub fn parse_networks<S: AsRef<str>>(list: &[S]) -> Result<Vec<IpNet>, String> {
    list.iter()
        .map(|s| {
            let s = s.as_ref().trim();
            s.parse::<IpNet>()
                .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                .map(|n| canonical(n.trunc()))
                .map_err(|_| s.to_owned())
        })
        .collect()
}

/// An IPv4-mapped IPv6 network as its IPv4 network; any other unchanged.
fn canonical(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => v6
            .addr()
            .to_ipv4_mapped()
            .and_then(|v4| ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96).ok())
            .map_or(net, IpNet::V4),
        _ => net,
    }
}

/// Whether `ip` lies in one of `networks` (IPv4-mapped IPv6 addresses count as IPv4).
pub fn allows(networks: &[IpNet], ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    networks.iter().any(|n| n.contains(&ip))
}

/// The networks in both lists; `None` stands for "anywhere". An empty result means
/// "nowhere".
pub fn intersect(a: Option<Vec<IpNet>>, b: Option<Vec<IpNet>>) -> Option<Vec<IpNet>> {
    match (a, b) {
        (None, x) | (x, None) => x,
        (Some(a), Some(b)) => {
            let mut out = Vec::new();
            for x in &a {
                for y in &b {
                    // Two CIDR blocks either nest or are disjoint.
                    let inner = if x.contains(y) {
                        Some(*y)
                    } else if y.contains(x) {
                        Some(*x)
                    } else {
                        None
                    };
                    if let Some(n) = inner
                        && !out.contains(&n)
                    {
                        out.push(n);
                    }
                }
            }
            Some(out)
        }
    }
}

/// The one header a deployment's proxies write the forwarding chain in. Only that one
/// is read: a proxy that appends `X-Forwarded-For` passes a client's own `Forwarded`
/// through untouched, so believing both would let the client pick its address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2` (the de-facto standard).
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client, for=proxy1`.
    Forwarded,
}

impl ForwardedHeader {
    /// The header's name, lower case.
    pub fn name(self) -> &'static str {
        match self {
            Self::XForwardedFor => "x-forwarded-for",
            Self::Forwarded => "forwarded",
        }
    }
}

/// Why a forwarding chain was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ForwardedError {
    /// A hop is not an address (a typo, garbage, an element without `for=`).
    #[error("malformed hop in the forwarding header")]
    Malformed,
    /// A hop is `unknown` or an obfuscated identifier (RFC 7239 §6.2, §6.3).
    #[error("unknown hop in the forwarding header")]
    Unknown,
}

/// The client's address: the socket `peer`, unless the peer is one of the `trusted`
/// proxies; then the chain in `chain` (the value of the configured `header`, every line
/// joined with commas) is read right to left, skipping trusted hops, and the first
/// untrusted address is the client. Headers from an untrusted peer are ignored: anyone
/// can write them. A trusted peer without the header is itself the client.
///
/// # Errors
/// A hop that must be read (right of the first untrusted one, inclusive) is malformed or
/// unknown: the request cannot be attributed, and guessing (the proxy's own address, or
/// a hop further left that the client wrote) would let it pass as someone else.
pub fn source_address(
    peer: IpAddr,
    header: ForwardedHeader,
    chain: Option<&str>,
    trusted: &[IpNet],
) -> Result<IpAddr, ForwardedError> {
    let peer = peer.to_canonical();
    if !allows(trusted, peer) {
        return Ok(peer);
    }
    let Some(chain) = chain else {
        return Ok(peer);
    };
    let mut current = peer;
    for element in chain.rsplit(',') {
        let hop = match header {
            ForwardedHeader::XForwardedFor => element.trim(),
            ForwardedHeader::Forwarded => forwarded_for(element)?,
        };
        current = parse_hop(hop)?.to_canonical();
        if !allows(trusted, current) {
            return Ok(current);
        }
    }
    Ok(current)
}

/// The `for=` value of one `Forwarded` element (RFC 7239 §4): `pair *( ";" pair )`, with
/// exactly one `for`.
fn forwarded_for(element: &str) -> Result<&str, ForwardedError> {
    let mut found = None;
    for pair in element.split(';') {
        let (name, value) = pair
            .trim()
            .split_once('=')
            .ok_or(ForwardedError::Malformed)?;
        let name = name.trim();
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(ForwardedError::Malformed);
        }
        if name.eq_ignore_ascii_case("for") {
            if found.is_some() {
                return Err(ForwardedError::Malformed);
            }
            let value = value.trim();
            let value = match value.strip_prefix('"') {
                Some(rest) => rest.strip_suffix('"').ok_or(ForwardedError::Malformed)?,
                None => value,
            };
            found = Some(value);
        }
    }
    found.ok_or(ForwardedError::Malformed)
}

/// One hop: `1.2.3.4`, `1.2.3.4:80`, `[::1]`, `[::1]:80` or a bare IPv6 address;
/// `unknown` and obfuscated `_names` (RFC 7239 §6) are refused as unknown.
fn parse_hop(hop: &str) -> Result<IpAddr, ForwardedError> {
    if hop.eq_ignore_ascii_case("unknown") || hop.starts_with('_') {
        return Err(ForwardedError::Unknown);
    }
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Ok(ip);
    }
    let parsed = if let Some(rest) = hop.strip_prefix('[') {
        rest.split_once(']').and_then(|(host, port)| {
            (port.is_empty() || port.strip_prefix(':').is_some_and(valid_port))
                .then(|| host.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6))
                .flatten()
        })
    } else {
        hop.rsplit_once(':').and_then(|(host, port)| {
            valid_port(port)
                .then(|| host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4))
                .flatten()
        })
    };
    parsed.ok_or(ForwardedError::Malformed)
}

/// A port number, or an obfuscated port (RFC 7239 §6.3: `_` and letters, digits, `.`,
/// `_`, `-`).
fn valid_port(port: &str) -> bool {
    port.parse::<u16>().is_ok()
        || (port.starts_with('_')
            && port.len() > 1
            && port
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        parse_networks(list).unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn intersection_of_nested_and_disjoint_blocks() {
        let a = Some(nets(&["10.0.0.0/8", "192.168.1.0/24"]));
        let b = Some(nets(&["10.1.0.0/16", "172.16.0.0/12", "192.168.0.0/16"]));
        assert_eq!(
            intersect(a.clone(), b),
            Some(nets(&["10.1.0.0/16", "192.168.1.0/24"]))
        );
        assert_eq!(intersect(a.clone(), None), a);
        assert_eq!(intersect(None, None), None);
        assert_eq!(
            intersect(Some(nets(&["10.0.0.0/8"])), Some(nets(&["11.0.0.0/8"]))),
            Some(vec![])
        );
        assert!(allows(&nets(&["127.0.0.2"]), ip("::ffff:127.0.0.2")));
        // Found by the cidr_parser fuzz target: a mapped network matched nothing.
        assert_eq!(nets(&["::ffff:10.0.0.1/104"]), nets(&["10.0.0.0/8"]));
        assert!(allows(&nets(&["::ffff:10.0.0.0/104"]), ip("10.1.2.3")));
        assert!(!allows(&nets(&["127.0.0.2/32"]), ip("127.0.0.1")));
    }

    fn check(
        header: ForwardedHeader,
        peer: &str,
        chain: Option<&str>,
        expected: Result<&str, ForwardedError>,
    ) {
        let trusted = nets(&["10.0.0.0/8"]);
        assert_eq!(
            source_address(ip(peer), header, chain, &trusted),
            expected.map(ip),
            "{header:?} {chain:?}"
        );
    }

    #[test]
    fn source_address_trusts_only_configured_proxies() {
        use ForwardedError::{Malformed, Unknown};
        use ForwardedHeader::{Forwarded, XForwardedFor as Xff};
        // Untrusted peer: headers ignored, however malformed.
        check(Xff, "203.0.113.9", Some("1.1.1.1"), Ok("203.0.113.9"));
        check(Xff, "203.0.113.9", Some("garbage"), Ok("203.0.113.9"));
        // Trusted peer: rightmost untrusted hop, skipping trusted ones; a spoofed
        // leftmost entry is not reached (not even when it is garbage).
        check(
            Xff,
            "10.0.0.1",
            Some("6.6.6.6, 198.51.100.7, 10.0.0.2"),
            Ok("198.51.100.7"),
        );
        check(
            Xff,
            "10.0.0.1",
            Some("garbage, 198.51.100.7"),
            Ok("198.51.100.7"),
        );
        check(
            Xff,
            "10.0.0.1",
            Some("198.51.100.7:8080"),
            Ok("198.51.100.7"),
        );
        check(
            Xff,
            "10.0.0.1",
            Some("[2001:db8::1]:4711"),
            Ok("2001:db8::1"),
        );
        check(Xff, "10.0.0.1", Some("10.0.0.3, 10.0.0.2"), Ok("10.0.0.3"));
        check(Xff, "10.0.0.1", None, Ok("10.0.0.1"));
        // Only the configured header counts: Forwarded is not X-Forwarded-For.
        check(
            Forwarded,
            "10.0.0.1",
            Some("for=6.6.6.6, for=\"[2001:db8::1]:4711\";proto=https, for=10.0.0.3"),
            Ok("2001:db8::1"),
        );
        check(
            Forwarded,
            "10.0.0.1",
            Some("for=198.51.100.8;proto=https;by=10.0.0.1"),
            Ok("198.51.100.8"),
        );
        check(
            Forwarded,
            "10.0.0.1",
            Some("For=\"198.51.100.8:_port\""),
            Ok("198.51.100.8"),
        );
        // Unreadable hops that must be read: refused, never the proxy's own address.
        check(Xff, "10.0.0.1", Some("garbage"), Err(Malformed));
        check(
            Xff,
            "10.0.0.1",
            Some("198.51.100.7, garbage"),
            Err(Malformed),
        );
        check(
            Xff,
            "10.0.0.1",
            Some("198.51.100.7, 10.0.0.2, "),
            Err(Malformed),
        );
        check(Xff, "10.0.0.1", Some("unknown"), Err(Unknown));
        check(Xff, "10.0.0.1", Some("1.2.3.4:99999"), Err(Malformed));
        check(Xff, "10.0.0.1", Some("[::1"), Err(Malformed));
        check(Xff, "10.0.0.1", Some("for=198.51.100.7"), Err(Malformed));
        check(Forwarded, "10.0.0.1", Some("for=unknown"), Err(Unknown));
        check(Forwarded, "10.0.0.1", Some("for=_hidden"), Err(Unknown));
        check(Forwarded, "10.0.0.1", Some("proto=https"), Err(Malformed));
        check(
            Forwarded,
            "10.0.0.1",
            Some("for=1.2.3.4;for=5.6.7.8"),
            Err(Malformed),
        );
        check(Forwarded, "10.0.0.1", Some("for=\"1.2.3.4"), Err(Malformed));
        check(Forwarded, "10.0.0.1", Some("198.51.100.7"), Err(Malformed));
    }
}
