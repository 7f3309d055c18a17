//! A throwaway PostgreSQL cluster built from the machine's own server binaries (`initdb` +
//! `pg_ctl` into a temp dir on a free port), for tests and benchmarks. Never a mock.
//!
//! PostgreSQL refuses to run as root, so when this process is root every server command runs as
//! the `postgres` system user on a directory handed to that user.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Where Debian/Ubuntu install the server binaries; `NIGHTSHIFT_PG_BIN` overrides.
const PG_VERSIONS: &[&str] = &["17", "16", "15", "14", "13"];

/// The superuser every cluster is created with, whoever runs the tests.
const SUPERUSER: &str = "postgres";

/// A running PostgreSQL cluster. Stopped (`pg_ctl stop -m immediate`) and deleted on drop; a
/// watchdog process does the same if this process dies without dropping it (a `static`).
pub struct PgCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    /// Run server commands as the `postgres` system user (we are root).
    as_postgres: bool,
    next_db: AtomicU64,
}

/// Server settings for the cluster; tests trade durability for speed, benchmarks keep defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// `fsync=off`, `synchronous_commit=off`: nothing survives a machine crash, which no test needs.
    Off,
    /// PostgreSQL's defaults: every commit is flushed to disk, as in production.
    Full,
}

impl PgCluster {
    /// Starts a fresh cluster tuned for tests. Panics with the reason when it cannot.
    pub fn start() -> PgCluster {
        PgCluster::start_with(Durability::Off)
    }

    /// One cluster shared by every test of this process; each test takes a
    /// [`fresh_database`](PgCluster::fresh_database) so tests share no state.
    pub fn shared() -> &'static PgCluster {
        static SHARED: OnceLock<PgCluster> = OnceLock::new();
        SHARED.get_or_init(PgCluster::start)
    }

    pub fn start_with(durability: Durability) -> PgCluster {
        let bin = find_bin_dir();
        let as_postgres = running_as_root();
        // A port taken between our probe and the server's bind is rare; try a few.
        let mut last_error = String::new();
        for _ in 0..3 {
            match PgCluster::try_start(&bin, as_postgres, durability) {
                Ok(cluster) => return cluster,
                Err(e) => last_error = e,
            }
        }
        panic!("could not start a PostgreSQL test cluster: {last_error}");
    }

    fn try_start(
        bin: &Path,
        as_postgres: bool,
        durability: Durability,
    ) -> Result<PgCluster, String> {
        let dir = tempfile::Builder::new()
            .prefix("nightshift-pg-")
            .tempdir()
            .map_err(|e| format!("creating a temp dir: {e}"))?;
        if as_postgres {
            hand_to_postgres_user(dir.path())?;
        }
        let port = free_port()?;
        let cluster = PgCluster {
            dir,
            bin: bin.to_path_buf(),
            port,
            as_postgres,
            next_db: AtomicU64::new(0),
        };
        let data = cluster.data_dir();
        let socket_dir = cluster.socket_dir();
        std::fs::create_dir_all(&socket_dir)
            .map_err(|e| format!("{}: {e}", socket_dir.display()))?;
        if as_postgres {
            hand_to_postgres_user(&socket_dir)?;
        }
        cluster.server_command(
            "initdb",
            &[
                "-D",
                &data.display().to_string(),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
        )?;
        let mut settings = format!(
            "listen_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{}'\n\
             max_connections = 400\nshared_buffers = 128MB\n",
            socket_dir.display()
        );
        if durability == Durability::Off {
            settings.push_str("fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n");
        }
        let conf = data.join("postgresql.conf");
        let mut text =
            std::fs::read_to_string(&conf).map_err(|e| format!("{}: {e}", conf.display()))?;
        text.push_str(&settings);
        std::fs::write(&conf, text).map_err(|e| format!("{}: {e}", conf.display()))?;

        cluster.spawn_watchdog()?;
        cluster.server_command(
            "pg_ctl",
            &[
                "start",
                "-w",
                "-t",
                "60",
                "-D",
                &data.display().to_string(),
                "-l",
                &cluster.dir.path().join("server.log").display().to_string(),
            ],
        )?;
        cluster.wait_until_ready()?;
        Ok(cluster)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of the `postgres` database every cluster has.
    pub fn url(&self) -> String {
        self.database_url(SUPERUSER)
    }

    pub fn database_url(&self, name: &str) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{name}", self.port)
    }

    /// Creates a new, empty database and returns its URL.
    pub fn fresh_database(&self) -> String {
        let n = self.next_db.fetch_add(1, Ordering::Relaxed);
        let name = format!("nightshift_{}_{n}", std::process::id());
        let port = self.port.to_string();
        let args = ["-h", "127.0.0.1", "-p", &port, "-U", SUPERUSER, &name];
        if let Err(e) = run(Command::new(self.bin.join("createdb")).args(args)) {
            panic!("creating test database {name}: {e}");
        }
        self.database_url(&name)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn socket_dir(&self) -> PathBuf {
        self.dir.path().join("sock")
    }

    fn wait_until_ready(&self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let port = self.port.to_string();
        loop {
            let ready = Command::new(self.bin.join("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &port, "-U", SUPERUSER])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ready {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "server on port {port} not ready after 60s; log: {}",
                    self.server_log()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn server_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Runs one of the server binaries, as the `postgres` user when we are root.
    fn server_command(&self, program: &str, args: &[&str]) -> Result<Output, String> {
        let program = self.bin.join(program);
        if self.as_postgres {
            let mut line = shell_quote(&program.display().to_string());
            for arg in args {
                line.push(' ');
                line.push_str(&shell_quote(arg));
            }
            run(Command::new("su")
                .args([SUPERUSER, "-s", "/bin/sh", "-c", &line])
                .current_dir(self.dir.path()))
        } else {
            run(Command::new(&program)
                .args(args)
                .current_dir(self.dir.path()))
        }
    }

    /// A detached shell that stops the server and deletes the directory once this process is
    /// gone, so a cluster in a `static` (never dropped) or a killed test run leaves nothing behind.
    fn spawn_watchdog(&self) -> Result<(), String> {
        let stop = self.stop_command_line();
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {stop}; rm -rf {dir}",
            pid = std::process::id(),
            dir = shell_quote(&self.dir.path().display().to_string()),
        );
        Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map(|_| ())
            .map_err(|e| format!("spawning the cluster watchdog: {e}"))
    }

    fn stop_command_line(&self) -> String {
        let line = format!(
            "{} stop -m immediate -D {} >/dev/null 2>&1",
            shell_quote(&self.bin.join("pg_ctl").display().to_string()),
            shell_quote(&self.data_dir().display().to_string()),
        );
        if self.as_postgres {
            format!("su {SUPERUSER} -s /bin/sh -c {}", shell_quote(&line))
        } else {
            line
        }
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        // The temp dir removes itself after this; the watchdog finds nothing left to do.
        let _ = Command::new("sh")
            .args(["-c", &self.stop_command_line()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn find_bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("NIGHTSHIFT_PG_BIN") {
        let dir = PathBuf::from(dir);
        if !dir.join("initdb").is_file() || !dir.join("pg_ctl").is_file() {
            panic!(
                "NIGHTSHIFT_PG_BIN={} holds no initdb and pg_ctl: point it at the PostgreSQL server binaries",
                dir.display()
            );
        }
        return dir;
    }
    for version in PG_VERSIONS {
        let dir = PathBuf::from(format!("/usr/lib/postgresql/{version}/bin"));
        if dir.join("initdb").is_file() && dir.join("pg_ctl").is_file() {
            return dir;
        }
    }
    panic!(
        "PostgreSQL server binaries (initdb, pg_ctl) not found under /usr/lib/postgresql/<version>/bin: \
         install the postgresql server package or set NIGHTSHIFT_PG_BIN to the directory holding them"
    );
}

fn running_as_root() -> bool {
    // std has no geteuid; `id -u` is everywhere the server binaries are.
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn hand_to_postgres_user(dir: &Path) -> Result<(), String> {
    run(Command::new("chown").args([SUPERUSER, &dir.display().to_string()]))?;
    run(Command::new("chmod").args(["0700", &dir.display().to_string()]))?;
    Ok(())
}

fn free_port() -> Result<u16, String> {
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(|e| format!("finding a free port: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("finding a free port: {e}"))
}

fn run(command: &mut Command) -> Result<Output, String> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{command:?}: {e}"))?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(format!(
            "{command:?} exited with {}: {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_serves_fresh_databases_and_stops() {
        let cluster = PgCluster::start();
        let a = cluster.fresh_database();
        let b = cluster.fresh_database();
        assert_ne!(a, b);
        let psql = cluster.bin.join("psql");
        let out = Command::new(&psql)
            .args([&a, "-tAc", "SELECT 1"])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1");
        let dir = cluster.dir.path().to_path_buf();
        let port = cluster.port();
        drop(cluster);
        assert!(!dir.exists(), "the cluster's directory is removed");
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
            "the server is stopped"
        );
    }
}
