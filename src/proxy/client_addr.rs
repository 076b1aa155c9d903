//! The real client address: the peer's, unless the peer is a trusted proxy,
//! in which case `X-Forwarded-For` is walked from the right, skipping trusted
//! hops, to the first address limpet does not trust (nginx's
//! `real_ip_recursive on`, HAProxy's `option forwardfor` behind a trusted LB).

use std::net::IpAddr;

use ipnet::IpNet;

use crate::fields::Fields;

pub const X_FORWARDED_FOR: http::HeaderName = http::HeaderName::from_static("x-forwarded-for");

/// The client of a request on a connection from `peer`, and whether that
/// peer is a trusted proxy whose forwarding headers are believed (it must
/// be in `trusted_proxies`, and may not be when a PROXY header named the
/// client: `may_forward`).
pub fn client(
    peer: IpAddr,
    may_forward: bool,
    headers: &impl Fields,
    trusted: &[IpNet],
) -> (IpAddr, bool) {
    if may_forward && is_trusted(peer, trusted) {
        (resolve(peer, headers, trusted), true)
    } else {
        (peer, false)
    }
}

pub fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    trusted.iter().any(|net| net.contains(&ip))
}

pub fn resolve(peer: IpAddr, headers: &impl Fields, trusted: &[IpNet]) -> IpAddr {
    if !is_trusted(peer, trusted) {
        return peer;
    }
    let mut client = peer;
    // The fields from the last one (rarely more than one: finding the
    // k-th again costs less than collecting them).
    let fields = headers.all(&X_FORWARDED_FOR).count();
    for k in (0..fields).rev() {
        let Some(value) = headers.all(&X_FORWARDED_FOR).nth(k) else {
            return client;
        };
        let Ok(value) = std::str::from_utf8(value) else {
            return client;
        };
        for part in value.rsplit(',') {
            let Some(ip) = parse_hop(part.trim()) else {
                return client;
            };
            client = ip;
            if !is_trusted(ip, trusted) {
                return ip;
            }
        }
    }
    client
}

/// One X-Forwarded-For entry: an address, possibly with a port or brackets.
fn parse_hop(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Ok(sa) = s.parse::<std::net::SocketAddr>() {
        return Some(sa.ip().to_canonical());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, HeaderValue};

    fn h(v: &str) -> HeaderMap {
        let mut m = HeaderMap::new();
        m.insert(
            X_FORWARDED_FOR,
            HeaderValue::from_str(v).unwrap_or(HeaderValue::from_static("")),
        );
        m
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap_or_else(|_| IpNet::default())];
        let peer: IpAddr = [192, 0, 2, 1].into();
        assert_eq!(resolve(peer, &h("1.2.3.4"), &trusted), peer);
    }

    #[test]
    fn a_trusted_peer_chain_is_walked_to_the_first_untrusted_hop() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap_or_else(|_| IpNet::default())];
        let peer: IpAddr = [10, 0, 0, 1].into();
        assert_eq!(
            resolve(peer, &h("1.2.3.4, 5.6.7.8, 10.1.1.1"), &trusted),
            IpAddr::from([5, 6, 7, 8])
        );
        assert_eq!(
            resolve(peer, &h("garbage, 10.1.1.1"), &trusted),
            IpAddr::from([10, 1, 1, 1])
        );
        assert_eq!(resolve(peer, &HeaderMap::new(), &trusted), peer);
    }
}
