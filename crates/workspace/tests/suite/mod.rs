mod access;
mod bases;
mod worktree;
