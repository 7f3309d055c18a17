//! Secret redaction: the one filter every stored or streamed line passes through, masking the
//! secrets Nightshift was configured with and anything shaped like a well-known token.

use std::borrow::Cow;

use regex::{NoExpand, Regex};

use crate::{Result, SandboxError};

/// What a masked secret is replaced with.
pub const MASK: &str = "[REDACTED]";

/// Configured secrets shorter than this are not masked: "abc" would shred every log line.
pub const MIN_SECRET_LEN: usize = 6;

/// Token shapes; `keep` is a prefix that stays readable so the log still says what was there.
const SHAPES: &[&str] = &[
    // GitHub: classic and OAuth/user/server/refresh tokens, fine-grained PATs.
    r"\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{20,}",
    r"\bgithub_pat_[A-Za-z0-9_]{20,}",
    // GitLab personal/project/group access tokens.
    r"\bglpat-[A-Za-z0-9_\-]{20,}",
    // OpenAI (sk-, sk-proj-) and Anthropic (sk-ant-) API keys.
    r"\bsk-[A-Za-z0-9_\-]{20,}",
    // AWS access key ids, Slack tokens, Google API keys.
    r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b",
    r"\bxox[abposr]-[A-Za-z0-9\-]{10,}",
    r"\bAIza[0-9A-Za-z_\-]{35}",
    // Authorization headers.
    r"(?P<keep>(?i:bearer|token|basic)\s+)[A-Za-z0-9._~+/\-]{12,}=*",
    // user:password@ in URLs (git remotes with embedded credentials).
    r"(?P<keep>\b[A-Za-z][A-Za-z0-9+.\-]*://)[^\s/@:]*:[^\s/@]+@",
];

/// Masks configured secrets and token-shaped strings.
#[derive(Debug, Clone)]
pub struct Redactor {
    literals: Option<Regex>,
    shapes: Vec<(Regex, String)>,
}

impl Redactor {
    /// A redactor for `secrets` (values of configured credentials) plus the common token shapes.
    pub fn new<I, S>(secrets: I) -> Result<Redactor>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut secrets: Vec<String> = secrets
            .into_iter()
            .map(|s| s.as_ref().trim().to_string())
            .filter(|s| s.len() >= MIN_SECRET_LEN)
            .collect();
        // Longest first, so a secret that contains another is masked whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        let literals = if secrets.is_empty() {
            None
        } else {
            let pattern = secrets
                .iter()
                .map(|s| regex::escape(s))
                .collect::<Vec<_>>()
                .join("|");
            Some(compile(&pattern)?)
        };
        let shapes = SHAPES
            .iter()
            .map(|p| {
                let replacement = if p.contains("?P<keep>") {
                    let tail = if p.ends_with('@') { "@" } else { "" };
                    format!("${{keep}}{MASK}{tail}")
                } else {
                    MASK.to_string()
                };
                Ok((compile(p)?, replacement))
            })
            .collect::<Result<_>>()?;
        Ok(Redactor { literals, shapes })
    }

    /// Only the common token shapes.
    pub fn shapes_only() -> Result<Redactor> {
        Redactor::new(std::iter::empty::<&str>())
    }

    /// `text` with every secret masked; borrowed when nothing had to change.
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(text);
        if let Some(literals) = &self.literals
            && let Cow::Owned(s) = literals.replace_all(&out, NoExpand(MASK))
        {
            out = Cow::Owned(s);
        }
        for (shape, replacement) in &self.shapes {
            if let Cow::Owned(s) = shape.replace_all(&out, replacement.as_str()) {
                out = Cow::Owned(s);
            }
        }
        out
    }
}

fn compile(pattern: &str) -> Result<Regex> {
    Regex::new(pattern)
        .map_err(|e| SandboxError::Policy(format!("cannot build the secret filter: {e}")))
}
