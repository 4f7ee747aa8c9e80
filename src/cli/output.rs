//! Exit codes and the [`Ui`]: colour, verbosity, output format, and printing
//! of diagnostics (miette to stderr, or JSON to stdout).

use std::io::{IsTerminal, Write};

use crate::cli::args::{Cli, ColorChoice, OutputFormat};
use crate::diag::{Diagnostic, RenderOptions, render_human, to_json_document};
use crate::source::SourceMap;

pub use crate::failure::Exit;

/// How to talk to the user.
#[derive(Debug, Clone)]
pub struct Ui {
    /// Output format.
    pub output: OutputFormat,
    /// Colour on stderr.
    pub color: bool,
    /// Only errors.
    pub quiet: bool,
    /// Verbosity.
    pub verbose: u8,
    /// Terminal width.
    pub width: usize,
    /// `--criu`.
    pub criu: Option<std::path::PathBuf>,
}

impl Ui {
    /// From the global flags and the environment.
    pub fn from_cli(cli: &Cli) -> Self {
        let color = match cli.color {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                    && std::io::stderr().is_terminal()
            }
        };
        let width = std::env::var("COLUMNS")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(100);
        Ui {
            output: cli.output,
            color,
            quiet: cli.quiet,
            verbose: cli.verbose,
            width,
            criu: cli.criu.clone(),
        }
    }

    /// Plain settings (tests).
    pub fn plain(output: OutputFormat) -> Self {
        Ui {
            output,
            color: false,
            quiet: false,
            verbose: 0,
            width: 80,
            criu: None,
        }
    }

    /// True for JSON output.
    pub fn json(&self) -> bool {
        self.output == OutputFormat::Json
    }

    /// Print a line of human text on stderr (not in quiet mode).
    pub fn note(&self, msg: impl AsRef<str>) {
        if !self.quiet {
            let _ = writeln!(std::io::stderr().lock(), "{}", msg.as_ref());
        }
    }

    /// Print an error line on stderr, always.
    pub fn error(&self, msg: impl AsRef<str>) {
        let _ = writeln!(std::io::stderr().lock(), "error: {}", msg.as_ref());
    }

    /// Print text on stderr as is, always (details of an error).
    pub fn error_detail(&self, text: impl AsRef<str>) {
        let _ = write!(std::io::stderr().lock(), "{}", text.as_ref());
    }

    /// Write data on stdout. A closed pipe is not an error.
    pub fn data(&self, text: impl AsRef<str>) {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(text.as_ref().as_bytes());
        let _ = out.flush();
    }

    /// Write a JSON value on stdout.
    pub fn data_json(&self, v: &serde_json::Value) {
        let mut s = serde_json::to_string_pretty(v).unwrap_or_default();
        s.push('\n');
        self.data(s);
    }

    /// Render options for human diagnostics.
    pub fn render_options(&self) -> RenderOptions {
        RenderOptions {
            color: self.color,
            width: self.width,
        }
    }

    /// Print diagnostics in the chosen format (human → stderr; json → stdout).
    pub fn diagnostics(&self, diags: &[Diagnostic], sources: &SourceMap) {
        if self.json() {
            self.data_json(&to_json_document(diags, sources));
        } else {
            self.human_diagnostics(diags, sources);
        }
    }

    /// Print diagnostics as miette reports on stderr.
    pub fn human_diagnostics(&self, diags: &[Diagnostic], sources: &SourceMap) {
        let mut err = std::io::stderr().lock();
        for d in diags {
            if self.quiet && d.severity != crate::diag::Severity::Error {
                continue;
            }
            let _ = write!(err, "{}", render_human(d, sources, self.render_options()));
        }
    }
}

impl crate::reporter::Reporter for Ui {
    fn note(&self, msg: &str) {
        Ui::note(self, msg);
    }

    fn error(&self, msg: &str) {
        Ui::error(self, msg);
    }

    fn data(&self, text: &str) {
        Ui::data(self, text);
    }

    fn json(&self) -> bool {
        Ui::json(self)
    }

    fn verbose(&self) -> u8 {
        self.verbose
    }
}

/// A byte count for people: KiB, MiB or GiB with one decimal.
pub fn human_bytes(b: u64) -> String {
    #[allow(clippy::cast_precision_loss)]
    let f = b as f64;
    if b >= 1 << 30 {
        format!("{:.1} GiB", f / f64::from(1u32 << 30))
    } else if b >= 1 << 20 {
        format!("{:.1} MiB", f / f64::from(1u32 << 20))
    } else {
        format!("{:.1} KiB", f / 1024.0)
    }
}

/// A Unix time as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn utc(secs: u64) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_796_019_301), "2026-11-30 06:15:01 UTC");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
    }
}
