//! Claiming `images.dir` for a dump that writes it: the same for a
//! checkpoint, a migration's destination and a source with its own images.

use super::Session;
use crate::apply::bootstrap::{dir_failure, work_dir_key};
use crate::apply::guard::{self, DirLock, ImagesState};
use crate::failure::{Code, Exit, Failure};

impl Session<'_> {
    /// Both directories private, the images-directory lock held for the
    /// rest of the run, an existing checkpoint refused unless `force`.
    /// Nothing in the directory changes yet.
    pub fn claim_images_dir(&mut self, force: bool) -> Result<(), Failure> {
        let work_key = work_dir_key(self.profile);
        guard::ensure_private_dir(&self.images_dir).map_err(|e| dir_failure(e, "images.dir"))?;
        guard::ensure_private_dir(&self.work_dir).map_err(|e| dir_failure(e, work_key))?;
        let lock = DirLock::acquire(&self.images_dir).map_err(|e| dir_failure(e, "images.dir"))?;
        self.hold_lock(lock);
        if matches!(
            guard::images_state(&self.images_dir),
            ImagesState::Complete | ImagesState::Foreign
        ) && !force
        {
            return Err(Failure::new(
                Code::ApplyImagesExist,
                "prepare",
                format!("{} already holds a checkpoint", self.images_dir.display()),
                Exit::Usage,
            )
            .key("images.dir")
            .hint("pass `--force` to replace it, or choose another `images.dir`"));
        }
        Ok(())
    }

    /// Once every check passed: the directory is being written (an old
    /// completion marker is dropped).
    pub fn mark_images_incomplete(&self) -> Result<(), Failure> {
        guard::mark_incomplete(&self.images_dir).map_err(|e| {
            Failure::new(
                Code::ApplyDir,
                "prepare",
                format!("cannot write to {}: {e}", self.images_dir.display()),
                Exit::Usage,
            )
            .key("images.dir")
        })
    }
}
