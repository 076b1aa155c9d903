//! limpet's integration tests: real sockets on loopback, real HTTP.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod dns;
mod harness;
mod pki;

mod admin;
mod backend_tls;
mod backup;
mod balancing;
mod config;
mod discovery;
mod edge;
mod examples;
mod failover;
mod forwarding;
mod h1_differential;
mod h1_fuzz;
mod h1_wire;
mod health;
mod hostile;
mod import_apache;
mod import_haproxy;
mod import_mod_jk;
mod import_nginx;
mod lifecycle;
mod limits;
mod logs;
mod metrics;
mod package;
mod proxy_protocol;
mod reload;
mod resources;
mod servers_api;
mod sticky_cookie;
mod sticky_ip_hash;
mod sticky_jvm_route;
mod sticky_learn;
mod store;
mod store_ha;
mod structure;
mod tls;
mod tomcat;
mod upgrade;
