//! The properties the h1 fuzz targets check (`fuzz/fuzz_targets/h1_*.rs`
//! include this file), run here too: on the committed corpus and on
//! random bytes, so they hold in every `cargo test`, and where cargo-fuzz
//! cannot run (`LIMPET_H1_FUZZ_CASES` random inputs a target, default 300).
//!
//! An input is a message with three bytes before it: the limits to parse
//! with, and where to cut the message in two. Each property panics when it
//! does not hold:
//!
//! * a head parses or not whatever the cut: the first part alone is
//!   partial, or judged as the whole is; a parsed head's spans lie in the
//!   bytes in order, and its facts agree with its fields;
//! * a chunked body decodes the same in two parts as in one, every range of
//!   data lies in the part it came from, and the decoder always advances.

use limpet::config::Limits;
use limpet::h1::chunked::{ChunkedError, Decoder};
use limpet::h1::{self, Field, Form, HeadError, Name, Parsed, RequestHead, ResponseHead, Span};

/// The limits, the cut and the message of an input.
fn split(data: &[u8]) -> Option<(Limits, usize, &[u8])> {
    let (&[limits, cut0, cut1], msg) = data.split_first_chunk::<3>()?;
    let cut = usize::from(u16::from_le_bytes([cut0, cut1])) % (msg.len() + 1);
    let limits = match limits % 3 {
        0 => Limits::default(),
        1 => Limits {
            max_headers: 4,
            max_header_bytes: 1024,
            ..Limits::default()
        },
        _ => Limits {
            max_headers: 200,
            max_header_bytes: 2048,
            ..Limits::default()
        },
    };
    Some((limits, cut, msg))
}

/// A request head: parsed whole and from the first part alone.
pub fn request_head(data: &[u8]) {
    let Some((limits, cut, msg)) = split(data) else {
        return;
    };
    let mut whole = RequestHead::default();
    let verdict = h1::parse_request(msg, &limits, &mut whole);
    let mut part = RequestHead::default();
    let early = h1::parse_request(&msg[..cut], &limits, &mut part);
    if verdict == Ok(Parsed::Complete) {
        fields_are_sound(&whole.fields, whole.target.end as usize, whole.len, msg);
        assert!(whole.len <= limits.max_header_bytes && whole.start < whole.target.start as usize);
        if let Form::Absolute {
            authority, path, ..
        } = whole.form
        {
            assert!(whole.target.start < authority.start && authority.end == path.start);
            assert_eq!(path.end, whole.target.end);
        }
        if let Ok(Some(authority)) = h1::check::request(&whole, msg) {
            assert!(authority.end as usize <= whole.len);
        }
        let _ = h1::framing::request(&whole);
    }
    let same = (part.len, &part.fields) == (whole.len, &whole.fields);
    judged_alike(verdict, early, cut, whole.len, same);
}

/// A response head, and the framing of its body after each method.
pub fn response_head(data: &[u8]) {
    let Some((limits, cut, msg)) = split(data) else {
        return;
    };
    let mut whole = ResponseHead::default();
    let verdict = h1::parse_response(msg, &limits, &mut whole);
    let mut part = ResponseHead::default();
    let early = h1::parse_response(&msg[..cut], &limits, &mut part);
    if verdict == Ok(Parsed::Complete) {
        fields_are_sound(&whole.fields, whole.reason.end as usize, whole.len, msg);
        assert!(whole.start + 12 <= whole.reason.start as usize);
        for method in [http::Method::GET, http::Method::HEAD] {
            let _ = h1::framing::response(&method, &whole);
        }
    }
    let same = (part.len, &part.fields) == (whole.len, &whole.fields);
    judged_alike(verdict, early, cut, whole.len, same);
}

/// The verdict on a head's first `cut` bytes is partial, or the verdict on
/// the whole (the same head, `same`, once the cut is past its `len`).
fn judged_alike(
    verdict: Result<Parsed, HeadError>,
    early: Result<Parsed, HeadError>,
    cut: usize,
    len: usize,
    same: bool,
) {
    match verdict {
        Ok(Parsed::Complete) if cut < len => {
            assert_eq!(early, Ok(Parsed::Partial), "a part of a head")
        }
        Ok(Parsed::Complete) => assert!(early == verdict && same, "{early:?}"),
        Ok(Parsed::Partial) => assert_eq!(early, verdict),
        Err(_) => assert!(
            early == verdict || early == Ok(Parsed::Partial),
            "{early:?} then {verdict:?}"
        ),
    }
}

/// The fields of a head ending at `len`, after its first line (which ends
/// past `after`): their lines follow one another to the blank line, each
/// holds its name and value, and the facts count them.
fn fields_are_sound(fields: &[Field], after: usize, len: usize, msg: &[u8]) {
    let get = |s: Span| s.get(msg);
    let first_line = msg[after..].iter().position(|&b| b == b'\n');
    let mut at = after + first_line.expect("a first line") + 1;
    for f in fields {
        assert!(at <= f.line.start as usize);
        assert!(f.line.start == f.name.start && f.name.end < f.value.start);
        assert!(f.value.start <= f.value.end && f.value.end < f.line.end);
        assert!(get(f.line).ends_with(b"\n") && get(f.name).iter().all(u8::is_ascii_graphic));
        let value = get(f.value);
        assert!(!value.starts_with(b" ") && !value.ends_with(b" ") && !value.ends_with(b"\t"));
        assert_eq!(f.known, Name::of(get(f.name)));
        at = f.line.end as usize;
    }
    assert!(
        matches!(&msg[at..len], b"\n" | b"\r\n"),
        "{:?}",
        &msg[at..len]
    );
}

/// What decoding `parts` one after the other gives: the data, then how
/// many bytes the body took or why it failed (None: not ended).
fn decode(limits: &Limits, parts: &[&[u8]]) -> (Vec<u8>, Result<Option<usize>, ChunkedError>) {
    let mut d = Decoder::new(limits, true);
    let mut data = Vec::new();
    let mut took = 0;
    for part in parts {
        let mut at = 0;
        while at < part.len() {
            let got = match d.decode(&part[at..]) {
                Ok(got) => got,
                Err(e) => return (data, Err(e)),
            };
            assert!(got.data.start <= got.data.end && got.data.end == got.consumed);
            assert!(got.consumed <= part.len() - at);
            assert!(got.consumed > 0 || got.done, "no progress");
            data.extend_from_slice(&part[at..][got.data]);
            at += got.consumed;
            took += got.consumed;
            if got.done {
                assert!(d.is_done());
                let kept: usize = d.trailers().map(|(n, v)| n.len() + v.len()).sum();
                assert!(kept <= limits.max_header_bytes);
                return (data, Ok(Some(took)));
            }
        }
    }
    (data, Ok(None))
}

/// A chunked body decodes the same cut in two as whole.
pub fn chunked(data: &[u8]) {
    let Some((limits, cut, body)) = split(data) else {
        return;
    };
    let whole = decode(&limits, &[body]);
    let parts = decode(&limits, &[&body[..cut], &body[cut..]]);
    assert_eq!(whole, parts);
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    use super::*;

    /// Every input of the committed corpus of `target`.
    fn corpus(target: &str) -> Vec<Vec<u8>> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/corpus")
            .join(target);
        let inputs: Vec<Vec<u8>> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| std::fs::read(e.unwrap().path()).unwrap())
            .collect();
        assert!(!inputs.is_empty(), "{}", dir.display());
        inputs
    }

    #[test]
    fn the_committed_fuzz_corpus_keeps_the_properties() {
        for input in corpus("h1_request_head") {
            request_head(&input);
        }
        for input in corpus("h1_response_head") {
            response_head(&input);
        }
        for input in corpus("h1_chunked") {
            chunked(&input);
        }
    }

    /// Random inputs: a corpus entry with random bytes spliced in, or
    /// random bytes after a plausible start.
    fn inputs(
        target: &'static str,
        starts: &'static [&'static [u8]],
    ) -> impl Strategy<Value = Vec<u8>> {
        let seeds = corpus(target);
        prop_oneof![
            (
                proptest::sample::select(seeds),
                any::<usize>(),
                proptest::collection::vec(any::<u8>(), 0..8)
            )
                .prop_map(|(mut seed, at, bytes)| {
                    let at = at % (seed.len() + 1);
                    seed.splice(at..at, bytes);
                    seed
                }),
            (
                proptest::collection::vec(any::<u8>(), 3),
                proptest::sample::select(starts),
                proptest::collection::vec(any::<u8>(), 0..300)
            )
                .prop_map(|(prefix, start, rest)| [prefix, start.to_vec(), rest].concat()),
        ]
    }

    fn run(target: &'static str, starts: &'static [&'static [u8]], property: fn(&[u8])) {
        let cases = std::env::var("LIMPET_H1_FUZZ_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(300);
        let mut runner = TestRunner::new(Config {
            cases,
            failure_persistence: None,
            ..Config::default()
        });
        runner
            .run(&inputs(target, starts), |input| {
                property(&input);
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn random_request_heads_keep_the_properties() {
        run(
            "h1_request_head",
            &[
                b"GET / HTTP/1.1\r\n",
                b"POST http://a/ HTTP/1.0\r\nHost: a\r\n",
                b"",
            ],
            request_head,
        );
    }

    #[test]
    fn random_response_heads_keep_the_properties() {
        run(
            "h1_response_head",
            &[
                b"HTTP/1.1 200 OK\r\n",
                b"HTTP/1.0 204 \r\nContent-Length: 1\r\n",
                b"",
            ],
            response_head,
        );
    }

    #[test]
    fn random_chunked_bodies_keep_the_properties() {
        run(
            "h1_chunked",
            &[b"5\r\nhello\r\n", b"0\r\n", b"a;x=1\r\n"],
            chunked,
        );
    }
}
