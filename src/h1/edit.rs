//! A parsed head written on as it came, with limpet's edits spliced in:
//! the fields limpet removes are left out, the fields it sets are added at
//! the end, and every other byte is copied as received ("forward, don't
//! rebuild"). [`Edited`] lets the data path read and edit the head through
//! [`Fields`], the same interface the sticky modes use on a `HeaderMap`,
//! so they run on either.
//!
//! Edits are kept in an [`Edits`] the connection reuses from one message to
//! the next: once warm, editing and writing a head allocates nothing but
//! the values limpet adds.

use http::header::{HeaderName, HeaderValue};

use super::{Field, Span};
use crate::fields::Fields;

/// What to change in a head: fields left out (by index) and fields added.
#[derive(Debug, Default)]
pub struct Edits {
    /// Bit `i` set: field `i` of the head is left out.
    removed: Vec<u64>,
    added: Vec<(HeaderName, Value)>,
}

/// The value of an added field: one limpet made, or bytes of the received
/// head (the authority as `X-Forwarded-Host`), which cost no copy.
#[derive(Debug, Clone)]
pub enum Value {
    Made(HeaderValue),
    Received(Span),
}

impl Value {
    fn get<'a>(&'a self, buf: &'a [u8]) -> &'a [u8] {
        match self {
            Value::Made(v) => v.as_bytes(),
            Value::Received(span) => span.get(buf),
        }
    }
}

impl Edits {
    /// No edits (for the next message), keeping the memory.
    pub fn clear(&mut self) {
        self.removed.clear();
        self.added.clear();
    }

    /// Leaves field `i` of the head out.
    pub fn remove(&mut self, i: usize) {
        let word = i / 64;
        if self.removed.len() <= word {
            self.removed.resize(word + 1, 0);
        }
        self.removed[word] |= 1 << (i % 64);
    }

    /// Is field `i` left out?
    pub fn is_removed(&self, i: usize) -> bool {
        self.removed
            .get(i / 64)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    /// Adds a field after the received ones.
    pub fn add(&mut self, name: HeaderName, value: HeaderValue) {
        self.added.push((name, Value::Made(value)));
    }

    /// Adds a field whose value is `span` of the received head.
    pub fn add_received(&mut self, name: HeaderName, span: Span) {
        self.added.push((name, Value::Received(span)));
    }

    /// The fields added so far.
    pub fn added(&self) -> &[(HeaderName, Value)] {
        &self.added
    }

    /// Have any fields been added?
    pub fn has_added(&self) -> bool {
        !self.added.is_empty()
    }
}

/// A head being prepared for the other side: the received bytes, their
/// fields, and the edits so far.
pub struct Edited<'a> {
    pub buf: &'a [u8],
    pub fields: &'a [Field],
    pub edits: &'a mut Edits,
}

impl Edited<'_> {
    /// Writes the head's field lines with the edits, and the blank line that
    /// ends the head, to `out`. A kept field is copied byte for byte; one
    /// that ended with a bare LF (which the parser accepts, as hyper does)
    /// is written with CRLF, so the next hop reads the same lines.
    pub fn write_fields(&self, out: &mut Vec<u8>) {
        for (i, f) in self.fields.iter().enumerate() {
            if self.edits.is_removed(i) {
                continue;
            }
            let line = f.line.get(self.buf);
            if line.ends_with(b"\r\n") {
                out.extend_from_slice(line);
            } else {
                write_field(out, f.name.get(self.buf), f.value.get(self.buf));
            }
        }
        for (name, value) in &self.edits.added {
            write_field(out, name.as_str().as_bytes(), value.get(self.buf));
        }
        out.extend_from_slice(b"\r\n");
    }

    /// Does field `f` have the name `name` (any case)?
    fn named(&self, f: &Field, name: &HeaderName) -> bool {
        f.name
            .get(self.buf)
            .eq_ignore_ascii_case(name.as_str().as_bytes())
    }
}

fn write_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

impl Fields for Edited<'_> {
    fn all<'a>(&'a self, name: &HeaderName) -> impl Iterator<Item = &'a [u8]> + 'a {
        let (name, wanted) = (name.clone(), name.clone());
        let received = self
            .fields
            .iter()
            .enumerate()
            .filter(move |(i, f)| !self.edits.is_removed(*i) && self.named(f, &name))
            .map(|(_, f)| f.value.get(self.buf));
        let added = self
            .edits
            .added
            .iter()
            .filter(move |(n, _)| *n == wanted)
            .map(|(_, v)| v.get(self.buf));
        received.chain(added)
    }

    fn append(&mut self, name: HeaderName, value: HeaderValue) {
        self.edits.add(name, value);
    }

    fn replace(&mut self, name: HeaderName, values: impl IntoIterator<Item = HeaderValue>) {
        for i in 0..self.fields.len() {
            if self.named(&self.fields[i], &name) {
                self.edits.remove(i);
            }
        }
        self.edits.added.retain(|(n, _)| *n != name);
        for v in values {
            self.edits.add(name.clone(), v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Limits;
    use crate::h1::{RequestHead, parse_request};
    use http::header::{COOKIE, SET_COOKIE};

    fn parsed(raw: &[u8]) -> RequestHead {
        let mut head = RequestHead::default();
        parse_request(raw, &Limits::default(), &mut head).unwrap();
        head
    }

    fn written(raw: &[u8], head: &RequestHead, edits: &mut Edits) -> Vec<u8> {
        let mut out = Vec::new();
        Edited {
            buf: raw,
            fields: &head.fields,
            edits,
        }
        .write_fields(&mut out);
        out
    }

    #[test]
    fn without_edits_the_fields_are_written_byte_for_byte() {
        let raw = b"GET / HTTP/1.1\r\nHost: a\r\nX-Odd:  spaced \t\r\ncOOkie: a=1\r\n\r\n";
        let head = parsed(raw);
        let out = written(raw, &head, &mut Edits::default());
        assert_eq!(
            out,
            &raw[raw.iter().position(|&b| b == b'\n').unwrap() + 1..]
        );
    }

    #[test]
    fn removed_fields_are_left_out_and_added_ones_come_last() {
        let raw = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\nX-A: 1\r\n\r\n";
        let head = parsed(raw);
        let mut edits = Edits::default();
        edits.remove(1);
        edits.add(
            HeaderName::from_static("x-forwarded-for"),
            HeaderValue::from_static("127.0.0.1"),
        );
        let out = written(raw, &head, &mut edits);
        assert_eq!(
            out,
            b"Host: a\r\nX-A: 1\r\nx-forwarded-for: 127.0.0.1\r\n\r\n"
        );
    }

    #[test]
    fn a_bare_lf_line_is_written_with_crlf() {
        let raw = b"GET / HTTP/1.1\nHost: a\nX-A: 1\n\n";
        let head = parsed(raw);
        assert_eq!(
            written(raw, &head, &mut Edits::default()),
            b"Host: a\r\nX-A: 1\r\n\r\n"
        );
    }

    #[test]
    fn the_sticky_cookie_is_stripped_through_fields_as_on_a_header_map() {
        let raw = b"GET / HTTP/1.1\r\nHost: a\r\nCookie: SERVERID=n1; JSESSIONID=x\r\n\r\n";
        let head = parsed(raw);
        let mut edits = Edits::default();
        let mut edited = Edited {
            buf: raw,
            fields: &head.fields,
            edits: &mut edits,
        };
        let ids: Vec<&[u8]> = crate::sticky::cookies::request_values(&edited, "SERVERID").collect();
        assert_eq!(ids, [b"n1"]);
        assert!(crate::sticky::cookies::strip(&mut edited, "SERVERID"));
        assert_eq!(edited.all(&COOKIE).collect::<Vec<_>>(), [b"JSESSIONID=x"]);
        assert_eq!(edited.all(&SET_COOKIE).count(), 0);
        let mut out = Vec::new();
        edited.write_fields(&mut out);
        assert_eq!(out, b"Host: a\r\ncookie: JSESSIONID=x\r\n\r\n");
    }

    #[test]
    fn edits_are_reused_without_leftovers() {
        let mut edits = Edits::default();
        edits.remove(70);
        edits.add(COOKIE, HeaderValue::from_static("a=1"));
        assert!(edits.is_removed(70));
        edits.clear();
        assert!(!edits.is_removed(70));
        assert!(edits.added().is_empty());
    }
}
