//! The conditions of `use_backend … if` and `acl` lines that limpet's
//! routes can say: the Host header (`hdr(host)`, `hdr_dom(host)`, `-m str`
//! and `-m dom`) and the path prefix (`path_beg`, `-m beg`), ORed with `||`
//! and ANDed host-with-path; `src` for `expect-proxy`. Anything else is
//! why a rule is not carried over.

use std::collections::HashMap;

use super::value;

/// A route's (host, path_prefix).
pub type HostPath = (Option<String>, Option<String>);

/// What one ACL term can match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Match {
    Host(String),
    Path(String),
    Src(String),
    /// An exact path or URL: no route prefix says that.
    Exact,
}

/// One `acl` line's criterion and values, or why it cannot be a route.
pub fn acl(words: &[String]) -> Result<Vec<Match>, String> {
    let Some((criterion, rest)) = words.split_first() else {
        return Err("an empty condition".into());
    };
    let mut method = match criterion.as_str() {
        "hdr(host)" | "hdr(Host)" | "req.hdr(host)" | "req.hdr(Host)" => "host",
        "hdr_dom(host)" | "hdr_dom(Host)" => "dom",
        "path_beg" => "beg",
        "path" | "req.path" | "url" | "url_beg" | "base_beg" => "path",
        "src" => "src",
        other => return Err(format!("the condition `{other}`")),
    };
    let mut values = Vec::new();
    let mut i = 0;
    while let Some(w) = rest.get(i) {
        i += 1;
        match w.as_str() {
            "-i" if method == "beg" => return Err("a case-insensitive path match".into()),
            "-i" | "--" => {}
            "-m" => {
                method = match (method, rest.get(i).map(String::as_str)) {
                    ("host", Some("str")) => "host",
                    ("host" | "dom", Some("dom")) => "dom",
                    ("path" | "beg", Some("beg")) => "beg",
                    (_, m) => return Err(format!("the match `-m {}`", m.unwrap_or(""))),
                };
                i += 1;
            }
            f if f.starts_with('-') => return Err(format!("the flag `{f}`")),
            v => values.push(v.to_owned()),
        }
    }
    if values.is_empty() {
        return Err("a condition without values".into());
    }
    let host = |v: &str| {
        v.rsplit_once(':')
            .map_or(v, |(h, _)| h)
            .to_ascii_lowercase()
    };
    if let Some(bad) = values.iter().find(|v| match method {
        "host" | "dom" => !value::route_host(&host(v)),
        "beg" => !value::route_path(v),
        _ => false,
    }) {
        return Err(format!(
            "the value {bad:?}, which is not a host name or a normalized path"
        ));
    }
    Ok(values
        .iter()
        .flat_map(|v| match method {
            "host" => vec![Match::Host(host(v))],
            "dom" => vec![Match::Host(host(v)), Match::Host(format!("*.{}", host(v)))],
            "beg" => vec![Match::Path(v.clone())],
            "src" => vec![Match::Src(v.clone())],
            _ => vec![Match::Exact],
        })
        .collect())
}

/// A condition's terms: `OR`-separated groups of `AND`ed terms, each a
/// named ACL or an inline `{ … }`.
pub fn terms(
    cond: &[String],
    acls: &HashMap<&str, Result<Vec<Match>, String>>,
) -> Result<Vec<Vec<Vec<Match>>>, String> {
    let (neg, cond) = match cond.split_first() {
        Some((w, rest)) if w == "if" => (false, rest),
        Some((w, rest)) if w == "unless" => (true, rest),
        _ => return Err("a condition without `if`".into()),
    };
    if neg {
        return Err("an `unless` condition".into());
    }
    let mut groups = vec![Vec::new()];
    let mut i = 0;
    while let Some(w) = cond.get(i) {
        i += 1;
        let m = match w.as_str() {
            "||" | "or" => {
                groups.push(Vec::new());
                continue;
            }
            "{" => {
                let end = cond[i..]
                    .iter()
                    .position(|w| w == "}")
                    .ok_or("an unclosed `{`")?;
                let m = acl(&cond[i..i + end])?;
                i += end + 1;
                m
            }
            w if w.starts_with('!') => return Err("a negated condition".into()),
            name => acls
                .get(name)
                .ok_or_else(|| format!("the ACL `{name}` is not defined"))?
                .clone()?,
        };
        if let Some(g) = groups.last_mut() {
            g.push(m);
        }
    }
    Ok(groups)
}

/// Every value of a term that `pick` accepts, or `None` if it matches
/// something else too.
fn values(term: &[Match], pick: fn(&Match) -> Option<&String>) -> Option<Vec<String>> {
    term.iter().map(|m| pick(m).cloned()).collect()
}

/// The (host, path_prefix) routes a `use_backend` condition stands for.
pub fn routes_of(
    cond: &[String],
    acls: &HashMap<&str, Result<Vec<Match>, String>>,
) -> Result<Vec<HostPath>, String> {
    let mut out = Vec::new();
    for group in terms(cond, acls)? {
        let mut hosts: Option<Vec<String>> = None;
        let mut paths: Option<Vec<String>> = None;
        for term in group {
            if term.contains(&Match::Exact) {
                return Err("an exact path or URL match".into());
            }
            let (slot, values) = match term.as_slice() {
                [Match::Host(_), ..] => (
                    &mut hosts,
                    values(&term, |m| match m {
                        Match::Host(h) => Some(h),
                        _ => None,
                    }),
                ),
                [Match::Path(_), ..] => (
                    &mut paths,
                    values(&term, |m| match m {
                        Match::Path(p) => Some(p),
                        _ => None,
                    }),
                ),
                _ => (&mut hosts, None),
            };
            let Some(values) = values else {
                return Err(
                    "a condition on something else than the host or the path prefix".into(),
                );
            };
            if slot.replace(values).is_some() {
                return Err("two conditions on the same thing ANDed".into());
            }
        }
        let hosts = hosts.map_or(vec![None], |v| v.into_iter().map(Some).collect());
        let paths = paths.map_or(vec![None], |v| v.into_iter().map(Some).collect());
        for h in &hosts {
            for p in &paths {
                if h.is_some() || p.is_some() {
                    out.push((h.clone(), p.clone()));
                }
            }
        }
    }
    Ok(out)
}

/// The networks of `expect-proxy layer4 if { src … }` (or a named `src` ACL).
pub fn src_of(
    words: &[String],
    acls: &HashMap<&str, Result<Vec<Match>, String>>,
) -> Option<Vec<String>> {
    let (layer, cond) = words.split_first()?;
    if layer != "layer4" {
        return None;
    }
    let groups = terms(cond, acls).ok()?;
    let mut nets = Vec::new();
    for g in groups {
        let [term] = g.as_slice() else { return None };
        for m in term {
            let Match::Src(s) = m else { return None };
            nets.push(value::network(s)?);
        }
    }
    Some(nets)
}
