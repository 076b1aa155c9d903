//! TLS session tickets under keys limpet owns, one set for the whole
//! process: every listener and every reload share them (a reload does not
//! end anyone's resumption), and an in-place upgrade hands them to the new
//! process, so a returning client resumes its TLS session there too.
//! rustls's own ticketer keeps its keys to itself, hence this one; it does
//! what rustls's does: ChaCha20-Poly1305 (ring), a new key every
//! [`ROTATE`], the one before still accepted, tickets that say they live
//! as long.
//!
//! A ticket is `key name (16) | nonce (12) | sealed state | tag (16)`, the
//! key name authenticated as associated data.

use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

/// How long a key makes new tickets; it decrypts for as long again.
pub const ROTATE: u64 = 6 * 3600;

const NAME_LEN: usize = 16;
const SECRET_LEN: usize = 32;

/// A ticket key as it crosses to a new process.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedKey {
    pub name: Vec<u8>,
    pub secret: Vec<u8>,
    /// Unix seconds when it began making tickets.
    pub since: u64,
}

impl std::fmt::Debug for SavedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SavedKey")
            .field("since", &self.since)
            .finish_non_exhaustive()
    }
}

struct Key {
    name: [u8; NAME_LEN],
    secret: [u8; SECRET_LEN],
    aead: LessSafeKey,
    since: u64,
}

impl Key {
    fn new(name: [u8; NAME_LEN], secret: [u8; SECRET_LEN], since: u64) -> Option<Key> {
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, &secret).ok()?;
        Some(Key {
            name,
            secret,
            aead: LessSafeKey::new(unbound),
            since,
        })
    }

    fn generate(rng: &SystemRandom, since: u64) -> Option<Key> {
        let mut name = [0u8; NAME_LEN];
        let mut secret = [0u8; SECRET_LEN];
        rng.fill(&mut name).ok()?;
        rng.fill(&mut secret).ok()?;
        Key::new(name, secret, since)
    }

    fn saved(&self) -> SavedKey {
        SavedKey {
            name: self.name.to_vec(),
            secret: self.secret.to_vec(),
            since: self.since,
        }
    }

    fn restored(saved: &SavedKey) -> Option<Key> {
        Key::new(
            saved.name.as_slice().try_into().ok()?,
            saved.secret.as_slice().try_into().ok()?,
            saved.since,
        )
    }
}

/// The current key and the one before.
struct Keys {
    current: Arc<Key>,
    previous: Option<Arc<Key>>,
}

/// The process's ticket keys (see the module documentation).
pub struct Tickets {
    keys: Mutex<Keys>,
    rng: SystemRandom,
}

impl std::fmt::Debug for Tickets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tickets(…)")
    }
}

use crate::clock::unix_secs as now;

/// The process's ticket keys, made on first use; `None` if the system
/// gave no randomness (tickets are then off, sessions still resume from
/// rustls's in-memory cache).
pub fn shared() -> Option<Arc<Tickets>> {
    static SHARED: OnceLock<Option<Arc<Tickets>>> = OnceLock::new();
    SHARED.get_or_init(|| Tickets::new().map(Arc::new)).clone()
}

impl Tickets {
    fn new() -> Option<Tickets> {
        let rng = SystemRandom::new();
        let current = Arc::new(Key::generate(&rng, now())?);
        Some(Tickets {
            keys: Mutex::new(Keys {
                current,
                previous: None,
            }),
            rng,
        })
    }

    /// The key for new tickets, rotated if it is due.
    fn current(&self) -> Option<Arc<Key>> {
        let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        let now = now();
        if now.saturating_sub(keys.current.since) >= ROTATE {
            let next = Arc::new(Key::generate(&self.rng, now)?);
            keys.previous = Some(std::mem::replace(&mut keys.current, next));
        }
        Some(Arc::clone(&keys.current))
    }

    /// The keys, for a new process (newest first).
    pub fn export(&self) -> Vec<SavedKey> {
        let keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        std::iter::once(&keys.current)
            .chain(keys.previous.as_ref())
            .map(|k| k.saved())
            .collect()
    }

    /// Takes over the keys of the process before (newest first): tickets
    /// it issued decrypt here, and new ones are made under its key until
    /// that is due to rotate. Keys that do not parse are skipped.
    pub fn import(&self, saved: &[SavedKey]) {
        let mut restored = saved.iter().filter_map(Key::restored).map(Arc::new);
        let Some(current) = restored.next() else {
            return;
        };
        let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        keys.previous = restored.next();
        keys.current = current;
    }

    /// Forgets every key and starts with a new one: tickets issued so far
    /// no longer open (the certificates changed: a client resuming would
    /// go on with a session made under the old one).
    pub fn renew(&self) {
        let Some(next) = Key::generate(&self.rng, now()) else {
            return;
        };
        let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        keys.current = Arc::new(next);
        keys.previous = None;
    }

    fn find(&self, name: &[u8]) -> Option<Arc<Key>> {
        let keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        std::iter::once(&keys.current)
            .chain(keys.previous.as_ref())
            .find(|k| k.name == name && now().saturating_sub(k.since) < 2 * ROTATE)
            .map(Arc::clone)
    }
}

impl rustls::server::ProducesTickets for Tickets {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        u32::try_from(ROTATE).unwrap_or(u32::MAX)
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        let key = self.current()?;
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).ok()?;
        let mut out = Vec::with_capacity(NAME_LEN + NONCE_LEN + plain.len() + 16);
        out.extend_from_slice(&key.name);
        out.extend_from_slice(&nonce);
        let mut sealed = plain.to_vec();
        key.aead
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(key.name),
                &mut sealed,
            )
            .ok()?;
        out.extend_from_slice(&sealed);
        Some(out)
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        let name = cipher.get(..NAME_LEN)?;
        let nonce = cipher.get(NAME_LEN..NAME_LEN + NONCE_LEN)?;
        let sealed = cipher.get(NAME_LEN + NONCE_LEN..)?;
        let key = self.find(name)?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut plain = sealed.to_vec();
        let len = key
            .aead
            .open_in_place(nonce, Aad::from(key.name), &mut plain)
            .ok()?
            .len();
        plain.truncate(len);
        Some(plain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::server::ProducesTickets;

    #[test]
    fn a_ticket_opens_under_its_key_and_under_the_keys_handed_over() {
        let a = Tickets::new().unwrap();
        let ticket = a.encrypt(b"session state").unwrap();
        assert_eq!(a.decrypt(&ticket).as_deref(), Some(&b"session state"[..]));
        // Another process does not open it, until it has the keys.
        let b = Tickets::new().unwrap();
        assert_eq!(b.decrypt(&ticket), None);
        b.import(&a.export());
        assert_eq!(b.decrypt(&ticket).as_deref(), Some(&b"session state"[..]));
        // And what b makes now, a opens (the same current key).
        let back = b.encrypt(b"more").unwrap();
        assert_eq!(a.decrypt(&back).as_deref(), Some(&b"more"[..]));
    }

    #[test]
    fn tampered_short_or_foreign_tickets_do_not_open() {
        let t = Tickets::new().unwrap();
        let mut ticket = t.encrypt(b"state").unwrap();
        let last = ticket.len() - 1;
        ticket[last] ^= 1;
        assert_eq!(t.decrypt(&ticket), None);
        for short in [&b""[..], &[0u8; 10], &[0u8; NAME_LEN + NONCE_LEN]] {
            assert_eq!(t.decrypt(short), None);
        }
    }

    #[test]
    fn a_due_key_rotates_and_the_one_before_still_opens() {
        let t = Tickets::new().unwrap();
        let old = t.encrypt(b"old").unwrap();
        {
            let mut keys = t.keys.lock().unwrap();
            let stale = Key::new(keys.current.name, keys.current.secret, now() - ROTATE).unwrap();
            keys.current = Arc::new(stale);
        }
        let new = t.encrypt(b"new").unwrap();
        assert_ne!(old[..NAME_LEN], new[..NAME_LEN], "a new key");
        assert_eq!(t.decrypt(&old).as_deref(), Some(&b"old"[..]));
        assert_eq!(t.export().len(), 2);
    }
}
