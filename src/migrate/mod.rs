//! `ckptctl apply` for `action = "migrate"`: two halves, `--role source` and
//! `--role destination`, coordinated only through CRIU's readiness and a
//! control connection (newline-delimited JSON over TCP, see [`proto`]).
//!
//! Strategies: stop-and-copy, pages pushed to the destination's page server
//! (or, without `[page_server]`, written into the shared `images.dir`);
//! pre-copy (`[checkpoint.pre_dump]`, see [`precopy`]): rounds while the tree
//! runs, then the final dump on top of them; and post-copy from the
//! destination's images (`[lazy_pages]` without an address): the same
//! transfer, then a lazy RESTORE served by a local `criu lazy-pages` daemon
//! that goes on filling the tree's memory after it resumed; and post-copy
//! from the source's memory (`[lazy_pages]` with an address, see
//! [`postcopy`]), alone or after pre-copy rounds. Pre-copy needs soft-dirty
//! tracking and remote post-copy needs CRIU's remote lazy pages: both roles
//! probe them (CRIU's FEATURE_CHECK, see `crate::criu::probe`) and refuse
//! at the key, before anything starts, on a kernel without them.
//! With `images = "send"` each host has its own `images.dir`: in the
//! post-dump callback, before `dumped`, the source sends the non-page images
//! as `image` messages of at most 1 MiB each (see [`send`]).
//!
//! ```text
//! destination                                  source
//!   lock images.dir, mark incomplete
//!   listen on control_port
//!   PAGE_SERVER_CHLD (keep_open) -> listening
//!   status fd '\0', {"event":"ready"} on stdout
//!                          <- hello ----------- connect, hello
//!   check digest / versions -- hello ->         check digest / versions
//!                            -- ready ->
//!                                               DUMP (pages -> page server)
//!                          <- dumped ---------  post-dump NOTIFY: images complete,
//!   WAIT_PID page server                        tree still frozen; wait
//!   mark complete, RESTORE (stopped, held
//!   with PTRACE_O_EXITKILL)
//!                            -- restored ->     ack post-dump: CRIU kills the tree
//!                                               (any failure: nack, CRIU resumes it)
//!                                               record commit/abort in ckptctl.decision
//!                          <- summary --------  (or error: abort)
//!   resume the copy          -- running ->      exit 0 only now
//! ```
//!
//! A lost `summary` is read from `ckptctl.decision` (or the source CRIU's
//! `dump.log`) when the images are shared; see [`handover`].
//!
//! With `page_server.tls` set, both CRIU halves (the destination's page
//! server, the source's dump) get CRIU's `tls*` options with absolute
//! paths, and the control connection is mutual TLS over the same files
//! ([`tls`]): the destination requires a client certificate chained to
//! `ca_cert` (not revoked by `ca_crl`); the source checks the destination's
//! certificate against `ca_cert` and the name in `migration.destination`
//! (chain only with `no_cn_verify`). Every file is read and checked before
//! anything starts, each problem at its `page_server.tls.*` key; a failed
//! handshake on the destination's port is logged and ignored like any
//! stray connection, until `step_timeout`.
//!
//! A runc container (`target.container`) migrates stop-and-copy through a
//! shared `images.dir` over the same protocol, runc doing the dump and the
//! restore ([`container`]).
//!
//! The source tree is only killed once the destination reported it
//! restored: the source answers CRIU's `post-dump` callback only after the
//! `restored` message, and answers it with failure (CRIU then resumes the
//! tree) on an `error`, a timeout or a closed connection.

pub mod config;
pub mod container;
pub mod cpu;
pub mod destination;
pub mod handover;
pub mod handshake;
pub mod outcome;
pub mod page_server;
pub mod postcopy;
pub mod precopy;
pub mod proto;
pub mod resolve;
pub mod send;
pub mod source;
pub mod tls;

use std::path::PathBuf;

use crate::apply::record::RunRecord;
use crate::apply::session::{Session, SessionOptions};
use crate::apply::status_fd::StatusFd;
use crate::failure::Failure;
use crate::profile::Profile;
use crate::render::Role;
use crate::reporter::Reporter;

use config::{migration, refuse_unsupported};
use destination::destination;
use source::source;

pub use handshake::profile_digest;
pub use outcome::{Downtime, MigrateOutcome, record_name};

/// Run-time inputs of a migration half.
#[derive(Debug)]
pub struct MigrateOptions {
    /// `--criu`.
    pub criu: Option<PathBuf>,
    /// `--pid` (source).
    pub pid: Option<i32>,
    /// `--status-fd` (destination: `\0` once it can receive).
    pub status_fd: Option<StatusFd>,
    /// `--force`: replace an existing checkpoint in `images.dir`.
    pub force: bool,
    /// Which half.
    pub role: Role,
}

/// Run one half of a migration.
pub fn run(
    p: &Profile,
    profile_file: &str,
    reporter: &dyn Reporter,
    mut opts: MigrateOptions,
) -> Result<MigrateOutcome, (Failure, Option<RunRecord>)> {
    let mut record = RunRecord::for_profile(p, profile_file);
    record.role = Some(opts.role);
    let mig = match migration(p, opts.role) {
        Ok(m) => m,
        Err(f) => return Err((f, Some(record))),
    };
    // Migration steps start their own `criu swrk`: no spare one.
    let session = SessionOptions::new(
        opts.criu.take(),
        opts.pid.is_some(),
        opts.status_fd.take(),
        false,
    );
    let mut run = Session::open(p, reporter, record, session)?;
    let result = refuse_unsupported(&mut run).and_then(|()| {
        if crate::runtime::args::is_container(p) {
            return container::run(&mut run, &opts, &mig);
        }
        match opts.role {
            Role::Destination => destination(&mut run, &opts, &mig),
            Role::Source => source(&mut run, &opts, &mig),
        }
    });
    run.finish(result, &record_name(opts.role))
}
