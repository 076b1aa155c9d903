//! Validation of a pool's `sticky` block. Only the options of the pool's own
//! mode are used, but every block present is validated, so an operator
//! switching modes finds mistakes at once.

use std::time::Duration;

use super::super::file;
use super::super::{
    ConfigError, CookieConfig, IpHashKey, JvmRouteConfig, LearnConfig, OnServerDown, SameSite,
    StickyConfig, StickyMode,
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
        store: super::store::store(c, lf, &k, warnings)?,
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
