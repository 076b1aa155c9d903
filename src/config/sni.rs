//! The certificates of a TLS listener and the one rule that picks among
//! them by the client's SNI, as nginx and HAProxy do: every exact name
//! first (the default certificate's included), then a wildcard
//! (`*.example.com` covers one label), else the default certificate. The
//! handshake picks by it ([`Certs::pick`]), and `strict_sni` asks the same
//! certificate whether it serves a request's `Host` ([`Cert::serves`]).

use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// One certificate chain with its key, and the DNS names it serves (lower
/// case: its subject alternative names, else its common name).
#[derive(Debug)]
pub struct Cert {
    /// The certificate file, as `lb.yaml` names it.
    pub file: String,
    /// The leaf's notAfter, Unix seconds.
    pub not_after: i64,
    pub key: Arc<CertifiedKey>,
    pub names: Vec<String>,
}

impl Cert {
    /// Does this certificate name `host` (a Host without its port and
    /// perhaps with one trailing dot; any case)? A wildcard name covers one label.
    pub fn serves(&self, host: &str) -> bool {
        let host = host.strip_suffix('.').unwrap_or(host);
        self.names.iter().any(|n| name_matches(n, host))
    }
}

/// A listener's certificates: the default and those chosen by SNI.
#[derive(Debug)]
pub struct Certs {
    pub default: Arc<Cert>,
    pub sni: Vec<Arc<Cert>>,
}

impl Certs {
    /// Every certificate: the default, then the SNI ones.
    pub fn all(&self) -> impl Iterator<Item = &Arc<Cert>> {
        std::iter::once(&self.default).chain(&self.sni)
    }

    /// Do both hold the same certificate chains, in the same order?
    pub fn same_chains(&self, other: &Certs) -> bool {
        let chains = |c: &Certs| -> Vec<Vec<u8>> {
            c.all()
                .flat_map(|c| c.key.cert.iter().map(|d| d.to_vec()))
                .collect()
        };
        chains(self) == chains(other)
    }

    /// The certificate a handshake with this SNI gets.
    pub fn pick(&self, sni: Option<&str>) -> &Arc<Cert> {
        let Some(sni) = sni else {
            return &self.default;
        };
        let sni = sni.strip_suffix('.').unwrap_or(sni);
        let all = || self.sni.iter().chain(std::iter::once(&self.default));
        let exact = all().find(|c| c.names.iter().any(|n| n.eq_ignore_ascii_case(sni)));
        let wildcard = || {
            all().find(|c| {
                c.names
                    .iter()
                    .any(|n| n.starts_with("*.") && name_matches(n, sni))
            })
        };
        exact.or_else(wildcard).unwrap_or(&self.default)
    }
}

/// `name` (a certificate's, lower case, perhaps `*.suffix`) matches `host`.
fn name_matches(name: &str, host: &str) -> bool {
    match name.strip_prefix("*.") {
        Some(suffix) => host
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest.eq_ignore_ascii_case(suffix)),
        None => name.eq_ignore_ascii_case(host),
    }
}

/// The handshake's certificate resolver.
#[derive(Debug)]
pub struct BySni(pub Arc<Certs>);

impl ResolvesServerCert for BySni {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.0.pick(hello.server_name()).key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(names: &[&str]) -> Cert {
        let key = rcgen::KeyPair::generate().unwrap();
        let der = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap();
        let params = rcgen::CertificateParams::new(vec!["x.test".to_owned()]).unwrap();
        let c = params.self_signed(&key).unwrap();
        let provider = rustls::crypto::ring::default_provider();
        let signing = provider.key_provider.load_private_key(der).unwrap();
        Cert {
            file: "x.pem".to_owned(),
            not_after: 0,
            key: Arc::new(CertifiedKey::new(vec![c.der().clone()], signing)),
            names: names.iter().map(|n| (*n).to_owned()).collect(),
        }
    }

    fn picked<'a>(certs: &'a Certs, sni: Option<&str>) -> &'a [String] {
        &certs.pick(sni).names
    }

    #[test]
    fn exact_names_of_every_certificate_come_before_any_wildcard() {
        let certs = Certs {
            default: Arc::new(cert(&["own.w.example"])),
            sni: vec![
                Arc::new(cert(&["*.w.example"])),
                Arc::new(cert(&["shop.example"])),
            ],
        };
        assert_eq!(picked(&certs, Some("own.w.example")), ["own.w.example"]);
        assert_eq!(picked(&certs, Some("OWN.w.example.")), ["own.w.example"]);
        assert_eq!(picked(&certs, Some("a.w.example")), ["*.w.example"]);
        assert_eq!(picked(&certs, Some("shop.example")), ["shop.example"]);
        assert_eq!(picked(&certs, Some("a.b.w.example")), ["own.w.example"]);
        assert_eq!(picked(&certs, None), ["own.w.example"]);
    }

    #[test]
    fn a_certificate_serves_its_names_and_one_label_under_a_wildcard() {
        let c = cert(&["a.example", "*.w.example"]);
        assert!(c.serves("A.example"));
        assert!(c.serves("a.example."));
        assert!(c.serves("x.w.example"));
        assert!(!c.serves("w.example"));
        assert!(!c.serves(".w.example"));
        assert!(!c.serves("x.y.w.example"));
        assert!(!c.serves("b.example"));
    }
}
