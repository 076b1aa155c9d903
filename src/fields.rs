//! The fields of a message head as the data path reads and edits them,
//! whatever holds them: hyper's [`HeaderMap`] (HTTP/2, and the hyper
//! HTTP/1 path) or limpet's own HTTP/1 head (offsets into the received
//! bytes, plus the edits to splice in when it is written on). The sticky
//! modes read cookies and add `Set-Cookie` through this, so they run on
//! either without a copy of the head.

use http::header::{HeaderMap, HeaderName, HeaderValue};

pub trait Fields {
    /// The value of every field `name`, in order, as bytes.
    fn all<'a>(&'a self, name: &HeaderName) -> impl Iterator<Item = &'a [u8]> + 'a;

    /// Adds a field after the others.
    fn append(&mut self, name: HeaderName, value: HeaderValue);

    /// Replaces every field `name` with `values` (none: removes them).
    fn replace(&mut self, name: HeaderName, values: impl IntoIterator<Item = HeaderValue>);
}

impl Fields for HeaderMap {
    fn all<'a>(&'a self, name: &HeaderName) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.get_all(name).iter().map(HeaderValue::as_bytes)
    }

    fn append(&mut self, name: HeaderName, value: HeaderValue) {
        HeaderMap::append(self, name, value);
    }

    fn replace(&mut self, name: HeaderName, values: impl IntoIterator<Item = HeaderValue>) {
        let mut values = values.into_iter();
        match values.next() {
            None => {
                self.remove(&name);
            }
            Some(first) => {
                self.insert(name.clone(), first);
                for v in values {
                    HeaderMap::append(self, name.clone(), v);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::{COOKIE, SET_COOKIE};

    #[test]
    fn a_header_map_reads_appends_and_replaces_in_order() {
        let mut h = HeaderMap::new();
        Fields::append(&mut h, COOKIE, HeaderValue::from_static("a=1"));
        Fields::append(&mut h, COOKIE, HeaderValue::from_static("b=2"));
        assert_eq!(h.all(&COOKIE).collect::<Vec<_>>(), [b"a=1", b"b=2"]);
        h.replace(COOKIE, [HeaderValue::from_static("c=3")]);
        assert_eq!(h.all(&COOKIE).collect::<Vec<_>>(), [b"c=3"]);
        h.replace(COOKIE, None);
        assert_eq!(h.all(&COOKIE).count(), 0);
        assert_eq!(h.all(&SET_COOKIE).count(), 0);
    }
}
