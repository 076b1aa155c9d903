//! nginx's grammar, read once: words and quoted strings, directives ended
//! by `;`, blocks in `{ }`, `#` comments, `$variables` kept as text, into
//! the [`Directive`] httpd's tokenizer also makes. Every directive keeps
//! the FILE:LINE it was written at, also when it came through an `include`
//! (resolved against the main file's directory, as nginx resolves against
//! its configuration prefix; globs sorted).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::import::directive::Directive;
use crate::import::model::ImportError;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Word(String),
    Semicolon,
    Open,
    Close,
}

/// A token, its line, and where it starts and ends in the text.
type Spanned = (Token, usize, usize, usize);

/// Splits `text` into tokens with their line numbers.
fn tokenize(text: &str, file: &Path) -> Result<Vec<Spanned>, ImportError> {
    let mut out = Vec::new();
    let mut chars = Chars {
        inner: text.char_indices().peekable(),
        at: 0,
    };
    let mut line = 1;
    while let Some(&c) = chars.peek() {
        let from = chars.at;
        match c {
            '\n' => {
                line += 1;
                chars.next();
            }
            c if c.is_whitespace() => {
                chars.next();
            }
            '#' => {
                while chars.peek().is_some_and(|&c| c != '\n') {
                    chars.next();
                }
            }
            ';' | '{' | '}' => {
                chars.next();
                let t = match c {
                    ';' => Token::Semicolon,
                    '{' => Token::Open,
                    _ => Token::Close,
                };
                out.push((t, line, from, chars.at));
            }
            '"' | '\'' => {
                let start = line;
                chars.next();
                let mut word = String::new();
                loop {
                    match chars.next() {
                        None => {
                            return Err(ImportError::new(
                                file,
                                start,
                                format!("unterminated {c}quoted{c} string"),
                            ));
                        }
                        Some(q) if q == c => break,
                        Some('\\') => match chars.next() {
                            Some(e @ ('"' | '\'' | '\\')) => word.push(e),
                            Some('n') => word.push('\n'),
                            Some('t') => word.push('\t'),
                            Some('r') => word.push('\r'),
                            Some(e) => {
                                if e == '\n' {
                                    line += 1;
                                }
                                word.push('\\');
                                word.push(e);
                            }
                            None => continue,
                        },
                        Some(ch) => {
                            if ch == '\n' {
                                line += 1;
                            }
                            word.push(ch);
                        }
                    }
                }
                out.push((Token::Word(word), start, from, chars.at));
            }
            _ => {
                let start = line;
                let mut word = String::new();
                while let Some(&ch) = chars.peek() {
                    if ch.is_whitespace() || matches!(ch, ';' | '{' | '}' | '"' | '\'') {
                        // `${name}` is a variable, not a block.
                        if ch == '{' && word.ends_with('$') {
                            for v in chars.by_ref() {
                                word.push(v);
                                if v == '}' {
                                    break;
                                }
                            }
                            continue;
                        }
                        break;
                    }
                    chars.next();
                    word.push(ch);
                    if ch == '\\'
                        && let Some(e) = chars.next()
                    {
                        if e == '\n' {
                            line += 1;
                        }
                        word.push(e);
                    }
                }
                out.push((Token::Word(word), start, from, chars.at));
            }
        }
    }
    Ok(out)
}

/// Characters, with the byte offset after the last one taken.
struct Chars<'a> {
    inner: std::iter::Peekable<std::str::CharIndices<'a>>,
    at: usize,
}

impl Chars<'_> {
    fn peek(&mut self) -> Option<&char> {
        self.inner.peek().map(|(_, c)| c)
    }
}

impl Iterator for Chars<'_> {
    type Item = char;
    fn next(&mut self) -> Option<char> {
        let (i, c) = self.inner.next()?;
        self.at = i + c.len_utf8();
        Some(c)
    }
}

/// Parses one file's text into directives, without following `include`.
pub fn parse_str(text: &str, file: &Path) -> Result<Vec<Directive>, ImportError> {
    let tokens = tokenize(text, file)?;
    let file: Arc<Path> = Arc::from(file);
    let mut at = 0;
    let list = block(text, &tokens, &mut at, &file, None)?;
    Ok(list)
}

/// Directives until the matching `}` (`opened` = the line of its `{`) or
/// the end of the file (top level).
fn block(
    text: &str,
    tokens: &[Spanned],
    at: &mut usize,
    file: &Arc<Path>,
    opened: Option<(usize, &str)>,
) -> Result<Vec<Directive>, ImportError> {
    let err = |line: usize, why: String| ImportError::new(file.to_path_buf(), line, why);
    let mut list = Vec::new();
    let mut words: Vec<String> = Vec::new();
    let mut first_line = 0;
    let (mut from, mut to) = (0, 0);
    let written = |from: usize, to: usize| {
        text.get(from..to)
            .unwrap_or("")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    while let Some((t, line, start, end)) = tokens.get(*at) {
        *at += 1;
        match t {
            Token::Word(w) => {
                if words.is_empty() {
                    first_line = *line;
                    from = *start;
                }
                to = *end;
                words.push(w.clone());
            }
            Token::Semicolon => {
                let mut w = std::mem::take(&mut words).into_iter();
                let Some(name) = w.next() else {
                    return Err(err(*line, "unexpected `;`".into()));
                };
                list.push(Directive {
                    file: file.clone(),
                    line: first_line,
                    name,
                    args: w.collect(),
                    text: written(from, to) + ";",
                    block: None,
                });
            }
            Token::Open => {
                let mut w = std::mem::take(&mut words).into_iter();
                let Some(name) = w.next() else {
                    return Err(err(*line, "unexpected `{`".into()));
                };
                let line = first_line;
                let as_written = written(from, to) + " { … }";
                let children = block(text, tokens, at, file, Some((line, &name)))?;
                list.push(Directive {
                    file: file.clone(),
                    line,
                    name,
                    args: w.collect(),
                    text: as_written,
                    block: Some(children),
                });
            }
            Token::Close => {
                if let Some(name) = words.first() {
                    return Err(err(
                        first_line,
                        format!("missing `;` after the `{name}` directive"),
                    ));
                }
                if opened.is_none() {
                    return Err(err(*line, "unexpected `}`".into()));
                }
                return Ok(list);
            }
        }
    }
    if let Some(name) = words.first() {
        return Err(err(
            first_line,
            format!("missing `;` after the `{name}` directive"),
        ));
    }
    if let Some((line, name)) = opened {
        return Err(err(
            line,
            format!("the `{name}` block opened here is never closed (unbalanced `{{`)"),
        ));
    }
    Ok(list)
}

/// Reads `main` and everything it includes, includes expanded in place.
pub fn load(main: &Path) -> Result<Vec<Directive>, ImportError> {
    let base = main.parent().unwrap_or(Path::new(".")).to_path_buf();
    let mut stack = Vec::new();
    read(main, &base, &mut stack, None)
}

fn read(
    file: &Path,
    base: &Path,
    stack: &mut Vec<PathBuf>,
    from: Option<&Directive>,
) -> Result<Vec<Directive>, ImportError> {
    let canonical = std::fs::canonicalize(file).unwrap_or_else(|_| file.to_path_buf());
    if stack.contains(&canonical) {
        let why = format!("include cycle: {} includes itself", file.display());
        return Err(match from {
            Some(d) => d.error(why),
            None => ImportError::new(file, 0, why),
        });
    }
    let text = std::fs::read_to_string(file).map_err(|e| {
        let why = format!("cannot read {}: {e}", file.display());
        match from {
            Some(d) => d.error(why),
            None => ImportError::new(file, 0, why),
        }
    })?;
    let list = parse_str(&text, file)?;
    stack.push(canonical);
    let expanded = expand(list, base, stack);
    stack.pop();
    expanded
}

/// Replaces every `include` (at any depth) by the directives it names.
fn expand(
    list: Vec<Directive>,
    base: &Path,
    stack: &mut Vec<PathBuf>,
) -> Result<Vec<Directive>, ImportError> {
    let mut out = Vec::new();
    for mut d in list {
        if d.name == "include" && d.block.is_none() {
            let [pattern] = d.args.as_slice() else {
                return Err(d.error("`include` takes one file name or pattern"));
            };
            // The MIME type table: nothing a balancer needs, and often
            // not beside a copied configuration.
            if pattern.ends_with("mime.types") {
                continue;
            }
            let path = base.join(pattern);
            let files = if pattern.contains(['*', '?', '[']) {
                glob(&path)
            } else {
                vec![path]
            };
            for f in files {
                out.extend(read(&f, base, stack, Some(&d))?);
            }
            continue;
        }
        if let Some(children) = d.block.take() {
            d.block = Some(expand(children, base, stack)?);
        }
        out.push(d);
    }
    Ok(out)
}

/// The files a glob pattern names, sorted (wildcards in any component).
fn glob(pattern: &Path) -> Vec<PathBuf> {
    let mut found = vec![PathBuf::new()];
    for part in pattern.components() {
        let part = part.as_os_str().to_string_lossy();
        if !part.contains(['*', '?', '[']) {
            for p in &mut found {
                p.push(part.as_ref());
            }
            continue;
        }
        let mut next = Vec::new();
        for dir in &found {
            let dir_path = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir.as_path()
            };
            let Ok(entries) = std::fs::read_dir(dir_path) else {
                continue;
            };
            let mut names: Vec<String> = entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.') && matches(&part, n))
                .collect();
            names.sort();
            next.extend(names.into_iter().map(|n| dir.join(n)));
        }
        found = next;
    }
    found.retain(|p| p.is_file());
    found
}

/// Shell-style `*`, `?` and `[...]` matching of one path component.
fn matches(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    fn go(p: &[char], n: &[char]) -> bool {
        match p.first() {
            None => n.is_empty(),
            Some('*') => (0..=n.len()).any(|i| go(&p[1..], &n[i..])),
            Some('?') => !n.is_empty() && go(&p[1..], &n[1..]),
            Some('[') => {
                let Some(end) = p.iter().position(|&c| c == ']') else {
                    return n.first() == Some(&'[') && go(&p[1..], &n[1..]);
                };
                let Some(&c) = n.first() else { return false };
                let set = &p[1..end];
                let (negate, set) = match set.first() {
                    Some('!' | '^') => (true, &set[1..]),
                    _ => (false, set),
                };
                let mut hit = false;
                let mut i = 0;
                while i < set.len() {
                    if i + 2 < set.len() && set[i + 1] == '-' {
                        hit |= set[i] <= c && c <= set[i + 2];
                        i += 3;
                    } else {
                        hit |= set[i] == c;
                        i += 1;
                    }
                }
                hit != negate && go(&p[end + 1..], &n[1..])
            }
            Some(&c) => n.first() == Some(&c) && go(&p[1..], &n[1..]),
        }
    }
    go(&p, &n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<Directive>, ImportError> {
        parse_str(text, Path::new("nginx.conf"))
    }

    #[test]
    fn directives_blocks_quotes_comments_and_lines() {
        let d = parse(
            "# top\nhttp {\n  upstream app{server 10.0.0.1:8080 weight=2;}\n  add_header X-A \"a; b\" ; # c\n  set $x '${y}z';\n}\n",
        )
        .unwrap();
        assert_eq!(d.len(), 1);
        assert_eq!((d[0].name.as_str(), d[0].line), ("http", 2));
        let http = d[0].children();
        assert_eq!(http[0].name, "upstream");
        assert_eq!(http[0].line, 3);
        assert_eq!(http[0].children()[0].args, ["10.0.0.1:8080", "weight=2"]);
        assert_eq!(http[1].args, ["X-A", "a; b"]);
        assert_eq!(http[1].line, 4);
        assert_eq!(http[2].args, ["$x", "${y}z"]);
    }

    #[test]
    fn broken_input_names_its_line() {
        let e = parse("http {\n  upstream a {\n    server 10.0.0.1\n  }\n}\n").unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        let e = parse("http {\n  server {\n}\n").unwrap_err();
        assert_eq!(e.line, 1, "{e}");
        let e = parse("events {}\n}\n").unwrap_err();
        assert_eq!(e.line, 2, "{e}");
        let e = parse("a 'b;\n\n").unwrap_err();
        assert_eq!(e.line, 1, "{e}");
        assert!(parse("a b").is_err());
    }

    #[test]
    fn globs_match_like_a_shell() {
        assert!(matches("*.conf", "a.conf"));
        assert!(!matches("*.conf", "a.conf.bak"));
        assert!(matches("site-[0-9]?.conf", "site-1a.conf"));
        assert!(!matches("[!a]*", "abc"));
    }
}
