//! The credentials vault: per-project forge credentials sealed with the server key (XChaCha20-
//! Poly1305, the project and host as associated data so a sealed value cannot be moved to
//! another row). Only a fingerprint ever leaves; the engine opens a credential when it pushes.

use std::io::Write;
use std::path::Path;

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use nightshift_core::{Millis, now_millis};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::{Result, Store, StoreError};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The server key that seals credentials. Its `Debug` never shows the bytes.
#[derive(Clone)]
pub struct SecretKey([u8; 32]);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

impl SecretKey {
    /// A key from base64 text (what `NIGHTSHIFT_SECRET_KEY` and the key file hold).
    pub fn from_base64(text: &str) -> Result<SecretKey> {
        let bytes = B64
            .decode(text.trim())
            .map_err(|_| StoreError::Key("the secret key is not base64".into()))?;
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| StoreError::Key("the secret key must be 32 bytes (base64)".into()))?;
        Ok(SecretKey(key))
    }

    /// Reads the key file, creating it (mode 0600) with a random key when missing.
    pub fn load_or_create(path: &Path) -> Result<SecretKey> {
        let io = |e: std::io::Error| StoreError::Key(format!("{}: {e}", path.display()));
        match std::fs::read_to_string(path) {
            Ok(text) => {
                restrict_to_owner(path).map_err(io)?;
                SecretKey::from_base64(&text)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                rand::rngs::OsRng.fill_bytes(&mut key);
                write_private(path, format!("{}\n", B64.encode(key)).as_bytes()).map_err(io)?;
                Ok(SecretKey(key))
            }
            Err(e) => Err(io(e)),
        }
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new((&self.0).into())
    }
}

/// Makes an existing file (0600) or directory (0700) reachable by its owner only; what an older
/// version left readable to every local user is tightened this way at start. A missing path
/// is fine; a symbolic link is left alone (its target is not ours to change).
pub fn restrict_to_owner(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let mode = if meta.is_dir() {
        0o700
    } else if meta.is_file() {
        0o600
    } else {
        return Ok(());
    };
    if meta.permissions().mode() & 0o777 != mode {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

/// Writes a file only its owner can read, refusing to follow or replace an existing one.
pub fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

/// A forge credential in the clear. `Debug` shows only the kind.
#[derive(Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ForgeCredential {
    /// A GitHub App: short-lived installation tokens are minted from the private key.
    GithubApp {
        app_id: u64,
        installation_id: u64,
        private_key: String,
    },
    GithubToken {
        token: String,
    },
    GitlabToken {
        token: String,
    },
    /// Gitea or Forgejo.
    GiteaToken {
        token: String,
    },
    /// Plain git over HTTPS.
    Git {
        username: String,
        password: String,
    },
}

impl ForgeCredential {
    pub fn kind(&self) -> &'static str {
        match self {
            ForgeCredential::GithubApp { .. } => "github_app",
            ForgeCredential::GithubToken { .. } => "github_token",
            ForgeCredential::GitlabToken { .. } => "gitlab_token",
            ForgeCredential::GiteaToken { .. } => "gitea_token",
            ForgeCredential::Git { .. } => "git",
        }
    }

    /// Refuses a credential that could never work: an empty token, a token with spaces or
    /// control characters (it goes into an HTTP header), an App without ids or a PEM key. The
    /// message names the field, never its value.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let word = |field: &str, value: &str| {
            if value.trim().is_empty() {
                Err(format!("{field} is empty: paste the whole value"))
            } else if value
                .trim()
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
            {
                Err(format!(
                    "{field} contains spaces or control characters: paste the value alone"
                ))
            } else {
                Ok(())
            }
        };
        match self {
            ForgeCredential::GithubApp {
                app_id,
                installation_id,
                private_key,
            } => {
                if *app_id == 0 || *installation_id == 0 {
                    return Err(
                        "app_id and installation_id are the App's numeric ids, not 0".into(),
                    );
                }
                let pem = private_key.trim();
                if !(pem.starts_with("-----BEGIN") && pem.contains("PRIVATE KEY-----")) {
                    return Err(
                        "private_key is not a PEM private key (-----BEGIN … PRIVATE KEY-----)"
                            .into(),
                    );
                }
                Ok(())
            }
            ForgeCredential::GithubToken { token }
            | ForgeCredential::GitlabToken { token }
            | ForgeCredential::GiteaToken { token } => word("token", token),
            ForgeCredential::Git { username, password } => {
                word("username", username)?;
                word("password", password)
            }
        }
    }

    /// The secret parts, e.g. for a redactor to mask in logs.
    pub fn secrets(&self) -> Vec<&str> {
        match self {
            ForgeCredential::GithubApp { private_key, .. } => vec![private_key],
            ForgeCredential::GithubToken { token }
            | ForgeCredential::GitlabToken { token }
            | ForgeCredential::GiteaToken { token } => vec![token],
            ForgeCredential::Git { password, .. } => vec![password],
        }
    }
}

impl std::fmt::Debug for ForgeCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ForgeCredential({}, ..)", self.kind())
    }
}

/// What may be shown about a stored credential.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CredentialInfo {
    pub host: String,
    pub kind: String,
    /// Keyed with the server key, so it identifies a value without letting anyone test guesses.
    pub fingerprint: String,
    pub set_by: String,
    pub updated_at: Millis,
}

fn associated_data(project_id: i64, host: &str) -> Vec<u8> {
    format!("nightshift-credential\n{project_id}\n{host}").into_bytes()
}

impl Store {
    /// Seals and stores (or replaces) the project's credential for `host`.
    pub async fn set_credential(
        &self,
        key: &SecretKey,
        project_id: i64,
        host: &str,
        credential: &ForgeCredential,
        set_by: &str,
    ) -> Result<CredentialInfo> {
        let plain = serde_json::to_vec(credential)?;
        let mut nonce = [0u8; 24];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let aad = associated_data(project_id, host);
        let sealed = key
            .cipher()
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &plain,
                    aad: &aad,
                },
            )
            .map_err(|_| StoreError::Key("cannot seal the credential".into()))?;
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&sealed);
        let mut mac = Sha256::new();
        mac.update(key.0);
        mac.update(b"fingerprint");
        mac.update(&plain);
        let fingerprint = hex::encode(&mac.finalize()[..8]);
        sqlx::query(
            "INSERT INTO credentials (project_id, host, kind, sealed, fingerprint, set_by, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (project_id, host) DO UPDATE SET \
             kind = $3, sealed = $4, fingerprint = $5, set_by = $6, updated_at = $7",
        )
        .bind(project_id)
        .bind(host)
        .bind(credential.kind())
        .bind(B64.encode(&blob))
        .bind(&fingerprint)
        .bind(set_by)
        .bind(now_millis())
        .execute(&self.pool)
        .await?;
        self.credentials(project_id)
            .await?
            .into_iter()
            .find(|c| c.host == host)
            .ok_or_else(|| StoreError::NotFound {
                what: "credential",
                id: host.into(),
            })
    }

    /// What the project has stored, without any secret.
    pub async fn credentials(&self, project_id: i64) -> Result<Vec<CredentialInfo>> {
        let rows = sqlx::query(
            "SELECT host, kind, fingerprint, set_by, updated_at FROM credentials WHERE project_id = $1 ORDER BY host",
        )
        .bind(project_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(CredentialInfo {
                    host: row.try_get("host")?,
                    kind: row.try_get("kind")?,
                    fingerprint: row.try_get("fingerprint")?,
                    set_by: row.try_get("set_by")?,
                    updated_at: row.try_get("updated_at")?,
                })
            })
            .collect()
    }

    pub async fn delete_credential(&self, project_id: i64, host: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM credentials WHERE project_id = $1 AND host = $2")
            .bind(project_id)
            .bind(host)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The credential the engine pushes to `host` with, for this project only. The agent
    /// process must never receive it.
    pub async fn forge_credential(
        &self,
        key: &SecretKey,
        project_id: i64,
        host: &str,
    ) -> Result<Option<ForgeCredential>> {
        let row = sqlx::query("SELECT sealed FROM credentials WHERE project_id = $1 AND host = $2")
            .bind(project_id)
            .bind(host)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let blob = B64
            .decode(row.try_get::<String, _>("sealed")?)
            .map_err(|_| StoreError::Corrupt(format!("credential for {host} is not base64")))?;
        if blob.len() < 24 {
            return Err(StoreError::Corrupt(format!(
                "credential for {host} is truncated"
            )));
        }
        let (nonce, sealed) = blob.split_at(24);
        let aad = associated_data(project_id, host);
        let plain = key
            .cipher()
            .decrypt(XNonce::from_slice(nonce), Payload { msg: sealed, aad: &aad })
            .map_err(|_| {
                StoreError::Key(format!(
                    "cannot open the credential for {host}: the server key differs from the one that sealed it"
                ))
            })?;
        Ok(Some(serde_json::from_slice(&plain)?))
    }
}
