//! The generator: connections of one or two requests, every part of them
//! drawn from good, odd and bad choices, and a stray byte now and then.

use limpet::config::Limits;
use proptest::prelude::*;

use super::SMALL;

/// One generated message: its head's parts, then its body.
#[derive(Debug, Clone)]
pub(super) struct Msg {
    lead: &'static str,
    method: &'static str,
    target: String,
    version: &'static str,
    /// (name, whitespace before the value, value, whitespace after, line end)
    fields: Vec<(String, &'static str, Vec<u8>, &'static str, &'static str)>,
    /// A line starting with whitespace after this field: obs-fold.
    fold: Option<usize>,
    eol: &'static str,
    body: Vec<u8>,
}

impl Msg {
    fn render(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.lead.as_bytes());
        out.extend_from_slice(
            format!(
                "{} {} {}{}",
                self.method, self.target, self.version, self.eol
            )
            .as_bytes(),
        );
        for (k, (name, ws1, value, ws2, eol)) in self.fields.iter().enumerate() {
            out.extend_from_slice(format!("{name}:{ws1}").as_bytes());
            out.extend_from_slice(value);
            out.extend_from_slice(format!("{ws2}{eol}").as_bytes());
            if self.fold == Some(k) {
                out.extend_from_slice(b" folded\r\n");
            }
        }
        out.extend_from_slice(self.eol.as_bytes());
        out.extend_from_slice(&self.body);
    }
}

/// A field name in one of a few cases (from `case`'s bits).
pub(super) fn with_case(name: &str, case: u32) -> String {
    name.chars()
        .enumerate()
        .map(|(i, c)| {
            if case & (1 << (i % 32)) != 0 {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect()
}

pub(super) fn pick(options: &'static [&'static str]) -> impl Strategy<Value = &'static str> {
    proptest::sample::select(options)
}

pub(super) fn field() -> impl Strategy<Value = (String, Vec<u8>)> {
    let known = |name: &'static str, values: &'static [&'static str]| {
        (any::<u32>(), pick(values))
            .prop_map(move |(case, v)| (with_case(name, case), v.as_bytes().to_vec()))
    };
    prop_oneof![
        1 => known("Host", &["a.example", "A.Example:8080", "[::1]:80", "a b", "u@a", "", "a%20b", "a:99999", "a:"]),
        1 => known("Content-Length", &[
            "0", "3", "007", "-1", "+3", "3, 3", "x", "", "99999999999999999999",
            "18446744073709551615", "18446744073709551614",
        ]),
        1 => known("Transfer-Encoding", &[
            "chunked", "CHUNKED", "gzip", "gzip, chunked", "chunked, gzip", "identity", "chunked, chunked", "", "chunked;q=1",
        ]),
        2 => known("Connection", &["close", "keep-alive", "Upgrade", "x-foo, close", "close\u{ff}", "TE"]),
        1 => known("Expect", &["100-continue", "100-Continue", "200-ok"]),
        1 => known("Upgrade", &["websocket", "h2c"]),
        1 => known("Cookie", &["a=1", "b=2; c=3"]),
        1 => known("X-Forwarded-For", &["1.2.3.4", ""]),
        10 => ("[A-Za-z0-9!#$%&'*+.^_`|~-]{1,12}", proptest::collection::vec(
                prop_oneof![8 => 0x21u8..0x7f, 1 => Just(b' '), 1 => Just(b'\t'), 1 => 0x80u8..=0xff], 0..16))
            .prop_map(|(n, v)| (n, v)),
        1 => (pick(&["Bad Name", "Name\t", "", "N\u{e1}me", "X(Y", "Name "]), Just(b"v".to_vec()))
            .prop_map(|(n, v)| (n.to_owned(), v)),
    ]
}

/// A chunked body: (data, encoding).
pub(super) fn chunked_body() -> impl Strategy<Value = Vec<u8>> {
    let chunk = (
        proptest::collection::vec(any::<u8>(), 1..40),
        pick(&[
            "",
            ";a=b",
            ";x",
            " ;q=\"s p\"",
            ";\u{1}",
            ";a\tb",
            ";\u{e9}",
        ]),
        pick(&["{:x}", "{:X}", "00{:x}", "{:x} "]),
    );
    (
        proptest::collection::vec(chunk, 0..4),
        pick(&["", ";last"]),
        proptest::collection::vec(
            pick(&[
                "X-Sum: 1",
                "Y:",
                "Z: a b",
                "Bad Name: 1",
                "W: a\nV: b",
                "W: a\n",
            ]),
            0..3,
        ),
        pick(&["", "", "", "bare-lf", "no-crlf", "bad-hex", "overflow"]),
    )
        .prop_map(|(chunks, last_ext, trailers, fault)| {
            let mut out = Vec::new();
            for (k, (data, ext, size)) in chunks.iter().enumerate() {
                let n = match *size {
                    "{:X}" => format!("{:X}", data.len()),
                    "00{:x}" => format!("00{:x}", data.len()),
                    "{:x} " => format!("{:x} ", data.len()),
                    _ => format!("{:x}", data.len()),
                };
                out.extend_from_slice(n.as_bytes());
                if k == 0 && fault == "bad-hex" {
                    out.push(b'g');
                }
                out.extend_from_slice(ext.as_bytes());
                out.extend_from_slice(if k == 0 && fault == "bare-lf" {
                    b"\n"
                } else {
                    b"\r\n"
                });
                out.extend_from_slice(data);
                if !(k == 0 && fault == "no-crlf") {
                    out.extend_from_slice(b"\r\n");
                }
            }
            if fault == "overflow" {
                out.extend_from_slice(b"1ffffffffffffffff\r\n");
            }
            out.extend_from_slice(format!("0{last_ext}\r\n").as_bytes());
            for t in trailers {
                out.extend_from_slice(t.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"\r\n");
            out
        })
}

pub(super) fn msg() -> impl Strategy<Value = Msg> {
    let head = (
        pick(&["", "", "", "\r\n"]),
        prop_oneof![
            6 => pick(&["GET", "POST", "PUT", "HEAD", "DELETE"]),
            1 => pick(&["OPTIONS", "CONNECT", "get", "PATCH", "X-A-VERY-LONG-EXTENSION-METHOD", "G(T", ""]),
        ],
        prop_oneof![
            6 => pick(&["/", "/a/b?c=d", "/p\"{}|\\^", "/a?`{}"]).prop_map(str::to_owned),
            2 => "/[!-~]{0,20}",
            2 => pick(&[
                "*", "http://a.example/x", "HTTPS://a.example:8443", "http://a.example?q", "http://u@a/",
                "http://a%20b/", "http://[::1]:80/x?y", "a.example:443", "ftp://a/", "foo", "/a#frag",
                "/\u{e9}", "/<>", "/a?\"", "//x", "/?#", "http://a:99999/", "http:///x",
            ]).prop_map(str::to_owned),
        ],
        prop_oneof![
            8 => Just("HTTP/1.1"),
            2 => Just("HTTP/1.0"),
            1 => pick(&["HTTP/2.0", "HTTP/1.2", "http/1.1", "HTTP/1.10", "HTTP/1", "HTTP/0.9", "HTTP/1.1 "]),
        ],
        pick(&["\r\n", "\r\n", "\r\n", "\n"]),
    );
    let fields = (
        proptest::option::weighted(0.85, (pick(&["a.example", "b.example:81"]), any::<u32>())),
        proptest::collection::vec(
            (
                field(),
                pick(&[" ", " ", "", "  ", "\t"]),
                pick(&["", "", " ", "\t "]),
                pick(&["\r\n", "\r\n", "\r\n", "\n"]),
            ),
            0..6,
        ),
        any::<usize>(),
        proptest::option::weighted(0.05, any::<usize>()),
        proptest::option::weighted(0.05, 900usize..1100),
    );
    let body = prop_oneof![
        3 => Just((None, Vec::new())),
        3 => (proptest::collection::vec(any::<u8>(), 0..60), -3i32..3).prop_map(|(data, delta)| {
            let declared = (data.len() as i64 + i64::from(delta)).max(0).to_string();
            (Some(("Content-Length", declared)), data)
        }),
        3 => (chunked_body(), pick(&["chunked", "Chunked"])).prop_map(|(b, te)| (Some(("Transfer-Encoding", te.to_owned())), b)),
        1 => (chunked_body(), 0usize..40).prop_map(|(b, n)| (Some(("both", n.to_string())), b)),
    ];
    (head, fields, body).prop_map(
        |(
            (lead, method, target, version, eol),
            (host, mut extra, host_at, fold, pad),
            (framing, body),
        )| {
            let mut fields: Vec<(String, &'static str, Vec<u8>, &'static str, &'static str)> =
                extra
                    .drain(..)
                    .map(|((n, v), ws1, ws2, eol)| (n, ws1, v, ws2, eol))
                    .collect();
            if let Some((host, case)) = host {
                let at = host_at % (fields.len() + 1);
                fields.insert(
                    at,
                    (
                        with_case("host", case),
                        " ",
                        host.as_bytes().to_vec(),
                        "",
                        "\r\n",
                    ),
                );
            }
            match framing {
                Some(("both", n)) => {
                    fields.push((
                        "Transfer-Encoding".into(),
                        " ",
                        b"chunked".to_vec(),
                        "",
                        "\r\n",
                    ));
                    fields.push(("Content-Length".into(), " ", n.into_bytes(), "", "\r\n"));
                }
                Some((name, value)) => {
                    fields.push((name.into(), " ", value.into_bytes(), "", "\r\n"))
                }
                None => {}
            }
            if let Some(n) = pad {
                fields.push(("X-Pad".into(), " ", vec![b'p'; n], "", "\r\n"));
            }
            let fold = fold
                .filter(|_| !fields.is_empty())
                .map(|k| k % fields.len());
            Msg {
                lead,
                method,
                target,
                version,
                fields,
                fold,
                eol,
                body,
            }
        },
    )
}

/// A generated connection: its bytes, the points they are cut at, and the
/// limits.
#[derive(Debug, Clone)]
pub(super) struct Case {
    pub(super) input: Vec<u8>,
    pub(super) cuts: Vec<usize>,
    pub(super) limits: Limits,
}

pub(super) fn case() -> impl Strategy<Value = Case> {
    (
        msg(),
        proptest::option::weighted(0.4, prop_oneof![Just(None), msg().prop_map(Some),]),
        proptest::option::weighted(
            0.1,
            (
                any::<usize>(),
                pick(&["\0", "\r", "\n", " ", "\t", "\u{7f}", ":", "#", ",", "\""]),
            ),
        ),
        proptest::collection::vec(any::<usize>(), 0..5),
        prop_oneof![7 => Just(Limits::default()), 3 => Just(SMALL)],
    )
        .prop_map(|(first, second, mutation, cuts, limits)| {
            let mut input = Vec::new();
            first.render(&mut input);
            if let Some((at, byte)) = mutation {
                let at = at % (input.len() + 1);
                input.splice(at..at, byte.bytes());
            }
            match second {
                Some(Some(m)) => m.render(&mut input),
                Some(None) => {
                    input.extend_from_slice(b"GET /next HTTP/1.1\r\nHost: n.example\r\n\r\n")
                }
                None => {}
            }
            Case {
                input,
                cuts,
                limits,
            }
        })
}
