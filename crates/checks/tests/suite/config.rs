//! `.nightshift.toml`: the repository's own word on its checks.

use std::fs;

use nightshift_checks::discover;

fn repo(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (p, c) in files {
        let path = dir.path().join(p);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, c).unwrap();
    }
    dir
}

#[test]
fn config_file_wins() {
    let dir = repo(&[
        (
            ".nightshift.toml",
            "[setup]\ncommands = [\"make deps\"]\n[checks]\nformat = [\"fmt\"]\nlint = [\"lint\"]\ntest = [\"t1\", \"t2\"]\n",
        ),
        ("Cargo.toml", "[package]"),
    ]);
    let plan = discover(dir.path()).unwrap();
    assert_eq!(plan.setup, vec!["make deps"]);
    assert_eq!(plan.test, vec!["t1", "t2"]);
    assert_eq!(plan.source, ".nightshift.toml");
    assert!(
        plan.network.is_empty(),
        "checks get no network unless asked"
    );
}

#[test]
fn checks_ask_for_network_by_host() {
    let dir = repo(&[(
        ".nightshift.toml",
        "[checks]\ntest = [\"t\"]\nnetwork = [\"db.internal:5432\", \"*.example.com\"]\n",
    )]);
    let plan = discover(dir.path()).unwrap();
    assert_eq!(plan.network, vec!["db.internal:5432", "*.example.com"]);
    let dir = repo(&[(
        ".nightshift.toml",
        "[checks]\ntest = [\"t\"]\nnetwork = [\"http://everything\"]\n",
    )]);
    let err = discover(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("checks.network") && err.contains("http://everything"),
        "{err}"
    );
}

#[test]
fn malformed_config_names_the_line() {
    let dir = repo(&[(
        ".nightshift.toml",
        "[checks]\nformat = [\"ok\"]\nlint = \"not a list\n",
    )]);
    let err = discover(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains(".nightshift.toml") && err.contains("line 3"),
        "{err}"
    );
    let dir = repo(&[(".nightshift.toml", "[checks]\ntests = [\"typo\"]\n")]);
    let err = discover(dir.path()).unwrap_err().to_string();
    assert!(err.contains("tests") && err.contains("line 2"), "{err}");
}
