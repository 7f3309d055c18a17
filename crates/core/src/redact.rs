//! Secret redaction: the one filter every stored or streamed line passes through, masking the
//! secrets Nightshift was configured with and anything shaped like a well-known token.

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::{Captures, NoExpand, Regex};

use crate::{CoreError, Result};

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
    // Credentials in URLs (`user:password@`, or a token as the user name, as git remotes
    // carry them).
    Shape {
        pattern: r"(?P<keep>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<secret>[^\s/@]+)@",
        needs_digit: false,
    },
];

/// The shapes, compiled once for every redactor of the process.
static COMPILED_SHAPES: LazyLock<std::result::Result<Vec<(Regex, bool)>, regex::Error>> =
    LazyLock::new(|| {
        SHAPES
            .iter()
            .map(|shape| Regex::new(shape.pattern).map(|r| (r, shape.needs_digit)))
            .collect()
    });

/// Masks configured secrets and token-shaped strings. The one masking code of Nightshift:
/// processes' output, run events and errors, git's and forges' answers all pass through it.
#[derive(Clone)]
pub struct Redactor {
    /// The configured secrets, longest first; `literals` matches any of them.
    secrets: Vec<String>,
    literals: Option<Regex>,
    /// Whether token shapes are masked too, not only the configured secrets.
    shapes: bool,
}

/// The secrets stay out of debug output: a redactor is exactly what holds them all.
impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redactor")
            .field("secrets", &self.secrets.len())
            .field("shapes", &self.shapes)
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
        let mut redactor = Redactor::exact(secrets)?;
        if let Err(e) = &*COMPILED_SHAPES {
            return Err(CoreError::SecretFilter {
                reason: e.to_string(),
            });
        }
        redactor.shapes = true;
        Ok(redactor)
    }

    /// Only `secrets`, no token shapes: for text whose token-shaped parts are data read
    /// afterwards (a forge's answers), where only the credential it was sent must go.
    pub fn exact<I, S>(secrets: I) -> Result<Redactor>
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
        Ok(Redactor {
            secrets,
            literals,
            shapes: false,
        })
    }

    /// This redactor plus `more` secrets (a credential fetched later in the run).
    pub fn with_secrets<I, S>(&self, more: I) -> Result<Redactor>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let more: Vec<String> = more.into_iter().map(|s| s.as_ref().to_string()).collect();
        let all = self.secrets.iter().cloned().chain(more);
        if self.shapes {
            Redactor::new(all)
        } else {
            Redactor::exact(all)
        }
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
        let shapes = match &*COMPILED_SHAPES {
            Ok(shapes) if self.shapes => shapes.as_slice(),
            _ => &[],
        };
        for (shape, needs_digit) in shapes {
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
    Regex::new(pattern).map_err(|e| CoreError::SecretFilter {
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_configured_secrets_longest_first() {
        let r = Redactor::new(["hunter2-password", "hunter2-password-extended", "abc"]).unwrap();
        assert_eq!(
            r.redact("pw=hunter2-password-extended!"),
            format!("pw={MASK}!")
        );
        assert_eq!(r.redact("pw=hunter2-password"), format!("pw={MASK}"));
        // Too short to mask without shredding every line.
        assert_eq!(r.redact("abc"), "abc");
        // Secrets added later keep the earlier ones; none of them shows in debug output.
        let more = r.with_secrets(["late-credential-42"]).unwrap();
        assert_eq!(
            more.redact("hunter2-password late-credential-42"),
            format!("{MASK} {MASK}")
        );
        let debug = format!("{more:?}");
        assert!(
            !debug.contains("hunter2") && !debug.contains("late-credential"),
            "{debug}"
        );
    }

    #[test]
    fn masks_common_token_shapes() {
        let r = Redactor::shapes_only().unwrap();
        let cases = [
            "ghp_0123456789abcdefghijABCDEFGHIJ012345",
            "ghs_0123456789abcdefghijABCDEFGHIJ012345",
            "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQ",
            "glpat-abcdefghij0123456789",
            "sk-proj-abcdefghijklmnopqrstuvwxyz012345",
            "sk-ant-api03-abcdefghijklmnopqrstuvwxyz0123456789",
            "AKIAIOSFODNN7EXAMPLE",
        ];
        for token in cases {
            let line = format!("token={token} end");
            let out = r.redact(&line);
            assert!(!out.contains(token), "{token} survived: {out}");
            assert!(out.contains(MASK) && out.ends_with(" end"), "{out}");
        }
        assert_eq!(
            r.redact("authorization: Basic dXNlcjpwYXNzd29yZA=="),
            format!("authorization: Basic {MASK}")
        );
        assert_eq!(
            r.redact("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig"),
            format!("Authorization: Bearer {MASK}")
        );
        assert_eq!(
            r.redact("fetching https://x-access-token:s3cr3tvalue@github.com/o/r.git"),
            format!("fetching https://{MASK}@github.com/o/r.git")
        );
    }

    #[test]
    fn leaves_ordinary_text_borrowed() {
        let r = Redactor::new(["super-secret-value"]).unwrap();
        let line = "test result: ok. 42 passed; see https://github.com/o/r and sk-short; \
                    Bearer authentication; unexpected token identifierName; basic authentication";
        assert!(matches!(r.redact(line), std::borrow::Cow::Borrowed(_)));
    }

    #[test]
    fn masks_credentials_in_urls_with_or_without_a_password() {
        let r = Redactor::shapes_only().unwrap();
        assert_eq!(
            r.redact("fatal: https://ghx-token-value@example.com/o/r.git not found"),
            format!("fatal: https://{MASK}@example.com/o/r.git not found")
        );
        assert!(matches!(
            r.redact("see https://example.com/o/r.git and git@example.com:o/r"),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn exact_masks_only_the_given_secrets() {
        let r = Redactor::exact(["canary-token-1234"]).unwrap();
        let answer = r#"{"token":"canary-token-1234","note":"Bearer abc123def456ghi"}"#;
        assert_eq!(
            r.redact(answer),
            format!(r#"{{"token":"{MASK}","note":"Bearer abc123def456ghi"}}"#)
        );
        let more = r.with_secrets(["second-secret-99"]).unwrap();
        assert_eq!(
            more.redact("second-secret-99 ghp_0123456789abcdefghijABCDEFGHIJ012345"),
            format!("{MASK} ghp_0123456789abcdefghijABCDEFGHIJ012345")
        );
    }
}
