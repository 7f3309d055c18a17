//! Values that cross the system's edge, validated on construction so bad input is refused
//! with a message that says what was wrong.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::{CoreError, Millis};

/// Instructions larger than this are refused: they belong in the repository, not in a task.
pub const MAX_INSTRUCTIONS_BYTES: usize = 64 * 1024;

/// A task's timeout when none is given.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3600);

/// A git remote Nightshift may clone: `https://`, `http://`, `ssh://`, `git://`, `file://`,
/// scp-like `user@host:path`, or an absolute local path (kept as `file://<path>`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RepoUrl(String);

/// Where a repository is, as git reaches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepoTarget<'a> {
    /// An absolute path on this machine (a `file://` URL or a plain path).
    Local(&'a str),
    /// A host git connects to: `scheme` is `https`, `http`, `ssh` (scp-like too) or `git`;
    /// `host` is without brackets and `port` the one git uses.
    Remote {
        scheme: &'a str,
        host: &'a str,
        port: u16,
    },
}

impl RepoUrl {
    pub fn parse(input: &str) -> Result<Self, CoreError> {
        let url = input.trim();
        let fail = |reason: &str| CoreError::InvalidRepoUrl {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        if url.is_empty() {
            return Err(fail("it is empty"));
        }
        if url.starts_with('-') {
            return Err(fail("it must not start with '-'"));
        }
        if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(fail("it must not contain spaces or control characters"));
        }
        let normalised = if let Some(rest) = url.strip_prefix("file://") {
            // git reads `file://localhost/p` as `/p`; any other host is not this machine.
            let path = rest.strip_prefix("localhost").unwrap_or(rest);
            if !path.starts_with('/') {
                return Err(fail(
                    "a file:// URL names a path on this machine: file:///absolute/path",
                ));
            }
            local_url(path).map_err(fail)?
        } else if url.starts_with('/') {
            local_url(url).map_err(fail)?
        } else if url.contains("://") {
            const SCHEMES: [&str; 4] = ["https://", "http://", "ssh://", "git://"];
            let Some(scheme) = SCHEMES.iter().find(|s| url.starts_with(**s)) else {
                return Err(fail("use https://, http://, ssh://, git:// or file://"));
            };
            if url[scheme.len()..].trim_matches('/').is_empty() {
                return Err(fail("it has no host or path after the scheme"));
            }
            url.trim_end_matches('/').to_string()
        } else {
            url.to_string()
        };
        remote_target(&normalised).map_err(fail)?;
        Ok(RepoUrl(normalised))
    }

    /// Where the repository is: a local path or a host and port.
    pub fn target(&self) -> RepoTarget<'_> {
        match self.0.strip_prefix("file://") {
            Some(path) => RepoTarget::Local(path),
            // Parsing checked the form; an unreadable one names no host, which nothing reaches.
            None => remote_target(&self.0)
                .ok()
                .flatten()
                .unwrap_or(RepoTarget::Remote {
                    scheme: "ssh",
                    host: "",
                    port: 22,
                }),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The URL without any credentials embedded in it, safe to show.
    pub fn redacted(&self) -> String {
        let Some((scheme, rest)) = self.0.split_once("://") else {
            return self.0.clone();
        };
        let authority_end = rest.find('/').unwrap_or(rest.len());
        match rest[..authority_end].rfind('@') {
            Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
            None => self.0.clone(),
        }
    }
}

impl TryFrom<String> for RepoUrl {
    type Error = CoreError;
    fn try_from(value: String) -> Result<Self, CoreError> {
        RepoUrl::parse(&value)
    }
}

impl From<RepoUrl> for String {
    fn from(value: RepoUrl) -> Self {
        value.0
    }
}

impl std::fmt::Display for RepoUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// `file://<path>` for an absolute local path. Percent escapes are refused: git decodes them in
/// `file://` URLs, so the path checked would not be the path git opens.
fn local_url(path: &str) -> Result<String, &'static str> {
    let path = path.trim_end_matches('/');
    if path.is_empty() {
        return Err("it names no repository, only the root directory");
    }
    if path.contains('%') {
        return Err("write a local path as it is, without percent escapes");
    }
    Ok(format!("file://{path}"))
}

/// The host and port of a remote URL (`None` for a local one), or why it names none.
fn remote_target(url: &str) -> Result<Option<RepoTarget<'_>>, &'static str> {
    if url.starts_with("file://") {
        return Ok(None);
    }
    let (scheme, authority) = match url.split_once("://") {
        Some((scheme, rest)) => (scheme, rest.split('/').next().unwrap_or_default()),
        None => {
            // scp-like `[user@]host:path`: the first ':' ends the host (git's own rule).
            let (authority, path) = split_scp(url).ok_or(
                "expected a URL such as https://github.com/org/repo.git or an absolute path",
            )?;
            if path.starts_with(':') {
                return Err(
                    "`name::address` selects a git transport helper, which Nightshift does not run",
                );
            }
            if path.is_empty() {
                return Err("it names no repository after the host");
            }
            ("ssh", authority)
        }
    };
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = match host_port.strip_prefix('[') {
        Some(bracketed) => {
            let (host, rest) = bracketed
                .split_once(']')
                .ok_or("an IPv6 address needs its closing ']'")?;
            (host, rest.strip_prefix(':'))
        }
        None if scheme == "ssh" && !url.contains("://") => (host_port, None),
        None => match host_port.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        },
    };
    if host.is_empty() {
        return Err("it names no host");
    }
    if host.starts_with('-') {
        return Err("its host must not start with '-'");
    }
    let default_port = match scheme {
        "https" => 443,
        "http" => 80,
        "git" => 9418,
        _ => 22,
    };
    let port = match port {
        None | Some("") => default_port,
        Some(port) => port
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or("its port is not a number from 1 to 65535")?,
    };
    Ok(Some(RepoTarget::Remote { scheme, host, port }))
}

/// `[user@]host:path` split at the ':' that ends the host (after a bracketed IPv6 address).
fn split_scp(url: &str) -> Option<(&str, &str)> {
    let end = match url.find('[') {
        Some(open) if !url[..open].contains([':', '/']) => open + url[open..].find(']')? + 1,
        _ => 0,
    };
    let colon = end + url[end..].find(':')?;
    let authority = &url[..colon];
    (!authority.is_empty() && !authority.contains('/')).then(|| (authority, &url[colon + 1..]))
}

/// A branch name git accepts (the rules of `git check-ref-format --branch`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BranchName(String);

impl BranchName {
    pub fn parse(input: &str) -> Result<Self, CoreError> {
        let name = input.trim();
        let fail = |reason: &str| CoreError::InvalidBranch {
            name: name.to_string(),
            reason: reason.to_string(),
        };
        if name.is_empty() {
            return Err(fail("it is empty"));
        }
        if name.starts_with('-')
            || name.starts_with('/')
            || name.ends_with('/')
            || name.ends_with('.')
        {
            return Err(fail(
                "it must not start with '-' or '/' nor end with '/' or '.'",
            ));
        }
        if name.ends_with(".lock") || name == "@" || name == "HEAD" {
            return Err(fail("git reserves this name"));
        }
        if name.contains("..") || name.contains("//") || name.contains("@{") || name.contains("/.")
        {
            return Err(fail("it must not contain '..', '//', '@{' or '/.'"));
        }
        if name
            .chars()
            .any(|c| c.is_control() || " ~^:?*[\\".contains(c))
        {
            return Err(fail(
                "it must not contain spaces, control characters or any of ~^:?*[\\",
            ));
        }
        Ok(BranchName(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for BranchName {
    type Error = CoreError;
    fn try_from(value: String) -> Result<Self, CoreError> {
        BranchName::parse(&value)
    }
}

impl From<BranchName> for String {
    fn from(value: BranchName) -> Self {
        value.0
    }
}

impl std::fmt::Display for BranchName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Natural-language instructions: not empty, at most [`MAX_INSTRUCTIONS_BYTES`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instructions(String);

impl Instructions {
    pub fn parse(input: &str) -> Result<Self, CoreError> {
        let text = input.trim();
        if text.is_empty() {
            return Err(CoreError::EmptyInstructions);
        }
        crate::multi_line("instructions", text)?;
        if text.len() > MAX_INSTRUCTIONS_BYTES {
            return Err(CoreError::InstructionsTooLong {
                size: text.len(),
                limit: MAX_INSTRUCTIONS_BYTES,
            });
        }
        Ok(Instructions(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first line, shortened: the default title and commit subject.
    pub fn summary(&self) -> String {
        let line = self.0.lines().next().unwrap_or_default().trim();
        let mut out: String = line.chars().take(72).collect();
        if out.len() < line.len() {
            out.push('…');
        }
        out
    }
}

/// The longest title a task may have, in characters.
pub const MAX_TITLE_CHARS: usize = 200;

/// A task's title: one line of plain text, at most [`MAX_TITLE_CHARS`] characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Title(String);

impl Title {
    /// `None` for an empty title: the instructions' first line is the title then.
    pub fn parse(input: &str) -> Result<Option<Title>, CoreError> {
        let text = input.trim();
        if text.is_empty() {
            return Ok(None);
        }
        crate::single_line("title", text)?;
        let size = text.chars().count();
        if size > MAX_TITLE_CHARS {
            return Err(CoreError::InvalidText {
                field: "title".into(),
                reason: format!(
                    "it is {size} characters long; the limit is {MAX_TITLE_CHARS}: put the detail in the instructions"
                ),
            });
        }
        Ok(Some(Title(text.to_string())))
    }
}

impl From<Title> for String {
    fn from(value: Title) -> Self {
        value.0
    }
}

/// Parses `90s`, `10m`, `1h`, `1h30m`. Zero is refused: a task needs time to run.
pub fn parse_duration(input: &str) -> Result<Duration, CoreError> {
    let fail = || CoreError::InvalidDuration {
        input: input.to_string(),
    };
    let d = humantime::parse_duration(input.trim()).map_err(|_| fail())?;
    if d.is_zero() {
        return Err(fail());
    }
    Ok(d)
}

pub fn format_duration(d: Duration) -> String {
    // Whole seconds read best, but a sub-second limit must not read as `0s`.
    let shown = if d < Duration::from_secs(1) {
        Duration::from_millis(d.as_millis() as u64)
    } else {
        Duration::from_secs(d.as_secs())
    };
    humantime::format_duration(shown).to_string()
}

/// Working time as people count it, in hours and minutes (`36h`, `2h 30m`, `45m`): days of
/// work are not 24-hour days, so no day unit.
pub fn format_work(minutes: u64) -> String {
    match (minutes / 60, minutes % 60) {
        (0, m) => format!("{m}m"),
        (h, 0) => format!("{h}h"),
        (h, m) => format!("{h}h {m}m"),
    }
}

/// A size as people read it, in the units nightshift.toml takes: `512 B`, `64 KiB`, `1.5 GiB`.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    let text = format!("{value:.1}");
    let text = text.strip_suffix(".0").unwrap_or(&text);
    format!("{text} {}", UNITS[unit])
}

/// Parses an RFC 3339 timestamp, or a bare date (`2026-11-24`, midnight UTC).
pub fn parse_timestamp(input: &str) -> Result<Millis, CoreError> {
    let fail = || CoreError::InvalidTimestamp {
        input: input.to_string(),
    };
    let text = input.trim();
    let full = if text.len() == 10 {
        format!("{text}T00:00:00Z")
    } else {
        text.to_string()
    };
    let t = humantime::parse_rfc3339_weak(&full).map_err(|_| fail())?;
    let ms = t
        .duration_since(UNIX_EPOCH)
        .map_err(|_| fail())?
        .as_millis();
    i64::try_from(ms).map_err(|_| fail())
}

pub fn format_timestamp(ms: Millis) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or_default());
    humantime::format_rfc3339_millis(t).to_string()
}

/// Milliseconds since the epoch, now.
pub fn now_millis() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or_default()
}

/// A short lowercase ASCII slug for branch names.
pub fn slug(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
        if out.len() >= 40 {
            break;
        }
    }
    out.trim_end_matches('-').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_urls() {
        assert_eq!(
            RepoUrl::parse("/srv/repo.git/").unwrap().as_str(),
            "file:///srv/repo.git"
        );
        assert!(RepoUrl::parse("https://github.com/o/r.git").is_ok());
        assert!(RepoUrl::parse("git@github.com:o/r.git").is_ok());
        assert!(RepoUrl::parse("").is_err());
        assert!(RepoUrl::parse("--upload-pack=evil").is_err());
        assert!(RepoUrl::parse("ftp://x/y").is_err());
        assert!(RepoUrl::parse("relative/path").is_err());
        let with_secret = RepoUrl::parse("https://user:s3cret@example.com/o/r.git").unwrap();
        assert!(!with_secret.redacted().contains("s3cret"));
        assert!(!with_secret.to_string().contains("s3cret"));
    }

    #[test]
    fn repo_targets() {
        let target = |url: &str| format!("{:?}", RepoUrl::parse(url).unwrap().target());
        let remote =
            |scheme, host, port| format!("{:?}", RepoTarget::Remote { scheme, host, port });
        let local = |path| format!("{:?}", RepoTarget::Local(path));
        assert_eq!(target("/srv/a.git"), local("/srv/a.git"));
        assert_eq!(target("file://localhost/srv/a.git"), local("/srv/a.git"));
        assert_eq!(
            target("https://u:p@github.com/o/r.git"),
            remote("https", "github.com", 443)
        );
        assert_eq!(
            target("http://127.0.0.1:8080/o/r.git"),
            remote("http", "127.0.0.1", 8080)
        );
        assert_eq!(
            target("ssh://git@[::1]:2222/o/r"),
            remote("ssh", "::1", 2222)
        );
        assert_eq!(target("git://h/r"), remote("git", "h", 9418));
        assert_eq!(
            target("git@gitlab.com:g/p.git"),
            remote("ssh", "gitlab.com", 22)
        );
        assert_eq!(
            target("git@[fe80::1]:g/p.git"),
            remote("ssh", "fe80::1", 22)
        );
    }

    #[test]
    fn repo_urls_git_would_read_otherwise_are_refused() {
        for (bad, why) in [
            ("fd::17", "transport helper"),
            ("ext::sh", "transport helper"),
            ("file:///srv/a%2egit", "percent"),
            ("file://other/srv/a.git", "path on this machine"),
            ("https://", "no host"),
            ("https://-oProxyCommand=x/r", "'-'"),
            ("http://h:99999/r", "port"),
            ("http://[::1/r", "']'"),
        ] {
            let err = RepoUrl::parse(bad).unwrap_err().to_string();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(format_size(512), "512 B");
        assert_eq!(format_size(64 << 10), "64 KiB");
        assert_eq!(format_size(3 << 29), "1.5 GiB");
        assert_eq!(format_size(32 << 20), "32 MiB");
        assert_eq!(format_size(5 << 40), "5 TiB");
    }

    #[test]
    fn branch_names() {
        assert!(BranchName::parse("main").is_ok());
        assert!(BranchName::parse("release/1.2").is_ok());
        for bad in ["", "-x", "a..b", "a b", "x.lock", "a:b", "HEAD", "a/"] {
            assert!(BranchName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn instructions_bounds() {
        assert_eq!(
            Instructions::parse("  \n "),
            Err(CoreError::EmptyInstructions)
        );
        let big = "x".repeat(MAX_INSTRUCTIONS_BYTES + 1);
        assert!(matches!(
            Instructions::parse(&big),
            Err(CoreError::InstructionsTooLong { .. })
        ));
        assert_eq!(
            Instructions::parse("Bump serde\nand more")
                .unwrap()
                .summary(),
            "Bump serde"
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("0s").is_err());
        assert_eq!(format_duration(Duration::from_millis(90_400)), "1m 30s");
        assert_eq!(format_duration(Duration::from_millis(500)), "500ms");
        // Working time has no day unit: 36 hours of work are not a day and a half.
        assert_eq!(format_work(36 * 60), "36h");
        assert_eq!(format_work(150), "2h 30m");
        assert_eq!(format_work(45), "45m");
    }

    #[test]
    fn timestamps_round_trip() {
        let t = parse_timestamp("2026-11-24T12:00:00Z").unwrap();
        assert_eq!(parse_timestamp("2026-11-24").unwrap() + 12 * 3600 * 1000, t);
        assert_eq!(format_timestamp(t), "2026-11-24T12:00:00.000Z");
        assert!(parse_timestamp("yesterday").is_err());
    }

    #[test]
    fn slugs() {
        assert_eq!(slug("Bump serde to 1.0.200!"), "bump-serde-to-1-0-200");
        assert_eq!(slug("***"), "");
    }
}
