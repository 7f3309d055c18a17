//! Reading a checked-out repository's files for detection: only files inside it (a symbolic
//! link that leaves the repository reads as missing), and none larger than detection needs.

use std::path::{Path, PathBuf};

use crate::{ChecksError, Result};

/// Build and CI files are small; anything bigger is not one of them.
const MAX_FILE_BYTES: u64 = 1 << 20;

pub(crate) struct Repo {
    root: PathBuf,
}

impl Repo {
    pub fn new(root: &Path) -> Repo {
        Repo {
            root: root.canonicalize().unwrap_or_else(|_| root.to_path_buf()),
        }
    }

    /// The path of `rel` when it exists inside the repository.
    fn inside(&self, rel: &str) -> Option<PathBuf> {
        let path = self.root.join(rel).canonicalize().ok()?;
        path.starts_with(&self.root).then_some(path)
    }

    pub fn exists(&self, rel: &str) -> bool {
        self.inside(rel).is_some()
    }

    pub fn is_file(&self, rel: &str) -> bool {
        self.inside(rel).is_some_and(|p| p.is_file())
    }

    /// The file's text; `None` when it is missing, outside the repository or too big.
    pub fn read(&self, rel: &str) -> Result<Option<String>> {
        let Some(path) = self.inside(rel).filter(|p| p.is_file()) else {
            return Ok(None);
        };
        let fail = |source| ChecksError::Read {
            path: rel.to_string(),
            source,
        };
        if std::fs::metadata(&path).map_err(fail)?.len() > MAX_FILE_BYTES {
            return Ok(None);
        }
        let bytes = std::fs::read(&path).map_err(fail)?;
        Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
    }

    /// The names of the entries of directory `rel`, sorted; empty when it is missing.
    pub fn list(&self, rel: &str) -> Vec<String> {
        let Some(dir) = self.inside(rel).filter(|p| p.is_dir()) else {
            return Vec::new();
        };
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        names.sort();
        names
    }
}
