//! The end of a run, the same for every action and role: close the status
//! fd, fill in and write the run record (never into a directory that was
//! refused or that another run holds), release the lock.

use std::path::PathBuf;

use super::Session;
use crate::apply::guard;
use crate::apply::record::{self, RunRecord};
use crate::failure::{Code, Failure};

/// What a successful run hands to its record.
pub trait Finished {
    /// The dumped or restored root pid.
    fn pid(&self) -> Option<i32>;
    /// The statistics the record keeps.
    fn record_stats(&self) -> serde_json::Value;
    /// Where the record went (if it could be written) and the wall time.
    fn recorded(&mut self, record: Option<PathBuf>, total_s: f64);
}

impl Session<'_> {
    /// End the run with `result`: the record is written as `record_file`
    /// in the work directory.
    pub fn finish<T: Finished>(
        mut self,
        result: Result<T, Failure>,
        record_file: &str,
    ) -> Result<T, (Failure, Option<RunRecord>)> {
        if let Some(s) = self.status.as_mut() {
            s.close();
        }
        let write_to = if self.work_dir.is_dir() {
            Some(self.work_dir.clone())
        } else {
            None
        };
        match result {
            Ok(mut out) => {
                self.record.succeed(out.pid(), out.record_stats());
                let path = write_to.and_then(|d| {
                    self.record
                        .save(&d, record_file, record::Latest::Replace)
                        .ok()
                });
                out.recorded(path, self.record.total_s);
                // Released only now: a concurrent run must not see the
                // directory before its run record is written.
                self.lock = None;
                Ok(out)
            }
            Err(f) => {
                self.record.fail(&f);
                // Never into a directory that was refused (not ours, open to
                // others, a planted symlink). One that another run holds
                // gets this attempt's own history file, never its latest
                // record (`latest_after_failure` leaves that to the holder).
                let ours = self.lock.is_some()
                    || write_to
                        .as_deref()
                        .is_some_and(|d| guard::check_dir(d).is_ok());
                if let (Some(d), true) = (write_to, ours) {
                    let latest = latest_after_failure(&f, &self.images_dir);
                    let _ = self.record.save(&d, record_file, latest);
                }
                Err((f, Some(self.record)))
            }
        }
    }
}

/// What a failed run may do to the latest run record: leave it when
/// another run holds the directory, keep a good one while the images it
/// made are complete.
pub fn latest_after_failure(f: &Failure, images_dir: &std::path::Path) -> record::Latest {
    if f.code == Code::ApplyBusy {
        record::Latest::Leave
    } else if guard::images_state(images_dir) == guard::ImagesState::Complete {
        record::Latest::KeepGood
    } else {
        record::Latest::Replace
    }
}
