//! All terminal output goes through here: results to stdout, progress and
//! errors (with their `hint:` line) to stderr.

use std::io::{IsTerminal, Write};
use std::time::Instant;

use excite::report::Reporter;

/// Prints an error chain, then the library's hint if it has one.
pub fn error(e: &anyhow::Error) {
    eprintln!("error: {e}");
    for cause in e.chain().skip(1) {
        eprintln!("  caused by: {cause}");
    }
    if let Some(hint) = e
        .chain()
        .find_map(|c| c.downcast_ref::<excite::Error>())
        .and_then(|e| e.hint())
    {
        eprintln!("\nhint: {hint}");
    }
}

/// Progress on stderr with elapsed time.
pub struct Progress {
    start: Instant,
}

impl Progress {
    pub fn new() -> Self {
        Progress {
            start: Instant::now(),
        }
    }
}

impl Reporter for Progress {
    fn phase(&self, name: &str) {
        eprintln!("[{:>7.2}s] {name}", self.start.elapsed().as_secs_f64());
    }
    fn note(&self, message: &str) {
        eprintln!("note: {message}");
    }
    fn progress(&self, done: usize, total: usize, status: &str) {
        let width = 24;
        let filled = (done * width / total.max(1)).min(width);
        let bar = format!(
            "[{}{}] {done}/{total} {status}",
            "#".repeat(filled),
            " ".repeat(width - filled)
        );
        let mut err = std::io::stderr();
        if err.is_terminal() {
            let _ = write!(err, "\r\x1b[2K{bar}");
            if done >= total {
                let _ = writeln!(err);
            }
        } else {
            let _ = writeln!(err, "{bar}");
        }
    }
}

/// Formats a rate like `8.12e9`.
pub fn rate(x: f64) -> String {
    format!("{x:.2e}")
}
