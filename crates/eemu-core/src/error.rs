//! Typed errors that decide the exit code: a bad config or bad input data is the user's to fix
//! and says exactly where; everything else travels as `anyhow` context.
use std::fmt;

/// Where in an input file a problem sits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// The file as a whole (empty, unreadable, wrong header).
    File,
    /// 1-based line of a text file.
    Line(usize),
    /// 0-based data row of a Parquet file.
    Row(usize),
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::File => Ok(()),
            Location::Line(n) => write!(f, ":{n}"),
            Location::Row(n) => write!(f, " row {n}"),
        }
    }
}

/// Errors that map to their own exit codes.
#[derive(Debug, thiserror::Error)]
pub enum EemuError {
    /// Invalid configuration (exit code 2).
    #[error("invalid config {file}: {message}")]
    Config { file: String, message: String },
    /// Invalid input data (exit code 3).
    #[error("{file}{location}: {}{message}", column.as_ref().map(|c| format!("column '{c}': ")).unwrap_or_default())]
    Input { file: String, location: Location, column: Option<String>, message: String },
}

impl EemuError {
    /// An input error at a position, optionally naming the column.
    pub fn input(
        file: impl fmt::Display,
        location: Location,
        column: Option<&str>,
        message: impl Into<String>,
    ) -> Self {
        EemuError::Input {
            file: file.to_string(),
            location,
            column: column.map(str::to_string),
            message: message.into(),
        }
    }

    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            EemuError::Config { .. } => 2,
            EemuError::Input { .. } => 3,
        }
    }
}
