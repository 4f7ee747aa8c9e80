//! `ckptctl import`.

use crate::cli::args::ImportArgs;
use crate::cli::output::{Exit, Ui};

/// Run `import`.
pub fn run(_args: &ImportArgs, ui: &Ui) -> Exit {
    ui.error("not implemented yet");
    Exit::Usage
}
