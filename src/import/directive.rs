//! One directive of a block-structured configuration, as the nginx and
//! httpd tokenizers (`nginx/parse.rs`, `apache/conf.rs`) both read it: its
//! name and arguments, the `FILE:LINE` where it was written (also through
//! an include), the text a note quotes, and the directives of its block or
//! section. The walks of both formats read this one type and quote it in
//! their notes and errors; HAProxy's sections and mod_jk's properties have
//! other shapes and their own types.

use std::path::Path;
use std::sync::Arc;

use super::model::{ImportError, Note, Place};

/// `name args…`, or `name args… { block }` / `<Name args…>` … `</Name>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    /// Shared by every directive of a file: directives are cloned into
    /// what they become (a balancer member, a parameter) to be quoted later.
    pub file: Arc<Path>,
    pub line: usize,
    /// As written (`proxy_pass`, `ProxyPass`). nginx compares names
    /// exactly; httpd ignoring case, with [`Directive::is`].
    pub name: String,
    pub args: Vec<String>,
    /// The directive as written, on one line, as a note quotes it: nginx's
    /// `name args;` or `name args { … }`, httpd's line with its
    /// continuation lines joined.
    pub text: String,
    /// `Some` for a block (nginx `http { }`) or a section (httpd
    /// `<VirtualHost>`): the directives inside it.
    pub block: Option<Vec<Directive>>,
}

impl Directive {
    /// Whether it is `name`, ignoring ASCII case (as httpd reads names).
    pub fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
    }

    /// The `i`th argument, or `""`.
    pub fn arg(&self, i: usize) -> &str {
        self.args.get(i).map_or("", String::as_str)
    }

    /// The block's directives (none for a simple directive).
    pub fn children(&self) -> &[Directive] {
        self.block.as_deref().unwrap_or(&[])
    }

    /// A note about this directive, quoting it at its `FILE:LINE`.
    pub fn note(&self, why: impl Into<String>, place: Place) -> Note {
        Note {
            file: self.file.to_path_buf(),
            line: self.line,
            directive: self.text.clone(),
            why: why.into(),
            place,
        }
    }

    /// An error at this directive's `FILE:LINE`.
    pub fn error(&self, why: impl Into<String>) -> ImportError {
        ImportError::new(self.file.to_path_buf(), self.line, why)
    }
}
