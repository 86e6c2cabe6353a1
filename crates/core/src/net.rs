//! Network restrictions: the allowed networks of clients, grants and tokens (the `cidr`
//! claim), and where a request really comes from behind trusted proxies (RFC 7239
//! `Forwarded`, or `X-Forwarded-For`).

use std::net::IpAddr;

use ipnet::IpNet;

/// Parses CIDR strings (a bare address counts as a /32 or /128).
///
/// # Errors
/// The first string that is neither.
pub fn parse_networks<S: AsRef<str>>(list: &[S]) -> Result<Vec<IpNet>, String> {
    list.iter()
        .map(|s| {
            let s = s.as_ref().trim();
            s.parse::<IpNet>()
                .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                .map(|n| n.trunc())
                .map_err(|_| s.to_owned())
        })
        .collect()
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

/// The client's address: the socket `peer`, unless the peer is one of the `trusted`
/// proxies; then the forwarding chain (`Forwarded`'s `for=` values, else
/// `X-Forwarded-For`) is read right to left, skipping trusted hops, and the first
/// untrusted address is the client. A hop that cannot be read (`unknown`, an obfuscated
/// name) stops the walk at the last trusted hop. Headers from an untrusted peer are
/// ignored: anyone can write them.
pub fn source_address(
    peer: IpAddr,
    forwarded: Option<&str>,
    x_forwarded_for: Option<&str>,
    trusted: &[IpNet],
) -> IpAddr {
    let peer = peer.to_canonical();
    if !allows(trusted, peer) {
        return peer;
    }
    let chain: Vec<Option<IpAddr>> = match (forwarded, x_forwarded_for) {
        (Some(f), _) => forwarded_for(f),
        (None, Some(x)) => x.split(',').map(|h| parse_hop(h.trim())).collect(),
        (None, None) => return peer,
    };
    let mut current = peer;
    for hop in chain.iter().rev() {
        match hop {
            Some(ip) => {
                current = ip.to_canonical();
                if !allows(trusted, current) {
                    return current;
                }
            }
            None => return current,
        }
    }
    current
}

/// The `for=` values of a `Forwarded` header (RFC 7239 §4), left to right.
fn forwarded_for(header: &str) -> Vec<Option<IpAddr>> {
    header
        .split(',')
        .filter_map(|element| {
            element.split(';').find_map(|pair| {
                let (name, value) = pair.trim().split_once('=')?;
                name.trim()
                    .eq_ignore_ascii_case("for")
                    .then(|| parse_hop(value.trim().trim_matches('"')))
            })
        })
        .collect()
}

/// One hop: `1.2.3.4`, `1.2.3.4:80`, `[::1]`, `[::1]:80` or a bare IPv6 address.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = hop.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok();
    }
    let (host, port) = hop.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
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
        assert!(!allows(&nets(&["127.0.0.2/32"]), ip("127.0.0.1")));
    }

    #[test]
    fn source_address_trusts_only_configured_proxies() {
        let trusted = nets(&["10.0.0.0/8"]);
        // Untrusted peer: headers ignored.
        assert_eq!(
            source_address(ip("203.0.113.9"), None, Some("1.1.1.1"), &trusted),
            ip("203.0.113.9")
        );
        // Trusted peer: rightmost untrusted hop, skipping trusted ones; a spoofed
        // leftmost entry is not reached.
        assert_eq!(
            source_address(
                ip("10.0.0.1"),
                None,
                Some("6.6.6.6, 198.51.100.7, 10.0.0.2"),
                &trusted
            ),
            ip("198.51.100.7")
        );
        assert_eq!(
            source_address(
                ip("10.0.0.1"),
                Some(r#"for=6.6.6.6, for="[2001:db8::1]:4711";proto=https, for=10.0.0.3"#),
                Some("9.9.9.9"),
                &trusted
            ),
            ip("2001:db8::1")
        );
        assert_eq!(
            source_address(ip("10.0.0.1"), Some("for=unknown"), None, &trusted),
            ip("10.0.0.1")
        );
        assert_eq!(
            source_address(ip("10.0.0.1"), None, Some("198.51.100.7:8080"), &trusted),
            ip("198.51.100.7")
        );
        assert_eq!(
            source_address(ip("10.0.0.1"), None, None, &trusted),
            ip("10.0.0.1")
        );
    }
}
