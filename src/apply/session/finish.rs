//! The end of a run, the same for every action and role: close the status
//! fd, fill in and write the run record (never into a directory that was
//! refused or that another run holds), release the lock.

use std::path::PathBuf;

use super::Session;
use crate::apply::guard;
use crate::apply::record::RunRecord;
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
                let path = write_to.and_then(|d| self.record.write_as(&d, record_file).ok());
                out.recorded(path, self.record.total_s);
                // Released only now: a concurrent run must not see the
                // directory before its run record is written.
                self.lock = None;
                Ok(out)
            }
            Err(f) => {
                self.record.fail(&f);
                // Never into a directory that was refused (not ours, open to
                // others, a planted symlink) or that another run holds.
                let ours = self.lock.is_some()
                    || (f.code != Code::ApplyBusy
                        && write_to
                            .as_deref()
                            .is_some_and(|d| guard::check_dir(d).is_ok()));
                if let (Some(d), true) = (write_to, ours) {
                    let _ = self.record.write_as(&d, record_file);
                }
                Err((f, Some(self.record)))
            }
        }
    }
}
