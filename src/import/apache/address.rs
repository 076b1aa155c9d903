//! httpd's addresses as `lb.yaml` writes them: a `Listen` or
//! `<VirtualHost>` address as the `IP:port` a listener binds, a
//! `ServerName`/`ServerAlias` as a route's host. Pure functions of their
//! text, used by the walk (`apache.rs`) and the listeners (`listener.rs`).

/// A host name of `ServerName`/`ServerAlias`, without scheme and port.
pub(super) fn host(n: &str) -> String {
    let n = n.split_once("://").map_or(n, |(_, r)| r);
    let n = if n.starts_with('[') {
        n
    } else {
        n.split(':').next().unwrap_or(n)
    };
    n.to_ascii_lowercase()
}

/// `Listen` / `<VirtualHost>` address → `IP:port`: `*`, `_default_` and a
/// bare port mean every address; no port means 80.
pub(super) fn bind(a: &str) -> String {
    let a = a.trim();
    let (h, p) = match a.rsplit_once(':') {
        Some((h, p)) if !p.contains(']') && !h.is_empty() => (h, p),
        Some(("", p)) => ("*", p),
        _ if a.parse::<u16>().is_ok() => ("*", a),
        _ => (a, "80"),
    };
    let h = match h {
        "*" | "_default_" | "0.0.0.0" => "0.0.0.0",
        h => h,
    };
    format!("{h}:{p}")
}

/// Whether two `IP:port` binds are on one port.
pub(super) fn same_port(a: &str, b: &str) -> bool {
    a.rsplit_once(':').map(|(_, p)| p) == b.rsplit_once(':').map(|(_, p)| p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_normalized() {
        assert_eq!(bind("*:80"), "0.0.0.0:80");
        assert_eq!(bind("443"), "0.0.0.0:443");
        assert_eq!(bind("10.0.0.5:8080"), "10.0.0.5:8080");
        assert_eq!(bind("_default_:443"), "0.0.0.0:443");
        assert_eq!(bind("[::]:80"), "[::]:80");
        assert_eq!(host("www.example.com:443"), "www.example.com");
    }
}
