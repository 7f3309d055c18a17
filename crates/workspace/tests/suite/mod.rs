mod access;
mod follow_up;
