//! What a background run allows an ACP agent that asks: nobody is there to answer, so the
//! answer is decided from the tool call itself.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// How a background run answers an agent's permission requests: nobody is there to ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PermissionPolicy {
    /// Allow running commands. Edits and reads are allowed when they stay inside the workspace.
    pub allow_execute: bool,
}

impl PermissionPolicy {
    /// Whether to allow the tool call of a `session/request_permission`, given as JSON so the
    /// decision does not depend on the protocol crate's types.
    pub fn allows(&self, tool_call: &Value, workspace: &Path) -> bool {
        let outside = tool_paths(tool_call).iter().any(|p| !inside(p, workspace));
        if outside {
            return false;
        }
        match tool_call["kind"].as_str() {
            Some("execute") => self.allow_execute,
            // No outside traffic from a background run beyond the model endpoint.
            Some("fetch") => false,
            _ => true,
        }
    }
}

fn tool_paths(tool_call: &Value) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = tool_call["locations"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l["path"].as_str().map(PathBuf::from))
        .collect();
    for key in ["file_path", "path", "notebook_path"] {
        if let Some(p) = tool_call["rawInput"][key].as_str() {
            paths.push(PathBuf::from(p));
        }
    }
    paths
}

/// Lexical containment: `..` components make a path count as outside.
fn inside(path: &Path, workspace: &Path) -> bool {
    path.is_absolute()
        && path.starts_with(workspace)
        && !path
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
}
