//! The fields of a head as offsets, each recognized once by name, and what
//! one pass over them finds ([`Facts`]): the framing, the connection
//! options and everything later steps of the data path ask about (the
//! HTTP/1 counterpart of `proxy::headers::Scan`).

use super::{HeadError, Span};

/// One field line of a head, as offsets into the received bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    pub name: Span,
    /// Without the whitespace around it.
    pub value: Span,
    /// The whole line, from the name to its line ending included: what is
    /// left out to remove the field when the head is written on.
    pub line: Span,
    /// Which of the fields limpet acts on it is, found once here.
    pub known: Name,
}

/// The field names limpet acts on; every other name is [`Name::Other`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Name {
    Other,
    Host,
    ContentLength,
    TransferEncoding,
    Connection,
    Upgrade,
    Expect,
    Cookie,
    SetCookie,
    CacheControl,
    XForwardedFor,
    XForwardedProto,
    XForwardedHost,
    Forwarded,
    XRealIp,
    Te,
    Trailer,
    KeepAlive,
    ProxyConnection,
    ProxyAuthenticate,
    Date,
}

/// The known names by length (`BY_LENGTH[n]`: those `n` bytes long), so
/// that most names of a head are compared with one or two known names, or
/// none.
const BY_LENGTH: [&[(&[u8], Name)]; 19] = [
    &[],
    &[],
    &[(b"te", Name::Te)],
    &[],
    &[(b"host", Name::Host), (b"date", Name::Date)],
    &[],
    &[(b"expect", Name::Expect), (b"cookie", Name::Cookie)],
    &[(b"upgrade", Name::Upgrade), (b"trailer", Name::Trailer)],
    &[],
    &[
        (b"forwarded", Name::Forwarded),
        (b"x-real-ip", Name::XRealIp),
    ],
    &[
        (b"connection", Name::Connection),
        (b"set-cookie", Name::SetCookie),
        (b"keep-alive", Name::KeepAlive),
    ],
    &[],
    &[],
    &[(b"cache-control", Name::CacheControl)],
    &[(b"content-length", Name::ContentLength)],
    &[(b"x-forwarded-for", Name::XForwardedFor)],
    &[
        (b"x-forwarded-host", Name::XForwardedHost),
        (b"proxy-connection", Name::ProxyConnection),
    ],
    &[
        (b"transfer-encoding", Name::TransferEncoding),
        (b"x-forwarded-proto", Name::XForwardedProto),
    ],
    &[(b"proxy-authenticate", Name::ProxyAuthenticate)],
];

impl Name {
    /// Recognizes a field name in any case.
    pub fn of(name: &[u8]) -> Name {
        BY_LENGTH
            .get(name.len())
            .and_then(|known| known.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)))
            .map_or(Name::Other, |&(_, known)| known)
    }

    /// Does the field describe one connection and never cross a proxy
    /// (RFC 9110 §7.6.1; the names `Connection` lists are hop-by-hop too)?
    pub fn is_hop_by_hop(self) -> bool {
        matches!(
            self,
            Name::Connection
                | Name::Te
                | Name::Trailer
                | Name::TransferEncoding
                | Name::Upgrade
                | Name::ProxyAuthenticate
                | Name::KeepAlive
                | Name::ProxyConnection
        )
    }
}

/// Is the field named `name` listed in one of `fields`' `Connection` fields?
pub fn listed(buf: &[u8], fields: &[Field], name: &[u8]) -> bool {
    fields
        .iter()
        .filter(|c| c.known == Name::Connection)
        .flat_map(|c| c.value.get(buf).split(|&b| b == b','))
        .any(|token| token.trim_ascii().eq_ignore_ascii_case(name))
}

/// The options of every `Connection` field of a head.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Connection {
    pub close: bool,
    pub keep_alive: bool,
    pub upgrade: bool,
    /// Another option: a field name the sender wants removed before the
    /// message goes on.
    pub names: bool,
}

impl Connection {
    /// Reads one field's options. Like hyper, a value that is not visible
    /// ASCII is not read at all.
    fn add(&mut self, value: &[u8]) {
        if !value
            .iter()
            .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b))
        {
            return;
        }
        for option in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
            if option.eq_ignore_ascii_case(b"close") {
                self.close = true;
            } else if option.eq_ignore_ascii_case(b"keep-alive") {
                self.keep_alive = true;
            } else if option.eq_ignore_ascii_case(b"upgrade") {
                self.upgrade = true;
            } else if !option.is_empty() {
                self.names = true;
            }
        }
    }
}

/// The transfer codings of a head's `Transfer-Encoding` fields.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Coding {
    /// No `Transfer-Encoding`.
    #[default]
    None,
    /// One field, its value exactly `chunked`: the only coding a request
    /// may have (`proxy/check.rs`).
    Chunked,
    /// `chunked` last after other codings (`gzip, chunked`): a response
    /// body is still chunked; a request gets 501.
    ChunkedLast,
    /// The final coding is not `chunked`: a response is read until the
    /// connection closes; a request gets 501.
    Other,
}

/// What one pass over a head's fields found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Facts {
    /// Size of the field lines as received.
    pub bytes: usize,
    pub hosts: u8,
    /// The first `Host` field's value.
    pub host: Option<Span>,
    /// The length every `Content-Length` field agrees on.
    pub content_length: Option<u64>,
    /// `Content-Length` fields: more than one (all the same) are one too
    /// many for the server; the repeats are left out when writing on.
    pub content_lengths: u8,
    pub coding: Coding,
    pub transfer_encodings: u8,
    pub connection: Connection,
    /// An `Upgrade` field.
    pub upgrade: bool,
    /// `Expect: 100-continue`.
    pub expect_continue: bool,
    pub cookies: u16,
    pub set_cookies: u16,
    pub cache_control: bool,
    pub x_forwarded_for: bool,
    pub x_forwarded_proto: bool,
    pub x_forwarded_host: bool,
    /// `Forwarded` or `X-Real-IP`.
    pub forwarded: bool,
    /// A hop-by-hop field (`Connection`, `Transfer-Encoding`, ...).
    pub hop_by_hop: bool,
    /// A `Date` field.
    pub date: bool,
}

impl Facts {
    /// Takes in one field. Errs on a `Content-Length` that is not a
    /// number or disagrees with an earlier one.
    pub(super) fn add(&mut self, field: &Field, buf: &[u8]) -> Result<(), HeadError> {
        self.bytes += field.line.len();
        let value = field.value.get(buf);
        match field.known {
            Name::Host => {
                self.hosts = self.hosts.saturating_add(1);
                self.host.get_or_insert(field.value);
            }
            Name::ContentLength => {
                let n = content_length(value).ok_or(HeadError::ContentLength)?;
                if self.content_length.is_some_and(|m| m != n) {
                    return Err(HeadError::ContentLength);
                }
                self.content_length = Some(n);
                self.content_lengths = self.content_lengths.saturating_add(1);
            }
            Name::TransferEncoding => {
                self.transfer_encodings = self.transfer_encodings.saturating_add(1);
                self.coding = coding(self.transfer_encodings, value);
            }
            Name::Connection => self.connection.add(value),
            Name::Upgrade => self.upgrade = true,
            Name::Expect => {
                self.expect_continue |= value.eq_ignore_ascii_case(b"100-continue");
            }
            Name::Cookie => self.cookies = self.cookies.saturating_add(1),
            Name::SetCookie => self.set_cookies = self.set_cookies.saturating_add(1),
            Name::CacheControl => self.cache_control = true,
            Name::XForwardedFor => self.x_forwarded_for = true,
            Name::XForwardedProto => self.x_forwarded_proto = true,
            Name::XForwardedHost => self.x_forwarded_host = true,
            Name::Forwarded | Name::XRealIp => self.forwarded = true,
            Name::Date => self.date = true,
            Name::Other
            | Name::Te
            | Name::Trailer
            | Name::KeepAlive
            | Name::ProxyConnection
            | Name::ProxyAuthenticate => {}
        }
        self.hop_by_hop |= field.known.is_hop_by_hop();
        Ok(())
    }
}

/// `1*DIGIT` as a u64: no sign, no spaces, no list.
fn content_length(v: &[u8]) -> Option<u64> {
    if v.is_empty() {
        return None;
    }
    v.iter().try_fold(0u64, |n, &b| {
        let digit = b.checked_sub(b'0').filter(|d| *d <= 9)?;
        n.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

/// The codings so far, given the `nth` `Transfer-Encoding` field's value.
fn coding(nth: u8, value: &[u8]) -> Coding {
    if nth == 1 && value.eq_ignore_ascii_case(b"chunked") {
        return Coding::Chunked;
    }
    let last = value.rsplit(|&b| b == b',').next().unwrap_or_default();
    if last.trim_ascii().eq_ignore_ascii_case(b"chunked") {
        Coding::ChunkedLast
    } else {
        Coding::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_recognized_in_any_case() {
        assert_eq!(Name::of(b"Content-Length"), Name::ContentLength);
        assert_eq!(Name::of(b"HOST"), Name::Host);
        assert_eq!(Name::of(b"x-forwarded-for"), Name::XForwardedFor);
        assert_eq!(Name::of(b"hosts"), Name::Other);
        assert_eq!(Name::of(b""), Name::Other);
        // Every known name sits at its length and is found in any case.
        let mut count = 0;
        for (len, known) in BY_LENGTH.iter().enumerate() {
            for &(name, n) in *known {
                assert_eq!(name.len(), len);
                assert_eq!(Name::of(name), n);
                assert_eq!(Name::of(&name.to_ascii_uppercase()), n);
                count += 1;
            }
        }
        assert_eq!(count, 20);
        assert!(Name::of(b"Keep-Alive").is_hop_by_hop());
        assert!(!Name::of(b"Cookie").is_hop_by_hop());
    }

    #[test]
    fn content_lengths_are_plain_decimal_numbers() {
        for (v, want) in [
            (&b"0"[..], Some(0)),
            (b"0042", Some(42)),
            (b"18446744073709551615", Some(u64::MAX)),
            (b"18446744073709551616", None),
            (b"", None),
            (b"+1", None),
            (b"-1", None),
            (b"1 ", None),
            (b"1,1", None),
            (b"0x10", None),
        ] {
            assert_eq!(content_length(v), want, "{:?}", String::from_utf8_lossy(v));
        }
    }

    #[test]
    fn codings_are_read_as_check_rs_and_rfc_9112_read_them() {
        assert_eq!(coding(1, b"chunked"), Coding::Chunked);
        assert_eq!(coding(1, b"CHUNKED"), Coding::Chunked);
        assert_eq!(coding(2, b"chunked"), Coding::ChunkedLast);
        assert_eq!(coding(1, b"gzip, chunked"), Coding::ChunkedLast);
        assert_eq!(coding(1, b"gzip,chunked"), Coding::ChunkedLast);
        assert_eq!(coding(1, b"chunked, gzip"), Coding::Other);
        assert_eq!(coding(1, b"chunked,"), Coding::Other);
        assert_eq!(coding(1, b""), Coding::Other);
        assert_eq!(coding(1, b"identity"), Coding::Other);
    }

    #[test]
    fn connection_options_are_tokens_of_visible_ascii_values() {
        let mut c = Connection::default();
        c.add(b"Keep-Alive, x-secret ,, UPGRADE");
        assert_eq!(
            c,
            Connection {
                close: false,
                keep_alive: true,
                upgrade: true,
                names: true
            }
        );
        let mut c = Connection::default();
        c.add(b"close, \xff");
        assert_eq!(c, Connection::default());
    }
}
