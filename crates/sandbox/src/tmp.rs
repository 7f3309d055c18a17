//! A confined process's own `/tmp` on disk: a fresh directory under the policy's root, removed
//! once the process is gone, so what the process writes there can be measured from outside.

use std::path::{Path, PathBuf};

use crate::{Result, SandboxError};

pub(crate) struct ProcessTmp(Option<tempfile::TempDir>);

impl ProcessTmp {
    pub(crate) fn create(root: &Path) -> Result<ProcessTmp> {
        let failed = |source| SandboxError::Tmp {
            root: root.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(root).map_err(failed)?;
        let dir = tempfile::Builder::new()
            .prefix("tmp-")
            .tempdir_in(root)
            .map_err(failed)?;
        Ok(ProcessTmp(Some(dir)))
    }

    pub(crate) fn path(&self) -> &Path {
        self.0
            .as_ref()
            .map_or(Path::new("/nonexistent"), |d| d.path())
    }

    /// Removes the directory, off the async threads when there are some: it may hold gigabytes.
    pub(crate) fn remove(&mut self) {
        let Some(dir) = self.0.take() else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn_blocking(move || drop(dir));
            }
            Err(_) => drop(dir),
        }
    }
}

impl Drop for ProcessTmp {
    fn drop(&mut self) {
        self.remove();
    }
}

impl std::fmt::Debug for ProcessTmp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ProcessTmp")
            .field(&self.0.as_ref().map(|d| PathBuf::from(d.path())))
            .finish()
    }
}
