//! Sessions of the demo node, as Tomcat keeps them: the ids a request names
//! (`JSESSIONID` cookies, then `;jsessionid=` path parameters), the store
//! that finds, re-suffixes with this node's jvmRoute, creates or ends a
//! session, and the `Set-Cookie` headers that hand the id back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use http::header::{self, HeaderMap, HeaderValue};

use super::{Shared, lock};

/// Session store keyed by the hex part of the id (the part before the first
/// `.`); each entry remembers the full id it currently has.
pub(super) type SessionMap = Arc<Mutex<HashMap<String, SessionEntry>>>;

pub(super) struct SessionEntry {
    id: String,
    counter: u64,
}

/// The session a request ended up in.
pub(super) struct Session {
    pub(super) id: String,
    pub(super) counter: u64,
    pub(super) new: bool,
    set_cookie: bool,
}

fn hex_part(id: &str) -> &str {
    id.split('.').next().unwrap_or(id)
}

/// The first candidate this store knows: an exact id match first, then a
/// match on the hex part. Returns (hex, requested id).
fn find_known<'a>(
    map: &HashMap<String, SessionEntry>,
    candidates: &'a [String],
) -> Option<(String, &'a str)> {
    let exact = candidates
        .iter()
        .find(|c| map.get(hex_part(c)).is_some_and(|e| e.id == **c));
    let found = exact.or_else(|| candidates.iter().find(|c| map.contains_key(hex_part(c))))?;
    Some((hex_part(found).to_owned(), found.as_str()))
}

fn random_hex() -> String {
    format!("{:016X}{:016X}", fastrand::u64(..), fastrand::u64(..))
}

impl Shared {
    /// Find (re-suffixing if needed) or create the request's session and
    /// count the request in it.
    pub(super) fn touch_session(&self, candidates: &[String]) -> Session {
        let mut map = lock(&self.sessions);
        if let Some((hex, requested)) = find_known(&map, candidates) {
            let want = format!("{hex}.{}", self.route);
            if let Some(entry) = map.get_mut(&hex) {
                entry.counter += 1;
                entry.id.clone_from(&want);
                return Session {
                    set_cookie: requested != want,
                    id: want,
                    counter: entry.counter,
                    new: false,
                };
            }
        }
        let mut hex = random_hex();
        while map.contains_key(&hex) {
            hex = random_hex();
        }
        let id = format!("{hex}.{}", self.route);
        map.insert(
            hex,
            SessionEntry {
                id: id.clone(),
                counter: 1,
            },
        );
        Session {
            id,
            counter: 1,
            new: true,
            set_cookie: true,
        }
    }

    /// Remove the request's session, if any (counting this request in it).
    pub(super) fn end_session(&self, candidates: &[String]) -> Option<Session> {
        let mut map = lock(&self.sessions);
        let (hex, _) = find_known(&map, candidates)?;
        let entry = map.remove(&hex)?;
        Some(Session {
            id: format!("{hex}.{}", self.route),
            counter: entry.counter + 1,
            new: false,
            set_cookie: true,
        })
    }
}

/// Session ids a request names: every `JSESSIONID` cookie in order, then
/// every `;jsessionid=` path parameter.
pub(super) fn session_candidates(headers: &HeaderMap, path: &str) -> Vec<String> {
    let mut out = Vec::new();
    for value in headers.get_all(header::COOKIE) {
        let value = String::from_utf8_lossy(value.as_bytes());
        for pair in value.split(';') {
            if let Some((name, id)) = pair.split_once('=')
                && name.trim() == "JSESSIONID"
            {
                let id = id.trim().trim_matches('"');
                if !id.is_empty() {
                    out.push(id.to_owned());
                }
            }
        }
    }
    const PARAM: &str = ";jsessionid=";
    let lower = path.to_ascii_lowercase();
    let mut from = 0;
    while let Some(pos) = lower.get(from..).and_then(|rest| rest.find(PARAM)) {
        let start = from + pos + PARAM.len();
        let rest = path.get(start..).unwrap_or("");
        let end = rest.find(['?', '/', ';']).unwrap_or(rest.len());
        let id = rest.get(..end).unwrap_or("");
        if !id.is_empty() {
            out.push(id.to_owned());
        }
        from = start + end;
    }
    out
}

pub(super) fn set_cookie(headers: &mut HeaderMap, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.append(header::SET_COOKIE, value);
    }
}

pub(super) fn session_cookie(headers: &mut HeaderMap, session: &Session) {
    if session.set_cookie {
        set_cookie(
            headers,
            &format!("JSESSIONID={}; Path=/; HttpOnly", session.id),
        );
    }
}

pub(super) fn expire_cookie(headers: &mut HeaderMap, id: &str) {
    set_cookie(
        headers,
        &format!("JSESSIONID={id}; Path=/; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT"),
    );
}
