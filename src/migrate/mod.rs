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
//! that goes on filling the tree's memory after it resumed. Post-copy from
//! the source's memory is refused ([`config::refuse_unsupported`] probes
//! what it needs first). Pre-copy needs soft-dirty tracking: both roles
//! probe it (CRIU's FEATURE_CHECK) before anything starts.
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
//!   mark complete, RESTORE
//!                            -- restored ->     ack post-dump: CRIU kills the tree
//!                          <- summary --------  (any failure: nack, CRIU resumes it)
//! ```
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
//! The source tree is only killed once the destination reported it
//! restored: the source answers CRIU's `post-dump` callback only after the
//! `restored` message, and answers it with failure (CRIU then resumes the
//! tree) on an `error`, a timeout or a closed connection.

pub mod config;
pub mod cpu;
pub mod destination;
pub mod handshake;
pub mod outcome;
pub mod page_server;
pub mod postcopy;
pub mod precopy;
pub mod proto;
pub mod send;
pub mod sha256;
pub mod source;
pub mod tls;

use std::path::{Path, PathBuf};

use serde_json::json;

use crate::apply::bootstrap;
use crate::apply::record::RunRecord;
use crate::apply::report::Failure;
use crate::apply::session::Run;
use crate::apply::signals;
use crate::apply::status_fd::StatusFd;
use crate::cli::output::Ui;
use crate::criu::{CriuVersion, FoundCriu};
use crate::profile::Profile;
use crate::render::Role;

use config::{migration, refuse_unsupported};
use destination::destination;
use outcome::{role_name, write_record};
use source::source;

pub use handshake::profile_digest;
pub use outcome::{Downtime, MigrateOutcome, print_outcome, record_name};

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
    ui: &Ui,
    mut opts: MigrateOptions,
) -> Result<MigrateOutcome, (Failure, Option<RunRecord>)> {
    signals::install_signal_handlers();
    let mut record = RunRecord::for_profile(p, profile_file);
    record.role = Some(role_name(opts.role).to_string());
    let mut status = opts.status_fd.take();
    let prepared = (|| {
        let mig = migration(p, opts.role)?;
        let (criu, version) = prepare_criu(p, opts.criu.as_deref(), &mut record)?;
        let (images_dir, work_dir) = bootstrap::dirs(p)?;
        Ok((mig, criu, version, images_dir, work_dir))
    })();
    let (mig, criu, version, images_dir, work_dir) = match prepared {
        Ok(x) => x,
        Err(f) => return Err((f, Some(record))),
    };
    let mut run = Run::new(p, ui, criu, images_dir, work_dir, record);
    let result = refuse_unsupported(&mut run).and_then(|()| match opts.role {
        Role::Destination => destination(&mut run, &opts, &mig, &version, &mut status),
        Role::Source => source(&mut run, &opts, &mig, &version),
    });
    if let Some(s) = status.as_mut() {
        s.close();
    }
    let write_to = if run.work_dir().is_dir() {
        Some(run.work_dir().to_path_buf())
    } else {
        None
    };
    match result {
        Ok(mut out) => {
            run.record.outcome = "ok".into();
            run.record.pid = out.pid;
            run.record.stats = json!({"criu": out.stats, "downtime": out.downtime});
            out.total_s = run.record.elapsed();
            out.record = write_to.and_then(|d| write_record(&mut run.record, &d, opts.role).ok());
            Ok(out)
        }
        Err(f) => {
            run.record.fail(&f);
            if let Some(d) = write_to {
                let _ = write_record(&mut run.record, &d, opts.role);
            }
            Err((f, Some(run.record)))
        }
    }
}

/// Find CRIU and check its version against the profile, as apply does.
/// Migration steps start their own `criu swrk`, so the spare one is closed.
fn prepare_criu(
    p: &Profile,
    flag: Option<&Path>,
    record: &mut RunRecord,
) -> Result<(FoundCriu, CriuVersion), Failure> {
    bootstrap::hermetic_env(p);
    let (found, v, spare) = bootstrap::prepare_criu(p, flag, record)?;
    let _ = spare.finish();
    Ok((found, v))
}
