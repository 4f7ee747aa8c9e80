//! How the layers below the CLI talk to the user: a [`Reporter`] that
//! `cli` implements (for its `Ui`), so apply, migrate and plan never
//! depend on the CLI.

/// Where progress, events and errors of a run go.
pub trait Reporter {
    /// A progress or report line for people (stderr; `-q` hides it).
    fn note(&self, msg: &str);
    /// An error line for people (stderr, even with `-q`).
    fn error(&self, msg: &str);
    /// Machine-readable output (stdout), written as given.
    fn data(&self, text: &str);
    /// True when stdout carries JSON (`--output json`).
    fn json(&self) -> bool;
    /// `-v` count.
    fn verbose(&self) -> u8;

    /// One JSON value as a line on stdout.
    fn data_line(&self, v: &serde_json::Value) {
        let mut s = serde_json::to_string(v).unwrap_or_default();
        s.push('\n');
        self.data(&s);
    }
}
