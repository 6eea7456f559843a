//! One simulated device: its DM tree (the source of truth for its DMAcc
//! credentials and nonces, PROTOCOL A.6), its counters, and how it is
//! created, saved and loaded.

use std::path::{Path, PathBuf};

use handover_dm::acl::Acl;
use handover_dm::auth::{AuthType, Nonce, Secret, StoredCredential};
use handover_dm::tree::{DeviceInfo, NewNode, Timestamp, Tree};
use handover_dm::{DevId, ServerId, TreeUri};
use rand::seq::SliceRandom;
use rand::{CryptoRng, Rng, RngCore};
use serde::{Deserialize, Serialize};

/// Makes and models the fleet is drawn from: (Man, Mod, DevTyp, FwV, HwV).
const MODELS: &[(&str, &str, &str, &str, &str)] = &[
    (
        "Samsung",
        "SM-G991B",
        "smartphone",
        "G991BXXS9FXA1",
        "REV1.0",
    ),
    (
        "Samsung",
        "SM-A546B",
        "smartphone",
        "A546BXXU4BXB2",
        "REV0.5",
    ),
    ("Nokia", "TA-1575", "smartphone", "V3.410", "HW1.2"),
    ("Motorola", "XT2343-2", "smartphone", "U1UFS34.41-98", "PVT"),
    ("Zebra", "TC58", "handheld", "14-18-19.00-UG", "TC58-A"),
    ("Honeywell", "CT45", "handheld", "CT45-A13-4.21", "B2"),
    ("Quectel", "EG25-G", "m2m", "EG25GGBR07A08M2G", "R1.1"),
    ("Sierra Wireless", "RV55", "router", "4.17.0.008", "1.0"),
];

/// Type Allocation Codes (the first 8 IMEI digits) used for the fleet.
const TACS: &[&str] = &[
    "35332510", "35391508", "35467811", "35209910", "35876305", "35942011",
];

/// A DevId `IMEI:<15 digits>` with a valid Luhn check digit.
pub fn random_imei<R: Rng>(rng: &mut R) -> String {
    let tac = TACS.choose(rng).expect("non-empty");
    let serial: u32 = rng.gen_range(0..1_000_000);
    let body = format!("{tac}{serial:06}");
    format!("IMEI:{body}{}", luhn_check_digit(&body))
}

/// The Luhn check digit of a string of decimal digits.
pub fn luhn_check_digit(digits: &str) -> u32 {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 0 {
                let d2 = d * 2;
                if d2 > 9 {
                    d2 - 9
                } else {
                    d2
                }
            } else {
                d
            }
        })
        .sum();
    (10 - sum % 10) % 10
}

/// True when `digits` (check digit included) passes the Luhn check.
pub fn luhn_valid(digits: &str) -> bool {
    digits.len() >= 2
        && digits.bytes().all(|b| b.is_ascii_digit())
        && luhn_check_digit(&digits[..digits.len() - 1])
            == u32::from(digits.as_bytes()[digits.len() - 1] - b'0')
}

/// A per-device secret: 24 base64url characters from the CSPRNG (A.4:
/// never one password for many devices).
pub fn random_secret<R: RngCore + CryptoRng>(rng: &mut R) -> Secret {
    // Same alphabet and length as a nonce; the text itself is the secret.
    Secret::new(
        String::from_utf8(Nonce::generate(rng).as_bytes().to_vec()).expect("base64url is ASCII"),
    )
}

/// Counters of one device, persisted with it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct DeviceCounters {
    pub sessions_ok: u64,
    pub sessions_failed: u64,
    pub commands_executed: u64,
    pub notifications_received: u64,
    pub notifications_refused: u64,
    /// Client-initiated session ids are drawn from this (A.2).
    pub next_session: u16,
}

/// Everything a device keeps on disk: its tree holds the DMAcc accounts
/// with their secrets and nonces (A.6), so a restarted simulator is the
/// same fleet.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceState {
    pub dev_id: String,
    /// The client auth scheme chosen at creation (CLCRED AAuthType).
    pub auth: AuthType,
    pub tree: Tree,
    pub counters: DeviceCounters,
}

/// One DMAcc account as a session needs it (A.4, A.6).
#[derive(Clone)]
pub struct Account {
    pub server_id: ServerId,
    /// `./DMAcc/<x>`.
    pub node: TreeUri,
    /// AppAddr/…/Addr: where sessions are POSTed.
    pub addr: String,
    pub clcred: StoredCredential,
    pub client_nonce: Nonce,
    /// `./DMAcc/<x>/AppAuth/<y>` of the CLCRED, to write its next nonce.
    pub clcred_node: TreeUri,
    pub srvcred: StoredCredential,
    pub server_nonce: Nonce,
    pub srvcred_node: TreeUri,
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account")
            .field("server_id", &self.server_id)
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

fn uri(s: &str) -> TreeUri {
    TreeUri::parse(s).expect("valid URI")
}

/// What a new device is made of.
pub struct NewDevice<'a> {
    pub server_id: &'a ServerId,
    pub server_url: &'a str,
    pub auth: AuthType,
    /// Credentials derived from this factory key instead of random ones
    /// (the server's auto-enrolment).
    pub enrol_key: Option<&'a crate::device::enrol::EnrolKey>,
}

impl DeviceState {
    /// A fresh device with realistic DevInfo/DevDetail (A.6), one DMAcc for
    /// `server_id` with per-device CLCRED and SRVCRED, and a vendor subtree
    /// the server manages (A.7).
    pub fn create<R: RngCore + CryptoRng>(
        dev_id: DevId,
        new: &NewDevice<'_>,
        rng: &mut R,
        now: Timestamp,
    ) -> Self {
        let (man, model, dev_typ, fw_v, hw_v) = *MODELS.choose(rng).expect("non-empty");
        let info = DeviceInfo {
            dev_id: dev_id.clone(),
            man: man.into(),
            model: model.into(),
            lang: ["en-US", "de-DE", "fr-FR", "nl-NL"]
                .choose(rng)
                .expect("non-empty")
                .to_string(),
            dev_typ: dev_typ.into(),
            oem: man.into(),
            fw_v: fw_v.into(),
            sw_v: format!("{}.{}.{}", rng.gen_range(10..15), rng.gen_range(0..4), 0),
            hw_v: hw_v.into(),
        };
        let mut tree = Tree::standard(&info, now);
        let sid = new.server_id.as_str();
        let (client_name, client_secret, client_nonce, server_secret, server_nonce) =
            match new.enrol_key {
                Some(k) => {
                    let d = k.derive_all(dev_id.as_str());
                    (
                        dev_id.as_str().to_owned(),
                        d.client_secret,
                        d.client_nonce,
                        d.server_secret,
                        d.server_nonce,
                    )
                }
                None => (
                    dev_id.as_str().trim_start_matches("IMEI:").to_owned(),
                    random_secret(rng),
                    Nonce::generate(rng),
                    random_secret(rng),
                    Nonce::generate(rng),
                ),
            };
        add_account(
            &mut tree,
            &AccountSpec {
                server_id: new.server_id,
                addr: new.server_url,
                clcred: StoredCredential {
                    auth_type: new.auth,
                    name: client_name,
                    secret: client_secret,
                },
                client_nonce,
                srvcred: StoredCredential {
                    auth_type: crate::store::devices::server_auth(new.auth),
                    name: sid.to_owned(),
                    secret: server_secret,
                },
                server_nonce,
            },
            now,
        );
        // A vendor subtree worth delegating later (B.2), managed by the server.
        let managed = Acl::parse(&format!(
            "Add={sid}&Delete={sid}&Exec={sid}&Get={sid}&Replace={sid}"
        ))
        .expect("valid ACL");
        let leaves = [
            (
                "./Vendor/Corp/Apps/Mail/Server",
                "mail.corp.example".to_owned(),
            ),
            ("./Vendor/Corp/Apps/Mail/Enabled", "true".to_owned()),
            (
                "./Vendor/Corp/Apps/VPN/Gateway",
                "vpn.corp.example".to_owned(),
            ),
            ("./Vendor/Corp/Apps/VPN/Enabled", "false".to_owned()),
            ("./Vendor/Carrier/Network/APN/Name", "internet".to_owned()),
            ("./Vendor/Carrier/Network/APN/Auth", "none".to_owned()),
            (
                "./Vendor/Carrier/Network/Roaming/Enabled",
                "false".to_owned(),
            ),
        ];
        for (u, v) in leaves {
            tree.put_local(&uri(u), NewNode::text(&v), now);
        }
        tree.set_acl_local(&uri("./Vendor"), Acl::parse("Get=*").expect("valid ACL"));
        for u in ["./Vendor/Corp", "./Vendor/Carrier"] {
            tree.set_acl_local(&uri(u), managed.clone());
        }
        Self {
            dev_id: dev_id.into_string(),
            auth: new.auth,
            tree,
            counters: DeviceCounters::default(),
        }
    }

    /// The DMAcc accounts with complete CLCRED and SRVCRED (A.6).
    pub fn accounts(&self) -> Vec<Account> {
        self.tree
            .dm_accounts()
            .into_iter()
            .filter_map(|acc| {
                let server_id = acc.server_id?;
                let find = |level: &str| {
                    let a = acc
                        .app_auth
                        .iter()
                        .find(|a| a.level.as_deref() == Some(level))?;
                    Some((
                        StoredCredential {
                            auth_type: a.auth_type?,
                            name: a.name.clone()?,
                            secret: a.secret.clone()?,
                        },
                        a.data
                            .clone()
                            .unwrap_or_else(|| Nonce::from_bytes(Vec::new())),
                        a.node.clone(),
                    ))
                };
                let (clcred, client_nonce, clcred_node) = find("CLCRED")?;
                let (srvcred, server_nonce, srvcred_node) = find("SRVCRED")?;
                let addr = self
                    .tree
                    .children(&acc.node.join("AppAddr").ok()?)
                    .into_iter()
                    .find_map(|x| {
                        let u = acc
                            .node
                            .join("AppAddr")
                            .ok()?
                            .join(&x)
                            .ok()?
                            .join("Addr")
                            .ok()?;
                        self.tree
                            .value(&u)
                            .map(|v| String::from_utf8_lossy(v).into_owned())
                    })?;
                Some(Account {
                    server_id,
                    node: acc.node,
                    addr,
                    clcred,
                    client_nonce,
                    clcred_node,
                    srvcred,
                    server_nonce,
                    srvcred_node,
                })
            })
            .collect()
    }

    /// Stores a nonce in an AppAuth's AAuthData as `chr` (A.4); nothing
    /// when the account was deleted in the session that brought the nonce
    /// (a full handover deletes the server's own DMAcc, B.6).
    pub fn set_nonce(&mut self, app_auth: &TreeUri, nonce: &Nonce, now: Timestamp) {
        if self.tree.node(app_auth).is_none() {
            return;
        }
        let u = app_auth.join("AAuthData").expect("valid segment");
        self.tree.put_local(
            &u,
            NewNode::Leaf {
                value: nonce.as_bytes().to_vec(),
                format: if nonce.to_chr().is_some() {
                    "chr"
                } else {
                    "bin"
                }
                .into(),
                mime: Some("text/plain".into()),
            },
            now,
        );
    }

    /// Writes the state to `path` atomically (temp file + rename), readable
    /// by the owner only: it holds the device's secrets.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let bytes = serde_json::to_vec(self).map_err(std::io::Error::other)?;
        super::write_atomic(path, &bytes)
    }

    /// Reads a state written by [`Self::save`].
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let bytes = std::fs::read(path)?;
        let s: Self = serde_json::from_slice(&bytes)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        DevId::parse(s.dev_id.clone()).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        Ok(s)
    }

    /// The file of this device under the state directory.
    pub fn file_name(dev_id: &str) -> PathBuf {
        let safe: String = dev_id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        PathBuf::from(format!("{safe}.json"))
    }
}

struct AccountSpec<'a> {
    server_id: &'a ServerId,
    addr: &'a str,
    clcred: StoredCredential,
    client_nonce: Nonce,
    srvcred: StoredCredential,
    server_nonce: Nonce,
}

/// `./DMAcc/<x>` for one server (A.6), ACL naming that server.
fn add_account(tree: &mut Tree, a: &AccountSpec<'_>, now: Timestamp) {
    let sid = a.server_id.as_str();
    let node_name: String = sid
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let base = format!("./DMAcc/{node_name}");
    let port = a
        .addr
        .split("://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|host| host.rsplit_once(':'))
        .map(|(_, p)| p.to_owned())
        .unwrap_or_else(|| {
            if a.addr.starts_with("https") {
                "443"
            } else {
                "80"
            }
            .into()
        });
    let mut leaves: Vec<(String, Vec<u8>)> = vec![
        ("AppID".into(), b"w7".to_vec()),
        ("ServerID".into(), sid.as_bytes().to_vec()),
        ("Name".into(), b"Handover".to_vec()),
        ("PrefConRef".into(), Vec::new()),
        ("AppAddr/1/Addr".into(), a.addr.as_bytes().to_vec()),
        ("AppAddr/1/AddrType".into(), b"URI".to_vec()),
        ("AppAddr/1/Port/1/PortNbr".into(), port.into_bytes()),
        (
            "AAuthPref".into(),
            a.clcred.auth_type.meta_type().as_bytes().to_vec(),
        ),
    ];
    for (y, level, cred, nonce) in [
        ("1", "CLCRED", &a.clcred, &a.client_nonce),
        ("2", "SRVCRED", &a.srvcred, &a.server_nonce),
    ] {
        let p = format!("AppAuth/{y}");
        leaves.push((format!("{p}/AAuthLevel"), level.as_bytes().to_vec()));
        leaves.push((
            format!("{p}/AAuthType"),
            cred.auth_type.aauth_type().as_bytes().to_vec(),
        ));
        leaves.push((format!("{p}/AAuthName"), cred.name.as_bytes().to_vec()));
        leaves.push((
            format!("{p}/AAuthSecret"),
            cred.secret.expose().as_bytes().to_vec(),
        ));
        leaves.push((format!("{p}/AAuthData"), nonce.as_bytes().to_vec()));
    }
    for (leaf, value) in leaves {
        tree.put_local(
            &uri(&format!("{base}/{leaf}")),
            NewNode::Leaf {
                value,
                format: "chr".into(),
                mime: Some("text/plain".into()),
            },
            now,
        );
    }
    let acl =
        Acl::parse(&format!("Add={sid}&Delete={sid}&Get={sid}&Replace={sid}")).expect("valid ACL");
    tree.set_acl_local(&uri(&base), acl);
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn luhn() {
        // A well-known valid IMEI.
        assert!(luhn_valid("490154203237518"));
        assert!(!luhn_valid("490154203237517"));
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..100 {
            let id = random_imei(&mut rng);
            let digits = id
                .strip_prefix("IMEI:35")
                .map(|d| format!("35{d}"))
                .unwrap();
            assert_eq!(digits.len(), 15);
            assert!(luhn_valid(&digits), "{id}");
        }
    }

    #[test]
    fn created_device_has_its_account_and_round_trips() {
        let mut rng = StdRng::seed_from_u64(2);
        let sid = ServerId::parse("handover.localhost").unwrap();
        let new = NewDevice {
            server_id: &sid,
            server_url: "http://127.0.0.1:8080/dm",
            auth: AuthType::Hmac,
            enrol_key: None,
        };
        let dev = DeviceState::create(
            DevId::parse(random_imei(&mut rng)).unwrap(),
            &new,
            &mut rng,
            Timestamp(1),
        );
        let accs = dev.accounts();
        assert_eq!(accs.len(), 1);
        let a = &accs[0];
        assert_eq!(a.server_id, sid);
        assert_eq!(a.addr, "http://127.0.0.1:8080/dm");
        assert_eq!(a.clcred.auth_type, AuthType::Hmac);
        assert_eq!(a.srvcred.name, "handover.localhost");
        assert_eq!(a.client_nonce.as_bytes().len(), 24);
        assert_ne!(a.clcred.secret, a.srvcred.secret);
        // PROTOCOL A.7: the server may manage the vendor subtree.
        assert!(dev.tree.allows(
            &uri("./Vendor/Corp/Apps/VPN/Enabled"),
            handover_dm::AclCmd::Replace,
            &sid
        ));
        let json = serde_json::to_string(&dev).unwrap();
        let back: DeviceState = serde_json::from_str(&json).unwrap();
        assert_eq!(back.tree, dev.tree);
        assert_eq!(back.accounts()[0].clcred, a.clcred);
    }
}
