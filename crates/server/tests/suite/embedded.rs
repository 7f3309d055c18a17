//! The embedded shape's first start: an admin token file only its owner can read, and no
//! open door on a network address.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use nightshift_server::{AuthConfig, ServeOptions, ServerConfig, ServerError, serve};
use nightshift_store::Store;
use tokio_util::sync::CancellationToken;

fn options(dir: &std::path::Path, listen: &str, disabled: bool) -> ServeOptions {
    ServeOptions {
        data_dir: dir.to_path_buf(),
        listen: listen.parse().unwrap(),
        workers: 0,
        database: None,
        server: ServerConfig {
            auth: AuthConfig {
                disabled,
                ..AuthConfig::default()
            },
            ..ServerConfig::default()
        },
        engine: None,
        secret_key: None,
    }
}

async fn start_and_stop(options: ServeOptions) {
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(serve(options.clone(), shutdown.clone()));
    let token = options.data_dir.join("admin.token");
    for _ in 0..100 {
        if token.exists() && options.data_dir.join("secret.key").exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    shutdown.cancel();
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn first_start_writes_the_admin_token_for_its_owner_only() {
    let dir = tempfile::tempdir().unwrap();
    start_and_stop(options(dir.path(), "127.0.0.1:0", false)).await;
    let path = dir.path().join("admin.token");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let key_mode = std::fs::metadata(dir.path().join("secret.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(key_mode & 0o777, 0o600);
    let token = std::fs::read_to_string(&path).unwrap();
    let store = Store::open_sqlite(&dir.path().join("nightshift.db"))
        .await
        .unwrap();
    let admin = store.user_by_token(token.trim()).await.unwrap().unwrap();
    assert_eq!(admin.name, "admin");
    assert!(admin.server_admin);
    store.close().await;

    // A second start keeps the admin and its token.
    start_and_stop(options(dir.path(), "127.0.0.1:0", false)).await;
    assert_eq!(std::fs::read_to_string(&path).unwrap(), token);
}

#[tokio::test]
async fn no_sign_in_is_refused_off_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let err = serve(
        options(dir.path(), "0.0.0.0:0", true),
        CancellationToken::new(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ServerError::Insecure(_)), "{err}");
    assert!(err.to_string().contains("sign-in disabled"));
}
