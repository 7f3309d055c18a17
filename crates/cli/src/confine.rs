//! The confinement part of `nightshift.toml`: `sandbox`, `setup_hosts`, `extra_setup_hosts`,
//! `sandbox_readonly`, `sandbox_hidden`, `[sandbox_limits]`, `[run_limits]`, `[env]` and
//! `[agent_env]`, turned into the engine's settings.

use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use nightshift_engine::{ConfinementConfig, RunEnv, RunLimits, SandboxMode};
use nightshift_sandbox::{AllowedHost, Limits};

/// `nightshift netfwd …`: the in-sandbox forwarder, hidden from `--help`.
pub const FORWARDER_SUBCOMMAND: &str = nightshift_sandbox::netfwd::SUBCOMMAND;

/// The confinement keys of the configuration file, as written.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SandboxSettings {
    /// `"bubblewrap"` (the default) or `"none"`.
    pub sandbox: Option<String>,
    /// Hosts setup commands may reach; replaces the default package registries.
    pub setup_hosts: Option<Vec<String>>,
    /// Hosts setup commands may reach besides `setup_hosts` (mirrors, a private registry).
    pub extra_setup_hosts: Vec<String>,
    /// Paths shown read-only inside the sandbox although they lie under a hidden one.
    pub sandbox_readonly: Vec<PathBuf>,
    /// Paths hidden inside the sandbox besides the data directory and the homes.
    pub sandbox_hidden: Vec<PathBuf>,
    pub sandbox_limits: LimitSettings,
    /// `[env]`: variables for setup and checks.
    pub env: EnvSettings,
    /// `[agent_env]`: variables for the agent.
    pub agent_env: EnvSettings,
}

/// `[env]` and `[agent_env]`: literal values, and names whose values are the server's.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EnvSettings {
    /// `NAME = "value"`.
    pub set: std::collections::BTreeMap<String, String>,
    /// Names passed through from the server's environment.
    pub pass: Vec<String>,
}

impl EnvSettings {
    fn run_env(&self, table: &str) -> anyhow::Result<RunEnv> {
        let env = RunEnv {
            set: self.set.clone().into_iter().collect(),
            pass: self.pass.clone(),
        };
        env.validate(table).map_err(|e| anyhow!(e))?;
        Ok(env)
    }
}

/// `[sandbox_limits]`: sizes as bytes or `"512M"`, `"8G"`; `"unlimited"` lifts a limit.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitSettings {
    pub memory: Option<Amount>,
    pub processes: Option<Amount>,
    pub file_size: Option<Amount>,
    pub open_files: Option<Amount>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(untagged)]
pub enum Amount {
    Count(u64),
    Text(String),
}

/// `[run_limits]`: what one run may store and write, sizes as in `[sandbox_limits]`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunLimitSettings {
    /// Bytes of events one run stores (messages, data and rows); past it the output of its agent
    /// and checks is dropped.
    pub stored_events: Option<Amount>,
    /// The longest message, and the longest data, of one event.
    pub event_size: Option<Amount>,
    /// Disk the run's checkout and HOME may use together.
    pub checkout_disk: Option<Amount>,
    /// Disk the /tmp of the run's confined processes may use together.
    pub tmp_disk: Option<Amount>,
}

/// The smallest event size that still leaves room to say what was cut.
const MIN_EVENT_SIZE: u64 = 1024;

impl RunLimitSettings {
    pub fn engine_limits(&self) -> anyhow::Result<RunLimits> {
        let defaults = RunLimits::default();
        let limit = |amount: &Option<Amount>, key: &str, default: Option<u64>| match amount {
            Some(amount) => amount.value(&format!("run_limits.{key}")),
            None => Ok(default),
        };
        let limits = RunLimits {
            stored_events: limit(&self.stored_events, "stored_events", defaults.stored_events)?,
            event_size: limit(&self.event_size, "event_size", defaults.event_size)?,
            checkout_disk: limit(&self.checkout_disk, "checkout_disk", defaults.checkout_disk)?,
            tmp_disk: limit(&self.tmp_disk, "tmp_disk", defaults.tmp_disk)?,
        };
        if let Some(size) = limits.event_size.filter(|s| *s < MIN_EVENT_SIZE) {
            anyhow::bail!(
                "run_limits.event_size = {size} is too small: an event needs at least \"1K\" to \
                 say what was cut from it"
            );
        }
        Ok(limits)
    }
}

impl Amount {
    /// `None` for unlimited. `key` is the setting's full name, for the error.
    pub(crate) fn value(&self, key: &str) -> anyhow::Result<Option<u64>> {
        let text = match self {
            Amount::Count(n) => return Ok(Some(*n)),
            Amount::Text(t) => t.trim(),
        };
        if text.eq_ignore_ascii_case("unlimited") {
            return Ok(None);
        }
        let bad = || {
            anyhow!(
                "{key} = {text:?} is not a number, a size like \"512M\" or \"8G\", or \"unlimited\""
            )
        };
        let digits = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
        let unit = text[digits.len()..].to_ascii_uppercase();
        let factor: u64 = match unit.trim_end_matches("IB").trim_end_matches('B') {
            "" => 1,
            "K" => 1 << 10,
            "M" => 1 << 20,
            "G" => 1 << 30,
            "T" => 1 << 40,
            _ => return Err(bad()),
        };
        let n: u64 = digits.trim().parse().map_err(|_| bad())?;
        n.checked_mul(factor).map(Some).ok_or_else(bad)
    }
}

impl SandboxSettings {
    /// The engine's confinement, with the forwarder being this very binary and the
    /// configuration file (which holds forge tokens) hidden from runs.
    pub fn engine_config(&self, config_file: Option<&Path>) -> anyhow::Result<ConfinementConfig> {
        let mut confinement = ConfinementConfig::default();
        if let Some(mode) = &self.sandbox {
            confinement.mode = mode.parse::<SandboxMode>().map_err(|e| anyhow!(e))?;
        }
        let hosts = |key: &str, hosts: &[String]| {
            hosts
                .iter()
                .map(|h| AllowedHost::parse(h).map_err(|e| anyhow!("{key}: {e}")))
                .collect::<anyhow::Result<Vec<_>>>()
        };
        if let Some(list) = &self.setup_hosts {
            confinement.setup_hosts = hosts("setup_hosts", list)?;
        }
        for host in hosts("extra_setup_hosts", &self.extra_setup_hosts)? {
            if !confinement.setup_hosts.contains(&host) {
                confinement.setup_hosts.push(host);
            }
        }
        confinement.checks_env = self.env.run_env("env")?;
        confinement.agent_env = self.agent_env.run_env("agent_env")?;
        confinement.readonly = self.sandbox_readonly.clone();
        confinement.hidden = self.sandbox_hidden.clone();
        confinement
            .hidden
            .extend(config_file.map(Path::to_path_buf));
        let defaults = Limits::default();
        let limit = |amount: &Option<Amount>, key: &str, default: Option<u64>| match amount {
            Some(amount) => amount.value(&format!("sandbox_limits.{key}")),
            None => Ok(default),
        };
        let l = &self.sandbox_limits;
        confinement.limits = Limits {
            memory_bytes: limit(&l.memory, "memory", defaults.memory_bytes)?,
            processes: limit(&l.processes, "processes", defaults.processes)?,
            file_size_bytes: limit(&l.file_size, "file_size", defaults.file_size_bytes)?,
            open_files: limit(&l.open_files, "open_files", defaults.open_files)?,
        };
        let exe = std::env::current_exe()
            .context("cannot find this program's path for the in-sandbox forwarder")?;
        confinement.forwarder = Some(vec![
            exe.to_string_lossy().into_owned(),
            FORWARDER_SUBCOMMAND.to_string(),
        ]);
        Ok(confinement)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(text: &str) -> SandboxSettings {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn run_limits_take_sizes_and_unlimited_and_refuse_nonsense() {
        let limits = |text: &str| {
            toml::from_str::<RunLimitSettings>(text)
                .unwrap()
                .engine_limits()
        };
        let set = limits("stored_events = \"64M\"\ntmp_disk = \"unlimited\"\nevent_size = 2048\n")
            .unwrap();
        assert_eq!(set.stored_events, Some(64 << 20));
        assert_eq!(set.tmp_disk, None);
        assert_eq!(set.event_size, Some(2048));
        assert_eq!(set.checkout_disk, RunLimits::default().checkout_disk);
        assert_eq!(limits("").unwrap(), RunLimits::default());

        let err = limits("checkout_disk = \"huge\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("run_limits.checkout_disk") && err.contains("huge"),
            "{err}"
        );
        let err = limits("event_size = \"100\"\n").unwrap_err().to_string();
        assert!(
            err.contains("run_limits.event_size") && err.contains("1K"),
            "{err}"
        );
        assert!(toml::from_str::<RunLimitSettings>("disk = \"1G\"\n").is_err());
    }

    #[test]
    fn limits_take_sizes_and_unlimited_and_refuse_nonsense() {
        let config = settings(
            "sandbox = \"none\"\nsetup_hosts = [\"crates.io\", \"*.internal:8443\"]\n\
             [sandbox_limits]\nmemory = \"512M\"\nprocesses = 256\nfile_size = \"unlimited\"\n",
        )
        .engine_config(None)
        .unwrap();
        assert_eq!(config.mode, SandboxMode::None);
        assert_eq!(config.setup_hosts.len(), 2);
        assert_eq!(config.limits.memory_bytes, Some(512 << 20));
        assert_eq!(config.limits.processes, Some(256));
        assert_eq!(config.limits.file_size_bytes, None);
        assert_eq!(config.limits.open_files, Limits::default().open_files);

        let err = settings("[sandbox_limits]\nmemory = \"lots\"\n")
            .engine_config(None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("sandbox_limits.memory") && err.contains("lots"),
            "{err}"
        );
        let err = settings("sandbox = \"docker\"\n")
            .engine_config(None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("docker") && err.contains("bubblewrap"),
            "{err}"
        );
        let err = settings("setup_hosts = [\"http://x\"]\n")
            .engine_config(None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("setup_hosts"), "{err}");
    }

    #[test]
    fn mirrors_extend_the_setup_hosts_and_variables_are_checked() {
        let config = settings(
            "extra_setup_hosts = [\"pypi.internal\", \"crates.io\"]\n\
             [env]\npass = [\"SSL_CERT_FILE\"]\nset = { UV_NATIVE_TLS = \"1\" }\n\
             [agent_env]\npass = [\"NODE_EXTRA_CA_CERTS\"]\n",
        )
        .engine_config(None)
        .unwrap();
        let hosts: Vec<String> = config.setup_hosts.iter().map(|h| h.to_string()).collect();
        let mut expected: Vec<String> = nightshift_engine::DEFAULT_SETUP_HOSTS
            .iter()
            .map(|h| h.to_string())
            .collect();
        expected.push("pypi.internal".into());
        assert_eq!(hosts, expected, "added once, after the defaults");
        assert_eq!(config.checks_env.pass, vec!["SSL_CERT_FILE"]);
        assert_eq!(
            config.checks_env.set,
            vec![("UV_NATIVE_TLS".to_string(), "1".to_string())]
        );
        assert_eq!(config.agent_env.pass, vec!["NODE_EXTRA_CA_CERTS"]);

        let err = settings("[env]\npass = [\"HOME\"]\n")
            .engine_config(None)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("env: HOME"), "{err}");
        let err = settings("extra_setup_hosts = [\"https://mirror\"]\n")
            .engine_config(None)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("extra_setup_hosts"), "{err}");
        assert!(toml::from_str::<SandboxSettings>("[env]\npas = []\n").is_err());
    }
}
