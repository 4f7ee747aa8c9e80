//! What a migration half reports: the downtime, the outcome, the run
//! record per role, and its printing.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value as Json;

use crate::apply::record::RunRecord;
use crate::cli::output::Ui;
use crate::render::Role;

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

pub(crate) fn role_name(r: Role) -> &'static str {
    match r {
        Role::Source => "source",
        Role::Destination => "destination",
    }
}

/// File name of a role's run record: both halves may share one work dir.
pub fn record_name(r: Role) -> String {
    format!("ckptctl-run-{}.json", role_name(r))
}

pub(crate) fn write_record(r: &mut RunRecord, dir: &Path, role: Role) -> std::io::Result<PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    r.total_s = (r.elapsed() * 1e6).round() / 1e6;
    let path = dir.join(record_name(role));
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&path)?;
    f.write_all(
        serde_json::to_string_pretty(r)
            .unwrap_or_default()
            .as_bytes(),
    )?;
    f.write_all(b"\n")?;
    Ok(path)
}

pub(crate) fn dump_summary(stats: &Json, d: &mut Downtime) {
    if let Some(dump) = stats.get("dump") {
        d.frozen_ms = dump
            .get("frozen_time_us")
            .and_then(Json::as_u64)
            .map(|us| us as f64 / 1000.0);
        d.pages_moved = dump.get("pages_written").and_then(Json::as_u64);
        d.bytes_moved = d.pages_moved.map(|p| p * 4096);
    }
}

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

    #[test]
    fn record_names_differ_per_role() {
        assert_ne!(record_name(Role::Source), record_name(Role::Destination));
    }
}
