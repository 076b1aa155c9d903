//! Validation of a pool's `sticky` block. Only the options of the pool's own
//! mode are used, but every block present is validated, so an operator
//! switching modes finds mistakes at once.

use std::time::Duration;

use super::super::file;
use super::super::{
    ConfigError, CookieConfig, IpHashKey, JvmRouteConfig, LearnConfig, OnServerDown, SameSite,
    StickyConfig, StickyMode, StoreConfig,
};
use super::checker::{Checker, DAY, SEC, Span};

/// Most entries a learned table (and ip_hash's and jvm_route's bounded
/// memories) may hold: about 10 GB of memory.
pub const MAX_CAPACITY: u64 = 100_000_000;

pub fn validate(
    c: &Checker<'_>,
    key: &str,
    s: Option<&file::StickyFile>,
    warnings: &mut Vec<String>,
) -> Result<StickyConfig, ConfigError> {
    let default = file::StickyFile::default();
    let s = s.unwrap_or(&default);
    let k = |sub: &str| format!("{key}.sticky.{sub}");
    let mode = c.choice(
        &s.mode,
        &k("mode"),
        &[
            ("none", StickyMode::None),
            ("ip_hash", StickyMode::IpHash),
            ("cookie", StickyMode::Cookie),
            ("jvm_route", StickyMode::JvmRoute),
            ("learn", StickyMode::Learn),
        ],
        StickyMode::None,
    )?;
    let on_server_down = c.choice(
        &s.on_server_down,
        &k("on_server_down"),
        &[
            ("redispatch", OnServerDown::Redispatch),
            ("error", OnServerDown::Error),
        ],
        OnServerDown::Redispatch,
    )?;
    let ip = s.ip_hash.as_ref();
    let ip_hash_key = c.choice(
        &ip.and_then(|i| i.key.clone()),
        &k("ip_hash.key"),
        &[
            ("address", IpHashKey::Address),
            ("subnet", IpHashKey::Subnet),
        ],
        IpHashKey::Address,
    )?;

    let cd = file::CookieFile::default();
    let cf = s.cookie.as_ref().unwrap_or(&cd);
    let cookie = CookieConfig {
        name: c.token(&cf.name, &k("cookie.name"), "SERVERID")?,
        path: match &cf.path {
            Some(p) if !p.value.starts_with('/') || p.value.contains([';', ',', ' ']) => {
                return Err(c.err(
                    p,
                    &k("cookie.path"),
                    format!(
                        "`path` must start with `/` and contain no `;`, `,` or spaces, not {:?}.",
                        p.value
                    ),
                ));
            }
            Some(p) => p.value.clone(),
            None => "/".to_owned(),
        },
        domain: match &cf.domain {
            Some(d) => Some(c.token(&Some(d.clone()), &k("cookie.domain"), "")?),
            None => None,
        },
        max_age: match &cf.max_age {
            Some(_) => Some(c.duration(
                &cf.max_age,
                &k("cookie.max_age"),
                Duration::ZERO,
                Span::new(SEC, 400 * DAY),
            )?),
            None => None,
        },
        secure: file::flag(cf.secure, false),
        http_only: file::flag(cf.http_only, true),
        same_site: c.choice(
            &cf.same_site,
            &k("cookie.same_site"),
            &[
                ("strict", SameSite::Strict),
                ("lax", SameSite::Lax),
                ("none", SameSite::None),
            ],
            SameSite::Lax,
        )?,
        indirect: file::flag(cf.indirect, true),
        nocache: file::flag(cf.nocache, true),
    };
    if cookie.same_site == SameSite::None && !cookie.secure {
        let at = cf
            .same_site
            .as_ref()
            .map(|s| s.referenced)
            .unwrap_or(serde_saphyr::Location::UNKNOWN);
        return Err(ConfigError::at(
            c.path,
            at,
            &k("cookie.same_site"),
            "`same_site: none` needs `secure: true`; browsers reject such cookies otherwise."
                .into(),
        ));
    }

    let jd = file::JvmRouteFile::default();
    let jf = s.jvm_route.as_ref().unwrap_or(&jd);
    let jvm_route = JvmRouteConfig {
        cookie: c.token(&jf.cookie, &k("jvm_route.cookie"), "JSESSIONID")?,
        path_param: c.token(&jf.path_param, &k("jvm_route.path_param"), "jsessionid")?,
        separator: match &jf.separator {
            Some(sep) if sep.value.is_empty() || sep.value.contains([';', '=', ',', ' ']) => {
                return Err(c.err(sep, &k("jvm_route.separator"), format!("`separator` must be non-empty and contain no `;`, `=`, `,` or spaces, not {:?}.", sep.value)));
            }
            Some(sep) => sep.value.clone(),
            None => ".".to_owned(),
        },
    };

    let ld = file::LearnFile::default();
    let lf = s.learn.as_ref().unwrap_or(&ld);
    let learn = LearnConfig {
        cookie: c.token(&lf.cookie, &k("learn.cookie"), "JSESSIONID")?,
        path_param: c.token(&lf.path_param, &k("learn.path_param"), "jsessionid")?,
        max_len: c.number(&lf.max_len, &k("learn.max_len"), 64, 1, 4096, "")? as usize,
        idle_timeout: c.duration(
            &lf.idle_timeout,
            &k("learn.idle_timeout"),
            Duration::from_secs(5 * 3600),
            Span::new(Duration::from_millis(100), 30 * DAY),
        )?,
        request_learn: file::flag(lf.request_learn, true),
        capacity: c.number(
            &lf.capacity,
            &k("learn.capacity"),
            1_000_000,
            1,
            MAX_CAPACITY,
            "",
        )?,
        persist: file::flag(lf.persist, true),
        store: store(c, lf, &k, warnings)?,
    };
    Ok(StickyConfig {
        mode,
        on_server_down,
        ip_hash_key,
        cookie,
        jvm_route,
        learn,
    })
}

/// `learn.store`, `store_password_file` and `store_timeout`.
fn store(
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
    if !(text.starts_with("redis://") || text.starts_with("rediss://")) {
        return Err(c.err(
            url,
            &key,
            format!("`store` must be a redis:// or rediss:// URL such as redis://127.0.0.1:6379/0, not {:?}.", url.value),
        ));
    }
    let info = redis::IntoConnectionInfo::into_connection_info(text).map_err(|e| {
        c.err(
            url,
            &key,
            format!("`store` is not a valid Redis URL ({e}): {}.", mask(text)),
        )
    })?;
    let mut identity = text.to_owned();
    let info = match &lf.store_password_file {
        Some(p) => {
            if info.redis_settings().password().is_some() {
                return Err(c.err(
                    p,
                    &k("learn.store_password_file"),
                    "the store URL has a password already; keep it in `store_password_file` only."
                        .into(),
                ));
            }
            let password = super::secret::read_secret(
                c,
                p,
                &k("learn.store_password_file"),
                "password",
                warnings,
            )?;
            identity.push(' ');
            identity.push_str(&password);
            let settings = info.redis_settings().clone().set_password(password);
            info.set_redis_settings(settings)
        }
        None => {
            if info.redis_settings().password().is_some() {
                warnings.push(format!(
                    "`{key}` holds a password in lb.yaml; move it to `store_password_file`."
                ));
            }
            info
        }
    };
    let timeout = c.duration(
        &lf.store_timeout,
        &k("learn.store_timeout"),
        Duration::from_millis(50),
        Span::new(Duration::from_millis(1), Duration::from_secs(10)),
    )?;
    Ok(Some(std::sync::Arc::new(StoreConfig {
        shown: mask(text),
        info,
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

#[cfg(test)]
mod tests {
    use super::mask;
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
