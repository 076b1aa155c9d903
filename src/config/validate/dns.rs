//! Servers from DNS: `resolvers`, and a pool's `discover`.

use std::net::SocketAddr;
use std::time::Duration;

use super::super::file::{self, S};
use super::super::{ConfigError, Discover, DiscoverKind, Resolvers};
use super::checker::{Checker, HOUR, SEC, Span, is_dns_name};

/// Most servers `discover` may make (`max_servers`).
pub const MAX_DISCOVERED: u64 = 1024;

pub fn resolvers(
    c: &Checker<'_>,
    f: Option<&file::ResolversFile>,
) -> Result<Resolvers, ConfigError> {
    let d = Resolvers::default();
    let Some(f) = f else {
        return Ok(d);
    };
    let mut nameservers = Vec::new();
    for (i, n) in f.nameservers.iter().flatten().enumerate() {
        let key = format!("resolvers.nameservers[{i}]");
        let text = n.value.trim();
        // A bare address means port 53.
        let addr = text.parse::<SocketAddr>().or_else(|_| {
            text.parse::<std::net::IpAddr>()
                .map(|ip| SocketAddr::new(ip, 53))
        });
        match addr {
            Ok(a) if a.port() != 0 => nameservers.push(a),
            _ => {
                return Err(c.err(
                    n,
                    &key,
                    format!("`{key}` must be an IP address, with a port if not 53, such as 10.0.0.2:53, not {:?}.", n.value),
                ));
            }
        }
    }
    Ok(Resolvers {
        nameservers,
        interval: c.duration(
            &f.interval,
            "resolvers.interval",
            d.interval,
            Span::new(SEC, HOUR),
        )?,
        timeout: c.duration(
            &f.timeout,
            "resolvers.timeout",
            d.timeout,
            Span::new(Duration::from_millis(10), 30 * SEC),
        )?,
    })
}

/// A pool's `discover`.
pub fn discover(
    c: &Checker<'_>,
    key: &str,
    d: &S<file::DiscoverFile>,
    roots: &mut super::tls::Roots,
) -> Result<Discover, ConfigError> {
    let f = &d.value;
    let name_of = |s: &S<String>, k: &str| -> Result<String, ConfigError> {
        let name = s.value.trim();
        if is_dns_name(name) {
            Ok(name.to_owned())
        } else {
            Err(c.err(
                s,
                k,
                format!("`{k}` must be a DNS name, not {:?}.", s.value),
            ))
        }
    };
    let kind = match (&f.srv, &f.a) {
        (Some(srv), None) => {
            if f.port.is_some() {
                return Err(c.err(
                    d,
                    &format!("{key}.port"),
                    format!(
                        "`{key}.port` goes with `a:`; with `srv:` the port is the SRV record's."
                    ),
                ));
            }
            DiscoverKind::Srv(name_of(srv, &format!("{key}.srv"))?)
        }
        (None, Some(a)) => {
            if f.port.is_none() {
                return Err(c.err(
                    d,
                    &format!("{key}.port"),
                    format!("`{key}.a` needs `port:`, the servers' port."),
                ));
            }
            let port = c.number(&f.port, &format!("{key}.port"), 0, 1, 65_535, "")?;
            DiscoverKind::A {
                name: name_of(a, &format!("{key}.a"))?,
                port: port as u16,
            }
        }
        _ => {
            return Err(c.err(
                d,
                key,
                format!("`{key}` needs one of `srv:` (an SRV name) or `a:` (a name) with `port:`."),
            ));
        }
    };
    let weight = c.number(
        &f.weight,
        &format!("{key}.weight"),
        1,
        1,
        super::checker::MAX_WEIGHT,
        "",
    )? as u32;
    let max_servers = c.number(
        &f.max_servers,
        &format!("{key}.max_servers"),
        64,
        1,
        MAX_DISCOVERED,
        "",
    )? as usize;
    let tls_name = matches!(&f.tls, Some(t) if matches!(&t.value, file::ServerTlsFile::With(o) if o.server_name.is_some()));
    let tls = match &f.tls {
        // The SNI is set per server when it is found; this one is a stand-in.
        Some(t) => super::tls::server(
            c,
            t,
            SocketAddr::from(([0, 0, 0, 0], 0)),
            None,
            &format!("{key}.tls"),
            roots,
        )?,
        None => None,
    };
    Ok(Discover {
        kind,
        weight,
        tls,
        tls_name,
        backup: file::flag(f.backup, false),
        max_servers,
    })
}

#[cfg(test)]
mod tests {
    use super::super::checker::is_dns_name;

    #[test]
    fn dns_names() {
        for ok in [
            "tomcat",
            "tomcat-1.tomcat.prod.svc.cluster.local",
            "_http._tcp.tomcat.prod",
            "a.b.",
        ] {
            assert!(is_dns_name(ok), "{ok}");
        }
        for bad in ["", ".", "a..b", "a b", "a/b", "a:80", &"x".repeat(64)] {
            assert!(!is_dns_name(bad), "{bad}");
        }
    }
}
