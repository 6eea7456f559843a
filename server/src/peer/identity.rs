//! This server's identity towards its peers (PROTOCOL B.1): one ECDSA P-256
//! key pair and exactly one self-signed certificate for it, made at first
//! start and kept in the data directory. The certificate is both the TLS
//! server and the TLS client certificate; it changes only when the key does.

use super::pin::Fingerprint;
use anyhow::Context;
use p256::pkcs8::DecodePrivateKey;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::path::Path;

/// The private key file: PKCS#8 PEM, mode 0600.
pub const KEY_FILE: &str = "identity.key";
/// The certificate file: PEM.
pub const CERT_FILE: &str = "identity.crt";

/// The certificate is valid this long from its creation (B.1: at least ten
/// years; peers check only the pin, never the dates).
const VALIDITY: time::Duration = time::Duration::days(20 * 366);

/// The private key; it never prints.
pub struct PrivateKey {
    signing: p256::ecdsa::SigningKey,
    pkcs8: PrivatePkcs8KeyDer<'static>,
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PrivateKey(..)")
    }
}

impl PrivateKey {
    /// The key that signs delegation terms (PROTOCOL B.4, B.9).
    pub fn signing_key(&self) -> &p256::ecdsa::SigningKey {
        &self.signing
    }

    /// The key in the form TLS wants it.
    pub fn tls_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.pkcs8.clone_key())
    }
}

/// This server's ServerID, certificate and key.
pub struct Identity {
    server_id: String,
    cert: CertificateDer<'static>,
    spki: Vec<u8>,
    fingerprint: Fingerprint,
    key: PrivateKey,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("server_id", &self.server_id)
            .field("fingerprint", &self.fingerprint.as_str())
            .finish_non_exhaustive()
    }
}

/// Whether [`Identity::load_or_create`] found the identity or made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Loaded,
    Created,
}

impl Identity {
    /// Loads the identity kept in `data_dir`, or creates it when there is no
    /// key yet. Never replaces an existing key; refuses when the kept
    /// certificate names another ServerID or another key.
    pub fn load_or_create(data_dir: &Path, server_id: &str) -> anyhow::Result<(Identity, Origin)> {
        let key_path = data_dir.join(KEY_FILE);
        let cert_path = data_dir.join(CERT_FILE);
        let mut origin = Origin::Loaded;
        if !key_path.exists() {
            let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
                .context("cannot generate the identity key")?;
            // Another process starting at the same moment may win; then its
            // key is the identity.
            if publish(&key_path, key.serialize_pem().as_bytes(), 0o600)
                .with_context(|| format!("cannot create {}", key_path.display()))?
            {
                origin = Origin::Created;
            }
        }
        let pkcs8 = PrivatePkcs8KeyDer::from_pem_file(&key_path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", key_path.display()))?;
        if !cert_path.exists() {
            // The key is the identity: a new key gets its certificate here,
            // and a lost certificate is issued again for the same key, so the
            // pin peers hold stays valid.
            let key = rcgen::KeyPair::try_from(&pkcs8)
                .with_context(|| format!("{} is not a usable key", key_path.display()))?;
            let cert = issue(&key, server_id)?;
            publish(&cert_path, cert.pem().as_bytes(), 0o644)
                .with_context(|| format!("cannot write {}", cert_path.display()))?;
        }
        let cert = CertificateDer::from_pem_file(&cert_path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", cert_path.display()))?;
        let identity = Identity::from_parts(server_id, cert, pkcs8)?;
        Ok((identity, origin))
    }

    fn from_parts(
        server_id: &str,
        cert: CertificateDer<'static>,
        pkcs8: PrivatePkcs8KeyDer<'static>,
    ) -> anyhow::Result<Identity> {
        let signing = p256::ecdsa::SigningKey::from_pkcs8_der(pkcs8.secret_pkcs8_der())
            .map_err(|_| anyhow::anyhow!("{KEY_FILE} is not an ECDSA P-256 key"))?;
        let parsed = webpki::EndEntityCert::try_from(&cert)
            .map_err(|e| anyhow::anyhow!("{CERT_FILE} is not a usable certificate: {e}"))?;
        let spki = parsed.subject_public_key_info().as_ref().to_vec();
        let key_spki = {
            use p256::pkcs8::EncodePublicKey;
            signing
                .verifying_key()
                .to_public_key_der()
                .map_err(|_| anyhow::anyhow!("cannot encode the identity's public key"))?
        };
        anyhow::ensure!(
            key_spki.as_bytes() == spki.as_slice(),
            "{CERT_FILE} does not belong to {KEY_FILE}; remove {CERT_FILE} to have it issued again for the key"
        );
        let named = common_name(parsed.subject()).unwrap_or_default();
        anyhow::ensure!(
            named == server_id,
            "the server identity was made for ServerID {named:?}, but this server is configured as {server_id:?}; \
             a new ServerID needs a new identity: move {KEY_FILE} and {CERT_FILE} out of the data directory \
             (peers must then pin the new fingerprint)"
        );
        Ok(Identity {
            server_id: server_id.to_owned(),
            fingerprint: Fingerprint::of_spki(&spki),
            spki,
            cert,
            key: PrivateKey { signing, pkcs8 },
        })
    }

    pub fn server_id(&self) -> &str {
        &self.server_id
    }

    /// The certificate, DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert
    }

    /// The SubjectPublicKeyInfo, DER.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki
    }

    /// SHA-256 of the SubjectPublicKeyInfo: what peers pin.
    pub fn fingerprint(&self) -> &Fingerprint {
        &self.fingerprint
    }

    pub fn private_key(&self) -> &PrivateKey {
        &self.key
    }
}

/// The certificate of B.1 for `key`.
fn issue(key: &rcgen::KeyPair, server_id: &str) -> anyhow::Result<rcgen::Certificate> {
    use rcgen::{
        CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
        KeyUsagePurpose, SanType,
    };
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, server_id);
    params.distinguished_name = dn;
    if rustls::pki_types::DnsName::try_from(server_id).is_ok()
        && server_id.parse::<std::net::IpAddr>().is_err()
    {
        params.subject_alt_names = vec![SanType::DnsName(
            server_id.try_into().context("ServerID as a DNS name")?,
        )];
    }
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let now = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .expect("zero is a valid nanosecond");
    params.not_before = now;
    params.not_after = now + VALIDITY;
    params
        .self_signed(key)
        .context("cannot issue the identity certificate")
}

/// The first CommonName in a Name's DER content (the SEQUENCE OF RDNs
/// without its outer tag), if it is a string.
fn common_name(mut name: &[u8]) -> Option<String> {
    const CN: &[u8] = &[0x55, 0x04, 0x03];
    while !name.is_empty() {
        let (tag, mut rdn, rest) = der_item(name)?;
        name = rest;
        if tag != 0x31 {
            return None;
        }
        while !rdn.is_empty() {
            let (tag, atv, rest) = der_item(rdn)?;
            rdn = rest;
            if tag != 0x30 {
                return None;
            }
            let (tag, oid, rest) = der_item(atv)?;
            if tag == 0x06 && oid == CN {
                let (tag, value, _) = der_item(rest)?;
                // UTF8String, PrintableString, IA5String
                if matches!(tag, 0x0c | 0x13 | 0x16) {
                    return String::from_utf8(value.to_vec()).ok();
                }
                return None;
            }
        }
    }
    None
}

/// One DER item: (tag, content, what follows). Single-byte tags only.
fn der_item(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | *b as usize);
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// Writes `data` to `path` only if `path` does not exist yet, whole or not
/// at all: it is written to a temporary file first and then linked into
/// place. False when `path` already existed.
fn publish(path: &Path, data: &[u8], mode: u32) -> std::io::Result<bool> {
    use std::io::Write;
    let tmp = path.with_extension(format!("{:016x}.tmp", rand::random::<u64>()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let written = options.open(&tmp).and_then(|mut f| {
        f.write_all(data)?;
        f.sync_all()
    });
    let linked = written.and_then(|()| std::fs::hard_link(&tmp, path));
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // PROTOCOL B.1: the certificate carries the ServerID as CN and, for a DNS
    // name, as SAN; its SPKI is the key's.
    #[test]
    fn certificate_names_the_server_and_holds_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let (id, origin) = Identity::load_or_create(dir.path(), "corp.example").unwrap();
        assert_eq!(origin, Origin::Created);
        let parsed = webpki::EndEntityCert::try_from(id.cert_der()).unwrap();
        assert_eq!(
            common_name(parsed.subject()).as_deref(),
            Some("corp.example")
        );
        assert_eq!(
            parsed.valid_dns_names().collect::<Vec<_>>(),
            ["corp.example"]
        );
        assert_eq!(id.fingerprint().as_str().len(), 64);
        assert!(!format!("{id:?}").contains("signing"));
        assert_eq!(format!("{:?}", id.private_key()), "PrivateKey(..)");
    }

    // B.1: exactly one key, even when two starts race to make it.
    #[test]
    fn racing_first_starts_agree_on_one_key() {
        let dir = tempfile::tempdir().unwrap();
        let results: Vec<(Identity, Origin)> = std::thread::scope(|s| {
            let runs: Vec<_> = (0..4)
                .map(|_| s.spawn(|| Identity::load_or_create(dir.path(), "corp.example").unwrap()))
                .collect();
            runs.into_iter().map(|r| r.join().unwrap()).collect()
        });
        let created = results
            .iter()
            .filter(|(_, o)| *o == Origin::Created)
            .count();
        assert_eq!(created, 1);
        let (first, _) = Identity::load_or_create(dir.path(), "corp.example").unwrap();
        for (id, _) in &results {
            assert_eq!(id.fingerprint(), first.fingerprint());
            assert_eq!(id.cert_der(), first.cert_der());
        }
    }

    #[test]
    fn a_server_id_that_is_no_dns_name_gets_no_san() {
        let dir = tempfile::tempdir().unwrap();
        let (id, _) = Identity::load_or_create(dir.path(), "urn:corp:dm").unwrap();
        let parsed = webpki::EndEntityCert::try_from(id.cert_der()).unwrap();
        assert_eq!(
            common_name(parsed.subject()).as_deref(),
            Some("urn:corp:dm")
        );
        assert_eq!(parsed.valid_dns_names().count(), 0);
    }
}
