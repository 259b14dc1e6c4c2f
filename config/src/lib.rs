//! Configuration loading shared by both binaries: YAML file, then `STREAMPLANE_*` environment
//! variables, validated field by field so that *every* problem is reported at once with its
//! file:line:column (or the variable's name) and the key.
//!
//! The environment is an injected map, never read here, so tests never mutate process state.

#![forbid(unsafe_code)]

mod loader;
mod secret;
mod value;
mod yaml;

pub use loader::{Loader, Section};
pub use secret::Secret;
pub use value::{FromConfig, parse_duration};

use std::fmt;
use std::path::PathBuf;

/// Process exit code for an invalid configuration (`EX_USAGE` from sysexits.h).
pub const EXIT_INVALID_CONFIG: i32 = 64;

/// Where a configured value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    File {
        path: PathBuf,
        line: usize,
        column: usize,
    },
    Env {
        var: String,
    },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File { path, line, column } => {
                write!(f, "{}:{line}:{column}", path.display())
            }
            Origin::Env { var } => write!(f, "environment variable {var}"),
        }
    }
}

/// One thing wrong with the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub origin: Option<Origin>,
    /// Dotted key, e.g. `paths.cam1.source`.
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.origin {
            Some(origin) => write!(f, "{origin}: {}: {}", self.key, self.message),
            None => write!(f, "{}: {}", self.key, self.message),
        }
    }
}

/// Every problem found while loading; never empty.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "invalid configuration ({n} problem{}):",
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

impl ConfigError {
    pub fn single(
        origin: Option<Origin>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        ConfigError {
            problems: vec![Problem {
                origin,
                key: key.into(),
                message: message.into(),
            }],
        }
    }
}
