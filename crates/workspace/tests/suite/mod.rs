mod access;
mod bases;
mod follow_up;
mod worktree;
