mod access;
mod bases;
mod follow_up;
mod replay;
mod worktree;
