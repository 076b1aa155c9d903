//! nginx's value syntaxes, read into what `lb.yaml` writes: times
//! (`60`, `500ms`, `1m30s`) as durations and back as `lb.yaml` writes them,
//! addresses as `server` and `proxy_pass` write them, and the name of a
//! server known only by its address. Pure functions of their text, used by
//! the context walk (`nginx.rs`) and the `upstream` and `server` readers.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::import::model::lb_name;

/// An nginx time (`60`, `500ms`, `1m30s`, `2h`, `1d`) as a duration.
pub(crate) fn duration(s: &str) -> Option<Duration> {
    if let Ok(n) = s.parse::<u64>() {
        return Some(Duration::from_secs(n));
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let n: u64 = rest.get(..digits)?.parse().ok()?;
        rest = &rest[digits..];
        let unit = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let ms = match rest.get(..unit)? {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 7 * 86_400_000,
            "M" => 30 * 86_400_000,
            "y" => 365 * 86_400_000,
            _ => return None,
        };
        rest = &rest[unit..];
        total = total.checked_add(Duration::from_millis(n.checked_mul(ms)?))?;
    }
    Some(total)
}

/// A duration as lb.yaml writes it: `2h`, `5m`, `75s` or `500ms`.
pub(crate) fn show(d: Duration) -> String {
    let s = d.as_secs();
    match (d.subsec_millis(), s) {
        (0, s) if s > 0 && s % 3600 == 0 => format!("{}h", s / 3600),
        (0, s) if s > 0 && s % 60 == 0 => format!("{}m", s / 60),
        (0, s) => format!("{s}s"),
        _ => format!("{}ms", d.as_millis()),
    }
}

/// The name of a server known only by its address: `10.0.0.1_8080`.
pub(crate) fn server_name(addr: SocketAddr) -> String {
    lb_name(&format!("{}_{}", addr.ip(), addr.port()))
}

/// An address as nginx writes it after `server` or in `proxy_pass`.
pub(crate) enum Address {
    Ip(SocketAddr),
    Unix,
    Host,
}

pub(crate) fn address(s: &str, default_port: u16) -> Address {
    if s.starts_with("unix:") {
        return Address::Unix;
    }
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Address::Ip(a);
    }
    let bare = s.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<IpAddr>() {
        Ok(ip) => Address::Ip(SocketAddr::new(ip, default_port)),
        Err(_) => Address::Host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nginx_times_become_lb_yaml_durations() {
        assert_eq!(duration("60").map(show).as_deref(), Some("1m"));
        assert_eq!(duration("75").map(show).as_deref(), Some("75s"));
        assert_eq!(duration("1m30s").map(show).as_deref(), Some("90s"));
        assert_eq!(duration("500ms").map(show).as_deref(), Some("500ms"));
        assert_eq!(duration("1h").map(show).as_deref(), Some("1h"));
        assert_eq!(duration("2m").map(show).as_deref(), Some("2m"));
        assert_eq!(duration("1x"), None);
        assert_eq!(duration("s"), None);
    }
}
