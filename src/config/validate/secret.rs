//! Files that hold secrets (the admin token, the store's password, TLS
//! private keys): readable by every user is an error, by the group a
//! warning; a one-line secret is read without its newline.

use super::super::ConfigError;
use super::super::file::S;
use super::checker::Checker;

/// A file that holds a secret (a token, a password, a TLS private key)
/// that every user may read is an error, with the `chmod` that fixes it;
/// one its group may read is a warning (a group such as `ssl-cert` may be
/// meant).
pub(super) fn private(
    c: &Checker<'_>,
    t: &S<String>,
    key: &str,
    what: &str,
    meta: &std::fs::Metadata,
    warnings: &mut Vec<String>,
) -> Result<(), ConfigError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode();
    if mode & 0o004 != 0 {
        return Err(c.err(
            t,
            key,
            format!(
                "the {what} file {:?} is readable by every user (mode {:o}); chmod 600 it (or 640 with a group of readers).",
                t.value,
                mode & 0o777
            ),
        ));
    }
    if mode & 0o040 != 0 {
        warnings.push(format!(
            "the {what} file {:?} is readable by its group (mode {:o}); chmod 600 it unless that is meant.",
            t.value,
            mode & 0o777
        ));
    }
    Ok(())
}

/// Reads a one-line secret (a token, a password) from a file that only its
/// owner (and group) may read; a trailing newline is ignored.
pub(super) fn read_secret(
    c: &Checker<'_>,
    t: &S<String>,
    key: &str,
    what: &str,
    warnings: &mut Vec<String>,
) -> Result<String, ConfigError> {
    let path = std::path::Path::new(t.value.trim());
    let meta = std::fs::metadata(path).map_err(|e| {
        c.err(
            t,
            key,
            format!("cannot read the {what} file {:?}: {e}.", t.value),
        )
    })?;
    private(c, t, key, what, &meta, warnings)?;
    let text = std::fs::read_to_string(path).map_err(|e| {
        c.err(
            t,
            key,
            format!("cannot read the {what} file {:?}: {e}.", t.value),
        )
    })?;
    let secret = text.trim_end_matches(['\n', '\r']);
    if secret.trim().is_empty() {
        return Err(c.err(
            t,
            key,
            format!(
                "the {what} file {:?} is empty; put the {what} in it.",
                t.value
            ),
        ));
    }
    if secret.bytes().any(|b| !b.is_ascii_graphic()) {
        return Err(c.err(
            t,
            key,
            format!(
                "the {what} in {:?} must be one line of printable characters without spaces.",
                t.value
            ),
        ));
    }
    Ok(secret.to_owned())
}
