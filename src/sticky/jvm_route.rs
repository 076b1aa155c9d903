//! jvm_route: Tomcat names the node in the session id itself,
//! `<id><separator><jvmRoute>` (mod_jk, mod_proxy_balancer
//! `stickysession=JSESSIONID|jsessionid`). The route is what follows the
//! FIRST separator. When the named node is down, the session is bound to a
//! deterministic replacement; the binding wins over the route until the
//! backend issues a new id (JvmRouteBinderValve re-suffixing it).

use std::sync::Arc;
use std::time::Duration;

use crate::fields::Fields;

use crate::config::JvmRouteConfig;
use crate::decision::{Affinity, Decision, Outcome};
use crate::rendezvous::key_hash;
use crate::server::Servers;

use super::table::SessionTable;
use super::{Found, cookies};

#[derive(Debug, Clone)]
pub struct JvmRoute {
    pub config: JvmRouteConfig,
    /// Session id hash → the replacement server it was moved to (the
    /// number of its name in the table).
    pub(super) bindings: Arc<SessionTable>,
}

/// The route of a session id: the bytes after the first separator.
pub fn route_of<'a>(id: &'a [u8], separator: &str) -> Option<&'a [u8]> {
    let sep = separator.as_bytes();
    if sep.is_empty() {
        return None;
    }
    let at = id.windows(sep.len()).position(|w| w == sep)?;
    let route = &id[at + sep.len()..];
    (!route.is_empty()).then_some(route)
}

impl JvmRoute {
    pub fn new(
        config: &JvmRouteConfig,
        capacity: u64,
        idle: Duration,
        previous: Option<&JvmRoute>,
    ) -> JvmRoute {
        let bindings = super::session_table(capacity, idle, previous.map(|p| &p.bindings));
        JvmRoute {
            config: config.clone(),
            bindings,
        }
    }

    pub fn find(&self, servers: &Servers, headers: &impl Fields, path: &str) -> Found {
        let mut first: Option<u64> = None;
        let mut from_cookie = false;
        for id in cookies::request_values(headers, &self.config.cookie) {
            from_cookie = true;
            let h = key_hash(id);
            first.get_or_insert(h);
            if let Some(found) = self.affine(servers, id, h) {
                return found;
            }
        }
        if !from_cookie && let Some(id) = cookies::path_param(path, &self.config.path_param) {
            let id = id.as_bytes();
            let h = key_hash(id);
            first = Some(h);
            if let Some(found) = self.affine(servers, id, h) {
                return found;
            }
        }
        Found {
            affinity: if first.is_some() {
                Affinity::UnknownRoute
            } else {
                Affinity::None
            },
            key: first,
            session: first,
            held: None,
            recent: None,
            ..Found::default()
        }
    }

    /// A binding made at failover wins; else the route in the id. A route
    /// of a server that a reload removed is affinity to a dead server.
    fn affine(&self, servers: &Servers, id: &[u8], h: u64) -> Option<Found> {
        let bound = self
            .bindings
            .get_fronted(h)
            .and_then(|n| self.bindings.names.name(n))
            .and_then(|name| servers.by_name(&name));
        let route = route_of(id, &self.config.separator);
        let affinity = match bound.or_else(|| route.and_then(|r| servers.by_route(r))) {
            Some(server) => Affinity::Server(server),
            None if route.is_some_and(|r| servers.was_removed(r)) => Affinity::Removed,
            None => return None,
        };
        Some(Found {
            affinity,
            key: Some(h),
            session: Some(h),
            held: None,
            recent: None,
            ..Found::default()
        })
    }

    pub fn respond(
        &self,
        servers: &Servers,
        found: &Found,
        decision: Decision,
        headers: &impl Fields,
    ) {
        let Some(session) = found.session else { return };
        if decision.outcome == Outcome::Redispatch {
            let n = self.bindings.names.intern(&servers[decision.server].name);
            self.bindings.insert(session, n);
        }
        // A new id (or the session's end) releases the binding of the old one.
        for set in cookies::response_values(headers, &self.config.cookie) {
            let (cookies::SetCookie::Set(id) | cookies::SetCookie::Deleted(id)) = set;
            if key_hash(id) != session || matches!(set, cookies::SetCookie::Deleted(_)) {
                self.bindings.remove(session);
            }
        }
    }

    /// Bindings currently held.
    pub fn bindings(&self) -> u64 {
        self.bindings.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_route_follows_the_first_separator() {
        assert_eq!(route_of(b"8A3F.node2", "."), Some(&b"node2"[..]));
        assert_eq!(
            route_of(b"8A3F.node2.extra", "."),
            Some(&b"node2.extra"[..])
        );
        assert_eq!(route_of(b"8A3F", "."), None);
        assert_eq!(route_of(b"8A3F.", "."), None);
        assert_eq!(route_of(b"8A3F::n1", "::"), Some(&b"n1"[..]));
        assert_eq!(route_of(b"\xff\xfe.n1", "."), Some(&b"n1"[..]));
    }

    proptest! {
        #[test]
        fn arbitrary_ids_never_panic(id in proptest::collection::vec(any::<u8>(), 0..100), sep in "[.:_-]{1,3}") {
            if let Some(route) = route_of(&id, &sep) {
                prop_assert!(!route.is_empty());
                prop_assert!(id.ends_with(route));
            }
        }
    }
}
