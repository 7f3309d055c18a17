//! How runs get their checkout on this worker: a warm base per repository and base commit with
//! a copy-on-write layer per run where overlays can be mounted, a worktree per run otherwise
//! (or where the operator chose it). Said by `GET /api/v1/health`.

use serde::{Deserialize, Serialize};

use crate::EngineError;

/// What the operator chose (`workspaces` in nightshift.toml).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkspaceMode {
    /// Warm bases with a layer per run where this machine mounts overlays, else worktrees.
    #[default]
    Auto,
    /// A fresh worktree per run, always.
    Worktree,
}

impl WorkspaceMode {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkspaceMode::Auto => "auto",
            WorkspaceMode::Worktree => "worktree",
        }
    }
}

impl std::str::FromStr for WorkspaceMode {
    type Err = EngineError;

    fn from_str(s: &str) -> Result<Self, EngineError> {
        match s.trim() {
            "auto" => Ok(WorkspaceMode::Auto),
            "worktree" => Ok(WorkspaceMode::Worktree),
            other => Err(EngineError::Invalid(format!(
                "workspaces = {other:?} is not known: use \"auto\" (warm bases with a \
                 copy-on-write layer per run where overlays work, the default) or \"worktree\" \
                 (a fresh checkout per run)"
            ))),
        }
    }
}

/// How a run's checkout is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CheckoutKind {
    /// A copy-on-write layer over a warm base.
    Overlay,
    /// A worktree of its own.
    Worktree,
}

/// How runs on this worker get their checkout, for the API and the run's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WorkspacesStatus {
    pub mode: CheckoutKind,
    /// Why, in words: what the operator chose, or why overlays cannot be mounted here.
    pub detail: String,
}

impl WorkspacesStatus {
    pub fn overlay(&self) -> bool {
        self.mode == CheckoutKind::Overlay
    }

    /// Tries an overlay under `data_dir` (where bases and layers live) unless `chosen` rules
    /// them out.
    pub(crate) async fn probe(chosen: WorkspaceMode, data_dir: &std::path::Path) -> Self {
        if chosen == WorkspaceMode::Worktree {
            return WorkspacesStatus {
                mode: CheckoutKind::Worktree,
                detail: "each run checks out a worktree of its own (workspaces = \"worktree\" in \
                         nightshift.toml)"
                    .into(),
            };
        }
        let scratch = data_dir.join("bases").join(".probe");
        match nightshift_sandbox::overlay_support(&scratch).await {
            Ok(()) => WorkspacesStatus {
                mode: CheckoutKind::Overlay,
                detail: "runs start warm: a base per repository and base commit (setup done, \
                         checks run once) seen through a copy-on-write layer of the run's own"
                    .into(),
            },
            Err(why) => {
                tracing::warn!(reason = %why, "runs check out a worktree each");
                WorkspacesStatus {
                    mode: CheckoutKind::Worktree,
                    detail: format!(
                        "each run checks out a worktree of its own: {why}. Warm bases need \
                         overlayfs in unprivileged user namespaces (Linux 5.11 or later, \
                         user namespaces allowed)"
                    ),
                }
            }
        }
    }
}
