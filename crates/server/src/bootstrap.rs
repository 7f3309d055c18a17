//! What the server does for itself: the first admin on first start.

use std::path::PathBuf;

use nightshift_core::{DEFAULT_PROJECT, Role};
use nightshift_store::{Store, write_private};

use crate::auth::LOCAL_USER;
use crate::{ServeOptions, ServerError};

/// On a store without users, creates `admin` (a server admin, admin of the default project)
/// and writes its API token to `<data-dir>/admin.token`, readable by the owner only. Returns
/// that path when it did. With sign-in disabled it makes the local user instead.
pub(crate) async fn first_start(
    store: &Store,
    options: &ServeOptions,
) -> Result<Option<PathBuf>, ServerError> {
    if options.server.auth.disabled {
        if store.user_by_name(LOCAL_USER).await?.is_none() {
            store.create_user(LOCAL_USER, None, true).await?;
        }
        return Ok(None);
    }
    if store.count_users().await? > 0 {
        return Ok(None);
    }
    let admin = store.create_user("admin", None, true).await?;
    let project = store.ensure_project(DEFAULT_PROJECT).await?;
    store.set_member(project.id, admin.id, Role::Admin).await?;
    let (_, token) = store.create_token(admin.id, "admin.token").await?;
    let path = options.data_dir.join("admin.token");
    // A token file left from an earlier database names a user that no longer exists.
    let _ = std::fs::remove_file(&path);
    write_private(&path, format!("{token}\n").as_bytes()).map_err(|source| {
        ServerError::AdminToken {
            path: path.clone(),
            source,
        }
    })?;
    Ok(Some(path))
}
