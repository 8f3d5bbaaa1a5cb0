//! Where the signing key comes from: `callbacks.signing_key_file` (re-read on SIGHUP, the old
//! key staying published until its tokens expired), or, without it, one key generated once and
//! shared by every replica through the database.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::SetupError;
use super::keys::{Keyring, SigningKey};
use crate::config::CallbacksConfig;
use crate::domain::Timestamp;
use crate::store::Store;

/// The key ring a server starts with.
pub async fn load_keyring(
    config: &CallbacksConfig,
    store: &dyn Store,
) -> Result<Keyring, SetupError> {
    let key = match &config.signing_key_file {
        Some(path) => read_key_file(path)?,
        None => shared_key(store).await?,
    };
    info!(
        kid = key.kid(),
        source = if config.signing_key_file.is_some() {
            "signing_key_file"
        } else {
            "database"
        },
        "callback signing key loaded"
    );
    Ok(Keyring::new(key))
}

/// The database's shared key, generating and storing it if this is the first replica to ask.
async fn shared_key(store: &dyn Store) -> Result<SigningKey, SetupError> {
    let stored = store
        .shared_signing_key(SigningKey::generate_pkcs8())
        .await?;
    SigningKey::from_pkcs8(&stored).map_err(SetupError::StoredKey)
}

pub fn read_key_file(path: &Path) -> Result<SigningKey, SetupError> {
    let pem = std::fs::read(path).map_err(|e| SetupError::File {
        key: "callbacks.signing_key_file",
        path: path.display().to_string(),
        problem: e.to_string(),
    })?;
    SigningKey::from_pem(&pem).map_err(|e| SetupError::File {
        key: "callbacks.signing_key_file",
        path: path.display().to_string(),
        problem: e.to_string(),
    })
}

/// Reads `path` again and, when it holds a different key, signs with it from now on. A file
/// that cannot be read or holds no valid key is logged and the current key kept.
pub fn reload(keyring: &Keyring, path: &Path) {
    match read_key_file(path) {
        Ok(key) => {
            let kid = key.kid().to_owned();
            if keyring.rotate(key, Timestamp::now()) {
                info!(
                    kid,
                    "callback signing key rotated; the previous key stays published until its tokens expire"
                );
            }
        }
        Err(error) => warn!(%error, "callback signing key not reloaded; keeping the current key"),
    }
}

/// Re-reads `callbacks.signing_key_file` on every SIGHUP until `shutdown`.
pub async fn reload_on_hangup(keyring: Arc<Keyring>, path: PathBuf, shutdown: CancellationToken) {
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(hangups) => hangups,
        Err(error) => {
            warn!(%error, "cannot listen for SIGHUP; callbacks.signing_key_file is read only at start");
            return;
        }
    };
    loop {
        tokio::select! {
            received = hangups.recv() => {
                if received.is_none() {
                    return;
                }
                reload(&keyring, &path);
            }
            () = shutdown.cancelled() => return,
        }
    }
}

/// The JWKS `courier keys` prints: the key of `callbacks.signing_key_file`, or the database's
/// shared key (created if no replica has yet). Retired keys live only in a running server's
/// memory; its `/.well-known/jwks.json` lists them.
pub async fn current_jwks(config: &crate::config::Config) -> Result<String, SetupError> {
    let key = match &config.callbacks.signing_key_file {
        Some(path) => read_key_file(path)?,
        None => {
            let store = crate::store::open(config, crate::wakeups::Wakeups::default()).await?;
            shared_key(store.as_ref()).await?
        }
    };
    Ok(super::keys::jwks(&[key.public().clone()]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pem() -> String {
        rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)
            .unwrap()
            .serialize_pem()
    }

    #[test]
    fn reload_rotates_to_a_new_key_and_keeps_the_current_one_on_a_bad_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("callbacks.key");
        std::fs::write(&path, pem()).unwrap();
        let keyring = Keyring::new(read_key_file(&path).unwrap());
        let first = keyring.current().kid().to_owned();

        reload(&keyring, &path);
        assert_eq!(
            keyring.current().kid(),
            first,
            "the same file changes nothing"
        );

        std::fs::write(&path, "-----BEGIN PRIVATE KEY-----\nbroken\n").unwrap();
        reload(&keyring, &path);
        assert_eq!(
            keyring.current().kid(),
            first,
            "a bad file keeps the current key"
        );
        std::fs::remove_file(&path).unwrap();
        reload(&keyring, &path);
        assert_eq!(keyring.current().kid(), first, "a missing file too");

        std::fs::write(&path, pem()).unwrap();
        reload(&keyring, &path);
        assert_ne!(keyring.current().kid(), first);
        assert_eq!(keyring.published(Timestamp::now()).len(), 2);
    }

    #[test]
    fn a_missing_key_file_names_the_key() {
        let error = read_key_file(Path::new("/nonexistent/callbacks.key"))
            .err()
            .unwrap();
        assert!(
            error.to_string().contains("callbacks.signing_key_file"),
            "{error}"
        );
    }
}
