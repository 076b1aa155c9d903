//! TLS in `lb.yaml`: the certificates of a listener (read, parsed and
//! checked when the file is loaded, so `limpet check` finds a missing file,
//! a key that does not match its certificate, or an expired certificate)
//! and the trust settings for servers spoken to over HTTPS.
//!
//! An expired (or not yet valid) certificate is a warning, not an error, as
//! nginx does: an operator renewing certificates should not find limpet
//! refusing to start; clients will refuse the certificate anyway.

use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::sign::CertifiedKey;

use super::super::file::{self, S};
use super::super::sni::{BySni, Cert, Certs};
use super::super::{ConfigError, ServerTls};
use super::checker::Checker;

/// The one crypto provider limpet uses (ring), chosen explicitly.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// TLS 1.3 and 1.2 only.
const VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// Reads a PEM chain and key, checks that they belong together and looks at
/// the leaf's validity and names.
fn load_pair(
    c: &Checker<'_>,
    cert: &S<String>,
    key: &S<String>,
    at: &str,
    warnings: &mut Vec<String>,
) -> Result<Cert, ConfigError> {
    let cert_path = Path::new(cert.value.trim());
    let key_path = Path::new(key.value.trim());
    let read = |p: &Path, s: &S<String>, what: &str| {
        std::fs::read(p).map_err(|e| {
            c.err(
                s,
                at,
                format!("cannot read the {what} file {:?}: {e}.", s.value),
            )
        })
    };
    let chain_pem = read(cert_path, cert, "certificate")?;
    let key_pem = read(key_path, key, "key")?;
    if let Ok(meta) = std::fs::metadata(key_path) {
        super::secret::private(c, key, at, "private key", &meta, warnings)?;
    }
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&chain_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| {
            c.err(
                cert,
                at,
                format!("{:?} is not a PEM certificate chain: {e}.", cert.value),
            )
        })?;
    if chain.is_empty() {
        return Err(c.err(
            cert,
            at,
            format!("{:?} holds no PEM certificate.", cert.value),
        ));
    }
    let private = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        c.err(
            key,
            at,
            format!("{:?} holds no PEM private key: {e}.", key.value),
        )
    })?;
    let mismatch = || {
        c.err(
            key,
            at,
            format!(
                "the key {:?} does not match the certificate {:?}.",
                key.value, cert.value
            ),
        )
    };
    let certified =
        CertifiedKey::from_der(chain.clone(), private, &provider()).map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => mismatch(),
            e => c.err(
                key,
                at,
                format!("the key {:?} cannot be used: {e}.", key.value),
            ),
        })?;
    if certified.keys_match().is_err() {
        return Err(mismatch());
    }
    let (names, not_after) = match x509_parser::parse_x509_certificate(&chain[0]) {
        Ok((_, leaf)) => {
            let validity = leaf.validity();
            let now = x509_parser::time::ASN1Time::now();
            if validity.not_after < now {
                warnings.push(format!(
                    "the certificate {:?} expired on {}; clients will refuse it.",
                    cert.value, validity.not_after
                ));
            } else if validity.not_before > now {
                warnings.push(format!(
                    "the certificate {:?} is not valid before {}.",
                    cert.value, validity.not_before
                ));
            }
            (names_of(&leaf), validity.not_after.timestamp())
        }
        Err(e) => {
            return Err(c.err(
                cert,
                at,
                format!("{:?} is not an X.509 certificate: {e}.", cert.value),
            ));
        }
    };
    Ok(Cert {
        file: cert.value.trim().to_owned(),
        not_after,
        key: Arc::new(certified),
        names,
    })
}

/// The DNS names a certificate serves (its subject alternative names, else
/// its common name), lower case.
fn names_of(cert: &x509_parser::certificate::X509Certificate<'_>) -> Vec<String> {
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(d) = n {
                names.push(d.to_ascii_lowercase());
            }
        }
    }
    if names.is_empty() {
        for cn in cert.subject().iter_common_name() {
            if let Ok(s) = cn.as_str() {
                names.push(s.to_ascii_lowercase());
            }
        }
    }
    names
}

/// The rustls server configuration of a listener's `tls` block, and its
/// certificates as SNI picks them (which `strict_sni` asks again).
pub fn listener(
    c: &Checker<'_>,
    t: &file::ListenerTlsFile,
    key: &str,
    warnings: &mut Vec<String>,
) -> Result<(Arc<rustls::ServerConfig>, Arc<Certs>), ConfigError> {
    let default = load_pair(c, &t.cert, &t.key, &format!("{key}.tls"), warnings)?;
    let mut sni = Vec::new();
    for (i, pair) in t.sni.iter().flatten().enumerate() {
        let loaded = load_pair(
            c,
            &pair.cert,
            &pair.key,
            &format!("{key}.tls.sni[{i}]"),
            warnings,
        )?;
        if loaded.names.is_empty() {
            warnings.push(format!(
                "the certificate {:?} names no host: SNI never picks it.",
                pair.cert.value
            ));
        }
        sni.push(Arc::new(loaded));
    }
    let certs = Arc::new(Certs {
        default: Arc::new(default),
        sni,
    });
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .map_err(|e| c.err(&t.cert, key, format!("cannot set up TLS: {e}.")))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(BySni(Arc::clone(&certs))));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    // Stateless session tickets (keys rotated every 6 hours, the same for
    // every listener and across reloads and upgrades: config/tickets.rs)
    // beside the default session cache: returning clients skip the full
    // handshake, as with nginx's and HAProxy's defaults.
    // One TLS 1.3 ticket per handshake (rustls sends two by default; a
    // client needs one to come back, and each costs an encryption).
    config.send_tls13_tickets = 1;
    if let Some(tickets) = super::super::tickets::shared() {
        config.ticketer = tickets;
    }
    Ok((Arc::new(config), certs))
}

/// The roots a server's certificate is checked against: the system's, or
/// the CA file's.
pub struct Roots {
    /// The system's roots, and a hash of what they are.
    system: Option<(Arc<rustls::RootCertStore>, u64)>,
}

impl Roots {
    pub fn new() -> Roots {
        Roots { system: None }
    }

    fn system(&mut self) -> Result<(Arc<rustls::RootCertStore>, u64), String> {
        if let Some((r, hash)) = &self.system {
            return Ok((Arc::clone(r), *hash));
        }
        let found = rustls_native_certs::load_native_certs();
        let mut hasher = xxhash_rust::xxh3::Xxh3::new();
        for cert in &found.certs {
            hasher.update(cert);
        }
        let hash = hasher.digest();
        let mut store = rustls::RootCertStore::empty();
        let (added, _) = store.add_parsable_certificates(found.certs);
        if added == 0 {
            return Err(
                "no system root certificates were found; give the server `tls: { ca: FILE }`"
                    .to_owned(),
            );
        }
        let store = Arc::new(store);
        self.system = Some((Arc::clone(&store), hash));
        Ok((store, hash))
    }
}

impl Default for Roots {
    fn default() -> Self {
        Roots::new()
    }
}

/// A server's `tls` setting.
pub fn server(
    c: &Checker<'_>,
    spanned: &S<file::ServerTlsFile>,
    address: std::net::SocketAddr,
    host: Option<&str>,
    key: &str,
    roots: &mut Roots,
) -> Result<Option<ServerTls>, ConfigError> {
    let (ca, name) = match &spanned.value {
        file::ServerTlsFile::On(f) if !f.0 => return Ok(None),
        file::ServerTlsFile::On(_) => (None, None),
        file::ServerTlsFile::With(o) => (o.ca.clone(), o.server_name.clone()),
    };
    // What the server is verified against, by content: a CA file renewed in
    // place (or new system roots) makes a different identity, so a reload
    // replaces the health check and the idle connections made with the old.
    let (store, roots_hash) = match &ca {
        Some(path) => {
            let pem = std::fs::read(path.trim()).map_err(|e| {
                c.err(
                    spanned,
                    key,
                    format!("cannot read the CA file {path:?}: {e}."),
                )
            })?;
            let mut store = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| {
                    c.err(
                        spanned,
                        key,
                        format!("{path:?} is not a PEM certificate file: {e}."),
                    )
                })?;
                store.add(cert).map_err(|e| {
                    c.err(
                        spanned,
                        key,
                        format!("{path:?} holds a certificate that cannot be a CA: {e}."),
                    )
                })?;
            }
            if store.is_empty() {
                return Err(c.err(spanned, key, format!("{path:?} holds no PEM certificate.")));
            }
            (Arc::new(store), xxhash_rust::xxh3::xxh3_64(&pem))
        }
        None => roots
            .system()
            .map_err(|m| c.err(spanned, key, format!("{m}.")))?,
    };
    let server_name = match &name {
        Some(n) => ServerName::try_from(n.trim().to_owned()).map_err(|_| {
            c.err(
                spanned,
                key,
                format!("`server_name` must be a DNS name or an IP address, not {n:?}."),
            )
        })?,
        None => match host {
            Some(h) => ServerName::try_from(h.to_owned()).map_err(|_| {
                c.err(
                    spanned,
                    key,
                    format!("the host name {h:?} cannot be a TLS server name; set `server_name`."),
                )
            })?,
            None => ServerName::IpAddress(address.ip().into()),
        },
    };
    let mut client = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .map_err(|e| c.err(spanned, key, format!("cannot set up TLS: {e}.")))?
        .with_root_certificates(store)
        .with_no_client_auth();
    client.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(ServerTls {
        client: Arc::new(client),
        server_name,
        identity: format!(
            "ca={};roots={roots_hash:016x};name={}",
            ca.unwrap_or_default(),
            name.unwrap_or_default()
        ),
    }))
}
