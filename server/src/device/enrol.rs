//! Auto-enrolment by factory key (off by default): a device the registry
//! does not know, whose DevId starts with a configured prefix, is created
//! when it authenticates with credentials derived from a master key.
//!
//! Every secret is per device (PROTOCOL A.4): each value is
//! `first 24 chars of base64url(HMAC-SHA256(key, "handover-enrol/<label>/" ‖ DevId))`
//! with the labels `clcred`, `srvcred`, `clnonce` and `srvnonce`; a nonce's
//! raw bytes are those 24 ASCII characters. The client name is the DevId,
//! the server name the ServerID. The derived secrets are good for first
//! contact only: the enrolling session rotates them (see
//! [`super::session`]).

use base64::Engine;
use handover_dm::auth::{AuthType, Nonce, Secret, StoredCredential};
use handover_dm::session::DeviceAccount;
use sha2::{Digest, Sha256};

/// The master key: 32 bytes, configured as 64 hex digits. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct EnrolKey([u8; 32]);

impl std::fmt::Debug for EnrolKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EnrolKey(..)")
    }
}

impl EnrolKey {
    /// A key from exactly 64 hex digits.
    pub fn from_hex(s: &str) -> anyhow::Result<EnrolKey> {
        let raw = hex::decode(s.trim())
            .map_err(|_| anyhow::anyhow!("the enrolment key must be 64 hex digits"))?;
        let key: [u8; 32] = raw
            .try_into()
            .map_err(|_| anyhow::anyhow!("the enrolment key must be 64 hex digits"))?;
        Ok(EnrolKey(key))
    }

    fn hmac(&self, msg: &[u8]) -> [u8; 32] {
        hmac_sha256(&self.0, msg)
    }

    /// The 24-character value derived for `label` and `devid`.
    fn derive(&self, label: &str, devid: &str) -> String {
        let mac = self.hmac(format!("handover-enrol/{label}/{devid}").as_bytes());
        let mut s = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac);
        s.truncate(24);
        s
    }

    /// The credentials a device with this DevId is made with.
    pub fn derive_all(&self, devid: &str) -> Derived {
        Derived {
            client_secret: Secret::new(self.derive("clcred", devid)),
            server_secret: Secret::new(self.derive("srvcred", devid)),
            client_nonce: Nonce::from_bytes(self.derive("clnonce", devid).into_bytes()),
            server_nonce: Nonce::from_bytes(self.derive("srvnonce", devid).into_bytes()),
        }
    }
}

impl<'de> serde::Deserialize<'de> for EnrolKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        EnrolKey::from_hex(&s).map_err(serde::de::Error::custom)
    }
}

/// HMAC-SHA256 (RFC 2104).
fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let pad = |b: u8| k.map(|x| x ^ b);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(msg)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

/// A device's derived credentials. Never printed.
pub struct Derived {
    pub client_secret: Secret,
    pub server_secret: Secret,
    pub client_nonce: Nonce,
    pub server_nonce: Nonce,
}

/// The `[enrolment]` policy.
#[derive(Debug, Clone)]
pub struct Policy {
    pub enabled: bool,
    /// An unknown DevId must start with one of these.
    pub devid_prefixes: Vec<String>,
    pub key: Option<EnrolKey>,
    /// The client auth scheme of enrolled devices (md5 or hmac).
    pub auth: AuthType,
    /// This server's ServerID: the SRVCRED name of enrolled devices.
    pub server_id: String,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            enabled: false,
            devid_prefixes: Vec::new(),
            key: None,
            auth: AuthType::Md5,
            server_id: String::new(),
        }
    }
}

/// The `[enrolment]` table of the configuration file.
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilePolicy {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default)]
    pub devid_prefixes: Vec<String>,
    pub key: Option<EnrolKey>,
    /// `md5` (default) or `hmac`.
    pub auth: Option<String>,
}

impl FilePolicy {
    /// The policy; an enabled one needs a key and at least one non-empty
    /// prefix. The ServerID is filled in when the server starts.
    pub fn resolve(&self) -> anyhow::Result<Policy> {
        let auth = match self.auth.as_deref().unwrap_or("md5") {
            "md5" => AuthType::Md5,
            "hmac" => AuthType::Hmac,
            other => anyhow::bail!("enrolment.auth must be md5 or hmac, not {other:?}"),
        };
        if self.enabled {
            anyhow::ensure!(self.key.is_some(), "enrolment.enabled needs enrolment.key");
            anyhow::ensure!(
                !self.devid_prefixes.is_empty()
                    && self.devid_prefixes.iter().all(|p| !p.is_empty()),
                "enrolment.enabled needs non-empty enrolment.devid_prefixes"
            );
        }
        Ok(Policy {
            enabled: self.enabled,
            devid_prefixes: self.devid_prefixes.clone(),
            key: self.key.clone(),
            auth,
            server_id: String::new(),
        })
    }
}

impl Policy {
    /// The account an unknown `devid` may enrol with, if the policy allows it.
    pub fn account_for(&self, devid: &str) -> Option<DeviceAccount> {
        if !self.enabled
            || !self
                .devid_prefixes
                .iter()
                .any(|p| devid.starts_with(p.as_str()))
        {
            return None;
        }
        let d = self.key.as_ref()?.derive_all(devid);
        Some(DeviceAccount {
            client: StoredCredential {
                auth_type: self.auth,
                name: devid.to_owned(),
                secret: d.client_secret,
            },
            client_nonce: d.client_nonce,
            server: StoredCredential {
                auth_type: crate::store::devices::server_auth(self.auth),
                name: self.server_id.clone(),
                secret: d.server_secret,
            },
            server_nonce: d.server_nonce,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_sha256_matches_rfc4231() {
        // RFC 4231 test case 2.
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn derivation_is_per_device_and_key_is_never_printed() {
        let k = EnrolKey::from_hex(&"ab".repeat(32)).unwrap();
        let a = k.derive_all("IMEI:1");
        let b = k.derive_all("IMEI:2");
        assert_eq!(a.client_secret.expose().len(), 24);
        assert_ne!(a.client_secret, b.client_secret);
        assert_ne!(a.client_secret, a.server_secret);
        assert_eq!(a.client_nonce.as_bytes().len(), 24);
        assert!(a.client_nonce.to_chr().is_some());
        assert_eq!(format!("{k:?}"), "EnrolKey(..)");
        assert!(EnrolKey::from_hex("abcd").is_err());
        let p = Policy {
            enabled: true,
            devid_prefixes: vec!["IMEI:35".into()],
            key: Some(k),
            ..Policy::default()
        };
        assert!(!format!("{p:?}").contains("abab"));
        assert!(p.account_for("IMEI:3512").is_some());
        assert!(p.account_for("IMEI:4912").is_none());
        let off = Policy {
            enabled: false,
            ..p
        };
        assert!(off.account_for("IMEI:3512").is_none());
    }
}
