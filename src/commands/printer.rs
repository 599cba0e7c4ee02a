//! All terminal output goes through here: results to stdout, progress and
//! errors (with their `hint:` line) to stderr.

use std::sync::Mutex;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use excite::report::Reporter;

/// Prints an error chain, then the library's hint if it has one.
pub fn error(e: &anyhow::Error) {
    // messages echo names from files others made: no raw control characters
    let show = |t: &dyn std::fmt::Display| excite::printable(&t.to_string());
    eprintln!("error: {}", show(e));
    for cause in e.chain().skip(1) {
        eprintln!("  caused by: {}", show(&cause));
    }
    if let Some(hint) = e
        .chain()
        .find_map(|c| c.downcast_ref::<excite::Error>())
        .and_then(|e| e.hint())
    {
        eprintln!("\nhint: {hint}");
    }
}

/// Progress on stderr: phases with the elapsed time, and a bar (indicatif)
/// for long loops that is drawn only on a terminal, as cargo does, so a log
/// gets the phases and the results, not a line per update.
pub struct Progress {
    start: Instant,
    bar: Mutex<Option<ProgressBar>>,
}

impl Progress {
    pub fn new() -> Self {
        Progress {
            start: Instant::now(),
            bar: Mutex::new(None),
        }
    }

    /// Prints `line` above the bar, if one is drawn.
    fn line(&self, line: &str) {
        match self.bar.lock().ok().as_deref().and_then(Option::as_ref) {
            Some(bar) if !bar.is_hidden() => bar.println(line),
            _ => eprintln!("{line}"),
        }
    }
}

impl Reporter for Progress {
    fn phase(&self, name: &str) {
        if let Ok(mut bar) = self.bar.lock() {
            if let Some(b) = bar.take() {
                b.finish_and_clear();
            }
        }
        self.line(&format!("[{:>7.2}s] {name}", self.start.elapsed().as_secs_f64()));
    }
    fn note(&self, message: &str) {
        self.line(&format!("note: {message}"));
    }
    fn progress(&self, done: usize, total: usize, status: &str) {
        let Ok(mut slot) = self.bar.lock() else { return };
        let bar = slot.get_or_insert_with(|| {
            let bar = ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
            bar.set_style(ProgressStyle::with_template("[{bar:24}] {pos}/{len} {wide_msg}").expect("a valid template").progress_chars("## "));
            bar
        });
        bar.set_length(total as u64);
        bar.set_position(done as u64);
        bar.set_message(status.to_string());
        if done >= total {
            // the finished bar stays as a plain line (on a terminal only, like the bar)
            let drawn = !bar.is_hidden();
            bar.finish_and_clear();
            *slot = None;
            if drawn {
                eprintln!("[{}] {done}/{total} {status}", "#".repeat(24));
            }
        }
    }
}

/// Formats a rate like `8.12e9`.
pub fn rate(x: f64) -> String {
    format!("{x:.2e}")
}
