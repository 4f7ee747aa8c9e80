//! `ckptctl apply` for `action = "migrate"`: two halves, `--role source` and
//! `--role destination`, coordinated only through CRIU's readiness and a
//! control connection (newline-delimited JSON over TCP, see [`proto`]).
//!
//! Strategies: stop-and-copy, pages pushed to the destination's page server
//! (or, without `[page_server]`, written into the shared `images.dir`); and
//! post-copy from the destination's images (`[lazy_pages]` without an
//! address): the same transfer, then a lazy RESTORE served by a local
//! `criu lazy-pages` daemon that goes on filling the tree's memory after it
//! resumed. Pre-copy and post-copy from the source's memory are refused
//! (this kernel cannot run them).
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

pub mod cpu;
pub mod proto;
pub mod send;
pub mod sha256;
pub mod tls;

use std::net::TcpListener;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Value as Json, json};

use crate::apply::engine::{self, INTERRUPTED, Run, dir_failure, open_dir};
use crate::apply::guard::{self, DirLock, ImagesState};
use crate::apply::record::{Latest, RunRecord};
use crate::apply::report::Failure;
use crate::apply::status_fd::StatusFd;
use crate::cli::output::{Exit, Ui};
use crate::criu::rpc::{CriuFeatures, CriuReq, CriuReqType};
use crate::criu::swrk::expect_success;
use crate::criu::{CriuVersion, FoundCriu, NotifyReply, Swrk};
use crate::profile::Profile;
use crate::profile::model::ImagesMode;
use crate::render::{CriuStep, Role};

use proto::{Conn, ConnError, Msg};

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

/// The downtime report of a migration.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Downtime {
    /// Time the tree was frozen on the source (CRIU `stats-dump`), ms.
    pub frozen_ms: Option<f64>,
    /// Dump start → `restored` received, measured on the source, s.
    pub downtime_s: Option<f64>,
    /// Duration of the destination's RESTORE request, s.
    pub restore_s: Option<f64>,
    /// Pages the dump wrote (to the page server or the shared images).
    pub pages_moved: Option<u64>,
    /// The same in bytes (4 KiB pages).
    pub bytes_moved: Option<u64>,
    /// Post-copy: how long the lazy-pages daemon went on delivering pages
    /// after the tree resumed here, s.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lazy_after_resume_s: Option<f64>,
}

/// What a successful migration half did.
#[derive(Debug, Serialize)]
pub struct MigrateOutcome {
    /// Always `migrated`.
    pub event: &'static str,
    /// `source` or `destination`.
    pub role: &'static str,
    /// Source: the pid that left; destination: the restored root pid.
    pub pid: Option<i32>,
    /// Destination: the restored root pid (both sides know it).
    pub restored_pid: Option<i32>,
    /// The downtime report.
    pub downtime: Downtime,
    /// CRIU statistics (dump on the source; both on the destination).
    pub stats: Json,
    /// Images directory.
    pub images_dir: PathBuf,
    /// The run record.
    pub record: Option<PathBuf>,
    /// Wall time of this half, s.
    pub total_s: f64,
}

fn role_name(r: Role) -> &'static str {
    match r {
        Role::Source => "source",
        Role::Destination => "destination",
    }
}

/// File name of a role's run record: both halves may share one work dir.
pub fn record_name(r: Role) -> String {
    format!("ckptctl-run-{}.json", role_name(r))
}

/// sha256 of the resolved profile (after `extends` and defaults).
pub fn profile_digest(p: &Profile) -> String {
    let v = crate::profile::section::section_json(p);
    sha256::sha256_hex(serde_json::to_string(&v).unwrap_or_default().as_bytes())
}

/// The `[migration]` settings apply needs.
#[derive(Debug, Clone)]
struct Mig {
    destination: String,
    control_port: u16,
    step_timeout: Duration,
    /// `page_server.tls`: the control connection is mutual TLS.
    tls: Option<Arc<tls::TlsMaterial>>,
}

fn migration(p: &Profile, role: Role) -> Result<Mig, Failure> {
    let m = p
        .migration
        .as_ref()
        .map(|m| m.value.clone())
        .ok_or_else(|| {
            Failure::new(
                "migrate::no-migration",
                "prepare",
                "a migrate profile needs a `[migration]` table",
                Exit::Usage,
            )
            .key("migration")
        })?;
    let destination = m
        .destination
        .as_ref()
        .map(|d| d.value.0.clone())
        .ok_or_else(|| {
            Failure::new(
                "migrate::no-destination",
                "prepare",
                "`migration.destination` is not set",
                Exit::Usage,
            )
            .key("migration.destination")
        })?;
    let control_port = m
        .control_port
        .as_ref()
        .and_then(|p| u16::try_from(p.value.0).ok())
        .ok_or_else(|| {
            Failure::new(
                "migrate::no-control-port",
                "prepare",
                "`migration.control_port` is not set",
                Exit::Usage,
            )
            .key("migration.control_port")
        })?;
    let tls = match tls_files(p)? {
        Some(f) => {
            let m = tls::TlsMaterial::load(&f).map_err(tls_config_failure)?;
            // Each role builds its side's configuration; check both now,
            // and the name the source expects, before anything starts.
            m.client().map_err(tls_config_failure)?;
            let dest_name = tls::server_name(&destination).map_err(tls_config_failure)?;
            if !f.no_cn_verify {
                // CRIU checks both hosts' certificates against the page
                // server's address; the source checks the destination's
                // against `migration.destination`.
                let ps_addr = p
                    .page_server
                    .as_ref()
                    .and_then(|ps| ps.value.address.as_ref())
                    .map_or_else(|| destination.clone(), |a| a.value.0.to_string());
                let mut names = vec![(
                    ps_addr,
                    "`page_server.address` (CRIU's page server and dump check both hosts' certificates against it)",
                )];
                if role == Role::Destination {
                    names.push((destination.clone(), "`migration.destination` (the source checks the control connection against it)"));
                }
                for (host, why) in names {
                    let name = if host == destination {
                        dest_name.clone()
                    } else {
                        tls::server_name(&host).map_err(tls_config_failure)?
                    };
                    if !m.names(&name) {
                        return Err(Failure::new(
                            "migrate::tls-config",
                            "prepare",
                            format!(
                                "this host's certificate {} does not name `{host}`, the address of {why}",
                                f.cert.display()
                            ),
                            Exit::Usage,
                        )
                        .key("page_server.tls.cert")
                        .hint(format!("issue the certificate with `{host}` as subject alternative name (IP address or DNS name), or set `page_server.tls.no_cn_verify = true` to check the chain only")));
                    }
                }
            }
            Some(Arc::new(m))
        }
        None => None,
    };
    Ok(Mig {
        destination,
        control_port,
        step_timeout: Duration::from_secs(m.step_timeout().0.max(1)),
        tls,
    })
}

/// `page_server.tls` as absolute paths (CRIU changes its directory, and
/// the control connection reads the same files). The control connection
/// verifies both sides, so `ca_cert`, `cert` and `key` are required.
fn tls_files(p: &Profile) -> Result<Option<tls::TlsFiles>, Failure> {
    let Some(t) = p.page_server.as_ref().and_then(|ps| ps.value.tls.as_ref()) else {
        return Ok(None);
    };
    let t = &t.value;
    let need = |v: &Option<crate::profile::value::Spanned<crate::profile::value::PathValue>>,
                key: &'static str|
     -> Result<PathBuf, Failure> {
        let v = v.as_ref().ok_or_else(|| {
            Failure::new(
                "migrate::tls-config",
                "prepare",
                format!("`{key}` is not set: the migration control connection is mutual TLS and needs `ca_cert`, `cert` and `key`"),
                Exit::Usage,
            )
            .key(key.rsplit_once('.').map_or(key, |(table, _)| table))
            .hint("set `ca_cert`, `cert` and `key` in `[page_server.tls]`: the CA both hosts' certificates chain to, and this host's certificate and key")
        })?;
        Ok(absolute(&v.value.resolved))
    };
    Ok(Some(tls::TlsFiles {
        ca_cert: need(&t.ca_cert, "page_server.tls.ca_cert")?,
        ca_crl: t.ca_crl.as_ref().map(|c| absolute(&c.value.resolved)),
        cert: need(&t.cert, "page_server.tls.cert")?,
        key: need(&t.key, "page_server.tls.key")?,
        no_cn_verify: t.no_cn_verify(),
    }))
}

/// A path made absolute against the current directory.
fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

fn tls_config_failure(e: tls::TlsConfigError) -> Failure {
    Failure::new("migrate::tls-config", "prepare", e.message, Exit::Usage)
        .key(e.key)
        .hint("fix the file or the path in `[page_server.tls]`; both hosts need their own readable PEM files")
}

/// A TLS handshake or record failure on the control connection.
fn tls_failure(step: &str, e: &rustls::Error, tree_note: &str) -> Failure {
    let (key, exit, text) = tls::explain(e);
    Failure::new(
        "migrate::tls",
        step,
        format!("control connection: {text}{tree_note}"),
        exit,
    )
    .key(key)
    .hint("both hosts' certificates must chain to `page_server.tls.ca_cert`, and the destination's must name `migration.destination` unless `no_cn_verify = true`")
}

/// Refuse what this version cannot run, before anything starts. Both roles
/// run the same checks on the same profile, so both stop the same way.
fn refuse_unsupported(run: &mut Run<'_>) -> Result<(), Failure> {
    let p = run.profile();
    if let Some(l) = p.lazy_pages.as_ref().filter(|l| l.value.enabled()) {
        engine::feature_gate(
            run,
            CriuFeatures {
                lazy_pages: Some(true),
                ..Default::default()
            },
            "lazy_pages.enabled",
        )?;
        // Without `address`, the destination restores lazily from its own
        // images (post-copy from the destination's disk): that runs. Pages
        // served from the source's memory do not, on this kernel.
        if l.value.address.is_some() {
            return Err(Failure::new(
                "migrate::lazy-unsupported",
                "prepare",
                "post-copy migration from the source's memory (remote lazy pages) cannot run here: the source's lazy page server fails with `page-pipe: tee: Operation not permitted` once the destination connects on this kernel, so `ckptctl` does not start it",
                Exit::NotReady,
            )
            .key("lazy_pages.address")
            .hint("remove `lazy_pages.address` to restore lazily from the destination's own images, or remove `[lazy_pages]` to migrate stop-and-copy"));
        }
    }
    if p.checkpoint().pre_dump.is_some() {
        // Exit 4 naming `checkpoint.pre_dump` when soft-dirty tracking is off.
        engine::feature_gate(
            run,
            CriuFeatures {
                mem_track: Some(true),
                ..Default::default()
            },
            "checkpoint.pre_dump",
        )?;
        return Err(Failure::new(
            "migrate::pre-copy-unsupported",
            "prepare",
            "pre-copy migration (`[checkpoint.pre_dump]`) is not supported by `apply --role` yet",
            Exit::Usage,
        )
        .key("checkpoint.pre_dump")
        .hint("remove `[checkpoint.pre_dump]` to migrate stop-and-copy"));
    }
    if sends_images(p) && p.page_server.is_none() {
        return Err(Failure::new(
            "migrate::send-needs-page-server",
            "prepare",
            "`migration.images = \"send\"` needs `[page_server]`: the pages go to the destination's page server, only the other images travel over the control connection",
            Exit::Usage,
        )
        .key("migration.images")
        .hint("add a `[page_server]` table (its address is the destination's), or use `images = \"shared\"` with an `images.dir` both hosts see"));
    }
    Ok(())
}

/// `[lazy_pages]` without `address`: the destination restores lazily from
/// its own images.
fn lazy_local(p: &Profile) -> bool {
    p.lazy_pages
        .as_ref()
        .is_some_and(|l| l.value.enabled() && l.value.address.is_none())
}

/// `migration.images = "send"`.
fn sends_images(p: &Profile) -> bool {
    p.migration
        .as_ref()
        .is_some_and(|m| m.value.images() == ImagesMode::Send)
}

/// Run one half of a migration.
pub fn run(
    p: &Profile,
    profile_file: &str,
    ui: &Ui,
    mut opts: MigrateOptions,
) -> Result<MigrateOutcome, (Failure, Option<RunRecord>)> {
    engine::install_signal_handlers();
    let mut record = RunRecord::for_profile(p, profile_file);
    record.role = Some(role_name(opts.role).to_string());
    let mut status = opts.status_fd.take();
    let prepared = (|| {
        let mig = migration(p, opts.role)?;
        let (criu, version) = prepare_criu(p, opts.criu.as_deref(), &mut record)?;
        let (images_dir, work_dir) = engine::dirs(p)?;
        Ok((mig, criu, version, images_dir, work_dir))
    })();
    let (mig, criu, version, images_dir, work_dir) = match prepared {
        Ok(x) => x,
        Err(f) => {
            engine::record_refusal(p, &f, &mut record, &record_name(opts.role));
            return Err((f, Some(record)));
        }
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
            out.record = write_to.and_then(|d| {
                run.record
                    .save(&d, &record_name(opts.role), Latest::Replace)
                    .ok()
            });
            Ok(out)
        }
        Err(f) => {
            run.record.fail(&f);
            if let Some(d) = write_to {
                let latest = engine::latest_after_failure(&f, run.images_dir());
                let _ = run.record.save(&d, &record_name(opts.role), latest);
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
    engine::hermetic_env(p);
    let (found, v, spare) = engine::prepare_criu(p, flag, record)?;
    let _ = spare.finish();
    Ok((found, v))
}

fn hello(p: &Profile, v: &CriuVersion, role: Role) -> Msg {
    Msg::Hello {
        profile_digest: profile_digest(p),
        criu_version: v.to_string(),
        criu_version_number: v.number(),
        role: role_name(role).to_string(),
        ckptctl: env!("CARGO_PKG_VERSION").to_string(),
        cpuinfo: None,
    }
}

/// Compare the peer's hello with ours: (source's, destination's).
fn check_hello(ours: &Msg, theirs: &Msg, we: Role) -> Result<(), Failure> {
    let (
        Msg::Hello {
            profile_digest: d1,
            criu_version: v1,
            criu_version_number: n1,
            ..
        },
        Msg::Hello {
            profile_digest: d2,
            criu_version: v2,
            criu_version_number: n2,
            role,
            ..
        },
    ) = (ours, theirs)
    else {
        return Err(protocol("hello", theirs));
    };
    let want_peer = match we {
        Role::Source => "destination",
        Role::Destination => "source",
    };
    if role != want_peer {
        return Err(Failure::new(
            "migrate::role-mismatch",
            "hello",
            format!(
                "the other side runs as `--role {role}` too; one side must be `--role {want_peer}`"
            ),
            Exit::Usage,
        ));
    }
    let hex64 = |d: &str| d.len() == 64 && d.chars().all(|c| c.is_ascii_hexdigit());
    if !hex64(d2) {
        return Err(Failure::new(
            "migrate::protocol",
            "hello",
            "the other side sent a profile digest that is not a sha256".to_string(),
            Exit::CriuFailed,
        ));
    }
    if d1 != d2 {
        return Err(Failure::new(
            "migrate::profile-mismatch",
            "hello",
            format!(
                "the two sides run different profiles (sha256 {} here, {} there)",
                d1.chars().take(12).collect::<String>(),
                d2.chars().take(12).collect::<String>()
            ),
            Exit::Usage,
        )
        .hint("run both halves with the same profile file (same content after `extends` and defaults)"));
    }
    let ((src_v, src_n), (dst_v, dst_n)) = match we {
        Role::Source => ((v1, n1), (v2, n2)),
        Role::Destination => ((v2, n2), (v1, n1)),
    };
    if dst_n < src_n {
        return Err(Failure::new(
            "migrate::criu-version",
            "hello",
            format!("the destination's CRIU {dst_v} is older than the source's CRIU {src_v}: it may not read the images"),
            Exit::NotReady,
        )
        .key("criu.min_version")
        .hint("install the same or a newer CRIU on the destination"));
    }
    Ok(())
}

fn protocol(waiting_for: &str, got: &Msg) -> Failure {
    Failure::new(
        "migrate::protocol",
        waiting_for,
        format!(
            "expected `{waiting_for}` on the control connection, got `{}`",
            got.name()
        ),
        Exit::CriuFailed,
    )
    .hint("run the same ckptctl version with the same profile on both hosts; the other side's output says what it did")
}

/// A receive failure as a step failure.
fn conn_failure(step: &str, e: ConnError, exit: Exit, tree_note: &str) -> Failure {
    if let ConnError::Tls(t) = &e {
        return tls_failure(step, t, tree_note);
    }
    let code = match e {
        ConnError::Timeout(..) => "migrate::timeout",
        ConnError::Interrupted => "apply::interrupted",
        _ => "migrate::connection",
    };
    let mut f = Failure::new(code, step, format!("{e}{tree_note}"), exit);
    if matches!(e, ConnError::Timeout(..)) {
        f = f.key("migration.step_timeout").hint(
            "check the other side's output; raise `migration.step_timeout` if it was only slow",
        );
    }
    f
}

/// The peer stopped with `error`.
fn peer_error(step: &str, message: &str, exit: u8, tree_note: &str) -> Failure {
    let exit = match exit {
        2 => Exit::Usage,
        4 => Exit::NotReady,
        _ => Exit::CriuFailed,
    };
    Failure::new(
        "migrate::peer-failed",
        step,
        format!("the other side stopped: {message}{tree_note}"),
        exit,
    )
    .hint("fix what the other host's diagnostic names (its own output has the key and the CRIU log), then start both roles again")
}

fn tell_peer(conn: &mut Option<Conn>, f: &Failure) {
    if let Some(c) = conn.as_mut() {
        let _ = c.send(&Msg::Error {
            message: f.message.clone(),
            exit: f.exit as u8,
        });
        c.shutdown();
    }
}

fn dump_summary(stats: &Json, d: &mut Downtime) {
    if let Some(dump) = stats.get("dump") {
        d.frozen_ms = dump
            .get("frozen_time_us")
            .and_then(Json::as_u64)
            .map(|us| us as f64 / 1000.0);
        d.pages_moved = dump.get("pages_written").and_then(Json::as_u64);
        d.bytes_moved = d.pages_moved.map(|p| p * 4096);
    }
}

// ---------------------------------------------------------------------------
// destination

/// The destination's page server: killed unless it exited by itself.
struct PageServer {
    swrk: Option<Swrk>,
    pid: Option<i32>,
    port: Option<i32>,
}

impl Drop for PageServer {
    fn drop(&mut self) {
        if let Some(pid) = self.pid.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        self.swrk.take();
    }
}

fn destination(
    run: &mut Run<'_>,
    opts: &MigrateOptions,
    mig: &Mig,
    version: &CriuVersion,
    status: &mut Option<StatusFd>,
) -> Result<MigrateOutcome, Failure> {
    let p = run.profile();
    let images_dir = run.images_dir().to_path_buf();
    let work_dir = run.work_dir().to_path_buf();
    guard::ensure_private_dir(&images_dir).map_err(|e| dir_failure(e, "images.dir"))?;
    guard::ensure_private_dir(&work_dir).map_err(|e| dir_failure(e, "images.work_dir"))?;
    let _lock = DirLock::acquire(&images_dir).map_err(|e| dir_failure(e, "images.dir"))?;
    if matches!(
        guard::images_state(&images_dir),
        ImagesState::Complete | ImagesState::Foreign
    ) && !opts.force
    {
        return Err(Failure::new(
            "apply::images-exist",
            "prepare",
            format!("{} already holds a checkpoint", images_dir.display()),
            Exit::Usage,
        )
        .key("images.dir")
        .hint("pass `--force` to replace it, or choose another `images.dir`"));
    }
    // A forced run replaces an old checkpoint: drop its markers first.
    let _ = std::fs::remove_file(images_dir.join(guard::COMPLETE_MARKER));
    guard::mark_incomplete(&images_dir).map_err(|e| {
        Failure::new(
            "apply::dir",
            "prepare",
            format!("cannot write to {}: {e}", images_dir.display()),
            Exit::Usage,
        )
        .key("images.dir")
    })?;
    let images = open_dir(&images_dir)?;
    let work = open_dir(&work_dir)?;

    let listener = proto::listen(&mig.destination, mig.control_port).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AddrNotAvailable {
            return Failure::new(
                "migrate::listen",
                "listen",
                format!(
                    "`migration.destination` {} is not an address of this host: the control connection listens only there ({e})",
                    mig.destination
                ),
                Exit::NotReady,
            )
            .key("migration.destination")
            .hint("run `--role destination` on the host `migration.destination` names (the page server listens on `page_server.address` the same way)");
        }
        Failure::new(
            "migrate::listen",
            "listen",
            format!(
                "cannot listen on port {} for the control connection: {e}",
                mig.control_port
            ),
            Exit::NotReady,
        )
        .key("migration.control_port")
        .hint("choose a free `migration.control_port`")
    })?;

    let mut ps = if p.page_server.is_some() {
        Some(start_page_server(run, mig, &images, &work)?)
    } else {
        None
    };
    let ps_port = ps.as_ref().and_then(|s| s.port);

    if let Some(s) = status.as_mut() {
        s.ready();
    }
    let ready_event = json!({"event": "ready", "role": "destination", "control_port": mig.control_port, "page_server_port": ps_port});
    run.ui_data_line(&ready_event);
    run.progress(&format!(
        "ready: control connection on port {}{}; waiting up to {} s for the source",
        mig.control_port,
        ps_port
            .map(|p| format!(", page server on port {p}"))
            .unwrap_or_default(),
        mig.step_timeout.as_secs()
    ));

    let mut conn = None;
    let result = destination_session(
        run, mig, version, &listener, &mut conn, &mut ps, &images, &work,
    );
    if let Err(f) = &result {
        tell_peer(&mut conn, f);
        if !f.keep_images {
            let _ = guard::quarantine(&images_dir);
        }
    }
    drop(ps);
    result
}

impl Run<'_> {
    /// One JSON line on stdout (events and the final report).
    fn ui_data_line(&self, v: &Json) {
        let mut s = serde_json::to_string(v).unwrap_or_default();
        s.push('\n');
        self.ui().data(s);
    }
}

fn start_page_server(
    run: &mut Run<'_>,
    mig: &Mig,
    images: &OwnedFd,
    work: &OwnedFd,
) -> Result<PageServer, Failure> {
    let step = CriuStep::PageServer { round: None };
    let o = run.opts(&step, None, images, work);
    let log = run.work_dir().join(step.log_file());
    let started = run.record.elapsed();
    let mut swrk = run.swrk()?;
    swrk.set_timeout(Some(mig.step_timeout));
    let req = CriuReq {
        keep_open: Some(true),
        ..CriuReq::with_opts(CriuReqType::PageServerChld, o)
    };
    run.progress("starting the page server");
    // CRIU answers PAGE_SERVER_CHLD with a response of type PAGE_SERVER.
    let resp = swrk
        .call(&req, &mut |_| NotifyReply::ok())
        .and_then(|mut r| {
            if r.r#type == CriuReqType::PageServerChld as i32 {
                r.r#type = CriuReqType::PageServer as i32;
            }
            expect_success("page server", CriuReqType::PageServer, r)
        });
    match resp {
        Ok(r) => {
            run.record
                .step("page server ready", started, true, Some(log), Vec::new());
            let info = r.ps.unwrap_or_default();
            Ok(PageServer {
                swrk: Some(swrk),
                pid: info.pid,
                port: info.port,
            })
        }
        Err(e) => {
            run.record.step(
                "page server ready",
                started,
                false,
                Some(log.clone()),
                Vec::new(),
            );
            Err(run.criu_failure("page server", e, Some(log)))
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn destination_session(
    run: &mut Run<'_>,
    mig: &Mig,
    version: &CriuVersion,
    listener: &TcpListener,
    conn: &mut Option<Conn>,
    ps: &mut Option<PageServer>,
    images: &OwnedFd,
    work: &OwnedFd,
) -> Result<MigrateOutcome, Failure> {
    let p = run.profile();
    let to = mig.step_timeout;
    let note = "; nothing was restored here";
    // Accept until a peer says hello: a port scan or a health check that
    // connects and says nothing (or something else) must not end the
    // migration. All of it within one step_timeout.
    let deadline = Instant::now() + to;
    let server_tls = match &mig.tls {
        Some(m) => Some(m.server().map_err(tls_config_failure)?),
        None => None,
    };
    // The last TLS refusal: what the timeout reports if no source gets in.
    let mut refused: Option<(std::net::SocketAddr, rustls::Error)> = None;
    let (c, theirs) = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut c = match proto::accept(listener, left) {
            Ok(c) => c,
            Err(e) => {
                if let (ConnError::Timeout(..), Some((peer, t))) = (&e, &refused) {
                    let mut f = tls_failure("wait for the source", t, note);
                    f.message = format!(
                        "no source completed the TLS handshake within {} s; the last attempt, from {peer}, failed: {}",
                        to.as_secs(),
                        f.message
                    );
                    return Err(f);
                }
                return Err(conn_failure("wait for the source", e, Exit::NotReady, note));
            }
        };
        c.write_limit = to;
        // A real source says hello at once; a silent peer gets 10 s (for
        // the TLS handshake, then again for its hello).
        let left = deadline
            .saturating_duration_since(Instant::now())
            .clamp(Duration::from_millis(100), Duration::from_secs(10));
        if let Some(cfg) = &server_tls {
            let peer = c.peer;
            c = match c.tls_server(cfg.clone(), left) {
                Ok(c) => c,
                Err(e) => {
                    run.progress(&format!(
                        "ignored a connection from {peer}: TLS handshake failed: {e}"
                    ));
                    if let ConnError::Tls(t) = e {
                        refused = Some((peer, t));
                    }
                    if Instant::now() >= deadline {
                        return Err(conn_failure(
                            "wait for the source",
                            proto::ConnError::Timeout(
                                to.as_secs_f64(),
                                "the source's hello".into(),
                            ),
                            Exit::NotReady,
                            note,
                        ));
                    }
                    continue;
                }
            };
        }
        let left = deadline
            .saturating_duration_since(Instant::now())
            .clamp(Duration::from_millis(100), Duration::from_secs(10));
        match c.recv(left, "hello") {
            Ok(m @ (Msg::Hello { .. } | Msg::Error { .. })) => break (c, m),
            Ok(other) => run.progress(&format!(
                "ignored a connection from {} that sent `{}` instead of hello",
                c.peer,
                other.name()
            )),
            Err(e) => run.progress(&format!("ignored a connection from {}: {e}", c.peer)),
        }
        c.shutdown();
        if Instant::now() >= deadline {
            return Err(conn_failure(
                "wait for the source",
                proto::ConnError::Timeout(to.as_secs_f64(), "the source's hello".into()),
                Exit::NotReady,
                note,
            ));
        }
    };
    run.progress(&format!(
        "source connected from {}{}",
        c.peer,
        if c.is_tls() {
            " (TLS, certificate verified)"
        } else {
            ""
        }
    ));
    let c = conn.insert(c);
    if let Msg::Error { message, exit } = &theirs {
        return Err(peer_error("hello", message, *exit, note));
    }
    let ours = hello(p, version, Role::Destination);
    check_hello(&ours, &theirs, Role::Destination)?;
    // CPU compatibility, with CRIU's own check, before the source freezes.
    if let Msg::Hello { cpuinfo: None, .. } = &theirs {
        return Err(Failure::new(
            "migrate::cpu-check",
            "cpuinfo check",
            "the source sent no CPU information (an older ckptctl?)",
            Exit::Usage,
        )
        .hint("run the same ckptctl version on both hosts"));
    }
    if let Msg::Hello {
        cpuinfo: Some(img), ..
    } = &theirs
    {
        let bytes = send::base64_decode(img).map_err(|e| {
            Failure::new(
                "migrate::cpu-check",
                "cpuinfo check",
                format!("the source's cpuinfo image is not base64: {e}"),
                Exit::CriuFailed,
            )
        })?;
        cpu::check(run, &bytes)?;
        run.progress("CPU check passed (CRIU cpuinfo)");
    }
    c.send(&ours)
        .map_err(|e| conn_failure("hello", e.into(), Exit::NotReady, note))?;
    c.send(&Msg::Ready {
        page_server_port: ps.as_ref().and_then(|s| s.port),
    })
    .map_err(|e| conn_failure("ready", e.into(), Exit::NotReady, note))?;

    let started = run.record.elapsed();
    run.progress("waiting for the source's dump");
    let send = sends_images(p);
    let dir = run.images_dir().to_path_buf();
    let mut received = send::Received::default();
    let transfer = receive_dump(run, c, to, send, &dir, &mut received, note, started);
    if transfer.is_err() {
        // Nothing of a failed transfer stays behind to mix with the next.
        received.discard(&dir);
    }
    transfer?;

    if let Some(s) = ps.as_mut() {
        wait_page_server(run, s, to)?;
    }
    let images_dir = run.images_dir().to_path_buf();

    // Post-copy from the images here: the daemon serves the pages to the
    // restored tree, which can run before they are all in memory.
    let mut daemon = if lazy_local(p) {
        Some(run.start_lazy_daemon(to)?)
    } else {
        None
    };

    // Restored stopped (render sets leave_stopped for migrate restores): the
    // tree only runs here once the source has ended its copy.
    let o = run.opts(&CriuStep::Restore, None, images, work);
    let log = run.work_dir().join(CriuStep::Restore.log_file());
    run.progress(&format!("restore from {}", images_dir.display()));
    let t_restore = Instant::now();
    let resp = run
        .call(
            "restore",
            CriuReq::with_opts(CriuReqType::Restore, o),
            CriuReqType::Restore,
            log,
        )
        .inspect_err(|_| {
            if let Some(d) = daemon.as_mut() {
                d.kill();
            }
        })?;
    let restore_s = t_restore.elapsed().as_secs_f64();
    let pid = resp.restore.map(|r| r.pid);
    let stopped = Stopped(pid.filter(|p| *p > 0));
    if let (Some(pid), Some(pf)) = (pid, p.restore().pidfile) {
        // The tree runs here now: a pidfile problem is reported, not fatal.
        if let Err(e) = engine::write_pidfile(&pf.value.resolved, pid) {
            run.ui().error(format!(
                "restored pid {pid}, but cannot write {}: {e}",
                pf.value.resolved.display()
            ));
        }
    }
    let restore_stats = engine::stats_json(&run.work_dir().join("stats-restore"), &[]);
    if let Err(e) = c.send(&Msg::Restored {
        pid,
        stats: restore_stats.clone(),
    }) {
        // The source never heard of this copy: it resumes its own.
        stopped.kill();
        return Err(conn_failure(
            "restored",
            e.into(),
            Exit::CriuFailed,
            "; the stopped copy restored here was killed, the source keeps its tree",
        ));
    }

    let mut downtime = Downtime {
        restore_s: Some(restore_s),
        ..Downtime::default()
    };
    let mut stats = json!({"restore": restore_stats.get("restore").cloned().unwrap_or(Json::Null)});
    // The source's summary is its commit: CRIU has ended the tree there.
    // Only then does the copy here run; an `error` means the source kept
    // its tree (the copy here is killed); silence is left to the operator.
    match c.recv(to, "summary") {
        Ok(Msg::Summary {
            stats: dump_stats,
            downtime_s,
        }) => {
            stopped.resume();
            dump_summary(&dump_stats, &mut downtime);
            downtime.downtime_s = Some(downtime_s);
            stats["dump"] = dump_stats.get("dump").cloned().unwrap_or(Json::Null);
            if let Some(d) = daemon.as_mut() {
                // Fault injection for the tests (as CRIU has `CRIU_FAULT`):
                // the daemon dies right after the resume.
                if std::env::var_os("CKPTCTL_FAULT")
                    .is_some_and(|v| v == "lazy-daemon-dies-after-resume")
                {
                    if let Some(dp) = d.pid().and_then(|p| i32::try_from(p).ok()) {
                        let _ = nix::sys::signal::kill(
                            nix::unistd::Pid::from_raw(dp),
                            nix::sys::signal::Signal::SIGKILL,
                        );
                        run.progress(&format!(
                            "fault injected: killed the lazy-pages daemon (pid {dp})"
                        ));
                    }
                }
                run.progress("running; waiting for the lazy pages to arrive");
                let t = Instant::now();
                let ok = run.wait_lazy_daemon(d);
                downtime.lazy_after_resume_s = Some(t.elapsed().as_secs_f64());
                if !ok {
                    // Pages that never arrived would read as zeros: the copy
                    // cannot be trusted. The images here are complete, so
                    // the tree can be restored from them again.
                    stopped.kill();
                    let _ = guard::mark_complete(
                        &images_dir,
                        &json!({"profile": run.record.profile, "criu": run.record.criu_version, "migrated": true}),
                    );
                    let mut f = Failure::new(
                        "apply::lazy-pages",
                        "lazy-pages transfer",
                        format!(
                            "the lazy-pages daemon failed before every page arrived; the migrated tree{} was killed because its memory is incomplete",
                            pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
                        ),
                        Exit::CriuFailed,
                    )
                    .key("lazy_pages.enabled")
                    .hint(format!(
                        "the checkpoint in {} is complete: restore it with a restore profile for that directory (without lazy pages)",
                        images_dir.display()
                    ));
                    f.log_lines = crate::apply::report::log_excerpt(&d.log);
                    f.log = Some(d.log.clone());
                    // The source has ended its tree: these images are now
                    // the only copy. Never quarantine them.
                    f.keep_images = true;
                    return Err(f);
                }
            }
        }
        Ok(Msg::Error { message, exit }) => {
            stopped.kill();
            let _ = guard::quarantine(&images_dir);
            return Err(peer_error(
                "handover",
                &message,
                exit,
                "; the source kept its tree, and the stopped copy restored here was killed",
            ));
        }
        other => {
            let why = match other {
                Ok(m) => format!("the source sent `{}` instead of its summary", m.name()),
                Err(e) => e.to_string(),
            };
            // Whether the source ended its tree is unknown, so the images
            // may be the only copy: marked incomplete (restore wants
            // `--force`), never quarantined.
            let _ = guard::mark_incomplete(&images_dir);
            let here = pid.map_or_else(|| "the restored tree".to_string(), |p| format!("pid {p}"));
            // A lazily restored copy may only be left for resuming once the
            // daemon has delivered every page; otherwise it is killed and
            // the images are what is left.
            let complete = daemon.as_mut().is_none_or(|d| d.wait(to));
            let mut f = if complete {
                Failure::new(
                    "migrate::handover-unknown",
                    "handover",
                    format!("{why}: whether the source ended its copy is unknown, so {here} is left stopped here"),
                    Exit::CriuFailed,
                )
                .hint(format!(
                    "if the source's process is gone, resume this copy with `kill -CONT` on {here} and its children (or restore {} with `--force`); if it still runs there, kill this one",
                    images_dir.display()
                ))
            } else {
                stopped.kill();
                Failure::new(
                    "migrate::handover-unknown",
                    "handover",
                    format!("{why}: whether the source ended its copy is unknown, and the lazy-pages daemon did not deliver every page, so {here} was killed"),
                    Exit::CriuFailed,
                )
                .hint(format!(
                    "if the source's process is gone, restore {} with `--force` (the checkpoint there is whole); if it still runs there, nothing is lost",
                    images_dir.display()
                ))
            };
            f.keep_images = true;
            return Err(f);
        }
    }
    c.shutdown();
    guard::mark_complete(
        &images_dir,
        &json!({"profile": run.record.profile, "criu": run.record.criu_version, "migrated": true}),
    )
    .map_err(|e| {
        Failure::new(
            "apply::dir",
            "finish",
            format!("the tree runs here, but the images cannot be marked complete: {e}"),
            Exit::CriuFailed,
        )
        .key("images.dir")
        .hint("the migrated tree is fine; only the checkpoint left in `images.dir` is not marked reusable (check its permissions and free space)")
    })?;
    Ok(MigrateOutcome {
        event: "migrated",
        role: "destination",
        pid,
        restored_pid: pid,
        downtime,
        stats,
        images_dir,
        record: None,
        total_s: 0.0,
    })
}

/// A restored tree left stopped (CRIU `leave_stopped`) until the handover
/// is decided.
struct Stopped(Option<i32>);

impl Stopped {
    /// Let it run: SIGCONT to every task of the tree.
    fn resume(&self) {
        if let Some(p) = self.0 {
            signal_tree(p, nix::sys::signal::Signal::SIGCONT);
        }
    }

    /// End it: SIGKILL to every task of the tree.
    fn kill(&self) {
        if let Some(p) = self.0 {
            signal_tree(p, nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// Destination: wait for the source's dump, taking its `image` messages
/// (when `send`) up to `dumped`.
#[allow(clippy::too_many_arguments)]
fn receive_dump(
    run: &mut Run<'_>,
    c: &mut Conn,
    to: Duration,
    send: bool,
    dir: &Path,
    received: &mut send::Received,
    note: &str,
    started: f64,
) -> Result<(), Failure> {
    loop {
        // `image` lines carry a whole file: allow their size, only then.
        let max = if send {
            proto::MAX_IMAGE_LINE
        } else {
            proto::MAX_LINE
        };
        let m = c
            .recv_max(to, "dumped", max)
            .map_err(|e| conn_failure("wait for the dump", e, Exit::CriuFailed, note))?;
        match m {
            Msg::Image {
                name,
                size,
                sha256,
                offset,
                data,
            } if send => {
                received
                    .accept(dir, &name, size, &sha256, offset, &data)
                    .map_err(|mut f| {
                        f.message.push_str(note);
                        f
                    })?;
            }
            Msg::Dumped { images, .. } => {
                if send {
                    received.finish(dir, images).map_err(|mut f| {
                        f.message.push_str(note);
                        f
                    })?;
                    run.progress(&format!(
                        "received {} images ({} bytes) over the control connection",
                        received.names.len(),
                        received.total
                    ));
                }
                run.record
                    .step("source dumped", started, true, None, Vec::new());
                return Ok(());
            }
            Msg::Error { message, exit } => return Err(peer_error("dump", &message, exit, note)),
            other => return Err(protocol("dumped", &other)),
        }
    }
}

/// Send `sig` to `root` and all its descendants (children first listed
/// through /proc, then signalled top-down).
fn signal_tree(root: i32, sig: nix::sys::signal::Signal) {
    let mut todo = vec![root];
    let mut all = Vec::new();
    while let Some(p) = todo.pop() {
        if all.contains(&p) || all.len() > 100_000 {
            continue;
        }
        all.push(p);
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) {
            for t in tasks.flatten() {
                let kids = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
                todo.extend(
                    kids.split_whitespace()
                        .filter_map(|k| k.parse::<i32>().ok()),
                );
            }
        }
    }
    for p in all {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), sig);
    }
}

/// WAIT_PID for the page server: it exits once the dump disconnected.
fn wait_page_server(run: &mut Run<'_>, ps: &mut PageServer, to: Duration) -> Result<(), Failure> {
    let (Some(pid), Some(mut swrk)) = (ps.pid, ps.swrk.take()) else {
        return Ok(());
    };
    let started = run.record.elapsed();
    let log = run
        .work_dir()
        .join(CriuStep::PageServer { round: None }.log_file());
    swrk.set_timeout(Some(to));
    let req = CriuReq {
        pid: u32::try_from(pid).ok(),
        ..CriuReq::new(CriuReqType::WaitPid)
    };
    let resp = swrk
        .call(&req, &mut |_| NotifyReply::ok())
        .and_then(|r| expect_success("wait for the page server", CriuReqType::WaitPid, r));
    let _ = swrk.finish();
    let status = match resp {
        Ok(r) => r.status,
        Err(e) => {
            run.record.step(
                "page server done",
                started,
                false,
                Some(log.clone()),
                Vec::new(),
            );
            return Err(run.criu_failure("page server", e, Some(log)));
        }
    };
    ps.pid = None; // reaped
    let ok = status.is_some_and(|s| libc::WIFEXITED(s) && libc::WEXITSTATUS(s) == 0);
    run.record.step(
        "page server done",
        started,
        ok,
        Some(log.clone()),
        Vec::new(),
    );
    if !ok {
        let lines = crate::apply::report::log_excerpt(&log);
        let mut f = Failure::new(
            "migrate::page-server",
            "page server",
            format!(
                "the page server ended with wait status {status:?}; the pages may be incomplete; nothing was restored here"
            ),
            Exit::CriuFailed,
        )
        .key("page_server.port")
        .hint("read the page-server log lines below (a port taken, a full disk, a broken connection); the source keeps its tree, start both roles again");
        f.log = Some(log);
        f.log_lines = lines;
        return Err(f);
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// source

fn source(
    run: &mut Run<'_>,
    opts: &MigrateOptions,
    mig: &Mig,
    version: &CriuVersion,
) -> Result<MigrateOutcome, Failure> {
    let p = run.profile();
    let pid = engine::resolve_pid(p, opts.pid)?;
    let to = mig.step_timeout;
    let untouched = format!("; process {pid} was not touched");
    run.progress(&format!(
        "connecting to the destination {}:{} (up to {} s)",
        mig.destination,
        mig.control_port,
        to.as_secs()
    ));
    // Sent images: this host's images.dir is ours alone; lock it first.
    let own_lock = if sends_images(p) {
        Some(prepare_own_images(run, opts.force)?)
    } else {
        None
    };
    let started = run.record.elapsed();
    let t0 = Instant::now();
    let conn = proto::connect(&mig.destination, mig.control_port, to).map_err(|e| {
        conn_failure("connect", e, Exit::NotReady, &untouched)
            .hint("start `ckptctl apply PROFILE --role destination` on the destination first (it prints a ready event), and check `migration.destination` / `control_port`")
    });
    let conn = match (conn, &mig.tls) {
        (Ok(c), Some(m)) => {
            let left = to
                .saturating_sub(t0.elapsed())
                .max(Duration::from_millis(500));
            m.client()
                .map_err(tls_config_failure)
                .and_then(|cfg| {
                    let name = tls::server_name(&mig.destination).map_err(tls_config_failure)?;
                    c.tls_client(cfg, name, left)
                        .map_err(|e| conn_failure("TLS handshake", e, Exit::NotReady, &untouched))
                })
                .inspect(|_| {
                    run.progress("control connection: TLS, the destination's certificate verified")
                })
        }
        (c, _) => c,
    };
    run.record
        .step("connect", started, conn.is_ok(), None, Vec::new());
    let mut conn = Some(conn?);
    if let Some(c) = conn.as_mut() {
        c.write_limit = to;
    }
    let result = source_session(run, mig, version, pid, &mut conn, &untouched);
    if let Err(f) = &result {
        tell_peer(&mut conn, f);
    }
    if own_lock.is_some() {
        // Without its pages this directory is never a checkpoint.
        let _ = guard::quarantine(run.images_dir());
    }
    result
}

/// `images = "send"`, source: create and lock its own images.dir, refuse
/// an existing checkpoint without `--force`, mark it incomplete.
fn prepare_own_images(run: &Run<'_>, force: bool) -> Result<DirLock, Failure> {
    let images_dir = run.images_dir().to_path_buf();
    guard::ensure_private_dir(&images_dir).map_err(|e| dir_failure(e, "images.dir"))?;
    guard::ensure_private_dir(run.work_dir()).map_err(|e| dir_failure(e, "images.work_dir"))?;
    let lock = DirLock::acquire(&images_dir).map_err(|e| dir_failure(e, "images.dir"))?;
    if matches!(
        guard::images_state(&images_dir),
        ImagesState::Complete | ImagesState::Foreign
    ) && !force
    {
        return Err(Failure::new(
            "apply::images-exist",
            "prepare",
            format!("{} already holds a checkpoint", images_dir.display()),
            Exit::Usage,
        )
        .key("images.dir")
        .hint("pass `--force` to replace it, or choose another `images.dir`"));
    }
    guard::mark_incomplete(&images_dir).map_err(|e| {
        Failure::new(
            "apply::dir",
            "prepare",
            format!("cannot write to {}: {e}", images_dir.display()),
            Exit::Usage,
        )
        .key("images.dir")
    })?;
    Ok(lock)
}

fn source_session(
    run: &mut Run<'_>,
    mig: &Mig,
    version: &CriuVersion,
    pid: i32,
    conn: &mut Option<Conn>,
    untouched: &str,
) -> Result<MigrateOutcome, Failure> {
    let p = run.profile();
    let to = mig.step_timeout;
    let Some(c) = conn.as_mut() else {
        return Err(Failure::new(
            "migrate::connection",
            "connect",
            "no control connection",
            Exit::NotReady,
        ));
    };
    let mut ours = hello(p, version, Role::Source);
    if let Msg::Hello { cpuinfo, .. } = &mut ours {
        *cpuinfo = Some(send::base64_encode(&cpu::dump(run)?));
    }
    c.send(&ours)
        .map_err(|e| conn_failure("hello", e.into(), Exit::NotReady, untouched))?;
    let theirs = c
        .recv(to, "hello")
        .map_err(|e| conn_failure("hello", e, Exit::NotReady, untouched))?;
    if let Msg::Error { message, exit } = &theirs {
        return Err(peer_error("hello", message, *exit, untouched));
    }
    check_hello(&ours, &theirs, Role::Source)?;
    let ps_port = match c
        .recv(to, "ready")
        .map_err(|e| conn_failure("ready", e, Exit::NotReady, untouched))?
    {
        Msg::Ready { page_server_port } => page_server_port,
        Msg::Error { message, exit } => return Err(peer_error("ready", &message, exit, untouched)),
        other => return Err(protocol("ready", &other)),
    };

    // Shared images: the destination created and locked images.dir; sent
    // images: we did (prepare_own_images).
    let images_dir = run.images_dir().to_path_buf();
    let work_dir = run.work_dir().to_path_buf();
    guard::ensure_private_dir(&images_dir).map_err(|e| dir_failure(e, "images.dir"))?;
    guard::ensure_private_dir(&work_dir).map_err(|e| dir_failure(e, "images.work_dir"))?;
    let images = open_dir(&images_dir)?;
    let work = open_dir(&work_dir)?;
    let step = CriuStep::Dump { pre_dump_rounds: 0 };
    let mut o = run.opts(&step, Some(pid), &images, &work);
    if let Some(ps) = o.ps.as_mut() {
        if ps.address.is_none() {
            ps.address = Some(
                mig.destination
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_string(),
            );
        }
        if let Some(port) = ps_port {
            ps.port = Some(port);
        }
    }
    let log = work_dir.join(step.log_file());
    run.progress(&format!(
        "dump of pid {pid}{}",
        ps_port
            .map(|p| format!(", pages to the page server on port {p}"))
            .unwrap_or_default()
    ));

    // Sent images: only what this dump writes, not an earlier run's files.
    let send = sends_images(p).then(|| send::snapshot(&images_dir));
    let started = run.record.elapsed();
    let t_dump = Instant::now();
    let mut swrk = run.swrk()?;
    // CRIU can hang when the tree dies under it: the watchdog ends it.
    let watch =
        crate::apply::watch::TargetWatch::start(pid, swrk.pid(), crate::apply::watch::GRACE);
    let disarm = watch.disarm_handle();
    // None: post-dump not reached; Some(Ok(pid)): restored there; Some(Err): vetoed.
    let mut handoff: Option<Result<(Option<i32>, Json), Failure>> = None;
    let mut notes: Vec<(String, f64)> = Vec::new();
    let base = started;
    let res = {
        let mut cb = |n: &crate::criu::Notify| {
            notes.push((n.script.clone(), base + t_dump.elapsed().as_secs_f64()));
            if n.script == "post-dump" {
                // From here CRIU may end the tree itself.
                disarm.store(false, Ordering::SeqCst);
                let r = hand_over(
                    c,
                    to,
                    t_dump,
                    send.as_ref().map(|b| (images_dir.as_path(), b)),
                );
                // `restored` is the commit point: from here a signal no longer
                // vetoes, or both copies would be lost or both would run.
                let reply = if r.is_ok() {
                    NotifyReply::ok()
                } else {
                    NotifyReply::fail()
                };
                handoff = Some(r);
                return reply;
            }
            if INTERRUPTED.load(Ordering::SeqCst) {
                NotifyReply::fail()
            } else {
                NotifyReply::ok()
            }
        };
        swrk.call(&CriuReq::with_opts(CriuReqType::Dump, o), &mut cb)
    };
    let watchdog_fired = watch.finish();
    let res = res.and_then(|r| expect_success("dump", CriuReqType::Dump, r));
    let _ = swrk.finish();
    let downtime_s = t_dump.elapsed().as_secs_f64();
    run.record
        .step("dump", started, res.is_ok(), Some(log.clone()), notes);

    let resumed = format!("; CRIU resumed process {pid} here");
    let (restored_pid, restore_stats) = match (res, handoff) {
        (Ok(_), Some(Ok(r))) => r,
        (Err(_), Some(Err(mut f))) => {
            f.message.push_str(&resumed);
            return Err(f);
        }
        (Err(e), None) => {
            let mut f = run.criu_failure("dump", e, Some(log));
            if watchdog_fired {
                f.code = "apply::target-exited";
                f.message = format!(
                    "dump failed: process {pid} exited while it was being dumped, and CRIU stopped answering; ckptctl ended CRIU after {} s",
                    crate::apply::watch::GRACE.as_secs()
                );
                f.hint = Some("nothing was migrated: find out why the process ended, start it again and rerun both roles".into());
            } else {
                f.message.push_str(&resumed);
            }
            f.target = Some(crate::apply::report::TargetState::of(pid));
            return Err(f);
        }
        (Err(e), Some(Ok((rp, _)))) => {
            // CRIU failed after it was told to go on (the destination had
            // restored): if it ended the tree here, the stopped copy there
            // is the only one, so it gets the commit; if the tree still
            // runs here, the error makes the destination kill its copy.
            let mut f = run.criu_failure("dump", e, Some(log));
            let here = crate::apply::report::TargetState::of(pid);
            f.target = Some(here);
            let rp = rp.map_or_else(|| "?".to_string(), |p| p.to_string());
            if here.running {
                f.message = format!(
                    "{}; process {pid} still runs here, so the copy restored at the destination (pid {rp}) is killed",
                    f.message
                );
            } else {
                let _ = c.send(&Msg::Summary {
                    stats: json!({}),
                    downtime_s,
                });
                c.shutdown();
                f.message = format!(
                    "{}; CRIU had already ended process {pid} here, so the copy at the destination (pid {rp}) was told to run",
                    f.message
                );
            }
            return Err(f);
        }
        (Ok(_), Some(Err(f))) => return Err(f),
        (Ok(_), None) => {
            return Err(Failure::new(
                "migrate::no-post-dump",
                "dump",
                "CRIU finished the dump without the post-dump callback, so the tree could not be handed over safely",
                Exit::CriuFailed,
            ));
        }
    };
    let stats = engine::stats_json(&work_dir.join("stats-dump"), &[]);
    let _ = c.send(&Msg::Summary {
        stats: stats.clone(),
        downtime_s,
    });
    c.shutdown();
    let mut downtime = Downtime {
        downtime_s: Some(downtime_s),
        ..Downtime::default()
    };
    dump_summary(&stats, &mut downtime);
    let mut all = stats;
    if let Some(r) = restore_stats.get("restore") {
        all["restore"] = r.clone();
        downtime.restore_s = r
            .get("restore_time_us")
            .and_then(Json::as_u64)
            .map(|us| us as f64 / 1e6);
    }
    Ok(MigrateOutcome {
        event: "migrated",
        role: "source",
        pid: Some(pid),
        restored_pid,
        downtime,
        stats: all,
        images_dir,
        record: None,
        total_s: 0.0,
    })
}

/// In CRIU's post-dump callback (images complete, tree frozen): tell the
/// destination and wait for `restored`.
/// With sent images, first send them (`image` messages).
fn hand_over(
    c: &mut Conn,
    to: Duration,
    t_dump: Instant,
    send: Option<(&Path, &send::Before)>,
) -> Result<(Option<i32>, Json), Failure> {
    let images = match send {
        Some((dir, before)) => Some(send::send_images(c, dir, before)?),
        None => None,
    };
    let dumped = Msg::Dumped {
        stats: json!({"dump_s": t_dump.elapsed().as_secs_f64()}),
        images,
    };
    c.send(&dumped)
        .map_err(|e| conn_failure("dumped", e.into(), Exit::CriuFailed, ""))?;
    match c
        .recv(to, "restored")
        .map_err(|e| conn_failure("wait for the restore", e, Exit::CriuFailed, ""))?
    {
        Msg::Restored { pid, stats } => Ok((pid, stats)),
        Msg::Error { message, exit } => Err(peer_error("restore", &message, exit, "")),
        other => Err(protocol("restored", &other)),
    }
}

// ---------------------------------------------------------------------------
// output

/// Print the report: human text on stderr, one JSON line on stdout.
pub fn print_outcome(out: &MigrateOutcome, ui: &Ui) {
    let d = &out.downtime;
    if !ui.json() {
        let ms = |x: Option<f64>| x.map_or_else(|| "-".to_string(), |v| format!("{v:.1} ms"));
        let mut text = match out.role {
            "destination" => format!(
                "migrated: restored pid {}",
                out.restored_pid
                    .map_or_else(|| "?".into(), |p| p.to_string())
            ),
            _ => format!(
                "migrated: pid {} left this host (restored as pid {} on the destination)",
                out.pid.map_or_else(|| "?".into(), |p| p.to_string()),
                out.restored_pid
                    .map_or_else(|| "?".into(), |p| p.to_string())
            ),
        };
        text.push_str(&format!(
            "\n  frozen time:   {}\n  downtime:      {} (dump start to restore end)\n  restore:       {}\n  pages moved:   {}\n  total:         {:.2} s",
            ms(d.frozen_ms),
            ms(d.downtime_s.map(|s| s * 1000.0)),
            ms(d.restore_s.map(|s| s * 1000.0)),
            d.pages_moved.map_or_else(|| "-".into(), |p| format!("{p} ({:.1} MiB)", (p * 4096) as f64 / f64::from(1u32 << 20))),
            out.total_s
        ));
        if let Some(l) = d.lazy_after_resume_s {
            text.push_str(&format!(
                "\n  post-copy:     pages loaded lazily for {} after the tree resumed",
                ms(Some(l * 1000.0))
            ));
        }
        if let Some(r) = &out.record {
            text.push_str(&format!("\n  run record:    {}", r.display()));
        }
        ui.note(text);
    }
    let mut s = serde_json::to_string(out).unwrap_or_default();
    s.push('\n');
    ui.data(s);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hello whose digest is the sha256-shaped repetition of `digest`.
    fn h(digest: &str, n: u32, role: &str) -> Msg {
        Msg::Hello {
            profile_digest: digest.repeat(64 / digest.len().max(1)),
            criu_version: format!("{n}"),
            criu_version_number: n,
            role: role.into(),
            ckptctl: "0".into(),
            cpuinfo: None,
        }
    }

    #[test]
    fn hello_checks() {
        assert!(
            check_hello(
                &h("a", 40101, "source"),
                &h("a", 40101, "destination"),
                Role::Source
            )
            .is_ok()
        );
        assert!(
            check_hello(
                &h("a", 40100, "source"),
                &h("a", 40200, "destination"),
                Role::Source
            )
            .is_ok()
        );
        let f = check_hello(
            &h("a", 40101, "source"),
            &h("b", 40101, "destination"),
            Role::Source,
        )
        .unwrap_err();
        assert_eq!((f.code, f.exit), ("migrate::profile-mismatch", Exit::Usage));
        let f = check_hello(
            &h("a", 40101, "destination"),
            &h("a", 40200, "source"),
            Role::Destination,
        )
        .unwrap_err();
        assert_eq!((f.code, f.exit), ("migrate::criu-version", Exit::NotReady));
        let f = check_hello(
            &h("a", 40101, "source"),
            &h("a", 40101, "source"),
            Role::Source,
        )
        .unwrap_err();
        assert_eq!(f.code, "migrate::role-mismatch");
        // A digest that is not a sha256 (here with multi-byte characters)
        // is refused, never sliced.
        let bad = Msg::Hello {
            profile_digest: "a€€€€€€€€€€€€€€€€€€€€€€€".into(),
            criu_version: "4.1.1".into(),
            criu_version_number: 40101,
            role: "destination".into(),
            ckptctl: "0".into(),
            cpuinfo: None,
        };
        let f = check_hello(&h("a", 40101, "source"), &bad, Role::Source).unwrap_err();
        assert_eq!(f.code, "migrate::protocol");
    }

    #[test]
    fn record_names_differ_per_role() {
        assert_ne!(record_name(Role::Source), record_name(Role::Destination));
    }
}
