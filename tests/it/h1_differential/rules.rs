//! The comparison, and the deliberate differences: each rule says why the
//! candidate differs and checks the input for its reason.

use http::HeaderMap;
use limpet::config::Limits;
use limpet::h1::chunked::{ChunkedError, Decoder};
use limpet::h1::{self, Framing, HeadError, Parsed, RequestHead};
use limpet::proxy::headers::Scan;

use super::{Body, End, Outcome, Seen};

/// What one side did with the `i`-th request of the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Verdict {
    Accepted,
    Refused(u16, Option<HeadError>),
    Closed,
}

pub(super) fn verdict(o: &Outcome, i: usize) -> Verdict {
    if i < o.requests.len() {
        return Verdict::Accepted;
    }
    match &o.end {
        End::Refused(status, why) => Verdict::Refused(*status, *why),
        End::Closed => Verdict::Closed,
    }
}

/// Compares the outcomes request by request, applying the deliberate
/// differences: Ok with the rule that explained a difference, if one did;
/// Err says what differs.
pub(super) fn compare(
    input: &[u8],
    limits: &Limits,
    reference: &Outcome,
    candidate: &Outcome,
) -> Result<Option<&'static str>, String> {
    for i in 0.. {
        let (r, c) = (verdict(reference, i), verdict(candidate, i));
        match (&r, &c) {
            (Verdict::Accepted, Verdict::Accepted) => {
                let (r, c) = (&reference.requests[i], &candidate.requests[i]);
                if normalized(r) != normalized(c) {
                    return match deliberate_body(input, r, c) {
                        Some(rule) => Ok(Some(rule)),
                        None => Err(format!(
                            "request {i} differs:\n  reference {r:?}\n  candidate {c:?}"
                        )),
                    };
                }
                if matches!(c.body, Body::Failed(_)) {
                    return Ok(None);
                }
            }
            (Verdict::Refused(a, _), Verdict::Refused(b, _)) if a == b => return Ok(None),
            (Verdict::Closed, Verdict::Closed) => return Ok(None),
            _ => {
                return match deliberate(input, i, limits, candidate, &r, &c) {
                    Some(rule) => Ok(Some(rule)),
                    None => Err(format!(
                        "request {i}: reference {r:?}, candidate {c:?}\n  reference saw {:?}\n  candidate saw {:?}",
                        reference.requests.get(i),
                        candidate.requests.get(i),
                    )),
                };
            }
        }
    }
    Ok(None)
}

/// Deliberate difference in how a request's fields look once parsed:
/// of several `Content-Length` fields with the same number (`7`, `007`),
/// hyper keeps the first; limpet keeps them all as offsets and counts them,
/// so the repeats are left out when the head is written on. The reason a
/// body failed is the candidate's alone: not compared.
pub(super) fn normalized(s: &Seen) -> Seen {
    let mut s = s.clone();
    if let Some(v) = s.fields.get_mut("content-length") {
        v.truncate(1);
    }
    if let Body::Failed(_) = s.body {
        s.body = Body::Failed(None);
    }
    s
}

/// The input from where its `i`-th request starts, as the candidate reads
/// it (the requests before were all taken whole).
pub(super) fn rest_of<'a>(input: &'a [u8], candidate: &Outcome, i: usize) -> &'a [u8] {
    let mut at = 0;
    let mut head = RequestHead::default();
    let roomy = Limits {
        max_header_bytes: 1 << 20,
        max_headers: 1000,
        ..Limits::default()
    };
    for _ in candidate.requests.iter().take(i) {
        if h1::parse_request(&input[at..], &roomy, &mut head) != Ok(Parsed::Complete) {
            break;
        }
        at += head.len;
        at += wire_body_len(&input[at..], &head).unwrap_or(0);
    }
    &input[at.min(input.len())..]
}

pub(super) fn wire_body_len(rest: &[u8], head: &RequestHead) -> Option<usize> {
    match h1::framing::request(head) {
        Framing::None => Some(0),
        Framing::Length(n) => usize::try_from(n).ok(),
        Framing::Chunked => {
            let mut d = Decoder::new(&Limits::default(), false);
            let mut at = 0;
            while at < rest.len() {
                let got = d.decode(&rest[at..]).ok()?;
                at += got.consumed;
                if got.done {
                    return Some(at);
                }
            }
            None
        }
        Framing::UntilClose => None,
    }
}

/// The lower-case names of the fields of the head at the start of `rest`,
/// as far as `httparse` reads them.
pub(super) fn names(rest: &[u8]) -> Vec<String> {
    let mut fields = vec![httparse::EMPTY_HEADER; 1000];
    let mut req = httparse::Request::new(&mut fields);
    let _ = req.parse(rest);
    req.headers
        .iter()
        .map(|h| h.name.to_ascii_lowercase())
        .collect()
}

/// Has the head at the start of `rest` a field `name` with one of `values`?
pub(super) fn has_field_value(rest: &[u8], name: &str, values: &[&[u8]]) -> bool {
    let mut fields = vec![httparse::EMPTY_HEADER; 1000];
    let mut req = httparse::Request::new(&mut fields);
    let _ = req.parse(rest);
    req.headers
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case(name) && values.contains(&h.value))
}

/// Does the head at the start of `rest` end within `n` bytes?
pub(super) fn head_ends_within(rest: &[u8], n: usize) -> bool {
    let rest = &rest[..rest.len().min(n)];
    let mut fields = vec![httparse::EMPTY_HEADER; 1000];
    let mut req = httparse::Request::new(&mut fields);
    matches!(req.parse(rest), Ok(httparse::Status::Complete(_)))
}

/// The deliberate differences in a request's verdict: the rule that
/// explains `r` (the reference's) against `c` (the candidate's), having
/// checked the input for its reason; None for a real difference.
pub(super) fn deliberate(
    input: &[u8],
    i: usize,
    limits: &Limits,
    candidate: &Outcome,
    r: &Verdict,
    c: &Verdict,
) -> Option<&'static str> {
    let rest = rest_of(input, candidate, i);
    let names = names(rest);
    let has = |n: &str| names.iter().any(|x| x == n);
    let r400 = *r == Verdict::Refused(400, None);
    let r431 = *r == Verdict::Refused(431, None);
    // 1. Both Transfer-Encoding and Content-Length: limpet refuses the
    //    request (RFC 9112 §6.1 allows it, nginx does, and nothing is left
    //    to smuggle); hyper drops Content-Length and reads chunks. What
    //    either answers depends on which field comes first: not compared.
    let framing = |e: &HeadError| {
        matches!(
            e,
            HeadError::BothLengths
                | HeadError::Coding
                | HeadError::ContentLength
                | HeadError::TransferEncodingHttp10
        )
    };
    if matches!(c, Verdict::Refused(_, Some(e)) if framing(e))
        && has("transfer-encoding")
        && has("content-length")
    {
        return Some("both lengths");
    }
    // 2. A transfer coding other than exactly `chunked`: 501 as check.rs
    //    answers `gzip, chunked`; hyper says 400 itself when the final
    //    coding is not `chunked`.
    if *c == Verdict::Refused(501, Some(HeadError::Coding)) && r400 {
        return Some("coding");
    }
    // 3. A well-formed version other than 1.0 and 1.1: 505, not 400.
    if *c == Verdict::Refused(505, Some(HeadError::Version)) && r400 {
        return Some("version");
    }
    // 4. A fragment in the target: no form of request target has one;
    //    limpet refuses it, hyper cuts it off.
    if *c == Verdict::Refused(400, Some(HeadError::Target)) && first_line(rest).contains(&b'#') {
        return Some("fragment");
    }
    // 5. CONNECT: both refuse; limpet says 405 (400 for a target in no
    //    form) once the head parses, hyper checks target and framing first.
    if matches!(c, Verdict::Refused(..))
        && matches!(r, Verdict::Refused(..))
        && rest.trim_ascii_start().starts_with(b"CONNECT ")
    {
        return Some("connect");
    }
    // 6. A head longer than max_header_bytes: 431 from limpet, which counts
    //    the whole head; hyper's read buffer is max(the limit, 8 KiB) and
    //    check.rs counts the fields only, so it may take the head or find
    //    something else wrong first.
    if *c == Verdict::Refused(431, Some(HeadError::TooLarge))
        && !head_ends_within(rest, limits.max_header_bytes)
    {
        return Some("head size");
    }
    // 7. A head that never ends: limpet refuses what is wrong in it at
    //    once; hyper, once it has seen part of a head, parses again only
    //    after an empty line, and at the end of the input closes silently.
    if matches!(c, Verdict::Refused(..))
        && *r == Verdict::Closed
        && !head_ends_within(rest, usize::MAX)
    {
        return Some("unended head");
    }
    // 8. Two faults, a bad target and a transfer coding other than
    //    `chunked`: limpet reads the request line first (400), check.rs
    //    reads the codings before the authority (501).
    if matches!(
        c,
        Verdict::Refused(400, Some(HeadError::Target | HeadError::Host))
    ) && *r == Verdict::Refused(501, None)
        && names.iter().any(|n| n == "transfer-encoding")
    {
        return Some("fault order");
    }
    if *c == Verdict::Accepted && r431 {
        let seen = candidate.requests.get(i)?;
        // 9. check.rs counts name + value + 4 bytes a field, more than a
        //    field sent as `a:b` with a bare LF takes; limpet counts bytes.
        let mut map = HeaderMap::new();
        for (name, values) in &seen.fields {
            for v in values {
                let name = http::HeaderName::from_bytes(name.as_bytes()).ok()?;
                map.append(name, http::HeaderValue::from_bytes(v).ok()?);
            }
        }
        if Scan::of(&map).bytes > limits.max_header_bytes {
            return Some("field bytes");
        }
    }
    // 10. A Content-Length of 2^64-2 or 2^64-1 is a marker inside hyper
    //    (431 before anything else is looked at), a length to limpet, which
    //    goes on to judge the rest of the request.
    if r431
        && has_field_value(
            rest,
            "content-length",
            &[b"18446744073709551615", b"18446744073709551614"],
        )
    {
        return Some("huge length");
    }
    None
}

/// The deliberate differences in a body both sides read (the heads
/// agree): the rule that explains them, or None.
pub(super) fn deliberate_body(input: &[u8], r: &Seen, c: &Seen) -> Option<&'static str> {
    let heads_agree = Seen {
        body: r.body.clone(),
        ..normalized(c)
    } == normalized(r);
    if !heads_agree {
        return None;
    }
    match (&r.body, &c.body) {
        // 11. A control byte in a chunk extension: limpet refuses the body;
        //     hyper skips any byte there but LF, and a server that reads
        //     extensions could take it otherwise.
        (Body::Complete { .. }, Body::Failed(Some(ChunkedError::Extension))) => Some("extension"),
        // 12. A bare LF in a trailer field: limpet refuses the body; hyper
        //     takes it (its trailer parser reads a bare LF as a line end).
        (Body::Complete { .. }, Body::Failed(Some(ChunkedError::Trailer)))
            if has_bare_lf(input) =>
        {
            Some("trailer LF")
        }
        _ => None,
    }
}

pub(super) fn first_line(rest: &[u8]) -> &[u8] {
    let rest = rest.trim_ascii_start();
    let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
    &rest[..end]
}

pub(super) fn has_bare_lf(input: &[u8]) -> bool {
    input
        .iter()
        .enumerate()
        .any(|(i, &b)| b == b'\n' && (i == 0 || input[i - 1] != b'\r'))
}
