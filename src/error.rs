//! The library's error type: every message names the thing at fault, and where
//! there is one, the fix (printed by the CLI on a `hint:` line).

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration value or argument is not acceptable.
    #[error("{field}: {problem}")]
    Invalid {
        field: String,
        problem: String,
        hint: String,
    },

    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
        hint: String,
    },

    /// A file was read but its content is not what excite expects.
    #[error("{}: {problem}", path.display())]
    Format {
        path: PathBuf,
        problem: String,
        hint: String,
    },

    /// An accuracy gate failed: the artefact works but misses its error budget.
    #[error("{stage}: {problem}")]
    Gate { stage: String, problem: String, hint: String },

    /// A device or runtime library is missing or failed.
    #[error("{what}: {problem}")]
    Unavailable {
        what: String,
        problem: String,
        hint: String,
    },
}

impl Error {
    pub fn invalid(
        field: impl Into<String>,
        problem: impl Into<String>,
        hint: impl Into<String>,
    ) -> Self {
        Error::Invalid {
            field: field.into(),
            problem: problem.into(),
            hint: hint.into(),
        }
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        let path = path.into();
        let hint = match source.kind() {
            std::io::ErrorKind::NotFound => "check the path; it does not exist".into(),
            std::io::ErrorKind::PermissionDenied => {
                "check the permissions of the file and its folder".into()
            }
            _ => String::new(),
        };
        Error::Io { path, source, hint }
    }

    pub fn format(
        path: impl Into<PathBuf>,
        problem: impl Into<String>,
        hint: impl Into<String>,
    ) -> Self {
        Error::Format {
            path: path.into(),
            problem: problem.into(),
            hint: hint.into(),
        }
    }

    pub fn unavailable(
        what: impl Into<String>,
        problem: impl Into<String>,
        hint: impl Into<String>,
    ) -> Self {
        Error::Unavailable {
            what: what.into(),
            problem: problem.into(),
            hint: hint.into(),
        }
    }

    /// Names `path` as where a configuration or model error was found.
    pub fn in_file(self, path: &std::path::Path) -> Error {
        match self {
            Error::Format { problem, hint, .. } => Error::format(path, problem, hint),
            Error::Invalid { field, problem, hint } => Error::Invalid { field: format!("{}: {field}", path.display()), problem, hint },
            other => other,
        }
    }

    /// The suggested fix, if any.
    pub fn hint(&self) -> Option<&str> {
        let h = match self {
            Error::Invalid { hint, .. }
            | Error::Io { hint, .. }
            | Error::Format { hint, .. }
            | Error::Unavailable { hint, .. }
            | Error::Gate { hint, .. } => hint,
        };
        (!h.is_empty()).then_some(h.as_str())
    }
}

/// `text` safe to show on a terminal: control characters other than line
/// breaks and tabs (an escape sequence in a crafted file's names, echoed in
/// an error) are written as escapes, e.g. `\u{1b}`.
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() && c != '\n' && c != '\t' {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn escape_sequences_from_crafted_names_are_not_printed_raw() {
        assert_eq!(super::printable("node `a\u{1b}[2Jb`\nnext\tcol\0"), "node `a\\u{1b}[2Jb`\nnext\tcol\\u{0}");
    }
}
