//! `learn.store`: a Redis URL (`redis://`, `rediss://`) or the sentinels
//! that name the master (`redis+sentinel://`, `rediss+sentinel://`), the
//! password kept out of lb.yaml, and how long a request may wait.

use std::time::Duration;

use super::super::file;
use super::super::{ConfigError, SentinelTarget, StoreConfig, StoreTarget};
use super::checker::{Checker, Span};

/// `learn.store`, `store_password_file` and `store_timeout`.
pub fn store(
    c: &Checker<'_>,
    lf: &file::LearnFile,
    k: &dyn Fn(&str) -> String,
    warnings: &mut Vec<String>,
) -> Result<Option<std::sync::Arc<StoreConfig>>, ConfigError> {
    let Some(url) = &lf.store else {
        for (key, v) in [
            ("learn.store_password_file", &lf.store_password_file),
            ("learn.store_timeout", &lf.store_timeout),
        ] {
            if let Some(v) = v {
                return Err(c.err(v, &k(key), format!("`{}` needs `learn.store`.", k(key))));
            }
        }
        return Ok(None);
    };
    let key = k("learn.store");
    let text = url.value.trim();
    let mut identity = text.to_owned();
    let password = match &lf.store_password_file {
        Some(p) => {
            let password = super::secret::read_secret(
                c,
                p,
                &k("learn.store_password_file"),
                "password",
                warnings,
            )?;
            identity.push(' ');
            identity.push_str(&password);
            Some((p, password))
        }
        None => None,
    };
    let mut in_url = |has: bool| -> Result<(), ConfigError> {
        match &password {
            Some((p, _)) if has => Err(c.err(
                p,
                &k("learn.store_password_file"),
                "the store URL has a password already; keep it in `store_password_file` only."
                    .into(),
            )),
            None if has => {
                warnings.push(format!(
                    "`{key}` holds a password in lb.yaml; move it to `store_password_file`."
                ));
                Ok(())
            }
            _ => Ok(()),
        }
    };
    let target = if let Some((tls, rest)) = sentinel_scheme(text) {
        let mut sentinel = sentinel(tls, rest).map_err(|e| {
            c.err(
                url,
                &key,
                format!("`store` is not a valid Sentinel URL: {e} ({}).", mask(text)),
            )
        })?;
        in_url(sentinel.settings.password().is_some())?;
        if let Some((_, password)) = &password {
            sentinel.settings = sentinel.settings.set_password(password.clone());
        }
        StoreTarget::Sentinel(sentinel)
    } else if text.starts_with("redis://") || text.starts_with("rediss://") {
        let info = redis::IntoConnectionInfo::into_connection_info(text).map_err(|e| {
            c.err(
                url,
                &key,
                format!("`store` is not a valid Redis URL ({e}): {}.", mask(text)),
            )
        })?;
        in_url(info.redis_settings().password().is_some())?;
        let info = match &password {
            Some((_, password)) => {
                let settings = info.redis_settings().clone().set_password(password.clone());
                info.set_redis_settings(settings)
            }
            None => info,
        };
        StoreTarget::Redis(info)
    } else {
        return Err(c.err(
            url,
            &key,
            format!("`store` must be a redis://, rediss://, redis+sentinel:// or rediss+sentinel:// URL such as redis://127.0.0.1:6379/0, not {:?}.", url.value),
        ));
    };
    let timeout = c.duration(
        &lf.store_timeout,
        &k("learn.store_timeout"),
        Duration::from_millis(50),
        Span::new(Duration::from_millis(1), Duration::from_secs(10)),
    )?;
    Ok(Some(std::sync::Arc::new(StoreConfig {
        shown: mask(text),
        target,
        timeout,
        identity,
    })))
}

/// A Redis URL with its password replaced by `***`, as the connection code
/// parses it: the user information ends at the *last* `@` of the authority
/// (`redis://:p@ss@host` has the password `p@ss`). A URL that does not
/// parse shows nothing before its last `@`.
fn mask(url: &str) -> String {
    if let Some(mut parsed) = redis::parse_redis_url(url) {
        let hidden = if parsed.password().is_some() {
            parsed.set_password(Some("***"))
        } else if !parsed.username().is_empty() {
            // `redis://secret@host`: a password put where the user goes.
            parsed.set_username("***")
        } else {
            Ok(())
        };
        if hidden.is_ok() {
            return parsed.to_string();
        }
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.rsplit_once('@') {
        Some((_, host)) => format!("{scheme}://***@{host}"),
        None => url.to_owned(),
    }
}

/// `redis+sentinel://…` (`false`) or `rediss+sentinel://…` (`true`), and
/// what follows the scheme.
fn sentinel_scheme(url: &str) -> Option<(bool, &str)> {
    if let Some(rest) = url.strip_prefix("redis+sentinel://") {
        Some((false, rest))
    } else {
        url.strip_prefix("rediss+sentinel://")
            .map(|rest| (true, rest))
    }
}

/// `[user:pass@]h1[:26379],h2[:26379]/<master>[/db]`: the sentinels are
/// asked without credentials; the user and password (and the database)
/// are the master's, parsed as a `redis://` URL's would be.
fn sentinel(tls: bool, rest: &str) -> Result<SentinelTarget, String> {
    let (authority, path) = rest
        .split_once('/')
        .ok_or("the master's name is missing: redis+sentinel://h1:26379,h2:26379/<master>")?;
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((user, hosts)) => (Some(user), hosts),
        None => (None, authority),
    };
    let (master, db) = match path.split_once('/') {
        Some((master, "")) => (master, None),
        Some((master, db)) => (master, Some(db)),
        None => (path, None),
    };
    if master.is_empty() {
        return Err("the master's name is missing after the sentinels".into());
    }
    let db = match db {
        Some(db) => db
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| format!("the database must be a number, not {db:?}"))?,
        None => 0,
    };
    let scheme = if tls { "rediss" } else { "redis" };
    let mut sentinels = Vec::new();
    for host in hosts.split(',') {
        if host.is_empty() {
            return Err("a sentinel's address is empty".into());
        }
        let with_port = if host.rsplit_once(':').is_some_and(|(_, p)| !p.contains(']')) {
            host.to_owned()
        } else {
            format!("{host}:26379")
        };
        let info = redis::IntoConnectionInfo::into_connection_info(
            format!("{scheme}://{with_port}").as_str(),
        )
        .map_err(|e| format!("sentinel {host:?}: {e}"))?;
        sentinels.push(info);
    }
    // The master's credentials and database, read as a redis:// URL's.
    let first = hosts.split(',').next().unwrap_or_default();
    let auth = userinfo.map(|u| format!("{u}@")).unwrap_or_default();
    let master_url = format!("{scheme}://{auth}{first}/{db}");
    let settings = redis::IntoConnectionInfo::into_connection_info(master_url.as_str())
        .map_err(|e| format!("the master's credentials: {e}"))?
        .redis_settings()
        .clone();
    Ok(SentinelTarget {
        sentinels,
        master: master.to_owned(),
        tls,
        settings,
    })
}

#[cfg(test)]
mod tests {
    use super::{mask, sentinel};
    use proptest::prelude::*;

    /// `password` as it goes in a URL's user information: `%` and `/`
    /// must be percent-encoded, `@` and `:` may stay as they are.
    fn in_url(password: &str) -> String {
        password.replace('%', "%25").replace('/', "%2F")
    }

    #[test]
    fn a_password_with_at_signs_is_masked_whole() {
        assert_eq!(
            mask("redis://:p@ss@word@10.0.3.10:6379/0"),
            "redis://:***@10.0.3.10:6379/0"
        );
        assert_eq!(
            mask("rediss://limpet:p@ss@redis.internal:6380/1"),
            "rediss://limpet:***@redis.internal:6380/1"
        );
        assert_eq!(mask("redis://10.0.3.10:6379/0"), "redis://10.0.3.10:6379/0");
        // Not a URL the connection code takes: nothing before the last
        // `@` is shown.
        assert_eq!(
            mask("redis://:p@ss@word@10.0.3.10:notaport/0"),
            "redis://***@10.0.3.10:notaport/0"
        );
    }

    #[test]
    fn a_sentinel_url_names_the_sentinels_the_master_and_its_credentials() {
        let s = sentinel(
            false,
            "limpet:s3cret@10.0.0.1:26379,10.0.0.2,[::1]:26380/mymaster/2",
        )
        .unwrap();
        let addrs: Vec<String> = s.sentinels.iter().map(|i| i.addr().to_string()).collect();
        assert_eq!(addrs, ["10.0.0.1:26379", "10.0.0.2:26379", "::1:26380"]);
        assert_eq!(s.master, "mymaster");
        assert_eq!(s.settings.db(), 2);
        assert_eq!(s.settings.username(), Some("limpet"));
        assert_eq!(s.settings.password(), Some("s3cret"));
        assert!(!s.tls);
        let s = sentinel(true, "h1/m").unwrap();
        assert!(s.tls && s.master == "m" && s.settings.db() == 0);
        for bad in [
            "h1:26379",
            "h1:26379/",
            "h1:26379,,h2/m",
            "h1:26379/m/x",
            "h1:nope/m",
        ] {
            assert!(sentinel(false, bad).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn no_password_shows_whatever_it_holds(
            user in "(|limpet)",
            password in "[a-z0-9@:/%]{1,24}",
        ) {
            let url = format!("redis://{user}:{}@redis.internal:6379/0", in_url(&password));
            // The connection code reads this password...
            let info = redis::IntoConnectionInfo::into_connection_info(url.as_str());
            let parsed = info.as_ref().ok().and_then(|i| i.redis_settings().password());
            prop_assert_eq!(parsed, Some(password.as_str()));
            // ...and none of it is shown.
            prop_assert_eq!(mask(&url), format!("redis://{user}:***@redis.internal:6379/0"));
        }
    }
}
