//! CPU compatibility between the two roles, with CRIU's own check: the
//! source writes its `cpuinfo.img` (CPUINFO_DUMP) and sends it in its
//! hello; the destination asks its CRIU whether this CPU can run a tree
//! dumped there (CPUINFO_CHECK). Both run before anything is frozen.

use std::path::{Path, PathBuf};

use crate::apply::bootstrap::open_dir;
use crate::apply::guard;
use crate::apply::session::Session;
use crate::criu::NotifyReply;
use crate::criu::rpc::{CriuOpts, CriuReq, CriuReqType};
use crate::criu::swrk::expect_success;
use crate::failure::Exit;
use crate::failure::{Code, Failure};

/// Largest cpuinfo image accepted from the peer.
pub const MAX_CPUINFO: usize = 1 << 20;

fn scratch(run: &Session<'_>, name: &str) -> Result<PathBuf, Failure> {
    let dir = run.work_dir().join(name);
    guard::ensure_private_dir(&dir)
        .map_err(|e| crate::apply::bootstrap::dir_failure(e, "images.work_dir"))?;
    let _ = std::fs::remove_file(dir.join("cpuinfo.img"));
    Ok(dir)
}

fn request(
    run: &mut Session<'_>,
    kind: CriuReqType,
    dir: &Path,
    log: &str,
) -> Result<crate::criu::rpc::CriuResp, Failure> {
    let dfd = open_dir(dir)?;
    let opts = CriuOpts {
        images_dir_fd: std::os::fd::AsRawFd::as_raw_fd(&dfd),
        work_dir_fd: Some(std::os::fd::AsRawFd::as_raw_fd(&dfd)),
        log_file: Some(log.to_string()),
        log_level: Some(4),
        ..CriuOpts::default()
    };
    let mut s = run.swrk()?;
    let step = if kind == CriuReqType::CpuinfoDump {
        "cpuinfo dump"
    } else {
        "cpuinfo check"
    };
    let resp = s.call(&CriuReq::with_opts(kind, opts), &mut |_| NotifyReply::ok());
    let _ = s.finish();
    resp.map_err(|e| run.criu_failure(step, e, Some(dir.join(log))))
}

/// Source: this host's `cpuinfo.img`, for the hello.
pub fn dump(run: &mut Session<'_>) -> Result<Vec<u8>, Failure> {
    let dir = scratch(run, ".cpuinfo-source")?;
    let resp = request(run, CriuReqType::CpuinfoDump, &dir, "cpuinfo-dump.log")?;
    expect_success("cpuinfo dump", CriuReqType::CpuinfoDump, resp)
        .map_err(|e| run.criu_failure("cpuinfo dump", e, Some(dir.join("cpuinfo-dump.log"))))?;
    std::fs::read(dir.join("cpuinfo.img")).map_err(|e| {
        Failure::new(
            Code::MigrateCpuCheck,
            "cpuinfo dump",
            format!("CRIU wrote no readable cpuinfo.img: {e}"),
            Exit::CriuFailed,
        )
    })
}

/// Destination: can this CPU run what the source's CPU dumped?
pub fn check(run: &mut Session<'_>, image: &[u8]) -> Result<(), Failure> {
    if image.is_empty() || image.len() > MAX_CPUINFO {
        return Err(Failure::new(
            Code::MigrateCpuCheck,
            "cpuinfo check",
            format!("the source sent a cpuinfo image of {} bytes", image.len()),
            Exit::CriuFailed,
        ));
    }
    let dir = scratch(run, ".cpuinfo-check")?;
    std::fs::write(dir.join("cpuinfo.img"), image).map_err(|e| {
        Failure::new(
            Code::MigrateCpuCheck,
            "cpuinfo check",
            format!("cannot write the source's cpuinfo image: {e}"),
            Exit::CriuFailed,
        )
    })?;
    let resp = request(run, CriuReqType::CpuinfoCheck, &dir, "cpuinfo-check.log")?;
    if resp.success && resp.r#type == CriuReqType::CpuinfoCheck as i32 {
        return Ok(());
    }
    // CRIU answers a mismatch with ENOTSUP; anything else is a failed check.
    if resp.cr_errno != Some(libc::ENOTSUP) {
        let e = expect_success("cpuinfo check", CriuReqType::CpuinfoCheck, resp)
            .err()
            .unwrap_or(crate::criu::CriuError::Protocol {
                detail: "unexpected CPUINFO_CHECK answer".into(),
            });
        return Err(run.criu_failure("cpuinfo check", e, Some(dir.join("cpuinfo-check.log"))));
    }
    let mut f = Failure::new(
        Code::MigrateCpuMismatch,
        "cpuinfo check",
        "this CPU lacks features the source's CPU has: a tree dumped there may crash here",
        Exit::NotReady,
    );
    f.cr_errno = resp.cr_errno;
    f.cr_errmsg = resp
        .cr_errmsg
        .map(|m| crate::criu::errors::clean_errmsg(&m));
    f.log = Some(dir.join("cpuinfo-check.log"));
    f.log_lines = crate::failure::log_excerpt(&dir.join("cpuinfo-check.log"));
    Err(f)
}
