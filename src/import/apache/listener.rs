//! httpd's virtual hosts → listeners. The main server's `ProxyPass`es
//! apply in every vhost too; `Listen` addresses no vhost covers are the
//! main server's; a vhost on one IP of a port that a `*` vhost also takes
//! joins the wildcard's listener. One listener per address: the vhosts on
//! it give its TLS (the first certificate, the others by SNI), its routes
//! (by `ServerName` when several share it, by `ProxyPass` path), its
//! default pool and `redirect_https`; their notes go before it.

use super::address::same_port;
use super::pass::Pass;
use super::{VHost, Walk, balancer};
use crate::import::Options;
use crate::import::directive::Directive;
use crate::import::model::{ImportError, Listener, Note, Place, Pool, Route, Tls};

impl Walk {
    /// The vhosts (and the main server) → `lb.listeners`, making a
    /// one-server pool in `pools` for each plain `ProxyPass` URL.
    pub(super) fn listeners(
        &mut self,
        pools: &mut Vec<Pool>,
        options: &Options,
    ) -> Result<(), ImportError> {
        // The main server's ProxyPass apply in every vhost too (after its own).
        let main_passes: Vec<(String, String, Directive)> = self
            .main
            .passes
            .iter()
            .map(|p| (p.path.clone(), p.target.clone(), p.at.clone()))
            .collect();
        let mut vhosts = std::mem::take(&mut self.vhosts);
        for vh in &mut vhosts {
            for (path, target, at) in &main_passes {
                vh.passes.push(Pass {
                    path: path.clone(),
                    target: target.clone(),
                    at: at.clone(),
                });
            }
        }
        // Listen addresses no vhost covers are the main server's.
        let covered: Vec<String> = vhosts.iter().flat_map(|v| v.addrs.clone()).collect();
        let main = std::mem::take(&mut self.main);
        let mut listens = std::mem::take(&mut self.listens);
        listens.dedup();
        let bare: Vec<String> = listens
            .into_iter()
            .filter(|l| !covered.iter().any(|c| same_port(c, l)))
            .collect();
        if !bare.is_empty() && (!main.passes.is_empty() || main.redirect) {
            vhosts.push(VHost {
                addrs: bare,
                ..main
            });
        }
        // A vhost on one IP of a port that a `*` vhost also takes is served
        // by the wildcard listener (limpet binds a port once; its names
        // become host routes there, as Apache picks by name among them).
        let wildcards: Vec<String> = vhosts
            .iter()
            .flat_map(|v| v.addrs.iter())
            .filter(|a| a.starts_with("0.0.0.0:"))
            .cloned()
            .collect();
        for vh in &mut vhosts {
            for a in &mut vh.addrs {
                if !a.starts_with('[')
                    && let Some(w) = wildcards.iter().find(|w| same_port(w, a))
                {
                    a.clone_from(w);
                }
            }
            vh.addrs.dedup();
        }
        // Group by address, in order of first appearance.
        let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
        for (i, vh) in vhosts.iter().enumerate() {
            for a in &vh.addrs {
                match groups.iter_mut().find(|(g, _)| g == a) {
                    Some((_, v)) => v.push(i),
                    None => groups.push((a.clone(), vec![i])),
                }
            }
        }
        for (addr, members) in groups {
            let listener = self.listener(&addr, &members, &vhosts, pools, options)?;
            let place = Place::Listener(listener.name.clone());
            for &i in &members {
                for n in &vhosts[i].notes {
                    if !self
                        .lb
                        .notes
                        .iter()
                        .any(|m| m.line == n.line && m.file == n.file)
                    {
                        self.lb.notes.push(Note {
                            place: place.clone(),
                            ..n.clone()
                        });
                    }
                }
            }
            self.lb.listeners.push(listener);
        }
        Ok(())
    }

    fn listener(
        &mut self,
        addr: &str,
        members: &[usize],
        vhosts: &[VHost],
        pools: &mut Vec<Pool>,
        options: &Options,
    ) -> Result<Listener, ImportError> {
        let mut l = Listener {
            bind: addr.to_owned(),
            ..Listener::default()
        };
        for &i in members {
            let vh = &vhosts[i];
            let Some(ssl) = &vh.ssl else { continue };
            let Some(cert) = vh.cert.clone() else {
                return Err(ssl.error("SSLEngine on without SSLCertificateFile"));
            };
            let key = vh.key.clone().unwrap_or_else(|| cert.clone());
            match &mut l.tls {
                None => {
                    l.tls = Some(Tls {
                        cert,
                        key,
                        sni: Vec::new(),
                    })
                }
                Some(t) if t.cert != cert && !t.sni.iter().any(|(c, _)| *c == cert) => {
                    t.sni.push((cert, key))
                }
                Some(_) => {}
            }
        }
        let port = addr.rsplit_once(':').map_or("", |(_, p)| p);
        let base = match (&l.tls, port) {
            (Some(_), "443") => "https".to_owned(),
            (Some(_), p) => format!("https-{p}"),
            (None, "80") => "http".to_owned(),
            (None, p) => format!("http-{p}"),
        };
        l.name = balancer::unique(&base, self.lb.listeners.iter().map(|l| l.name.as_str()));
        let redirecting: Vec<&usize> = members.iter().filter(|&&i| vhosts[i].redirect).collect();
        if !redirecting.is_empty() && l.tls.is_none() && redirecting.len() == members.len() {
            l.redirect_https = true;
        }
        let several = members.len() > 1;
        for &i in members {
            let vh = &vhosts[i];
            if vh.redirect && l.redirect_https {
                continue;
            }
            let hosts: Vec<Option<String>> = if several && !vh.names.is_empty() {
                vh.names.iter().cloned().map(Some).collect()
            } else {
                vec![None]
            };
            let mut root = None;
            for p in &vh.passes {
                let pool = self.target_pool(p, pools, options)?;
                if p.path.trim_end_matches('/').is_empty() {
                    root.get_or_insert(pool);
                    continue;
                }
                for h in &hosts {
                    push_route(
                        &mut l.routes,
                        Route {
                            host: h.clone(),
                            path_prefix: Some(p.path.clone()),
                            pool: pool.clone(),
                        },
                    );
                }
            }
            match root {
                Some(pool) if l.pool.is_none() => l.pool = Some(pool),
                Some(pool) => {
                    for h in &hosts {
                        push_route(
                            &mut l.routes,
                            Route {
                                host: h.clone(),
                                path_prefix: None,
                                pool: pool.clone(),
                            },
                        );
                    }
                }
                None => {}
            }
        }
        if l.pool.is_none() {
            let fallback = l
                .routes
                .first()
                .map(|r| r.pool.clone())
                .or_else(|| pools.first().map(|p| p.name.clone()));
            let Some(pool) = fallback else {
                return Err(ImportError::new(
                    "",
                    0,
                    format!("nothing is proxied on {addr}: no ProxyPass to a balancer or a server"),
                ));
            };
            let first = members.first().and_then(|&i| vhosts[i].passes.first());
            if let Some(p) = first.filter(|_| !l.redirect_https) {
                self.lb.notes.push(p.at.note(
                    format!("Apache answered paths no ProxyPass matched itself; limpet sends them to pool {pool}"),
                    Place::Listener(l.name.clone()),
                ));
            }
            l.pool = Some(pool);
        }
        // Routes that repeat the default pool for every host add nothing.
        let default = l.pool.clone();
        if l.routes.iter().all(|r| Some(&r.pool) == default.as_ref()) {
            l.routes.clear();
        }
        Ok(l)
    }
}

fn push_route(routes: &mut Vec<Route>, r: Route) {
    if !routes.contains(&r) {
        routes.push(r);
    }
}
