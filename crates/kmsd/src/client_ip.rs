//! Which client address a request is attributed to (`aws:SourceIp`, the audit record's
//! `sourceIPAddress`): the TCP peer, or, when the peer is a configured trusted proxy, the
//! address that proxy reports in `X-Forwarded-For`.

use std::net::IpAddr;

/// The client address of a request from `peer` carrying `forwarded_for` (every
/// `X-Forwarded-For` header value, in order). Only trusted proxies are believed: walking the
/// list from the right (the hop nearest kmsd), trusted addresses are skipped and the first
/// untrusted one is the client. An entry that is not an IP address stops the walk at the last
/// trusted hop, so a forged or garbled list can never yield an address a trusted proxy did not
/// see.
pub fn resolve(peer: IpAddr, forwarded_for: &[&str], trusted: &[IpAddr]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.contains(&canonical(*ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let mut client = peer;
    for entry in forwarded_for
        .iter()
        .flat_map(|v| v.split(','))
        .rev()
        .map(str::trim)
    {
        match parse_entry(entry) {
            Some(ip) => {
                client = ip;
                if !is_trusted(&ip) {
                    break;
                }
            }
            None => break,
        }
    }
    client
}

/// An `X-Forwarded-For` entry: an IPv4 or IPv6 address, optionally `ipv4:port` or `[ipv6]:port`.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    entry
        .parse::<std::net::SocketAddr>()
        .ok()
        .map(|s| canonical(s.ip()))
}

/// IPv4-mapped IPv6 addresses as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn attribution_table() {
        let proxy = ip("10.0.0.1");
        let inner = ip("10.0.0.2");
        let trusted = [proxy, inner];
        // (peer, X-Forwarded-For headers, expected client)
        let rows: &[(&str, &[&str], &str)] = &[
            // Untrusted peers are the client, whatever they claim.
            ("198.51.100.9", &["203.0.113.7"], "198.51.100.9"),
            // A trusted proxy's report is believed.
            ("10.0.0.1", &["203.0.113.7"], "203.0.113.7"),
            // The client cannot prepend a forged hop: the rightmost untrusted entry wins.
            ("10.0.0.1", &["1.2.3.4, 203.0.113.7"], "203.0.113.7"),
            // Chains of trusted proxies are walked through, across several headers.
            ("10.0.0.1", &["203.0.113.7, 10.0.0.2"], "203.0.113.7"),
            ("10.0.0.1", &["203.0.113.7", "10.0.0.2"], "203.0.113.7"),
            // No header: the proxy itself.
            ("10.0.0.1", &[], "10.0.0.1"),
            // Garbage stops the walk at the last trusted hop.
            ("10.0.0.1", &["203.0.113.7, unknown"], "10.0.0.1"),
            ("10.0.0.1", &["203.0.113.7, garbage, 10.0.0.2"], "10.0.0.2"),
            // Ports and IPv6 forms.
            ("10.0.0.1", &["203.0.113.7:5555"], "203.0.113.7"),
            ("10.0.0.1", &["[2001:db8::1]:443"], "2001:db8::1"),
            ("10.0.0.1", &["2001:db8::1"], "2001:db8::1"),
            ("::ffff:10.0.0.1", &["203.0.113.7"], "203.0.113.7"),
            // Every hop trusted: the leftmost.
            ("10.0.0.1", &["10.0.0.2"], "10.0.0.2"),
        ];
        for (peer, xff, want) in rows {
            assert_eq!(
                resolve(ip(peer), xff, &trusted),
                ip(want),
                "peer {peer}, X-Forwarded-For {xff:?}"
            );
        }
        // Nobody trusted: always the peer.
        assert_eq!(
            resolve(proxy, &["203.0.113.7"], &[]),
            proxy,
            "no trusted proxies"
        );
    }
}
