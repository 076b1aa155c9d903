//! httpd's `ProxyPass` → a route: read where it is written (`ProxyPass
//! PATH TARGET`, or `ProxyPass TARGET` inside `<Location PATH>`; its
//! parameters go to the balancer it names), with notes for what limpet
//! does not do (`!`, a path the target rewrites), and, when the listeners
//! are made ([`super::listener`]), the pool its target names: the
//! balancer's, or a one-server pool for a plain URL.

use super::{Scope, Walk, balancer};
use crate::import::Options;
use crate::import::directive::Directive;
use crate::import::model::{ImportError, Place, Pool, Server, lb_name};

/// One `ProxyPass`: the path it routes and the target it names.
#[derive(Debug)]
pub(super) struct Pass {
    pub(super) path: String,
    pub(super) target: String,
    pub(super) at: Directive,
}

impl Walk {
    /// `ProxyPass PATH TARGET [k=v…]`, or `ProxyPass TARGET` in a `<Location PATH>`.
    pub(super) fn pass(&mut self, d: &Directive, location: Option<&str>, scope: Scope) {
        let (path, target, rest) = match location {
            Some(p) => (
                p.to_owned(),
                d.arg(0).to_owned(),
                d.args.get(1..).unwrap_or(&[]),
            ),
            None => (
                d.arg(0).to_owned(),
                d.arg(1).to_owned(),
                d.args.get(2..).unwrap_or(&[]),
            ),
        };
        if target == "!" {
            self.note(
                d,
                "Apache served this path itself; limpet sends it to the pool like the rest",
                scope,
            );
            return;
        }
        if target.to_ascii_lowercase().starts_with("balancer://") {
            let name = target
                .get(11..)
                .unwrap_or("")
                .split('/')
                .next()
                .unwrap_or("")
                .to_owned();
            let b = self.balancer(&format!("balancer://{name}"), d);
            self.set(b, rest, d);
        } else if !rest.is_empty() {
            self.note(
                d,
                "parameters of a single-server ProxyPass are not carried over",
                scope,
            );
        }
        let backend_path = target
            .split_once("://")
            .map_or("/", |(_, r)| r.find('/').map_or("/", |i| &r[i..]));
        if backend_path.trim_end_matches('/') != path.trim_end_matches('/') {
            self.note(
                d,
                format!(
                    "the path is forwarded as received: Apache rewrote {path} to {backend_path}"
                ),
                scope,
            );
        }
        self.vhost(scope).passes.push(Pass {
            path,
            target,
            at: d.clone(),
        });
    }

    /// The pool a `ProxyPass` target names: its balancer's, or a
    /// one-server pool for a plain URL.
    pub(super) fn target_pool(
        &mut self,
        p: &Pass,
        pools: &mut Vec<Pool>,
        options: &Options,
    ) -> Result<String, ImportError> {
        let t = p.target.to_ascii_lowercase();
        if let Some(rest) = t.strip_prefix("balancer://") {
            return Ok(lb_name(rest.split('/').next().unwrap_or("")));
        }
        let (address, tls, ajp) = balancer::address(&p.target, &p.at, options)?;
        if let Some(pool) = pools.iter().find(|pl| {
            pl.servers.len() == 1 && pl.servers[0].address == address && pl.sticky.is_none()
        }) {
            return Ok(pool.name.clone());
        }
        let name = balancer::unique(
            &lb_name(&address.replace([':', '[', ']'], "-")),
            pools.iter().map(|p| p.name.as_str()),
        );
        if ajp {
            self.lb.notes.push(balancer::ajp_note(
                &p.at,
                options.http_port,
                Place::Server(name.clone(), name.clone()),
            ));
        }
        pools.push(Pool {
            name: name.clone(),
            servers: vec![Server {
                name: name.clone(),
                address,
                tls,
                ..Server::default()
            }],
            ..Pool::default()
        });
        Ok(name)
    }
}
