//! Container runtimes: a profile whose `[target]` names a `container` is
//! applied through the runtime that owns it, never around it. [`caps`] is
//! the table of which profile keys runc can carry to CRIU.

pub mod apply;
pub mod args;
pub mod caps;
pub mod check;
pub mod failure;
pub mod plan;
pub mod runc;
