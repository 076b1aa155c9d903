//! httpd.conf's grammar, in one place: directives one per line with `\`
//! continuation, `#` comment lines, quoted arguments, `<Section args>` …
//! `</Section>` blocks, and `Include`/`IncludeOptional` (globs, relative to
//! `ServerRoot` or else the main file's directory) expanded in place. Each
//! directive becomes the [`Directive`] nginx's tokenizer also makes, with
//! the `FILE:LINE` where it was written.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::import::directive::Directive;
use crate::import::model::ImportError;

/// Parses one file's text (no include expansion). Never panics.
pub fn parse(text: &str, file: &Path) -> Result<Vec<Directive>, ImportError> {
    let path: Arc<Path> = Arc::from(file);
    // (the section's opening directive, what it holds so far)
    let mut open: Vec<(Directive, Vec<Directive>)> = Vec::new();
    let mut top = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((i, first)) = lines.next() {
        let line = i + 1;
        let mut pieces = vec![first.trim()];
        while pieces.last().is_some_and(|p| p.ends_with('\\')) {
            if let Some(last) = pieces.last_mut() {
                *last = last.strip_suffix('\\').unwrap_or(last).trim_end();
            }
            match lines.next() {
                Some((_, next)) => pieces.push(next.trim()),
                None => break,
            }
        }
        let logical = pieces
            .iter()
            .filter(|p| !p.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join(" ");
        if logical.is_empty() || logical.starts_with('#') {
            continue;
        }
        let here = |why: String| ImportError::new(file, line, why);
        if let Some(rest) = logical.strip_prefix("</") {
            let name = rest.strip_suffix('>').unwrap_or(rest).trim();
            let Some((section, body)) = open.pop() else {
                return Err(here(format!("`</{name}>` closes no open section")));
            };
            if !section.is(name) {
                return Err(here(format!(
                    "`</{name}>` closes `<{}>` opened at {}:{}",
                    section.name,
                    section.file.display(),
                    section.line
                )));
            }
            let done = Directive {
                block: Some(body),
                ..section
            };
            match open.last_mut() {
                Some((_, body)) => body.push(done),
                None => top.push(done),
            }
            continue;
        }
        let (inner, section) = match logical.strip_prefix('<') {
            Some(rest) => match rest.trim_end().strip_suffix('>') {
                Some(inner) => (inner, true),
                None => return Err(here("a section line must end with `>`".into())),
            },
            None => (logical.as_str(), false),
        };
        let mut words = split(inner).map_err(here)?.into_iter();
        let Some(name) = words.next().filter(|n| !n.is_empty()) else {
            return Err(here("a section without a name".into()));
        };
        let d = Directive {
            file: path.clone(),
            line,
            name,
            args: words.collect(),
            text: logical.clone(),
            block: None,
        };
        if section {
            open.push((d, Vec::new()));
        } else {
            match open.last_mut() {
                Some((_, body)) => body.push(d),
                None => top.push(d),
            }
        }
    }
    if let Some((section, _)) = open.pop() {
        return Err(section.error(format!("`<{}>` is never closed", section.name)));
    }
    Ok(top)
}

/// Splits arguments as httpd does: by white space, `"…"` or `'…'` around
/// one argument (a backslash escapes the quote inside).
fn split(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let Some(c) = chars.next() else {
            return Ok(out);
        };
        let mut word = String::new();
        if c == '"' || c == '\'' {
            loop {
                match chars.next() {
                    None => return Err(format!("a {c}quoted argument is never closed")),
                    Some('\\') if chars.next_if_eq(&c).is_some() => word.push(c),
                    Some(q) if q == c => break,
                    Some(other) => word.push(other),
                }
            }
        } else {
            word.push(c);
            while let Some(next) = chars.next_if(|c| !c.is_whitespace()) {
                word.push(next);
            }
        }
        out.push(word);
    }
}

/// Reads `file` and every file it includes, in order.
pub fn load(file: &Path) -> Result<Vec<Directive>, ImportError> {
    let base = file.parent().unwrap_or(Path::new(".")).to_path_buf();
    let mut loader = Loader {
        base,
        server_root: None,
    };
    loader.file(file, 0)
}

/// How deep includes may nest (a deeper chain is a loop).
const MAX_DEPTH: usize = 16;

struct Loader {
    base: PathBuf,
    server_root: Option<PathBuf>,
}

impl Loader {
    fn file(&mut self, file: &Path, depth: usize) -> Result<Vec<Directive>, ImportError> {
        let text = std::fs::read_to_string(file)
            .map_err(|e| ImportError::new(file, 0, format!("cannot read it: {e}")))?;
        let directives = parse(&text, file)?;
        self.expand(directives, depth)
    }

    fn expand(
        &mut self,
        directives: Vec<Directive>,
        depth: usize,
    ) -> Result<Vec<Directive>, ImportError> {
        let mut out = Vec::new();
        for mut d in directives {
            if d.is("ServerRoot") && !d.arg(0).is_empty() {
                self.server_root = Some(self.base.join(d.arg(0)));
            }
            if d.is("Include") || d.is("IncludeOptional") {
                if depth >= MAX_DEPTH {
                    return Err(d.error("includes nest too deep (a file includes itself?)"));
                }
                let pattern = d.arg(0);
                if pattern.is_empty() {
                    return Err(d.error("`Include` needs a file name"));
                }
                let root = self.server_root.as_ref().unwrap_or(&self.base);
                let files = expand_glob(&root.join(pattern));
                if files.is_empty() && d.is("Include") && !has_wildcard(pattern) {
                    return Err(d.error(format!("no such file: {pattern}")));
                }
                for f in files {
                    out.extend(self.file(&f, depth + 1)?);
                }
                continue;
            }
            if let Some(body) = d.block.take() {
                d.block = Some(self.expand(body, depth)?);
            }
            out.push(d);
        }
        Ok(out)
    }
}

fn has_wildcard(s: &str) -> bool {
    s.contains(['*', '?'])
}

/// The files a pattern names: wildcards (`*`, `?`) in any component,
/// hidden files left out, sorted; a directory stands for the files in it.
fn expand_glob(pattern: &Path) -> Vec<PathBuf> {
    let mut found = vec![PathBuf::new()];
    for part in pattern.components() {
        let part = part.as_os_str().to_string_lossy();
        if !has_wildcard(&part) {
            for p in &mut found {
                p.push(part.as_ref());
            }
            continue;
        }
        let mut next = Vec::new();
        for dir in &found {
            let Ok(entries) = std::fs::read_dir(if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            }) else {
                continue;
            };
            let mut names: Vec<String> = entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.') && matches(&part, n))
                .collect();
            names.sort();
            next.extend(names.into_iter().map(|n| dir.join(n)));
        }
        found = next;
    }
    let mut files = Vec::new();
    for p in found {
        if p.is_dir() {
            let mut inside: Vec<PathBuf> = std::fs::read_dir(&p)
                .into_iter()
                .flatten()
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|f| f.is_file())
                .collect();
            inside.sort();
            files.extend(inside);
        } else if p.is_file() {
            files.push(p);
        }
    }
    files
}

/// Shell wildcard match: `*` any run, `?` one character.
fn matches(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ni));
                pi += 1;
            }
            Some(&c) if c == '?' || c == n[ni] => {
                pi += 1;
                ni += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    pi = sp + 1;
                    ni = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> Directive {
        parse(text, Path::new("t.conf")).unwrap().remove(0)
    }

    #[test]
    fn quotes_continuations_and_sections_keep_their_lines() {
        let d = parse(
            "# comment\nListen 80\n<VirtualHost *:80>\n  Header add Set-Cookie \"A=.x; path=/\" \\\n     env=B\n</VirtualHost>\n",
            Path::new("t.conf"),
        )
        .unwrap();
        assert_eq!(d.len(), 2);
        assert_eq!((d[0].line, d[0].arg(0)), (2, "80"));
        let vh = &d[1];
        assert_eq!((vh.line, vh.arg(0)), (3, "*:80"));
        let h = &vh.children()[0];
        assert_eq!(h.line, 4);
        assert_eq!(h.args, ["add", "Set-Cookie", "A=.x; path=/", "env=B"]);
        assert_eq!(h.text, "Header add Set-Cookie \"A=.x; path=/\" env=B");
        assert_eq!(one("A 'it\\'s'").args, ["it's"]);
    }

    #[test]
    fn unbalanced_sections_name_the_line() {
        let e = parse("<Proxy x>\n", Path::new("t.conf")).unwrap_err();
        assert_eq!(e.line, 1);
        let e = parse("<A>\n</B>\n", Path::new("t.conf")).unwrap_err();
        assert_eq!(e.line, 2);
        assert!(parse("</A>\n", Path::new("t.conf")).is_err());
        assert!(parse("A \"open\n", Path::new("t.conf")).is_err());
    }

    #[test]
    fn wildcards_match_like_the_shell() {
        assert!(matches("*.conf", "a.conf"));
        assert!(!matches("*.conf", "a.conf.bak"));
        assert!(matches("a?c*", "abcdef"));
        assert!(matches("*", "x"));
        assert!(!matches("b*", "abc"));
    }

    proptest::proptest! {
        #[test]
        fn the_tokenizer_never_panics(text in "(\\PC|[<>/\"'\\\\#\n ]){0,200}") {
            let _ = parse(&text, Path::new("t.conf"));
        }
    }
}
