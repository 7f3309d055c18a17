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
/// scp-like `user@host:path`, or an absolute local path.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RepoUrl(String);

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
        const SCHEMES: [&str; 5] = ["https://", "http://", "ssh://", "git://", "file://"];
        if let Some(scheme) = SCHEMES.iter().find(|s| url.starts_with(**s)) {
            if url.len() == scheme.len() {
                return Err(fail("it has no host or path after the scheme"));
            }
            return Ok(RepoUrl(url.trim_end_matches('/').to_string()));
        }
        if url.contains("://") {
            return Err(fail("use https://, http://, ssh://, git:// or file://"));
        }
        if url.starts_with('/') {
            return Ok(RepoUrl(format!("file://{}", url.trim_end_matches('/'))));
        }
        if let Some((host, path)) = url.split_once(':')
            && !host.is_empty()
            && !path.is_empty()
            && !host.contains('/')
        {
            return Ok(RepoUrl(url.to_string()));
        }
        Err(fail(
            "expected a URL such as https://github.com/org/repo.git or an absolute path",
        ))
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
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
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
