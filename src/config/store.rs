//! `learn.store`: where several limpet instances share learned sessions.

use std::time::Duration;

/// The store as configured.
#[derive(Clone)]
pub struct StoreConfig {
    /// The URL with any password masked, for logs and errors.
    pub shown: String,
    /// Where and how to connect (password from the URL or
    /// `store_password_file`).
    pub target: StoreTarget,
    /// The longest a request waits for the store (a lookup on a local miss).
    pub timeout: Duration,
    /// The URL and password as given, to tell whether a reload changed them.
    pub identity: String,
}

/// Where the store is (no `Debug`: it holds the password).
#[derive(Clone)]
pub enum StoreTarget {
    /// One Redis (`redis://`, `rediss://`).
    Redis(redis::ConnectionInfo),
    /// The master that Redis Sentinel names (`redis+sentinel://`).
    Sentinel(SentinelTarget),
}

/// `redis+sentinel://[user:pass@]h1:26379,h2:26379/<master>[/db]`.
#[derive(Clone)]
pub struct SentinelTarget {
    /// The sentinels, asked in this order (without credentials).
    pub sentinels: Vec<redis::ConnectionInfo>,
    /// The master's name in Sentinel (`sentinel monitor <name> …`).
    pub master: String,
    /// TLS to the sentinels and to the master (`rediss+sentinel://`).
    pub tls: bool,
    /// The master's credentials and database.
    pub settings: redis::RedisConnectionInfo,
}

impl std::fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreConfig")
            .field("url", &self.shown)
            .field("timeout", &self.timeout)
            .finish()
    }
}
