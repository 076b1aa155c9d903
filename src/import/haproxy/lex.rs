//! haproxy.cfg's line grammar, in one place: a line is words separated by
//! blanks; `#` outside quotes starts a comment; `"…"` quotes with backslash
//! escapes, `'…'` quotes literally; a backslash outside single quotes
//! escapes the next character (`\ `, `\#`, `\\`, `\"`, `\'`, `\r`, `\n`,
//! `\t`, `\xHH`). Section keywords start a section; every other line is a
//! directive of the section above it, kept with its line number and its
//! text as written (for the `# import:` comments).

use std::path::Path;

use crate::import::model::ImportError;

/// One directive: its words (unquoted, unescaped), its line number, and
/// its text as written without the comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub no: usize,
    pub words: Vec<String>,
    pub text: String,
}

impl Line {
    /// The `i`-th word, or "" past the end.
    pub fn word(&self, i: usize) -> &str {
        self.words.get(i).map_or("", String::as_str)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Global,
    Defaults,
    Frontend,
    Backend,
    Listen,
    /// `userlist`, `peers`, `resolvers`, `cache`, …: not carried over.
    Other,
}

/// A section: its header line and the directives under it.
#[derive(Debug, Clone)]
pub struct Section {
    pub kind: Kind,
    pub name: String,
    /// `defaults NAME` / `backend NAME from DEFAULTS`.
    pub from: Option<String>,
    pub header: Line,
    pub body: Vec<Line>,
}

/// Why a line could not be split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unterminated(pub char);

/// Splits one line into words; also returns where its comment starts.
pub fn split(line: &str) -> Result<(Vec<String>, usize), Unterminated> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut started = false;
    let mut quote: Option<char> = None;
    let mut chars = line.char_indices().peekable();
    let mut end = line.len();
    while let Some((at, c)) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('\''), c) => word.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                started = true;
            }
            (None, '#') => {
                end = at;
                break;
            }
            (None, c) if c.is_whitespace() => {
                if started {
                    words.push(std::mem::take(&mut word));
                    started = false;
                }
            }
            (_, '\\') => {
                started = true;
                match chars.peek().map(|&(_, n)| n) {
                    Some(n @ (' ' | '\t' | '#' | '\\' | '"' | '\'' | '$')) => {
                        word.push(n);
                        chars.next();
                    }
                    Some('r') => {
                        word.push('\r');
                        chars.next();
                    }
                    Some('n') => {
                        word.push('\n');
                        chars.next();
                    }
                    Some('t') => {
                        word.push('\t');
                        chars.next();
                    }
                    Some('x') => {
                        let hex = line.get(at + 2..at + 4).and_then(|h| {
                            u8::from_str_radix(h, 16)
                                .ok()
                                .filter(|_| h.bytes().all(|b| b.is_ascii_hexdigit()))
                        });
                        match hex {
                            Some(b) => {
                                word.push(char::from(b));
                                chars.next();
                                chars.next();
                                chars.next();
                            }
                            None => word.push('\\'),
                        }
                    }
                    _ => word.push('\\'),
                }
            }
            (_, c) => {
                started = true;
                word.push(c);
            }
        }
    }
    if let Some(q) = quote {
        return Err(Unterminated(q));
    }
    if started {
        words.push(word);
    }
    Ok((words, end))
}

fn kind(word: &str) -> Option<Kind> {
    Some(match word {
        "global" => Kind::Global,
        "defaults" => Kind::Defaults,
        "frontend" => Kind::Frontend,
        "backend" => Kind::Backend,
        "listen" => Kind::Listen,
        "userlist" | "peers" | "resolvers" | "mailers" | "cache" | "program" | "http-errors"
        | "ring" | "fcgi-app" | "crt-store" | "traces" | "log-forward" => Kind::Other,
        _ => return None,
    })
}

/// The sections of a whole file.
pub fn sections(text: &str, file: &Path) -> Result<Vec<Section>, ImportError> {
    let mut out: Vec<Section> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let no = i + 1;
        let (words, end) = split(raw).map_err(|Unterminated(q)| {
            ImportError::new(
                file,
                no,
                format!("unterminated quote ({q}) in {:?}", raw.trim()),
            )
        })?;
        if words.is_empty() {
            continue;
        }
        let line = Line {
            no,
            text: raw.get(..end).unwrap_or(raw).trim().to_owned(),
            words,
        };
        if let Some(kind) = kind(&line.words[0]) {
            let named = matches!(kind, Kind::Frontend | Kind::Backend | Kind::Listen);
            let name = line.word(1).to_owned();
            if named && (name.is_empty() || name == "from") {
                return Err(ImportError::new(
                    file,
                    no,
                    format!("`{}` needs a name", line.words[0]),
                ));
            }
            let (name, from) = match (name.as_str(), line.word(2)) {
                ("from", _) => (String::new(), Some(line.word(2).to_owned())),
                (_, "from") => (name.clone(), Some(line.word(3).to_owned())),
                _ => (name, None),
            };
            if from.as_deref() == Some("") {
                return Err(ImportError::new(
                    file,
                    no,
                    "`from` needs a defaults section's name",
                ));
            }
            out.push(Section {
                kind,
                name,
                from,
                header: line,
                body: Vec::new(),
            });
            continue;
        }
        match out.last_mut() {
            Some(section) => section.body.push(line),
            None => {
                return Err(ImportError::new(
                    file,
                    no,
                    format!(
                        "{:?} is outside any section (global, defaults, frontend, backend, listen): not an HAProxy configuration",
                        line.text
                    ),
                ));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn words(s: &str) -> Vec<String> {
        split(s).map(|(w, _)| w).unwrap_or_default()
    }

    #[test]
    fn quotes_escapes_and_comments_are_haproxys() {
        assert_eq!(
            words("  server  s1\t10.0.0.1:80 check # old"),
            ["server", "s1", "10.0.0.1:80", "check"]
        );
        assert_eq!(
            words(r#"http-request set-header X-A "a b\"c" 'd\e f'"#),
            ["http-request", "set-header", "X-A", "a b\"c", "d\\e f"]
        );
        assert_eq!(
            words(r"acl a path_beg /a\ b \#x"),
            ["acl", "a", "path_beg", "/a b", "#x"]
        );
        assert_eq!(words(r#"x "" y\x41"#), ["x", "", "yA"]);
        assert_eq!(words("x\"#\"y # z"), ["x#y"]);
        assert_eq!(split("a # b c").map(|(_, e)| e), Ok(2));
        assert_eq!(split("a \"b"), Err(Unterminated('"')));
        assert_eq!(split("a 'b"), Err(Unterminated('\'')));
    }

    #[test]
    fn sections_keep_line_numbers_and_reject_orphans() {
        let text = "# c\nglobal\n  maxconn 10\n\ndefaults web\n  mode http\nbackend b from web\n  server s 1.2.3.4:80 # x\n";
        let s = sections(text, Path::new("h.cfg")).unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(s[1].name, "web");
        assert_eq!(s[2].from.as_deref(), Some("web"));
        assert_eq!(s[2].body[0].no, 8);
        assert_eq!(s[2].body[0].text, "server s 1.2.3.4:80");
        let e = sections("user nginx;\nevents {\n", Path::new("n.conf")).unwrap_err();
        assert_eq!(e.line, 1);
        let e = sections("global\n  x \"y\n", Path::new("h.cfg")).unwrap_err();
        assert_eq!((e.line, e.to_string().contains("unterminated")), (2, true));
    }

    proptest! {
        #[test]
        fn the_tokenizer_never_panics(line in "\\PC*") {
            let _ = split(&line);
            let _ = sections(&line, Path::new("h.cfg"));
        }

        #[test]
        fn plain_words_round_trip(
            ws in proptest::collection::vec("[A-Za-z0-9_./:()-]{1,12}", 0..8),
            gap in "[ \t]{1,3}",
        ) {
            let line = format!("{gap}{}{gap}", ws.join(&gap));
            prop_assert_eq!(words(&line), ws);
        }

        #[test]
        fn quoted_words_round_trip(ws in proptest::collection::vec("[^\r\n]{0,12}", 1..6)) {
            let quoted: Vec<String> = ws
                .iter()
                .map(|w| format!("\"{}\"", w.replace('\\', "\\\\").replace('"', "\\\"")))
                .collect();
            prop_assert_eq!(words(&quoted.join(" ")), ws);
        }
    }
}
