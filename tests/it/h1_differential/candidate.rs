//! The candidate: `limpet::h1`, driven as a connection would drive it.

use std::collections::BTreeMap;

use limpet::config::Limits;
use limpet::h1::chunked::Decoder;
use limpet::h1::{self, Form, Framing, HeadError, Parsed, RequestHead};

use super::{Body, End, Outcome, Seen, fields_of};

pub(super) fn outcome(segments: &[Vec<u8>], limits: &Limits) -> Outcome {
    let mut segments = segments.iter();
    let mut buf: Vec<u8> = Vec::new();
    let mut at = 0;
    let mut head = RequestHead::default();
    let mut chunked = Decoder::new(limits, true);
    let mut requests = Vec::new();
    // Reads one more segment; false at the end of the input.
    let mut more = |buf: &mut Vec<u8>| match segments.next() {
        Some(s) => {
            buf.extend_from_slice(s);
            true
        }
        None => false,
    };
    loop {
        let refused = |e: HeadError, requests| Outcome {
            requests,
            end: End::Refused(e.status().as_u16(), Some(e)),
        };
        match h1::parse_request(&buf[at..], limits, &mut head) {
            Ok(Parsed::Complete) => {}
            Ok(Parsed::Partial) if more(&mut buf) => continue,
            Ok(Parsed::Partial) => {
                return Outcome {
                    requests,
                    end: End::Closed,
                };
            }
            Err(e) => return refused(e, requests),
        }
        let hbuf = &buf[at..at + head.len];
        let authority = match h1::check::request(&head, hbuf) {
            Ok(a) => a.map(|a| a.get(hbuf).to_vec()),
            Err(e) => return refused(e, requests),
        };
        let mut seen = Seen {
            method: head.method.as_str().to_owned(),
            target: target_of(&head, hbuf),
            version: head.version,
            fields: fields_of(
                head.fields
                    .iter()
                    .map(|f| (f.name.get(hbuf), f.value.get(hbuf))),
            ),
            authority,
            body: Body::Failed(None),
        };
        at += head.len;
        seen.body = match h1::framing::request(&head) {
            Framing::None => Body::Complete {
                data: Vec::new(),
                trailers: BTreeMap::new(),
            },
            Framing::Length(n) => loop {
                let n = usize::try_from(n).unwrap_or(usize::MAX);
                if buf.len() - at >= n {
                    let data = buf[at..at + n].to_vec();
                    at += n;
                    break Body::Complete {
                        data,
                        trailers: BTreeMap::new(),
                    };
                }
                if !more(&mut buf) {
                    break Body::Failed(None);
                }
            },
            Framing::Chunked => {
                chunked.reset();
                let mut data = Vec::new();
                loop {
                    match chunked.decode(&buf[at..]) {
                        Err(e) => break Body::Failed(Some(e)),
                        Ok(d) => {
                            data.extend_from_slice(&buf[at..][d.data]);
                            at += d.consumed;
                            if d.done {
                                let trailers = fields_of(chunked.trailers());
                                break Body::Complete { data, trailers };
                            }
                            if at == buf.len() && !more(&mut buf) {
                                break Body::Failed(None);
                            }
                        }
                    }
                }
            }
            Framing::UntilClose => unreachable!("requests are never read until close"),
        };
        let failed = matches!(seen.body, Body::Failed(_));
        requests.push(seen);
        if failed || !head.keep_alive() {
            return Outcome {
                requests,
                end: End::Closed,
            };
        }
    }
}

/// The target as `http::Uri` parts: an absolute-form target without a
/// path has the path `/` there.
pub(super) fn target_of(
    head: &RequestHead,
    buf: &[u8],
) -> (Option<String>, Option<Vec<u8>>, Vec<u8>) {
    match head.form {
        Form::Absolute {
            https,
            authority,
            path,
        } => {
            let path = match path.get(buf) {
                b"" => b"/".to_vec(),
                p => p.to_vec(),
            };
            let scheme = if https { "https" } else { "http" };
            (
                Some(scheme.to_owned()),
                Some(authority.get(buf).to_vec()),
                path,
            )
        }
        Form::Origin | Form::Asterisk | Form::Authority => {
            (None, None, head.target.get(buf).to_vec())
        }
    }
}
