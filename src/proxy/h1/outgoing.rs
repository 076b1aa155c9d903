//! The request head as the server gets it on the HTTP/1 path: the request
//! line in origin form and HTTP/1.1, then the received field lines as they
//! came with limpet's edits spliced in (the same edits as
//! `proxy/headers.rs` makes on a `HeaderMap`): hop-by-hop fields out (the
//! `Upgrade` of a protocol switch stays, and `Transfer-Encoding`, since
//! the chunked body is forwarded as it came), repeated `Content-Length`s
//! out, `Forwarded` and `X-Real-IP` believed only from a trusted peer, the
//! `X-Forwarded-*` family set, `Host` set to the request's authority.

#[cfg(test)]
use http::header::HeaderName;
use http::header::{self, HeaderValue};

use crate::h1::edit::{Edited, Edits};
use crate::h1::{Field, Name, RequestHead, Span};
use crate::proxy::conn::ConnCtx;
use crate::proxy::headers::{X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PROTO};

/// Fills `edits` for `head` (received in `buf`). `authority` is where the
/// request's authority lies (the absolute-form target's, else `Host`'s);
/// `upgrade`: the request asks to switch protocols.
pub fn prepare(
    buf: &[u8],
    head: &RequestHead,
    edits: &mut Edits,
    conn: &ConnCtx,
    trusted: bool,
    authority: Option<Span>,
    upgrade: bool,
) {
    let facts = &head.facts;
    let mut lengths = 0u8;
    let forwarded_for = facts.x_forwarded_for;
    let replace_proto = !(trusted && facts.x_forwarded_proto);
    let replace_host = !(trusted && facts.x_forwarded_host);
    // The authority came in the target (absolute form) and differs from Host.
    let set_host = authority.is_some_and(|a| facts.host != Some(a));
    for (i, f) in head.fields.iter().enumerate() {
        let out = match f.known {
            Name::Upgrade => !upgrade,
            Name::TransferEncoding => false,
            n if n.is_hop_by_hop() => true,
            Name::ContentLength => {
                lengths += 1;
                lengths > 1
            }
            Name::Forwarded | Name::XRealIp => !trusted,
            Name::XForwardedFor => true,
            Name::XForwardedProto => replace_proto,
            Name::XForwardedHost => replace_host,
            Name::Host => set_host,
            Name::Other if facts.connection.names => listed(buf, head, f),
            _ => false,
        };
        if out {
            edits.remove(i);
        }
    }
    if upgrade {
        edits.add(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    if set_host && let Some(a) = authority {
        edits.add_received(header::HOST, a);
    }
    if forwarded_for {
        edits.add(X_FORWARDED_FOR, chain(buf, &head.fields, conn));
    } else {
        edits.add(X_FORWARDED_FOR, conn.peer_value.clone());
    }
    if replace_proto {
        edits.add(X_FORWARDED_PROTO, HeaderValue::from_static(conn.scheme));
    }
    if replace_host && let Some(a) = authority {
        edits.add_received(X_FORWARDED_HOST, a);
    }
}

/// Is field `f` named by one of the head's `Connection` fields?
fn listed(buf: &[u8], head: &RequestHead, f: &Field) -> bool {
    let name = f.name.get(buf);
    head.fields
        .iter()
        .filter(|c| c.known == Name::Connection)
        .flat_map(|c| c.value.get(buf).split(|&b| b == b','))
        .any(|token| token.trim_ascii().eq_ignore_ascii_case(name))
}

/// The received `X-Forwarded-For` chain with the peer appended (nginx's
/// `$proxy_add_x_forwarded_for`).
fn chain(buf: &[u8], fields: &[Field], conn: &ConnCtx) -> HeaderValue {
    let mut chain = Vec::with_capacity(64);
    for f in fields.iter().filter(|f| f.known == Name::XForwardedFor) {
        let v = f.value.get(buf).trim_ascii();
        if !v.is_empty() {
            chain.extend_from_slice(v);
            chain.extend_from_slice(b", ");
        }
    }
    chain.extend_from_slice(conn.peer_value.as_bytes());
    HeaderValue::from_maybe_shared(bytes::Bytes::from(chain))
        .unwrap_or_else(|_| conn.peer_value.clone())
}

/// Writes the request line (origin form, HTTP/1.1) and the edited fields.
pub fn write(buf: &[u8], head: &RequestHead, edited: &Edited<'_>, out: &mut Vec<u8>) {
    out.extend_from_slice(head.method.as_str().as_bytes());
    out.push(b' ');
    let path = head.path().get(buf);
    if path.first() != Some(&b'/') {
        // An absolute-form target with no path, or `*`.
        if path.is_empty() || path.first() == Some(&b'?') {
            out.push(b'/');
        }
    }
    out.extend_from_slice(path);
    out.extend_from_slice(b" HTTP/1.1\r\n");
    edited.write_fields(out);
}

/// The static names `prepare` adds (for the tests).
#[cfg(test)]
const ADDED: [HeaderName; 3] = [X_FORWARDED_FOR, X_FORWARDED_PROTO, X_FORWARDED_HOST];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Limits;
    use crate::h1::parse_request;

    fn outgoing(raw: &[u8], trusted: bool) -> String {
        let mut head = RequestHead::default();
        parse_request(raw, &Limits::default(), &mut head).unwrap();
        let authority = crate::h1::check::request(&head, raw).unwrap();
        let conn = ConnCtx::new(([127, 0, 0, 2], 40000).into(), 0, "http");
        let mut edits = Edits::default();
        let upgrade = head.facts.upgrade && head.facts.connection.upgrade;
        prepare(raw, &head, &mut edits, &conn, trusted, authority, upgrade);
        let edited = Edited {
            buf: raw,
            fields: &head.fields,
            edits: &mut edits,
        };
        let mut out = Vec::new();
        write(raw, &head, &edited, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn fields_go_on_as_received_with_the_forwarding_family_added() {
        assert_eq!(
            outgoing(
                b"GET /a?b HTTP/1.1\r\nHost: shop\r\nX-OdD:  a  b \r\n\r\n",
                false
            ),
            "GET /a?b HTTP/1.1\r\nHost: shop\r\nX-OdD:  a  b \r\n\
             x-forwarded-for: 127.0.0.2\r\nx-forwarded-proto: http\r\nx-forwarded-host: shop\r\n\r\n"
        );
        assert_eq!(ADDED.len(), 3);
    }

    #[test]
    fn hop_by_hop_and_connection_listed_fields_are_left_out() {
        let out = outgoing(
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\nKeep-Alive: 5\r\nTE: trailers\r\nProxy-Connection: x\r\nX-Kept: 1\r\n\r\n",
            false,
        );
        assert!(!out.to_ascii_lowercase().contains("secret"), "{out}");
        assert!(!out.contains("Keep-Alive"), "{out}");
        assert!(!out.contains("TE:"), "{out}");
        assert!(!out.contains("Proxy-Connection"), "{out}");
        assert!(out.contains("X-Kept: 1\r\n"), "{out}");
    }

    #[test]
    fn the_chain_grows_and_untrusted_claims_are_dropped() {
        let out = outgoing(
            b"POST / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.1.1.1\r\nX-Forwarded-Proto: https\r\nForwarded: for=x\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n",
            false,
        );
        assert!(
            out.contains("x-forwarded-for: 1.1.1.1, 127.0.0.2\r\n"),
            "{out}"
        );
        assert!(out.contains("x-forwarded-proto: http\r\n"), "{out}");
        assert!(!out.contains("https"), "{out}");
        assert!(!out.contains("Forwarded: for=x"), "{out}");
        assert_eq!(out.matches("Content-Length").count(), 1, "{out}");
        let trusted = outgoing(
            b"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-Proto: https\r\nForwarded: for=x\r\n\r\n",
            true,
        );
        assert!(
            trusted.contains("X-Forwarded-Proto: https\r\n"),
            "{trusted}"
        );
        assert!(!trusted.contains("x-forwarded-proto"), "{trusted}");
        assert!(trusted.contains("Forwarded: for=x"), "{trusted}");
    }

    #[test]
    fn an_absolute_target_goes_on_in_origin_form_with_its_authority_as_host() {
        let out = outgoing(
            b"GET http://b.example/p?q HTTP/1.1\r\nHost: a\r\n\r\n",
            false,
        );
        assert!(out.starts_with("GET /p?q HTTP/1.1\r\n"), "{out}");
        assert!(!out.contains("Host: a"), "{out}");
        assert!(out.contains("host: b.example\r\n"), "{out}");
        let bare = outgoing(
            b"GET http://b.example?q HTTP/1.1\r\nHost: b.example\r\n\r\n",
            false,
        );
        assert!(bare.starts_with("GET /?q HTTP/1.1\r\n"), "{bare}");
    }

    #[test]
    fn a_protocol_switch_keeps_upgrade_and_chunked_keeps_its_coding() {
        let out = outgoing(
            b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
            false,
        );
        assert!(out.contains("Upgrade: websocket\r\n"), "{out}");
        assert!(out.contains("connection: upgrade\r\n"), "{out}");
        let chunked = outgoing(
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
            false,
        );
        assert!(
            chunked.contains("Transfer-Encoding: chunked\r\n"),
            "{chunked}"
        );
    }
}
