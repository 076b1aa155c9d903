//! nginx → `lb.yaml` (not written yet); [`parse`] reads the grammar.

pub mod parse;

use std::path::Path;

use super::Options;
use super::model::{ImportError, Lb};

pub fn import(file: &Path, _options: &Options) -> Result<Lb, ImportError> {
    Err(ImportError::new(
        file,
        0,
        "importing from nginx is not implemented yet",
    ))
}
