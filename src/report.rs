//! Progress reporting: libraries call a [`Reporter`]; only the CLI draws.

/// Receives progress from long-running library work.
pub trait Reporter: Sync {
    /// A named phase begins.
    fn phase(&self, name: &str);
    /// A line worth showing the user (a fallback taken, a figure measured).
    fn note(&self, message: &str);
    /// `done` of `total` units of the current phase, with a short status.
    fn progress(&self, _done: usize, _total: usize, _status: &str) {}
}

/// Discards everything (tests, library users who want silence).
pub struct Silent;

impl Reporter for Silent {
    fn phase(&self, _: &str) {}
    fn note(&self, _: &str) {}
}
