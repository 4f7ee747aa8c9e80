//! `ckptctl diff`.

use crate::cli::args::DiffArgs;
use crate::cli::output::{Exit, Ui};

/// Run `diff`.
pub fn run(_args: &DiffArgs, ui: &Ui) -> Exit {
    ui.error("not implemented yet");
    Exit::Usage
}
