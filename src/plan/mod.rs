//! Plan: the ordered steps `apply` runs for a profile (`ckptctl plan`, also
//! `apply --dry-run`): each CRIU step with its exact options (from render),
//! the waits for readiness, and the files it reads and writes. Pure: nothing
//! here touches the system.

use serde::Serialize;

use crate::profile::Profile;
use crate::profile::model::Action;
use crate::render::{self, CriuStep, Role};

/// One step of a plan.
#[derive(Debug, Clone, Serialize)]
pub struct PlanStep {
    /// Short name.
    pub name: String,
    /// What it does, in one sentence.
    pub what: String,
    /// The CRIU request (`DUMP`, ...) or command, when CRIU runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub criu: Option<String>,
    /// The equivalent `criu` command line.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub argv: Vec<String>,
    /// What it waits for before the next step.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waits_for: Option<String>,
    /// Files and directories it writes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub writes: Vec<String>,
}

/// The ordered steps.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// Profile name.
    pub profile: String,
    /// Action.
    pub action: String,
    /// Migration role, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Steps in order.
    pub steps: Vec<PlanStep>,
}

fn step(name: &str, what: impl Into<String>) -> PlanStep {
    PlanStep {
        name: name.into(),
        what: what.into(),
        criu: None,
        argv: Vec::new(),
        waits_for: None,
        writes: Vec::new(),
    }
}

/// Build the plan for a profile; `pid` is `--pid` if given.
pub fn plan(p: &Profile, role: Option<Role>, pid: Option<i32>) -> Plan {
    if crate::runtime::args::is_container(p) {
        return crate::runtime::plan::plan(p, role);
    }
    let dir = render::images_dir(p);
    let work = render::work_dir(p);
    let action = p.action_or_default();
    let mut steps = Vec::new();
    let dumps = action == Action::Checkpoint
        || (action == Action::Migrate && role != Some(Role::Destination));
    let target = match (pid, p.target.as_ref()) {
        (Some(pid), _) => format!("pid {pid} (--pid)"),
        (None, Some(t)) if t.value.pid.is_some() => format!(
            "pid {} (target.pid)",
            t.value.pid.as_ref().map_or(0, |x| x.value.0)
        ),
        (None, Some(t)) if t.value.pidfile.is_some() => {
            format!(
                "the pid in {} (target.pidfile)",
                t.value
                    .pidfile
                    .as_ref()
                    .map(|x| x.value.resolved.display().to_string())
                    .unwrap_or_default()
            )
        }
        _ => "the pid given with --pid".into(),
    };
    let migrate = action == Action::Migrate;
    if migrate && render::lazy_remote(p) {
        steps.push(step(
            "risk",
            "post-copy from the source's memory: once the destination resumes the tree, the pages not yet taken exist only in the source's memory; if either host dies or the link is cut before the last page arrives, the process is lost (the source's copy is not resumed: it would be a second, stale one)",
        ));
    }
    if migrate {
        if let Some(why) = migrate_refusal(p) {
            steps.push(step(
                "refused",
                format!(
                    "this version of `apply --role` stops here, before touching anything: {why}"
                ),
            ));
        }
    }
    let dirs = if dir == work {
        dir.clone()
    } else {
        format!("{dir} and {work}")
    };
    let destination = migrate && role == Some(Role::Destination);
    let mut prep = step(
        "prepare",
        if destination {
            format!(
                "create {dirs} (0700, refused if world-writable; an existing checkpoint only with --force), lock {dir}/.ckptctl.lock, mark {dir} incomplete"
            )
        } else if dumps {
            format!(
                "create {dirs} (0700, refused if world-writable), lock {dir}/.ckptctl.lock, mark {dir} incomplete"
            )
        } else {
            format!(
                "check that {dir} holds a complete checkpoint, create {work} (0700), lock {dir}/.ckptctl.lock"
            )
        },
    );
    prep.writes = vec![dir.clone(), format!("{dir}/.ckptctl.lock")];
    if dumps {
        prep.writes.push(format!("{dir}/ckptctl.incomplete"));
    }
    if destination {
        prep.writes.push(format!("{dir}/ckptctl.incomplete"));
    }
    steps.push(prep);
    let lazy = p.lazy_pages.as_ref().is_some_and(|l| l.value.enabled());
    let (dest, port, timeout) = match &p.migration {
        Some(m) => (
            m.value
                .destination
                .as_ref()
                .map(|d| d.value.0.clone())
                .unwrap_or_default(),
            m.value.control_port.as_ref().map_or(0, |c| c.value.0),
            m.value.step_timeout().text(),
        ),
        None => (String::new(), 0, String::new()),
    };
    if migrate {
        let tls = p
            .page_server
            .as_ref()
            .and_then(|ps| ps.value.tls.as_ref())
            .map(|t| t.value.no_cn_verify());
        let mut s = if destination {
            step(
                "listen",
                format!(
                    "listen for the source on control port {port} (TCP, newline-delimited JSON){}",
                    if tls.is_some() {
                        "; mutual TLS with the `page_server.tls` files: a client certificate chained to ca_cert (and not revoked by ca_crl) is required, a failed handshake is ignored like any stray connection"
                    } else {
                        ""
                    }
                ),
            )
        } else {
            step(
                "connect",
                format!(
                    "connect to the destination {dest}:{port}, retrying until step_timeout ({timeout}){}",
                    match tls {
                        Some(false) => format!(
                            "; mutual TLS with the `page_server.tls` files: the destination's certificate must chain to ca_cert and name {dest}"
                        ),
                        Some(true) => "; mutual TLS with the `page_server.tls` files: the destination's certificate must chain to ca_cert (its name is not checked: no_cn_verify)".to_string(),
                        None => String::new(),
                    }
                ),
            )
        };
        s.waits_for = Some(format!(
            "hello from the other side within {timeout}: same profile digest (sha256), destination CRIU >= source CRIU, roles differ, and the source's CPU passes the destination's CRIU cpuinfo check (CPUINFO_DUMP there, CPUINFO_CHECK here)"
        ));
        steps.push(s);
    }
    if dumps && p.checkpoint().pre_dump.is_some() {
        let mut s = step(
            "feature check",
            "FEATURE_CHECK mem_track: pre-dump rounds need soft-dirty memory tracking",
        );
        s.criu = Some("FEATURE_CHECK".into());
        steps.push(s);
    }
    if !dumps && lazy {
        let mut s = step(
            "feature check",
            "FEATURE_CHECK lazy_pages: lazy restore needs non-cooperative userfaultfd",
        );
        s.criu = Some("FEATURE_CHECK".into());
        steps.push(s);
    }
    for cs in render::steps(p, role) {
        let argv = render::criu_args_with_pid(p, &cs, pid);
        let mut s = step(&cs.to_string(), describe(&cs, &target));
        s.criu = Some(
            cs.rpc_type()
                .map_or_else(|| format!("criu {}", cs.command()), str::to_string),
        );
        s.argv = argv;
        s.writes.push(format!("{work}/{}", cs.log_file()));
        match &cs {
            CriuStep::PreDump { round } => {
                s.writes.push(format!("{dir}/pre-{round}/"));
                s.waits_for = Some(format!(
                    "the round's stats-dump: stop early when it wrote <= min_pages or grew more than max_growth (at most {} rounds)",
                    render::pre_dump_rounds(p)
                ));
            }
            CriuStep::Dump { .. } => {
                s.writes.push(format!("{dir}/ (images)"));
                s.writes.push(format!("{work}/stats-dump"));
                if migrate {
                    s.what = format!(
                        "after the destination's `ready`: {}; pages go to its page server",
                        s.what
                    );
                    if sends_images(p) {
                        s.what.push_str(&format!(
                            "; in the post-dump callback, send the non-page images over the control connection (each {dir}/*.img file this dump wrote, in `image` messages of at most 1 MiB, with its sha256), then `dumped`"
                        ));
                    }
                    s.waits_for = Some(format!(
                        "CRIU's post-dump callback is answered only after the destination reports `restored` (then CRIU ends the tree here); an error, a closed connection or step_timeout ({timeout}) answers it with failure and CRIU resumes the tree"
                    ));
                }
                if lazy
                    && p.lazy_pages
                        .as_ref()
                        .is_some_and(|l| l.value.address.is_some())
                {
                    s.waits_for = Some("NOTIFY status-ready (pages served), then the destination's `pages_taken` (its daemon took every page: CRIU takes a disconnect for the end, so without that word the process is reported lost)".into());
                }
            }
            CriuStep::LazyPagesDaemon => {
                s.waits_for = Some(format!(
                    "one \\0 byte on the daemon's status pipe ({work}/lazy-pages.socket is listening); then --status-fd gets \\0"
                ));
            }
            CriuStep::PageServer { .. } => {
                if migrate && sends_images(p) {
                    s.what.push_str(&format!(
                        "; the source sends the non-page images over the control connection (names checked, sha256 verified, written 0600 into {dir})"
                    ));
                    s.writes
                        .push(format!("{dir}/ (non-page images from the source)"));
                }
                s.waits_for = Some(format!(
                    "the PAGE_SERVER answer (listening); then --status-fd gets \\0, stdout a {{\"event\":\"ready\"}} line and the source `ready`; then the source's `dumped` and the page server's exit (WAIT_PID), each within {timeout}"
                ));
            }
            CriuStep::Restore => {
                let remote = render::lazy_remote(p);
                if destination && remote {
                    // The lazy pages never reach the images here.
                    s.what = format!(
                        "{}; report `restored` with the new pid to the source; {dir} stays marked incomplete (the pages not restored eagerly stay in the source's memory)",
                        s.what
                    );
                } else if destination {
                    s.what = format!(
                        "mark {dir} complete, then {}; report `restored` with the new pid to the source",
                        s.what
                    );
                    s.writes.push(format!("{dir}/ckptctl.complete"));
                }
                s.writes.push(format!("{work}/stats-restore"));
                if let Some(pf) = p.restore().pidfile {
                    s.writes.push(pf.value.resolved.display().to_string());
                }
                if lazy && destination && remote {
                    s.waits_for = Some(
                        "the source's summary (its commit): the tree resumes here while the lazy-pages daemon goes on delivering pages, until it exits after the last one; then `pages_taken` to the source".into(),
                    );
                } else if lazy && destination {
                    s.waits_for = Some(
                        "the source's summary (its commit): the tree resumes here while the lazy-pages daemon goes on delivering pages, until it exits after the last one".into(),
                    );
                } else if lazy {
                    s.waits_for =
                        Some("the lazy-pages daemon to exit after the last page arrived".into());
                }
            }
        }
        steps.push(s);
    }
    if dumps && !migrate {
        let mut s = step(
            "mark complete",
            format!(
                "only after CRIU reported success: replace {dir}/ckptctl.incomplete with ckptctl.complete; on failure move inventory.img aside"
            ),
        );
        s.writes.push(format!("{dir}/ckptctl.complete"));
        steps.push(s);
    }
    let mut rec = step(
        "run record",
        "write the resolved profile, CRIU version, host, timings, stats and outcome",
    );
    rec.writes.push(match (migrate, role) {
        (true, Some(Role::Destination)) => {
            format!("{work}/ckptctl-run-destination.json (and the downtime report)")
        }
        (true, _) => format!("{work}/ckptctl-run-source.json (and the downtime report)"),
        _ => format!("{work}/ckptctl-run.json"),
    });
    steps.push(rec);
    Plan {
        profile: p
            .name
            .as_ref()
            .map(|n| n.value.0.clone())
            .unwrap_or_default(),
        action: action.to_string(),
        role: role.map(|r| {
            if r == Role::Source {
                "source".into()
            } else {
                "destination".into()
            }
        }),
        steps,
    }
}

/// What `apply --role` refuses to run (it stops before any step), with the
/// code it reports. The plan still shows the steps the profile asks for.
fn migrate_refusal(p: &Profile) -> Option<String> {
    if sends_images(p) && p.page_server.is_none() {
        return Some(
            "`migration.images = \"send\"` needs `[page_server]` for the pages (migrate::send-needs-page-server)".into(),
        );
    }
    None
}

/// `migration.images = "send"`.
fn sends_images(p: &Profile) -> bool {
    use crate::profile::model::ImagesMode;
    p.migration
        .as_ref()
        .is_some_and(|m| m.value.images() == ImagesMode::Send)
}

fn describe(cs: &CriuStep, target: &str) -> String {
    match cs {
        CriuStep::PreDump { round } => {
            format!("pre-dump round {round} of {target}: copy memory while it keeps running")
        }
        CriuStep::Dump { pre_dump_rounds: 0 } => format!("dump {target}"),
        CriuStep::Dump { pre_dump_rounds: n } => {
            format!("final dump of {target} on top of pre-{n}")
        }
        CriuStep::PageServer { round: Some(n) } => {
            format!("page server receiving pre-dump round {n}")
        }
        CriuStep::PageServer { round: None } => "page server receiving the final dump".into(),
        CriuStep::LazyPagesDaemon => {
            "start the lazy-pages daemon that serves pages to the restored tree".into()
        }
        CriuStep::Restore => "restore the tree (detached)".into(),
    }
}

impl Plan {
    /// Put a `refused` step first: `apply` stops there, before touching
    /// anything (a feature this host lacks, found by a probe).
    pub fn refuse(&mut self, why: &str) {
        self.steps.insert(
            0,
            step(
                "refused",
                format!("`apply` stops here, before touching anything: {why}"),
            ),
        );
    }

    /// Human text.
    pub fn text(&self) -> String {
        let mut out = format!("plan for `{}` ({}", self.profile, self.action);
        if let Some(r) = &self.role {
            out.push_str(&format!(", role {r}"));
        }
        out.push_str(")\n");
        for (i, s) in self.steps.iter().enumerate() {
            out.push_str(&format!("\n{}. {}: {}\n", i + 1, s.name, s.what));
            if let Some(c) = &s.criu {
                out.push_str(&format!("   criu:   {c}\n"));
            }
            if !s.argv.is_empty() {
                // Quoted as `render --format criu-args` quotes it: a line
                // pasted into a shell runs CRIU, never the profile's text.
                let argv: Vec<String> = s
                    .argv
                    .iter()
                    .map(|a| crate::render::shell_quote(a))
                    .collect();
                out.push_str(&format!("   as CLI: {}\n", argv.join(" ")));
            }
            if let Some(w) = &s.waits_for {
                out.push_str(&format!("   waits:  {w}\n"));
            }
            for w in &s.writes {
                out.push_str(&format!("   writes: {w}\n"));
            }
        }
        out
    }
}
