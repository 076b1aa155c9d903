//! The admin endpoint's paths, and the method each takes.

use http::Method;

/// What a request asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Route<'a> {
    Metrics,
    Status,
    Pools,
    State {
        pool: &'a str,
        server: &'a str,
    },
    /// `POST`: add a server.
    Servers {
        pool: &'a str,
    },
    /// `DELETE`: remove a server added through the API.
    Server {
        pool: &'a str,
        server: &'a str,
    },
    Reload,
}

impl Route<'_> {
    pub fn parse(path: &str) -> Option<Route<'_>> {
        match path {
            "/metrics" => return Some(Route::Metrics),
            "/status" | "/" => return Some(Route::Status),
            "/api/pools" => return Some(Route::Pools),
            "/api/reload" => return Some(Route::Reload),
            _ => {}
        }
        let rest = path.strip_prefix("/api/pools/")?;
        let mut parts = rest.split('/');
        match (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) {
            (Some(pool), Some("servers"), Some(server), Some("state"), None) => {
                Some(Route::State { pool, server })
            }
            (Some(pool), Some("servers"), None | Some(""), None, None) => {
                Some(Route::Servers { pool })
            }
            (Some(pool), Some("servers"), Some(server), None, None) => {
                Some(Route::Server { pool, server })
            }
            _ => None,
        }
    }

    pub fn allowed(&self) -> Method {
        match self {
            Route::Metrics | Route::Status | Route::Pools => Method::GET,
            Route::State { .. } => Method::PUT,
            Route::Servers { .. } | Route::Reload => Method::POST,
            Route::Server { .. } => Method::DELETE,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_parsed() {
        assert_eq!(Route::parse("/metrics"), Some(Route::Metrics));
        assert_eq!(
            Route::parse("/api/pools/app/servers/node1/state"),
            Some(Route::State {
                pool: "app",
                server: "node1"
            })
        );
        assert_eq!(Route::parse("/api/pools/app/servers/node1/state/x"), None);
        assert_eq!(
            Route::parse("/api/pools/app/servers/node1"),
            Some(Route::Server {
                pool: "app",
                server: "node1"
            })
        );
        assert_eq!(
            Route::parse("/api/pools/app/servers"),
            Some(Route::Servers { pool: "app" })
        );
        assert_eq!(Route::Servers { pool: "app" }.allowed(), Method::POST);
        assert_eq!(
            Route::Server {
                pool: "app",
                server: "n"
            }
            .allowed(),
            Method::DELETE
        );
        assert_eq!(Route::parse("/api/pools/app/nodes"), None);
        assert_eq!(Route::parse("/nope"), None);
    }
}
