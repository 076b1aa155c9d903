//! Configuration errors: each names where it is (`file:line:column`, or the
//! key path when the YAML gives no position) and says what is wrong in one
//! plain sentence.

use std::fmt;
use std::path::{Path, PathBuf};

use serde_saphyr::Location;

/// Where in the file an error is.
#[derive(Debug, Clone)]
pub enum Position {
    At { line: u64, column: u64 },
    Key(String),
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: cannot read the configuration file: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not valid YAML, or not of lb.yaml's shape.
    #[error("{}", Located { path, position, message })]
    Syntax {
        path: PathBuf,
        position: Position,
        message: String,
    },
    /// The file has lb.yaml's shape but says something impossible.
    #[error("{}", Located { path, position, message })]
    Invalid {
        path: PathBuf,
        position: Position,
        message: String,
    },
    /// An environment variable that stands in for a key has a value that
    /// key would not take (it names no place in the file).
    #[error("{name}: expected {expected}, not {value:?}.")]
    Env {
        name: &'static str,
        /// The values it takes, as a phrase ("limpet or hyper").
        expected: &'static str,
        value: String,
    },
}

struct Located<'a> {
    path: &'a Path,
    position: &'a Position,
    message: &'a str,
}

impl fmt::Display for Located<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Position::At { line, column } => {
                write!(
                    f,
                    "{}:{line}:{column}: {}",
                    self.path.display(),
                    self.message
                )
            }
            Position::Key(key) => write!(f, "{}: {key}: {}", self.path.display(), self.message),
        }
    }
}

impl ConfigError {
    pub(crate) fn syntax(path: &Path, err: &serde_saphyr::Error) -> ConfigError {
        let position = match err.location() {
            Some(loc) if loc != Location::UNKNOWN => Position::At {
                line: loc.line(),
                column: loc.column(),
            },
            _ => Position::Key("(document)".to_owned()),
        };
        ConfigError::Syntax {
            path: path.to_path_buf(),
            position,
            message: plain_message(&err.without_snippet().to_string()),
        }
    }

    pub(crate) fn at(path: &Path, loc: Location, key: &str, message: String) -> ConfigError {
        let position = if loc == Location::UNKNOWN {
            Position::Key(key.to_owned())
        } else {
            Position::At {
                line: loc.line(),
                column: loc.column(),
            }
        };
        ConfigError::Invalid {
            path: path.to_path_buf(),
            position,
            message,
        }
    }

    /// The line, if the error has one (used by tests and `limpet check`).
    pub fn line(&self) -> Option<u64> {
        match self {
            ConfigError::Syntax {
                position: Position::At { line, .. },
                ..
            }
            | ConfigError::Invalid {
                position: Position::At { line, .. },
                ..
            } => Some(*line),
            _ => None,
        }
    }
}

/// The YAML library appends its own position ("at line 3 column 5") to some
/// messages; ours already leads with it, so keep the first line and drop that.
fn plain_message(rendered: &str) -> String {
    let first = rendered.lines().next().unwrap_or(rendered).trim();
    let first = match first.find(" at line ") {
        Some(i) => &first[..i],
        None => first,
    };
    let mut out = first.trim_end_matches(['.', ',']).to_owned();
    out.push('.');
    out
}
