//! SIGINT/SIGTERM during a run: the flag is set (through `signal-hook`, no
//! handler code of our own), and the next NOTIFY is answered with failure,
//! which makes CRIU abort and resume the tree.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

/// Set by SIGINT/SIGTERM.
static INTERRUPTED: OnceLock<Arc<AtomicBool>> = OnceLock::new();

fn flag() -> &'static Arc<AtomicBool> {
    INTERRUPTED.get_or_init(|| Arc::new(AtomicBool::new(false)))
}

/// True once SIGINT or SIGTERM arrived during this run.
pub fn interrupted() -> bool {
    flag().load(Ordering::SeqCst)
}

/// Catch SIGINT/SIGTERM for the duration of a run (once per process).
pub fn install_signal_handlers() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            let _ = signal_hook::flag::register(sig, Arc::clone(flag()));
        }
    });
    // A parent may have started us with these signals blocked; the mask is
    // inherited across exec, and a blocked signal would never reach us.
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    let _ = set.thread_unblock();
}
