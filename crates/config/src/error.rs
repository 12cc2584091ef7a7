//! Errors of the pipeline file, each naming the file, the line and the key.

use std::path::{Path, PathBuf};

use crate::span;

/// A pipeline file that could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: key `{key}`: {message}")]
    Invalid {
        path: PathBuf,
        line: usize,
        key: String,
        message: String,
    },
}

/// The file being validated: what every section's validation needs to resolve relative
/// paths, read the environment and name the line of a key in its errors.
pub(crate) struct Ctx<'a> {
    pub path: &'a Path,
    /// The text after `${VAR}` expansion (lines are unchanged by it).
    pub text: &'a str,
    /// The pipeline file's folder, against which relative paths resolve.
    pub base: PathBuf,
    pub env: &'a dyn Fn(&str) -> Option<String>,
}

impl Ctx<'_> {
    /// An error at `key` (dotted path, `[i]` for items), on the line the YAML parser saw.
    pub fn err(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_path_buf(),
            line: span::line_of(self.text, key).unwrap_or(1),
            key: key.to_string(),
            message: message.into(),
        }
    }
}
