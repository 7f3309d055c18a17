//! Keeps an agent's raw output as JSONL, so what the agent really said survives normalisation.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use nightshift_core::OutputStream;
use serde_json::json;

use crate::{AgentError, Result};

/// Appends one JSON value per line. Lines that are not JSON are wrapped, so the file stays JSONL.
pub(crate) struct RawLog {
    file: Option<(PathBuf, File)>,
}

impl RawLog {
    pub(crate) fn open(path: Option<&Path>) -> Result<RawLog> {
        let Some(path) = path else {
            return Ok(RawLog { file: None });
        };
        let raw_err = |source| AgentError::RawLog {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(raw_err)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(raw_err)?;
        Ok(RawLog {
            file: Some((path.to_path_buf(), file)),
        })
    }

    /// A line the agent wrote: kept verbatim when it is one JSON object, wrapped otherwise.
    pub(crate) fn agent_line(
        &mut self,
        stream: OutputStream,
        text: &str,
        truncated: bool,
    ) -> Result<()> {
        let is_json_object = stream == OutputStream::Stdout
            && !truncated
            && text.trim_start().starts_with('{')
            && serde_json::from_str::<serde_json::Value>(text).is_ok_and(|v| v.is_object());
        if is_json_object {
            self.write(text.trim())
        } else {
            let wrapped = json!({"type": "nightshift.raw", "stream": stream.as_str(), "text": text, "truncated": truncated});
            self.write(&wrapped.to_string())
        }
    }

    /// A record of Nightshift's own (`type` starts with `nightshift.`): a process started, a
    /// message sent to the agent, a permission decided.
    pub(crate) fn note(&mut self, value: serde_json::Value) -> Result<()> {
        self.write(&value.to_string())
    }

    fn write(&mut self, line: &str) -> Result<()> {
        let Some((path, file)) = &mut self.file else {
            return Ok(());
        };
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        file.write_all(&bytes).map_err(|source| AgentError::RawLog {
            path: path.clone(),
            source,
        })
    }
}
