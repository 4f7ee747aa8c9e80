//! What a migration half reports: the downtime, the outcome, the run
//! record per role.

use std::path::PathBuf;

use serde::Serialize;
use serde_json::{Value as Json, json};

use crate::apply::session::finish::Finished;
use crate::criu::stats::StatsSummary;
use crate::render::Role;

/// The downtime report of a migration.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Downtime {
    /// Time the tree was frozen on the source (CRIU `stats-dump`), ms.
    pub frozen_ms: Option<f64>,
    /// Dump start → `restored` received, measured on the source, s.
    pub downtime_s: Option<f64>,
    /// Duration of the restore, s: CRIU's own `restore_time` from
    /// `stats-restore`, the same figure on both sides (the destination's
    /// wall clock only when CRIU wrote no stats).
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
    pub role: Role,
    /// Source: the pid that left; destination: the restored root pid.
    pub pid: Option<i32>,
    /// Destination: the restored root pid (both sides know it).
    pub restored_pid: Option<i32>,
    /// The downtime report.
    pub downtime: Downtime,
    /// CRIU statistics (dump on the source; both on the destination).
    pub stats: crate::apply::RunStats,
    /// Images directory.
    pub images_dir: PathBuf,
    /// The run record.
    pub record: Option<PathBuf>,
    /// Wall time of this half, s.
    pub total_s: f64,
}

impl MigrateOutcome {
    /// A half that migrated: `pid` (source: the pid that left;
    /// destination: the restored one), the restored pid, the downtime, its
    /// CRIU statistics and the images directory. The run record and the
    /// wall time are filled in when the run ends.
    pub fn migrated(
        role: Role,
        pid: Option<i32>,
        restored_pid: Option<i32>,
        downtime: Downtime,
        stats: crate::apply::RunStats,
        images_dir: PathBuf,
    ) -> Self {
        MigrateOutcome {
            event: "migrated",
            role,
            pid,
            restored_pid,
            downtime,
            stats,
            images_dir,
            record: None,
            total_s: 0.0,
        }
    }
}

/// File name of a role's run record: both halves may share one work dir.
pub fn record_name(r: Role) -> String {
    crate::apply::record::latest_name(Some(r))
}

impl Finished for MigrateOutcome {
    fn pid(&self) -> Option<i32> {
        self.pid
    }

    fn record_stats(&self) -> Json {
        json!({"criu": self.stats, "downtime": self.downtime})
    }

    fn recorded(&mut self, record: Option<PathBuf>, total_s: f64) {
        self.record = record;
        self.total_s = total_s;
    }
}

pub(crate) fn dump_summary(stats: &StatsSummary, d: &mut Downtime) {
    if let Some(dump) = &stats.dump {
        d.frozen_ms = Some(f64::from(dump.frozen_time_us) / 1000.0);
        d.pages_moved = Some(dump.pages_written);
        d.bytes_moved = d.pages_moved.map(|p| p * 4096);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_names_differ_per_role() {
        assert_ne!(record_name(Role::Source), record_name(Role::Destination));
    }
}

/// The restore time both sides report: CRIU's `restore_time` from the
/// destination's `stats-restore` (sent to the source in `restored`), else
/// `fallback` (the destination's wall clock; the source has none).
pub fn restore_seconds(
    restore_stats: &crate::criu::stats::StatsSummary,
    fallback: Option<f64>,
) -> Option<f64> {
    restore_stats
        .restore
        .as_ref()
        .map(|r| f64::from(r.restore_time_us) / 1e6)
        .or(fallback)
}

#[cfg(test)]
mod restore_time_tests {
    use super::restore_seconds;
    use crate::criu::stats::{RestoreSummary, StatsSummary};

    #[test]
    fn both_sides_read_the_same_figure() {
        let stats = StatsSummary {
            restore: Some(RestoreSummary {
                restore_time_us: 12_500,
                ..RestoreSummary::default()
            }),
            ..StatsSummary::default()
        };
        // Destination (wall clock 0.3 s) and source (none): CRIU's figure.
        assert_eq!(restore_seconds(&stats, Some(0.3)), Some(0.0125));
        assert_eq!(restore_seconds(&stats, None), Some(0.0125));
        assert_eq!(
            restore_seconds(&StatsSummary::default(), Some(0.3)),
            Some(0.3)
        );
    }
}
