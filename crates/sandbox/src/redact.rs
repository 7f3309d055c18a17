//! Secret redaction: the one filter every stored or streamed line passes through, masking the
//! secrets Nightshift was configured with and anything shaped like a well-known token.

use std::borrow::Cow;

use regex::{Captures, NoExpand, Regex};

use crate::{Result, SandboxError};

/// What a masked secret is replaced with.
pub const MASK: &str = "[REDACTED]";

/// Configured secrets shorter than this are not masked: "abc" would shred every log line.
pub const MIN_SECRET_LEN: usize = 6;

/// A token shape: `secret` is masked; `keep` (a prefix) stays so the log still says what was
/// there. Shapes that also match prose ("Bearer authentication") only mask a `secret` that
/// contains a digit.
struct Shape {
    pattern: &'static str,
    needs_digit: bool,
}

const SHAPES: &[Shape] = &[
    // GitHub: classic and OAuth/user/server/refresh tokens, fine-grained PATs.
    Shape {
        pattern: r"(?P<secret>\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{20,})",
        needs_digit: false,
    },
    Shape {
        pattern: r"(?P<secret>\bgithub_pat_[A-Za-z0-9_]{20,})",
        needs_digit: false,
    },
    // GitLab personal/project/group access tokens.
    Shape {
        pattern: r"(?P<secret>\bglpat-[A-Za-z0-9_\-]{20,})",
        needs_digit: false,
    },
    // OpenAI (sk-, sk-proj-) and Anthropic (sk-ant-) API keys.
    Shape {
        pattern: r"(?P<secret>\bsk-[A-Za-z0-9_\-]{20,})",
        needs_digit: true,
    },
    // AWS access key ids, Slack tokens, Google API keys.
    Shape {
        pattern: r"(?P<secret>\b(?:AKIA|ASIA)[0-9A-Z]{16}\b)",
        needs_digit: false,
    },
    Shape {
        pattern: r"(?P<secret>\bxox[abposr]-[A-Za-z0-9\-]{10,})",
        needs_digit: false,
    },
    Shape {
        pattern: r"(?P<secret>\bAIza[0-9A-Za-z_\-]{35})",
        needs_digit: false,
    },
    // Bearer tokens anywhere, and `Authorization: Basic|Token …` headers.
    Shape {
        pattern: r"(?P<keep>\b(?i:bearer)\s+)(?P<secret>[A-Za-z0-9._~+/\-]{12,}=*)",
        needs_digit: true,
    },
    Shape {
        pattern: r"(?P<keep>(?i:authorization)\s*[:=]\s*(?i:basic|token)\s+)(?P<secret>[A-Za-z0-9._~+/\-]{8,}=*)",
        needs_digit: false,
    },
    // user:password@ in URLs (git remotes with embedded credentials).
    Shape {
        pattern: r"(?P<keep>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<secret>[^\s/@:]*:[^\s/@]+)@",
        needs_digit: false,
    },
];

/// Masks configured secrets and token-shaped strings.
#[derive(Clone)]
pub struct Redactor {
    /// The configured secrets, longest first; `literals` matches any of them.
    secrets: Vec<String>,
    literals: Option<Regex>,
    shapes: Vec<(Regex, bool)>,
}

/// The secrets stay out of debug output: a redactor is exactly what holds them all.
impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redactor")
            .field("secrets", &self.secrets.len())
            .field("shapes", &self.shapes.len())
            .finish()
    }
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
            .map(|shape| Ok((compile(shape.pattern)?, shape.needs_digit)))
            .collect::<Result<_>>()?;
        Ok(Redactor {
            secrets,
            literals,
            shapes,
        })
    }

    /// This redactor plus `more` secrets (a credential fetched later in the run).
    pub fn with_secrets<I, S>(&self, more: I) -> Result<Redactor>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let more: Vec<String> = more.into_iter().map(|s| s.as_ref().to_string()).collect();
        Redactor::new(self.secrets.iter().cloned().chain(more))
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
        for (shape, needs_digit) in &self.shapes {
            let masked = shape.replace_all(&out, |caps: &Captures<'_>| {
                let whole = caps.get(0).map_or("", |m| m.as_str());
                let Some(secret) = caps.name("secret") else {
                    return whole.to_string();
                };
                if *needs_digit && !secret.as_str().bytes().any(|b| b.is_ascii_digit()) {
                    return whole.to_string();
                }
                let start = caps.get(0).map_or(0, |m| m.start());
                let before = &whole[..secret.start() - start];
                let after = &whole[secret.end() - start..];
                format!("{before}{MASK}{after}")
            });
            // A match left as it was (prose, not a token) must not turn the line into a copy.
            if let Cow::Owned(s) = masked
                && s != *out
            {
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
