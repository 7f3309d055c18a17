mod access;
mod follow_up;
mod worktree;
