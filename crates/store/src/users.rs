//! People: users, their API tokens (stored as hashes, shown once) and browser sessions.

use nightshift_core::{Millis, User, now_millis};
use rand::RngCore;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Result, Store, StoreError};

/// Every token starts with this, so a leaked one is recognisable (and redactable) at sight.
pub const TOKEN_PREFIX: &str = "nst_";

/// An API token as lists show it: never the token itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiToken {
    pub id: i64,
    pub user_id: i64,
    pub name: String,
    /// The first characters of the token, to tell tokens apart.
    pub prefix: String,
    pub created_at: Millis,
    pub last_used_at: Option<Millis>,
    pub revoked_at: Option<Millis>,
}

/// A fresh random secret with our prefix: 32 bytes from the OS generator, URL-safe base64.
pub fn new_secret(prefix: &str) -> String {
    use base64::Engine;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// What the database keeps of a secret: its sha256, hex. A 256-bit random secret needs no salt.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

pub(crate) const USER_COLUMNS: &str = "u.id, u.name, u.email, u.server_admin, u.created_at";

pub(crate) fn user_row(row: &AnyRow) -> Result<User> {
    Ok(User {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        email: row.try_get("email")?,
        server_admin: row.try_get::<i64, _>("server_admin")? != 0,
        created_at: row.try_get("created_at")?,
    })
}

fn token_row(row: &AnyRow) -> Result<ApiToken> {
    Ok(ApiToken {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        name: row.try_get("name")?,
        prefix: row.try_get("prefix")?,
        created_at: row.try_get("created_at")?,
        last_used_at: row.try_get("last_used_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

impl Store {
    /// Creates a user. A taken name is a conflict.
    pub async fn create_user(
        &self,
        name: &str,
        email: Option<&str>,
        server_admin: bool,
    ) -> Result<User> {
        let row = sqlx::query(
            "INSERT INTO users (name, email, server_admin, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (name) DO NOTHING RETURNING id",
        )
        .bind(name)
        .bind(email)
        .bind(i64::from(server_admin))
        .bind(now_millis())
        .fetch_optional(&self.pool)
        .await?;
        if row.is_none() {
            return Err(StoreError::Conflict(format!(
                "user {name:?} already exists"
            )));
        }
        self.user_by_name(name)
            .await?
            .ok_or_else(|| StoreError::NotFound {
                what: "user",
                id: name.into(),
            })
    }

    /// The user a trusted proxy names, created on first sight; the email follows the proxy.
    pub async fn ensure_user(&self, name: &str, email: Option<&str>) -> Result<User> {
        sqlx::query(
            "INSERT INTO users (name, email, server_admin, created_at) VALUES ($1, $2, 0, $3) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(email)
        .bind(now_millis())
        .execute(&self.pool)
        .await?;
        if email.is_some() {
            sqlx::query(
                "UPDATE users SET email = $2 WHERE name = $1 AND (email IS NULL OR email <> $2)",
            )
            .bind(name)
            .bind(email)
            .execute(&self.pool)
            .await?;
        }
        self.user_by_name(name)
            .await?
            .ok_or_else(|| StoreError::NotFound {
                what: "user",
                id: name.into(),
            })
    }

    pub async fn user_by_name(&self, name: &str) -> Result<Option<User>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users u WHERE u.name = $1");
        let row = sqlx::query(&sql)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(user_row).transpose()
    }

    pub async fn users(&self) -> Result<Vec<User>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users u ORDER BY u.id");
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
        rows.iter().map(user_row).collect()
    }

    pub async fn count_users(&self) -> Result<i64> {
        Ok(sqlx::query("SELECT COUNT(*) AS n FROM users")
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?)
    }

    /// Creates a token for `user_id`. The token is returned here and never again.
    pub async fn create_token(&self, user_id: i64, name: &str) -> Result<(ApiToken, String)> {
        let secret = new_secret(TOKEN_PREFIX);
        let prefix: String = secret.chars().take(TOKEN_PREFIX.len() + 6).collect();
        let id: i64 = sqlx::query(
            "INSERT INTO api_tokens (user_id, name, token_hash, prefix, created_at) \
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(user_id)
        .bind(name)
        .bind(hash_secret(&secret))
        .bind(&prefix)
        .bind(now_millis())
        .fetch_one(&self.pool)
        .await?
        .try_get("id")?;
        let token = self
            .tokens(user_id)
            .await?
            .into_iter()
            .find(|t| t.id == id)
            .ok_or_else(|| StoreError::NotFound {
                what: "token",
                id: id.to_string(),
            })?;
        Ok((token, secret))
    }

    /// A user's tokens, revoked ones included, oldest first.
    pub async fn tokens(&self, user_id: i64) -> Result<Vec<ApiToken>> {
        let rows = sqlx::query(
            "SELECT id, user_id, name, prefix, created_at, last_used_at, revoked_at FROM api_tokens \
             WHERE user_id = $1 ORDER BY id",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(token_row).collect()
    }

    /// Revokes one of the user's tokens and ends the sessions opened with it. `false` when the
    /// user has no such live token.
    pub async fn revoke_token(&self, user_id: i64, token_id: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE api_tokens SET revoked_at = $3 WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL",
        )
        .bind(token_id)
        .bind(user_id)
        .bind(now_millis())
        .execute(&self.pool)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        // The token's sessions die with it (they would no longer sign in anyway).
        sqlx::query("DELETE FROM sessions WHERE token_id = $1")
            .bind(token_id)
            .execute(&self.pool)
            .await?;
        Ok(true)
    }

    /// The user a live token belongs to.
    pub async fn user_by_token(&self, token: &str) -> Result<Option<User>> {
        Ok(self.live_token(token).await?.map(|(user, _)| user))
    }

    /// The owner of a live token and the token's id; notes when the token was last used.
    async fn live_token(&self, token: &str) -> Result<Option<(User, i64)>> {
        let sql = format!(
            "SELECT {USER_COLUMNS}, k.id AS token_id, k.last_used_at FROM api_tokens k \
             JOIN users u ON u.id = k.user_id WHERE k.token_hash = $1 AND k.revoked_at IS NULL"
        );
        let row = sqlx::query(&sql)
            .bind(hash_secret(token))
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let now = now_millis();
        let token_id: i64 = row.try_get("token_id")?;
        // Once a minute is precise enough to spot an unused token, and spares a write per request.
        let last: Option<i64> = row.try_get("last_used_at")?;
        if last.is_none_or(|l| now - l > 60_000) {
            sqlx::query("UPDATE api_tokens SET last_used_at = $2 WHERE id = $1")
                .bind(token_id)
                .bind(now)
                .execute(&self.pool)
                .await?;
        }
        Ok(Some((user_row(&row)?, token_id)))
    }

    /// Opens a browser session with a live API token: its owner and the cookie value (stored
    /// only hashed), or `None` when the token is unknown or revoked. The session is bound to
    /// the token and ends when the token is revoked.
    pub async fn create_session(&self, token: &str, ttl_ms: i64) -> Result<Option<(User, String)>> {
        let Some((user, token_id)) = self.live_token(token).await? else {
            return Ok(None);
        };
        let secret = new_secret("nss_");
        let now = now_millis();
        sqlx::query(
            "INSERT INTO sessions (id_hash, user_id, token_id, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(hash_secret(&secret))
        .bind(user.id)
        .bind(token_id)
        .bind(now)
        .bind(now + ttl_ms)
        .execute(&self.pool)
        .await?;
        Ok(Some((user, secret)))
    }

    /// The user of a session that has not expired and whose token is still live.
    pub async fn user_by_session(&self, secret: &str) -> Result<Option<User>> {
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM sessions s JOIN users u ON u.id = s.user_id \
             JOIN api_tokens k ON k.id = s.token_id AND k.revoked_at IS NULL \
             WHERE s.id_hash = $1 AND s.expires_at > $2"
        );
        let row = sqlx::query(&sql)
            .bind(hash_secret(secret))
            .bind(now_millis())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(user_row).transpose()
    }

    pub async fn delete_session(&self, secret: &str) -> Result<()> {
        sqlx::query("DELETE FROM sessions WHERE id_hash = $1")
            .bind(hash_secret(secret))
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
