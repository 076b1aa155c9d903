//! The chunked decoder row by row (what it takes, what it refuses, where a
//! body ends), and round trips: random data, chunk sizes, extensions and
//! trailers, encoded, split at random points and decoded back.

use proptest::prelude::*;

use super::*;

/// A decoded body: its data, its trailer fields, and how many bytes it
/// took (None if it did not end).
type Body = (Vec<u8>, Vec<(Vec<u8>, Vec<u8>)>, Option<usize>);

/// Decodes `parts` one after another, or says the first error.
fn decode_parts(parts: &[&[u8]], limits: &Limits) -> Result<Body, ChunkedError> {
    let mut d = Decoder::new(limits, true);
    let mut data = Vec::new();
    let mut total = 0;
    for part in parts {
        let mut at = 0;
        while at < part.len() {
            let got = d.decode(&part[at..])?;
            assert!(got.consumed > 0 || got.done, "no progress");
            assert_eq!(got.data.end, got.consumed);
            data.extend_from_slice(&part[at..][got.data]);
            at += got.consumed;
            total += got.consumed;
            if got.done {
                let trailers = d
                    .trailers()
                    .map(|(n, v)| (n.to_vec(), v.to_vec()))
                    .collect();
                return Ok((data, trailers, Some(total)));
            }
        }
    }
    Ok((data, Vec::new(), None))
}

fn decode(input: &str) -> Result<(String, Option<usize>), ChunkedError> {
    decode_parts(&[input.as_bytes()], &Limits::default()).map(|(data, _, took)| {
        let left = took.map(|n| input.len() - n);
        (String::from_utf8_lossy(&data).into_owned(), left)
    })
}

#[test]
fn bodies_that_decode() {
    let rows: &[(&str, &str, Option<usize>)] = &[
        ("0\r\n\r\n", "", Some(0)),
        ("5\r\nhello\r\n0\r\n\r\n", "hello", Some(0)),
        (
            "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nGET",
            "hello world",
            Some(3),
        ),
        ("A\r\n0123456789\r\n0\r\n\r\n", "0123456789", Some(0)),
        ("a\r\n0123456789\r\n0\r\n\r\n", "0123456789", Some(0)),
        ("0005\r\nhello\r\n000\r\n\r\n", "hello", Some(0)),
        ("5;a=b;c\r\nhello\r\n0;last\r\n\r\n", "hello", Some(0)),
        ("5 ;a=\"q s\"\r\nhello\r\n0\r\n\r\n", "hello", Some(0)),
        ("5\t \r\nhello\r\n0\r\n\r\n", "hello", Some(0)),
        ("5;é\r\nhello\r\n0\r\n\r\n", "hello", Some(0)),
        ("0\r\nX-Sum: 1\r\nY:\r\n\r\n", "", Some(0)),
        // Not finished: more is needed.
        ("5\r\nhel", "hel", None),
        ("5\r\nhello\r\n0\r\n", "hello", None),
        ("0\r\nX: 1\r\n", "", None),
    ];
    for (input, data, left) in rows {
        assert_eq!(decode(input), Ok(((*data).to_owned(), *left)), "{input:?}");
    }
}

#[test]
fn bodies_that_are_refused() {
    let rows: &[(&str, ChunkedError)] = &[
        ("\r\n", ChunkedError::Size),
        ("x\r\n", ChunkedError::Size),
        (" 5\r\nhello\r\n", ChunkedError::Size),
        ("-5\r\n", ChunkedError::Size),
        ("0x5\r\n", ChunkedError::Size),
        ("5 5\r\n", ChunkedError::Size),
        ("5\n", ChunkedError::Size),
        ("5\r\r\n", ChunkedError::Crlf),
        ("10000000000000000\r\n", ChunkedError::Overflow),
        ("ffffffffffffffff0\r\n", ChunkedError::Overflow),
        ("5;a\nb\r\n", ChunkedError::Extension),
        ("5;a\0\r\n", ChunkedError::Extension),
        ("5;a\x7f\r\n", ChunkedError::Extension),
        ("5\r\nhelloX\r\n", ChunkedError::Crlf),
        ("5\r\nhello\n0\r\n\r\n", ChunkedError::Crlf),
        ("5\r\nhello\r\r\n", ChunkedError::Crlf),
        ("0\r\n\n", ChunkedError::Trailer),
        ("0\r\n\rX", ChunkedError::Crlf),
        ("0\r\nX: a\nY: b\r\n\r\n", ChunkedError::Trailer),
        ("0\r\nX: a\rY\r\n\r\n", ChunkedError::Crlf),
        ("0\r\nX : a\r\n\r\n", ChunkedError::Trailer),
        ("0\r\n X: a\r\n\r\n", ChunkedError::Trailer),
        ("0\r\nX\r\n\r\n", ChunkedError::Trailer),
        ("0\r\nX: a\0\r\n\r\n", ChunkedError::Trailer),
        ("0\r\nX: a\r\n b\r\n\r\n", ChunkedError::Trailer),
    ];
    for (input, err) in rows {
        assert_eq!(decode(input), Err(*err), "{input:?}");
    }
}

#[test]
fn extensions_and_trailers_are_bounded() {
    let ext = format!("1;{}\r\n", "e".repeat(MAX_EXTENSION_BYTES));
    assert_eq!(decode(&ext), Err(ChunkedError::ExtensionsTooLong));
    // The bound is for the whole body, as hyper's.
    let many: String = (0..MAX_EXTENSION_BYTES / 100 + 1)
        .map(|_| format!("1;{}\r\nx\r\n", "e".repeat(100)))
        .collect();
    assert_eq!(decode(&many), Err(ChunkedError::ExtensionsTooLong));
    let limits = Limits {
        max_header_bytes: 1024,
        max_headers: 3,
        ..Limits::default()
    };
    let big = format!("0\r\nX: {}\r\n\r\n", "v".repeat(1024));
    assert_eq!(
        decode_parts(&[big.as_bytes()], &limits).map(|_| ()),
        Err(ChunkedError::TrailersTooLarge)
    );
    let three = "0\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
    assert!(decode_parts(&[three.as_bytes()], &limits).is_ok());
    let four = "0\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n";
    assert_eq!(
        decode_parts(&[four.as_bytes()], &limits).map(|_| ()),
        Err(ChunkedError::TrailersTooLarge)
    );
}

#[test]
fn trailers_are_kept_only_when_asked_and_reset_clears_them() {
    let body = b"0\r\nX-Sum: 1 \r\nEmpty:\r\n\r\n";
    let (_, trailers, _) = decode_parts(&[body], &Limits::default()).unwrap();
    assert_eq!(
        trailers,
        [
            (b"X-Sum".to_vec(), b"1".to_vec()),
            (b"Empty".to_vec(), Vec::new())
        ]
    );
    let mut d = Decoder::new(&Limits::default(), false);
    assert!(d.decode(body).unwrap().done);
    assert_eq!(d.trailers().count(), 0);
    let mut d = Decoder::new(&Limits::default(), true);
    assert!(d.decode(body).unwrap().done);
    d.reset();
    assert!(!d.is_done());
    assert_eq!(d.trailers().count(), 0);
    assert!(d.decode(b"0\r\n\r\n").unwrap().done);
}

#[test]
fn a_decoder_that_is_done_takes_nothing_more() {
    let mut d = Decoder::new(&Limits::default(), false);
    let got = d.decode(b"0\r\n\r\nGET / HTTP/1.1").unwrap();
    assert_eq!((got.consumed, got.done), (5, true));
    let again = d.decode(b"more").unwrap();
    assert_eq!((again.consumed, again.done), (0, true));
}

#[test]
fn size_lines_are_lower_case_hex() {
    for (n, line) in [
        (1u64, "1\r\n"),
        (15, "f\r\n"),
        (16, "10\r\n"),
        (0x1234_abcd, "1234abcd\r\n"),
        (u64::MAX, "ffffffffffffffff\r\n"),
    ] {
        assert_eq!(SizeLine::new(n).as_bytes(), line.as_bytes());
    }
    assert_eq!(SizeLine::new(0).as_bytes(), b"0\r\n");
}

/// A chunked encoding of `data` cut into chunks of `sizes` (cycled), with
/// an extension on some size lines and `trailers`.
fn encode(
    data: &[u8],
    sizes: &[usize],
    extensions: &[String],
    trailers: &[(String, String)],
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = data;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes[i % sizes.len()].clamp(1, rest.len());
        let line = SizeLine::new(n as u64);
        let digits = &line.as_bytes()[..line.as_bytes().len() - 2];
        out.extend_from_slice(digits);
        out.extend_from_slice(extensions[i % extensions.len()].as_bytes());
        out.extend_from_slice(CRLF);
        out.extend_from_slice(&rest[..n]);
        out.extend_from_slice(CRLF);
        rest = &rest[n..];
        i += 1;
    }
    out.extend_from_slice(b"0");
    out.extend_from_slice(extensions[i % extensions.len()].as_bytes());
    out.extend_from_slice(CRLF);
    for (name, value) in trailers {
        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    out.extend_from_slice(CRLF);
    out
}

/// `input` cut at the given points (taken modulo its length).
fn split(input: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    points.sort_unstable();
    let mut parts = Vec::new();
    let mut from = 0;
    for p in points.into_iter().chain([input.len()]) {
        parts.push(input[from..p].to_vec());
        from = p;
    }
    parts
}

proptest! {
    #[test]
    fn encoded_bodies_decode_back_however_they_are_split(
        data in proptest::collection::vec(any::<u8>(), 0..3000),
        sizes in proptest::collection::vec(1usize..700, 1..6),
        extensions in proptest::collection::vec(
            prop_oneof![Just(String::new()), ";[a-z]{1,8}(=[a-z0-9]{0,8})?", " ;x=\"[ -~&&[^\"\\\\]]{0,10}\""],
            1..4,
        ),
        trailers in proptest::collection::vec(("[A-Za-z][A-Za-z0-9-]{0,12}", "[ -~]{0,20}"), 0..4),
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
        next in "(GET / HTTP/1.1\r\n)?",
    ) {
        let mut wire = encode(&data, &sizes, &extensions, &trailers);
        let body_len = wire.len();
        wire.extend_from_slice(next.as_bytes());
        let parts = split(&wire, &cuts);
        let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        let (decoded, got_trailers, took) = decode_parts(&refs, &Limits::default()).unwrap();
        prop_assert_eq!(decoded, data);
        let want: Vec<(Vec<u8>, Vec<u8>)> = trailers
            .iter()
            .map(|(n, v)| (n.as_bytes().to_vec(), v.trim_matches([' ', '\t']).as_bytes().to_vec()))
            .collect();
        prop_assert_eq!(got_trailers, want);
        // It stops exactly where the body ends.
        prop_assert_eq!(took, Some(body_len));
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_always_progress(
        input in proptest::collection::vec(any::<u8>(), 0..600),
        cuts in proptest::collection::vec(any::<usize>(), 0..6),
    ) {
        let parts = split(&input, &cuts);
        let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        let limits = Limits { max_header_bytes: 1024, max_headers: 4, ..Limits::default() };
        let _ = decode_parts(&refs, &limits);
    }
}
