//! The data directory belongs to the server's user: what it holds (the database, mirrors,
//! logs, runs, keys) is unreadable to other local users, also after an upgrade.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::server::Server;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

fn private(data: &Path) -> Vec<(String, u32)> {
    let mut wrong = Vec::new();
    for (name, want) in [
        ("nightshift.db", 0o600),
        ("nightshift.db-wal", 0o600),
        ("nightshift.db-shm", 0o600),
        ("secret.key", 0o600),
        ("admin.token", 0o600),
        ("mirrors", 0o700),
        ("runs", 0o700),
        ("logs", 0o700),
        ("git-home", 0o700),
    ] {
        let got = mode(&data.join(name));
        if got != want {
            wrong.push((name.to_string(), got));
        }
    }
    wrong
}

#[test]
fn the_data_directory_is_private_from_the_first_start_and_after_an_upgrade() {
    let data = tempfile::tempdir().unwrap();
    let mut server = Server::start(data.path(), 0);
    assert_eq!(private(data.path()), vec![]);
    server.kill_hard();

    // What an older version left behind: everything readable by every local user.
    for name in [
        "nightshift.db",
        "nightshift.db-wal",
        "nightshift.db-shm",
        "secret.key",
    ] {
        let path = data.path().join(name);
        if path.exists() {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
    }
    for name in ["mirrors", "runs", "logs", "git-home"] {
        std::fs::set_permissions(
            data.path().join(name),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
    }
    let _server = Server::start(data.path(), 0);
    assert_eq!(private(data.path()), vec![]);
}
