//! Workspaces seen through a mount namespace: a base shown at the workspace's path while it is
//! built, and a run's copy-on-write layer over a base that nothing it runs can change.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use nightshift_sandbox::{MountView, ProcessSpec, Sandbox, overlay_support};

use super::{RunDirs, p, text};

/// A base under the data directory, the empty directory runs see it at, and a run's layer.
struct Layered {
    run: RunDirs,
    base: PathBuf,
    at: PathBuf,
}

impl Layered {
    fn new() -> Layered {
        let run = RunDirs::new();
        let base = run.data.join("bases/repo/k1/tree");
        let at = run.data.join("bases/repo/checkout");
        std::fs::create_dir_all(base.join("src")).unwrap();
        std::fs::create_dir_all(&at).unwrap();
        std::fs::write(base.join("README"), "base readme\n").unwrap();
        std::fs::write(base.join("src/lib.rs"), "pub fn base() {}\n").unwrap();
        std::fs::write(base.join("old.txt"), "to be renamed\n").unwrap();
        Layered { run, base, at }
    }

    /// A fresh layer for run `name`.
    fn layer(&self, name: &str) -> (MountView, PathBuf) {
        let dir = self.run.data.join("runs").join(name).join("layer");
        for sub in ["upper", "work"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let view = MountView::overlay(&self.at, &self.base, dir.join("upper"), dir.join("work"));
        (view, dir.join("upper"))
    }

    fn base_files(&self) -> Vec<(String, String)> {
        let mut files = Vec::new();
        walk(&self.base, &self.base, &mut files);
        files.sort();
        files
    }
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            walk(root, &path, out);
        } else {
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            out.push((rel, std::fs::read_to_string(&path).unwrap()));
        }
    }
}

fn is_whiteout(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_char_device() && m.rdev() == 0)
}

#[tokio::test]
async fn overlays_work_on_this_machine() {
    // Fails (never skips) where the kernel refuses overlays in user namespaces.
    let scratch = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    overlay_support(&scratch.path().join("probe"))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_confined_run_changes_its_layer_and_never_its_base() {
    let layered = Layered::new();
    let before = layered.base_files();
    let (view, upper) = layered.layer("r1");
    let policy = nightshift_sandbox::ConfinementPolicy::new(&layered.at, &layered.run.home)
        .hide(&layered.run.data)
        .forwarder([env!("CARGO_BIN_EXE_nightshift-netfwd")]);
    let sandbox = Sandbox::confined(policy).unwrap().with_mount(view);
    // The run edits, deletes, renames and adds through its workspace, then tries the base's
    // own directory, which the data directory's cover hides.
    let script = format!(
        "cat README && echo edited >> README && rm src/lib.rs && mv old.txt new.txt \
         && echo added > added.txt && ls -A . src; \
         echo tamper > {base}/README 2>/dev/null || echo base-unreachable",
        base = p(&layered.base)
    );
    let (exit, lines) = sandbox
        .output(&ProcessSpec::shell(&script, &layered.at))
        .await
        .unwrap();
    let out = text(&lines);
    assert!(exit.success(), "{out}");
    assert!(
        out.starts_with("base readme\n"),
        "the run reads the base: {out}"
    );
    assert!(
        out.contains("added.txt") && out.contains("new.txt"),
        "{out}"
    );
    assert!(!out.contains("old.txt") && !out.contains("lib.rs"), "{out}");
    assert!(out.contains("base-unreachable"), "{out}");
    assert_eq!(layered.base_files(), before, "the base changed");
    // Every change is in the run's layer, a deletion as a whiteout.
    assert_eq!(
        std::fs::read_to_string(upper.join("README")).unwrap(),
        "base readme\nedited\n"
    );
    assert!(is_whiteout(&upper.join("src/lib.rs")));
    assert!(is_whiteout(&upper.join("old.txt")));
    assert_eq!(
        std::fs::read_to_string(upper.join("new.txt")).unwrap(),
        "to be renamed\n"
    );
    assert_eq!(
        std::fs::read_to_string(upper.join("added.txt")).unwrap(),
        "added\n"
    );
    // The directory runs see the base at stays empty on the host.
    assert_eq!(std::fs::read_dir(&layered.at).unwrap().count(), 0);
}

#[tokio::test]
async fn two_runs_on_one_base_never_see_each_other() {
    let layered = Layered::new();
    let go = layered.run.root.path().join("go");
    let mut running = Vec::new();
    let mut uppers = Vec::new();
    for name in ["r1", "r2"] {
        let (view, upper) = layered.layer(name);
        // Each writes its own file and the same file differently, then waits until both have,
        // so each looks while the other's layer holds its writes.
        let script = format!(
            "echo {name} > {name}.txt && echo {name} > README \
             && while [ ! -e {go} ]; do sleep 0.05; done; ls -A; cat README",
            go = p(&go)
        );
        let process = Sandbox::new()
            .with_mount(view)
            .spawn(&ProcessSpec::shell(&script, &layered.at))
            .unwrap();
        running.push((name, process));
        uppers.push((name, upper));
    }
    while !uppers
        .iter()
        .all(|(name, upper)| upper.join(format!("{name}.txt")).exists())
    {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    std::fs::write(&go, "").unwrap();
    for (name, mut process) in running {
        let mut lines = Vec::new();
        while let Some(line) = process.next_line().await {
            lines.push(line);
        }
        assert!(process.wait().await.unwrap().success());
        let out = text(&lines);
        let other = if name == "r1" { "r2" } else { "r1" };
        assert!(out.contains(&format!("{name}.txt")), "{name}: {out}");
        assert!(
            !out.contains(&format!("{other}.txt")),
            "{name} sees {other}: {out}"
        );
        assert!(
            out.ends_with(&format!("{name}\n")),
            "{name}'s README: {out}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(layered.base.join("README")).unwrap(),
        "base readme\n"
    );
}

#[tokio::test]
async fn a_base_being_built_is_seen_at_the_path_runs_will_see_it_at() {
    let layered = Layered::new();
    let building = layered.run.data.join("bases/repo/.building-k2/tree");
    std::fs::create_dir_all(&building).unwrap();
    let view = MountView::bind(&layered.at, &building);
    let (exit, lines) = Sandbox::new()
        .with_mount(view)
        .output(&ProcessSpec::shell(
            "pwd && echo installed > deps",
            &layered.at,
        ))
        .await
        .unwrap();
    assert!(exit.success(), "{}", text(&lines));
    assert_eq!(text(&lines), format!("{}\n", p(&layered.at)));
    assert_eq!(
        std::fs::read_to_string(building.join("deps")).unwrap(),
        "installed\n"
    );
    assert_eq!(std::fs::read_dir(&layered.at).unwrap().count(), 0);
}

/// The mount namespace a process is in, as `/proc/self/ns/mnt` names it.
async fn mount_namespace(sandbox: &Sandbox, at: &Path) -> String {
    let (exit, lines) = sandbox
        .output(&ProcessSpec::shell("readlink /proc/self/ns/mnt", at))
        .await
        .unwrap();
    assert!(exit.success(), "{}", text(&lines));
    text(&lines).trim().to_string()
}

/// Mount namespaces this process holds open, by the names their descriptors link to.
fn held_namespaces() -> Vec<String> {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .map(|link| link.display().to_string())
        .filter(|link| link.starts_with("mnt:"))
        .collect()
}

#[tokio::test]
async fn every_process_of_a_view_joins_its_one_namespace_which_ends_with_the_view() {
    let layered = Layered::new();
    let (view, upper) = layered.layer("r1");
    let first = Sandbox::new().with_mount(view.clone());
    // A copy of the view, as a run's git and its checks each have one.
    let second = Sandbox::new().with_mount(view.clone());
    let ns = mount_namespace(&first, &layered.at).await;
    assert_eq!(mount_namespace(&second, &layered.at).await, ns);
    assert_eq!(mount_namespace(&first, &layered.at).await, ns);
    assert_ne!(
        ns,
        std::fs::read_link("/proc/self/ns/mnt")
            .unwrap()
            .display()
            .to_string(),
        "the view is not mounted in the server's namespace"
    );
    assert!(held_namespaces().contains(&ns), "{:?}", held_namespaces());
    // One mount for all: what one process wrote the next reads, through the same overlay.
    let (exit, lines) = first
        .output(&ProcessSpec::shell("echo one > shared.txt", &layered.at))
        .await
        .unwrap();
    assert!(exit.success(), "{}", text(&lines));
    let (_, lines) = second
        .output(&ProcessSpec::shell("cat shared.txt README", &layered.at))
        .await
        .unwrap();
    assert_eq!(text(&lines), "one\nbase readme\n");
    assert!(upper.join("shared.txt").is_file());
    // Another run's view is another namespace.
    let (other, _) = layered.layer("r2");
    let other = Sandbox::new().with_mount(other);
    assert_ne!(mount_namespace(&other, &layered.at).await, ns);
    drop((first, second, view));
    assert!(
        !held_namespaces().contains(&ns),
        "the namespace outlived its view: {:?}",
        held_namespaces()
    );
}
