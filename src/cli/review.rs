//! `ckptctl review`.

use crate::cli::args::ReviewArgs;
use crate::cli::output::{Exit, Ui};

/// Run `review`.
pub fn run(_args: &ReviewArgs, ui: &Ui) -> Exit {
    ui.error("not implemented yet");
    Exit::Usage
}
