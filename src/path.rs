//! The normalized form of a request path, against which route `path_prefix`es
//! match (as nginx matches `location`): percent-encoded unreserved characters
//! decoded, path parameters (`;x`) dropped from each segment, empty segments
//! (`//`) merged, and dot segments (`.`, `..`) removed (RFC 3986 §5.2.4).
//! The request is forwarded as received; only the match uses this form, so
//! `/x/../admin/`, `//admin/`, `/%61dmin/` and `/admin;x/` all match a
//! `/admin/` route.

use std::borrow::Cow;

/// The normalized path. Borrows when the path is already normal (the usual
/// case costs one scan and no allocation).
pub fn normalize(path: &str) -> Cow<'_, str> {
    if is_normal(path.as_bytes()) {
        return Cow::Borrowed(path);
    }
    Cow::Owned(rebuild(path.as_bytes()))
}

/// No `%`, `;`, `//`, and no `.` or `..` segment.
fn is_normal(p: &[u8]) -> bool {
    if p.first() != Some(&b'/') {
        return false;
    }
    let mut prev = 0u8;
    for (i, &b) in p.iter().enumerate() {
        match b {
            b'%' | b';' => return false,
            b'/' if prev == b'/' => return false,
            b'.' if prev == b'/' => {
                let rest = &p[i..];
                if rest == b"."
                    || rest == b".."
                    || rest.starts_with(b"./")
                    || rest.starts_with(b"../")
                {
                    return false;
                }
            }
            _ => {}
        }
        prev = b;
    }
    true
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~".contains(&b)
}

/// Percent-decodes unreserved characters only; other escapes keep their
/// meaning (`%2F` is not a slash) with upper-case hex digits.
fn decode_unreserved(p: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(p.len());
    let mut i = 0;
    while i < p.len() {
        if p[i] == b'%'
            && let (Some(h), Some(l)) = (
                p.get(i + 1).copied().and_then(hex),
                p.get(i + 2).copied().and_then(hex),
            )
        {
            let c = h * 16 + l;
            if unreserved(c) {
                out.push(c);
            } else {
                out.push(b'%');
                out.push(p[i + 1].to_ascii_uppercase());
                out.push(p[i + 2].to_ascii_uppercase());
            }
            i += 3;
            continue;
        }
        out.push(p[i]);
        i += 1;
    }
    out
}

fn rebuild(path: &[u8]) -> String {
    let decoded = decode_unreserved(path);
    let mut segments: Vec<&[u8]> = Vec::new();
    let ends_with_slash = decoded.ends_with(b"/")
        || decoded
            .rsplit(|&b| b == b'/')
            .next()
            .is_some_and(|last| matches!(strip_params(last), b"." | b".."));
    for seg in decoded.split(|&b| b == b'/') {
        match strip_params(seg) {
            b"" | b"." => {}
            b".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = Vec::with_capacity(decoded.len());
    for s in &segments {
        out.push(b'/');
        out.extend_from_slice(s);
    }
    if segments.is_empty() || ends_with_slash {
        out.push(b'/');
    }
    // Only ASCII was decoded, and the input was a str: still valid UTF-8.
    String::from_utf8_lossy(&out).into_owned()
}

/// A segment without its path parameters (`admin;x` → `admin`).
fn strip_params(seg: &[u8]) -> &[u8] {
    match seg.iter().position(|&b| b == b';') {
        Some(i) => &seg[..i],
        None => seg,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn tricks_that_hide_a_prefix_are_undone() {
        for p in [
            "/x/../admin/",
            "//admin/",
            "/%61dmin/",
            "/admin;x/",
            "/./admin/",
            "/%2e%2e/admin/",
            "/a/b/../../admin/",
            "/admin/.",
        ] {
            assert!(
                normalize(p).starts_with("/admin/"),
                "{p} → {}",
                normalize(p)
            );
        }
    }

    #[test]
    fn a_normal_path_is_borrowed_and_unchanged() {
        assert!(matches!(normalize("/static/app.js"), Cow::Borrowed(_)));
        assert!(matches!(normalize("/a.b/c..d/.e"), Cow::Borrowed(_)));
        assert_eq!(normalize("/"), "/");
    }

    #[test]
    fn reserved_escapes_keep_their_meaning() {
        assert_eq!(normalize("/a%2fb/"), "/a%2Fb/");
        assert_eq!(normalize("/../../"), "/");
        assert_eq!(normalize("/a/.."), "/");
        assert_eq!(normalize("/a/b/.."), "/a/");
    }

    proptest! {
        /// The result has no empty, `.` or `..` segment and no path
        /// parameter: nothing left to hide a prefix behind. (Decoding is done
        /// once, as servers do, so `%%36%31` stays `%61`.)
        #[test]
        fn a_normalized_path_has_no_tricks_left(path in "/[a-z%.;/0-9A-F]{0,40}") {
            let once = normalize(&path).into_owned();
            prop_assert!(once.starts_with('/'));
            prop_assert!(!once.contains("//"), "{}", once);
            prop_assert!(!once.contains(';'), "{}", once);
            for seg in once.split('/') {
                prop_assert!(seg != "." && seg != "..", "{}", once);
            }
        }

        #[test]
        fn arbitrary_text_never_panics(path in ".{0,80}") {
            let _ = normalize(&path);
        }
    }
}
