//! Password hashing with argon2id (m = 19456 KiB, t = 2, p = 1).

use argon2::password_hash::{rand_core::OsRng, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

/// A stored argon2id hash. It has no `Display`, and its `Debug` hides the value.
#[derive(Clone)]
pub struct PasswordHash(String);

impl std::fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasswordHash(***)")
    }
}

impl PasswordHash {
    pub fn from_stored(s: String) -> Self {
        PasswordHash(s)
    }

    pub fn as_stored(&self) -> &str {
        &self.0
    }
}

/// A password as typed. Its `Debug` hides it.
pub struct Password(String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(***)")
    }
}

pub const MIN_LEN: usize = 12;
pub const MAX_LEN: usize = 1024;

impl Password {
    /// A new password must be 12 to 1024 characters.
    pub fn new(s: String) -> Result<Password, &'static str> {
        let n = s.chars().count();
        if n < MIN_LEN {
            Err("must be at least 12 characters")
        } else if s.len() > MAX_LEN {
            Err("must be at most 1024 bytes")
        } else {
            Ok(Password(s))
        }
    }

    /// A password offered at sign-in is checked, not judged.
    pub fn offered(s: String) -> Password {
        Password(s)
    }
}

fn argon2() -> Argon2<'static> {
    let params = Params::new(19_456, 2, 1, None).expect("valid argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes on a blocking thread: argon2 is deliberately slow.
pub async fn hash(password: Password) -> anyhow::Result<PasswordHash> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        argon2()
            .hash_password(password.0.as_bytes(), &salt)
            .map(|h| PasswordHash(h.to_string()))
            .map_err(|e| anyhow::anyhow!("cannot hash the password: {e}"))
    })
    .await?
}

/// A valid hash of a random password, checked against when the user does not
/// exist so that the answer takes as long either way.
static DUMMY: std::sync::OnceLock<PasswordHash> = std::sync::OnceLock::new();

fn dummy() -> PasswordHash {
    DUMMY
        .get_or_init(|| {
            let salt = SaltString::generate(&mut OsRng);
            let pw: String = (0..32)
                .map(|_| char::from(b'a' + rand::random::<u8>() % 26))
                .collect();
            PasswordHash(
                argon2()
                    .hash_password(pw.as_bytes(), &salt)
                    .expect("hashing works")
                    .to_string(),
            )
        })
        .clone()
}

/// True when `password` matches `stored`; with `None`, checks against a dummy
/// hash and returns false.
pub async fn verify(password: Password, stored: Option<PasswordHash>) -> bool {
    tokio::task::spawn_blocking(move || {
        let known = stored.is_some();
        let stored = stored.unwrap_or_else(dummy);
        let ok = argon2::password_hash::PasswordHash::new(&stored.0)
            .map(|parsed| {
                argon2()
                    .verify_password(password.0.as_bytes(), &parsed)
                    .is_ok()
            })
            .unwrap_or(false);
        ok && known
    })
    .await
    .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hash_and_verify() {
        let h = hash(Password::new("correct horse battery".into()).unwrap())
            .await
            .unwrap();
        assert!(h.as_stored().starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(
            verify(
                Password::offered("correct horse battery".into()),
                Some(h.clone())
            )
            .await
        );
        assert!(!verify(Password::offered("wrong".into()), Some(h.clone())).await);
        assert!(!verify(Password::offered("anything".into()), None).await);
        assert_eq!(format!("{h:?}"), "PasswordHash(***)");
    }

    #[test]
    fn policy() {
        assert!(Password::new("short".into()).is_err());
        assert!(Password::new("x".repeat(2000)).is_err());
    }
}
