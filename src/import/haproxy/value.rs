//! HAProxy's value syntaxes, read into what `lb.yaml` writes: durations
//! (milliseconds unless a unit says otherwise), sizes with `k`/`m`/`g`,
//! `IP:port` addresses, and names limpet accepts.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// `5s`, `1500` (ms), `2m`, `100us`.
pub fn duration(v: &str) -> Option<Duration> {
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (n, unit) = v.split_at(split);
    let n: u64 = n.parse().ok()?;
    Some(match unit {
        "" | "ms" => Duration::from_millis(n),
        "us" => Duration::from_micros(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        "d" => Duration::from_secs(n.saturating_mul(86_400)),
        _ => return None,
    })
}

/// A duration as `lb.yaml` writes it: `500ms`, `5s`, `30m`, `3h`.
pub fn show(d: Duration) -> String {
    let ms = d.as_millis().max(1);
    if !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    let s = ms / 1000;
    if s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else if s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

/// A duration within `[min, max]`, written; `None` when outside.
pub fn within(v: &str, min: Duration, max: Duration) -> Option<String> {
    duration(v).filter(|d| *d >= min && *d <= max).map(show)
}

/// `1m` = 1048576 entries, as HAProxy counts them.
pub fn size(v: &str) -> Option<u64> {
    let (n, mul) = match v.char_indices().last()? {
        (i, 'k' | 'K') => (&v[..i], 1024),
        (i, 'm' | 'M') => (&v[..i], 1024 * 1024),
        (i, 'g' | 'G') => (&v[..i], 1024 * 1024 * 1024),
        _ => (v, 1),
    };
    n.parse::<u64>().ok().map(|n| n.saturating_mul(mul))
}

/// An `IP:port` (`*:80`, `:80`, `:::443`, `[::1]:80`, `ipv4@…`), or why not.
pub fn address(v: &str) -> Result<SocketAddr, &'static str> {
    let v = v
        .strip_prefix("ipv4@")
        .or_else(|| v.strip_prefix("ipv6@"))
        .unwrap_or(v);
    if v.starts_with('/') || v.contains('@') {
        return Err(
            "a UNIX socket or another address family: limpet listens and connects over TCP/IP",
        );
    }
    if v.contains("${") || v.starts_with('$') {
        return Err("an environment variable: write the address itself");
    }
    if let Ok(a) = v.parse::<SocketAddr>() {
        return if a.port() == 0 {
            Err("port 0: limpet needs a port from 1 to 65535")
        } else {
            Ok(a)
        };
    }
    let Some((host, port)) = v.rsplit_once(':') else {
        return Err("no port: limpet needs IP:port");
    };
    let port = match port.parse::<u16>() {
        Ok(0) => return Err("port 0: limpet needs a port from 1 to 65535"),
        Ok(p) => p,
        Err(_) => return Err("a port range or port offset: limpet needs one port"),
    };
    let ip = match host {
        "" | "*" => IpAddr::from([0, 0, 0, 0]),
        h => h
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .map_err(
                |_| "a host name: limpet connects to IP addresses here; write the server's IP",
            )?,
    };
    Ok(SocketAddr::new(ip, port))
}

/// A cookie value limpet accepts as a route.
pub fn token(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 256
        && v.bytes()
            .all(|b| b.is_ascii_graphic() && !b";,=\"\\".contains(&b))
}

/// A route `host` limpet accepts: DNS labels, optionally under `*.`.
pub fn route_host(h: &str) -> bool {
    let name = h.strip_prefix("*.").unwrap_or(h);
    name.len() <= 253
        && name.split('.').all(|l| {
            (1..=63).contains(&l.len())
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
        })
}

/// A route `path_prefix` limpet accepts: `/…`, printable, no `?` or `#`,
/// already normalized (else it would never match).
pub fn route_path(p: &str) -> bool {
    p.starts_with('/')
        && p.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'?' && b != b'#')
        && crate::path::normalize(p) == p
}

/// `10.0.0.0/8`, `192.0.2.7` (→ `/32`): a network `trusted_proxies` reads.
pub fn network(v: &str) -> Option<String> {
    if v.parse::<ipnet::IpNet>().is_ok() {
        return Some(v.to_owned());
    }
    v.parse::<IpAddr>().ok().map(|ip| match ip {
        IpAddr::V4(_) => format!("{ip}/32"),
        IpAddr::V6(_) => format!("{ip}/128"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn values_read_as_haproxy_reads_them() {
        assert_eq!(duration("1500"), Some(Duration::from_millis(1500)));
        assert_eq!(show(Duration::from_millis(1500)), "1500ms");
        assert_eq!(
            within("30s", Duration::from_millis(1), Duration::from_secs(3600)).as_deref(),
            Some("30s")
        );
        assert_eq!(
            within("2d", Duration::from_millis(1), Duration::from_secs(3600)),
            None
        );
        assert_eq!(show(Duration::from_secs(300)), "5m");
        assert_eq!(show(Duration::from_secs(7200)), "2h");
        assert_eq!(duration("5x"), None);
        assert_eq!(size("1m"), Some(1_048_576));
        assert_eq!(size("200k"), Some(204_800));
        assert_eq!(
            address("*:80").map(|a| a.to_string()).as_deref(),
            Ok("0.0.0.0:80")
        );
        assert_eq!(
            address(":::443").map(|a| a.to_string()).as_deref(),
            Ok("[::]:443")
        );
        assert_eq!(address("ipv4@10.0.0.1:8080").map(|a| a.port()), Ok(8080));
        assert!(address("app1.internal:8080").is_err());
        assert!(address("10.0.0.1").is_err());
        assert!(address("10.0.0.1:80-81").is_err());
        assert_eq!(network("10.1.2.3").as_deref(), Some("10.1.2.3/32"));
        assert_eq!(network("nope"), None);
    }

    proptest! {
        #[test]
        fn value_parsers_never_panic_and_names_are_valid(v in "\\PC*") {
            let _ = duration(&v);
            let _ = size(&v);
            let _ = address(&v);
            let _ = network(&v);
            let n = crate::import::model::lb_name(&v);
            prop_assert!(!n.is_empty() && n.len() <= 64 && !n.starts_with('.'));
            prop_assert!(n.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b)));
        }
    }
}
