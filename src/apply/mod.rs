//! Apply: everything that runs CRIU for a profile. [`engine`] drives the
//! checkpoint and restore steps over `criu swrk`; [`guard`] keeps images
//! private, locked and honestly marked; [`status_fd`] is `--status-fd`;
//! [`manifest`] records a completed checkpoint's files and checks them
//! before restore; [`lazy`] runs the local lazy-pages daemon; [`converge`] is the pre-copy
//! rule; [`record`] writes `ckptctl-run.json`; [`report`] turns failures
//! into diagnostics at profile keys; [`check`] is the preflight; [`watch`]
//! stops a CRIU that hangs after its target died.

pub mod check;
pub mod converge;
pub mod engine;
pub mod guard;
pub mod lazy;
pub mod manifest;
pub mod record;
pub mod report;
pub mod status_fd;
pub mod watch;
