mod access;
mod worktree;
