//! SIGINT/SIGTERM during a run: the next NOTIFY is answered with failure.

use std::sync::atomic::{AtomicBool, Ordering};

/// Set by SIGINT/SIGTERM: the next NOTIFY is answered with failure, which
/// makes CRIU abort and resume the tree.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Catch SIGINT/SIGTERM for the duration of an apply.
pub fn install_signal_handlers() {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
    let act = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::empty(),
        SigSet::empty(),
    );
    let mut set = SigSet::empty();
    for sig in [Signal::SIGINT, Signal::SIGTERM] {
        #[allow(unsafe_code)]
        // SAFETY: the handler only stores to an atomic.
        unsafe {
            let _ = sigaction(sig, &act);
        }
        set.add(sig);
    }
    // A parent may have started us with these signals blocked; the mask is
    // inherited across exec, and a blocked signal would never reach us.
    let _ = set.thread_unblock();
}
