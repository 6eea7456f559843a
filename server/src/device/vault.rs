//! Per-device DM secrets encrypted at rest (XChaCha20-Poly1305).
//!
//! The key is 32 random bytes, hex-encoded, from the configuration or from
//! `device-secrets.key` in the data directory (created mode 0600 at first
//! use). A stored secret is `base64(nonce ‖ ciphertext)`, with the DevId and
//! the column name as associated data so a value cannot be moved to another
//! device or field.

use anyhow::Context;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use handover_dm::auth::Secret;
use rand::RngCore;
use std::path::Path;

/// The file in the data directory that holds the key.
pub const KEY_FILE: &str = "device-secrets.key";

/// A configured key as text; never printed.
#[derive(Clone, serde::Deserialize)]
#[serde(transparent)]
pub struct KeyText(pub String);

impl std::fmt::Debug for KeyText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyText(..)")
    }
}

/// The key that seals device secrets. Never printed.
#[derive(Clone)]
pub struct Vault {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Vault(..)")
    }
}

impl Vault {
    /// A vault from 64 hex digits.
    pub fn from_hex(hex_key: &str) -> anyhow::Result<Vault> {
        let key = hex::decode(hex_key.trim()).context("device secrets key is not hex")?;
        anyhow::ensure!(key.len() == 32, "device secrets key must be 32 bytes");
        Ok(Vault {
            cipher: XChaCha20Poly1305::new_from_slice(&key).expect("32-byte key"),
        })
    }

    /// The configured key if any, else the data directory's key file,
    /// created with mode 0600 when missing.
    pub fn open(configured: Option<&KeyText>, data_dir: &Path) -> anyhow::Result<Vault> {
        if let Some(k) = configured {
            return Vault::from_hex(&k.0);
        }
        let path = data_dir.join(KEY_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => Vault::from_hex(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                rand::rngs::OsRng.fill_bytes(&mut key);
                write_private(&path, hex::encode(key).as_bytes())
                    .with_context(|| format!("cannot create {}", path.display()))?;
                Vault::from_hex(&hex::encode(key))
            }
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// Seals `secret` for `devid`'s `field`.
    pub fn seal(&self, devid: &str, field: &str, secret: &Secret) -> String {
        let mut nonce = [0u8; 24];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let aad = format!("{devid}\0{field}");
        let ct = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: secret.expose().as_bytes(),
                    aad: aad.as_bytes(),
                },
            )
            .expect("encryption does not fail");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        base64::engine::general_purpose::STANDARD.encode(out)
    }

    /// Opens what [`Vault::seal`] sealed; fails on another key, device or field.
    pub fn unseal(&self, devid: &str, field: &str, sealed: &str) -> anyhow::Result<Secret> {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(sealed)
            .context("sealed secret is not base64")?;
        anyhow::ensure!(raw.len() > 24, "sealed secret too short");
        let aad = format!("{devid}\0{field}");
        let pt = self
            .cipher
            .decrypt(
                XNonce::from_slice(&raw[..24]),
                Payload {
                    msg: &raw[24..],
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| anyhow::anyhow!("device secret does not open with this key"))?;
        Ok(Secret::new(
            String::from_utf8(pt).context("device secret is not UTF-8")?,
        ))
    }
}

#[cfg(unix)]
fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)
}

#[cfg(not(unix))]
fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_binds_device_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let v = Vault::open(None, dir.path()).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // Long enough that random ciphertext cannot contain it by chance.
        let plain = "correct-horse-battery-staple";
        let s = v.seal("IMEI:1", "client_secret", &Secret::new(plain));
        assert!(!s.contains(plain));
        assert_eq!(
            v.unseal("IMEI:1", "client_secret", &s).unwrap().expose(),
            plain
        );
        assert!(v.unseal("IMEI:2", "client_secret", &s).is_err());
        assert!(v.unseal("IMEI:1", "server_secret", &s).is_err());
        // The same key file opens the same secrets.
        let again = Vault::open(None, dir.path()).unwrap();
        assert!(again.unseal("IMEI:1", "client_secret", &s).is_ok());
    }
}
