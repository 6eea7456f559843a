//! Pinning (PROTOCOL B.1): a peer is recognised by the SHA-256 of its
//! certificate's SubjectPublicKeyInfo and by nothing else — no chain, name,
//! validity period, key usage or revocation check. The TLS CertificateVerify
//! signature is still checked as usual, so the peer proves it holds the key.

use crate::store::{peers, Db};
use handover_dm::types::ServerId;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, SignatureScheme,
};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// SHA-256 of a SubjectPublicKeyInfo as 64 lowercase hex digits.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint(String);

impl Fingerprint {
    /// Accepts 64 hex digits in either case; keeps them lowercase.
    pub fn parse(s: &str) -> Result<Fingerprint, String> {
        let hex = s.trim().to_ascii_lowercase();
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(
                "a fingerprint is the SHA-256 of the peer's public key: 64 hex digits".into(),
            );
        }
        Ok(Fingerprint(hex))
    }

    pub fn of_spki(spki_der: &[u8]) -> Fingerprint {
        Fingerprint(hex::encode(Sha256::digest(spki_der)))
    }

    /// The fingerprint of a certificate's key, if it parses.
    pub fn of_cert(cert: &CertificateDer<'_>) -> Result<Fingerprint, rustls::Error> {
        Ok(Fingerprint::of_spki(spki_of(cert)?.as_ref()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Fingerprint({})", self.0)
    }
}

/// The SubjectPublicKeyInfo of a certificate, DER.
pub fn spki_of(cert: &CertificateDer<'_>) -> Result<Vec<u8>, rustls::Error> {
    let parsed = webpki::EndEntityCert::try_from(cert)
        .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
    Ok(parsed.subject_public_key_info().as_ref().to_vec())
}

/// The configured peers' pins: fingerprint → ServerID. Shared by the
/// listener and its certificate verifier; replacing it takes effect for the
/// next handshake, so adding or removing a peer needs no restart.
#[derive(Clone, Default)]
pub struct Pins {
    current: Arc<RwLock<Snapshot>>,
    /// Numbers the reads of the database, so that a slow read finishing
    /// after a newer one does not put older pins back.
    reads: Arc<AtomicU64>,
    db: Option<Db>,
}

#[derive(Default)]
struct Snapshot {
    read: u64,
    /// When the database read behind this set began.
    at: Option<std::time::Instant>,
    pins: Arc<HashMap<Fingerprint, ServerId>>,
}

impl std::fmt::Debug for Pins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pins")
            .field("peers", &self.snapshot().len())
            .finish()
    }
}

impl Pins {
    /// A fixed set, not backed by the database.
    pub fn fixed(pins: impl IntoIterator<Item = (Fingerprint, ServerId)>) -> Pins {
        let out = Pins::default();
        out.replace(pins.into_iter().collect());
        out
    }

    /// The configured peers of `db`; [`Pins::reload`] reads them again.
    pub async fn from_db(db: &Db) -> Result<Pins, sqlx::Error> {
        let out = Pins {
            db: Some(db.clone()),
            ..Pins::default()
        };
        out.reload().await?;
        Ok(out)
    }

    /// Reads the configured peers again (no-op for a fixed set). The
    /// listener calls this before every handshake, so a peer added by the
    /// portal or by `handover admin peer add` in another process counts at
    /// once.
    pub async fn reload(&self) -> Result<(), sqlx::Error> {
        let Some(db) = &self.db else { return Ok(()) };
        let read = self.reads.fetch_add(1, Ordering::SeqCst) + 1;
        let at = std::time::Instant::now();
        let map = peers::list(db)
            .await?
            .into_iter()
            .map(|p| (p.fingerprint, p.server_id))
            .collect();
        self.set(read, Some(at), map);
        Ok(())
    }

    /// Reads the configured peers again if the set in hand was read more
    /// than `max_age` ago. The listener calls this before every request on
    /// a connection kept open, so a peer removed in another process stops
    /// counting within `max_age` there too.
    pub async fn refresh(&self, max_age: std::time::Duration) -> Result<(), sqlx::Error> {
        let fresh = {
            let current = self.current.read().unwrap_or_else(|e| e.into_inner());
            current.at.is_some_and(|at| at.elapsed() <= max_age)
        };
        if fresh {
            return Ok(());
        }
        self.reload().await
    }

    /// Replaces the set.
    pub fn replace(&self, pins: HashMap<Fingerprint, ServerId>) {
        let read = self.reads.fetch_add(1, Ordering::SeqCst) + 1;
        self.set(read, None, pins);
    }

    fn set(&self, read: u64, at: Option<std::time::Instant>, pins: HashMap<Fingerprint, ServerId>) {
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        if read > current.read {
            *current = Snapshot {
                read,
                at,
                pins: Arc::new(pins),
            };
        }
    }

    /// The ServerID pinned to `fingerprint`, if any.
    pub fn server_id(&self, fingerprint: &Fingerprint) -> Option<ServerId> {
        self.snapshot().get(fingerprint).cloned()
    }

    fn snapshot(&self) -> Arc<HashMap<Fingerprint, ServerId>> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .pins
            .clone()
    }
}

/// The listener's check of a client certificate: it must be presented, and
/// its key must be pinned for a configured peer.
#[derive(Debug)]
pub struct PinnedClients {
    pins: Pins,
    algorithms: WebPkiSupportedAlgorithms,
}

impl PinnedClients {
    pub fn new(pins: Pins, provider: &rustls::crypto::CryptoProvider) -> PinnedClients {
        PinnedClients {
            pins,
            algorithms: provider.signature_verification_algorithms,
        }
    }
}

impl ClientCertVerifier for PinnedClients {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let fingerprint = Fingerprint::of_cert(end_entity)?;
        match self.pins.server_id(&fingerprint) {
            Some(_) => Ok(ClientCertVerified::assertion()),
            None => {
                tracing::info!(%fingerprint, "refused a TLS client whose key is pinned for no peer");
                Err(rustls::Error::InvalidCertificate(
                    CertificateError::ApplicationVerificationFailure,
                ))
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// What a client reports when the server's key is not the pinned one.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the peer presented key {presented}, but {expected} is pinned for it")]
pub struct FingerprintMismatch {
    pub expected: Fingerprint,
    pub presented: Fingerprint,
}

/// The client's check of a server certificate: its key must be the one
/// pinned for the peer being called.
#[derive(Debug)]
pub struct PinnedServer {
    expected: Fingerprint,
    algorithms: WebPkiSupportedAlgorithms,
}

impl PinnedServer {
    pub fn new(expected: Fingerprint, provider: &rustls::crypto::CryptoProvider) -> PinnedServer {
        PinnedServer {
            expected,
            algorithms: provider.signature_verification_algorithms,
        }
    }
}

impl ServerCertVerifier for PinnedServer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let presented = Fingerprint::of_cert(end_entity)?;
        if presented == self.expected {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                OtherError(Arc::new(FingerprintMismatch {
                    expected: self.expected.clone(),
                    presented,
                })),
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // PROTOCOL B.1: the pin is 64 lowercase hex digits.
    #[test]
    fn fingerprints_are_lowercased_and_checked() {
        let upper = "5BF6FF07134FA8867F4D898504062708FFD96E2F7E9F7E7AB4792F91F3A10954";
        let fp = Fingerprint::parse(upper).unwrap();
        assert_eq!(fp.as_str(), upper.to_ascii_lowercase());
        assert!(Fingerprint::parse(&upper[..63]).is_err());
        assert!(Fingerprint::parse(&format!("{}g", &upper[..63])).is_err());
    }

    // PROTOCOL B.1: the pins are replaced as a whole; a read that started
    // earlier cannot overwrite a later one.
    #[test]
    fn an_older_read_does_not_replace_a_newer_one() {
        let fp = Fingerprint::parse(&"ab".repeat(32)).unwrap();
        let id = ServerId::parse("a.example").unwrap();
        let pins = Pins::default();
        let older = pins.reads.fetch_add(1, Ordering::SeqCst) + 1;
        pins.replace([(fp.clone(), id.clone())].into());
        pins.set(older, None, HashMap::new());
        assert_eq!(pins.server_id(&fp), Some(id));
        pins.replace(HashMap::new());
        assert_eq!(pins.server_id(&fp), None);
    }

    // PROTOCOL B.9 test vector: the SPKI's SHA-256.
    #[test]
    fn fingerprint_of_the_test_vector_spki() {
        use base64::Engine;
        let spki = base64::engine::general_purpose::STANDARD
            .decode("MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE32bs3btMFxhMpHyws7BeOtsn19xDMLillVSGNLm26/L/efHfoWSb3rW22Na1ornWj7IYeAHvgEAZXVNgnT28pw==")
            .unwrap();
        assert_eq!(
            Fingerprint::of_spki(&spki).as_str(),
            "5bf6ff07134fa8867f4d898504062708ffd96e2f7e9f7e7ab4792f91f3a10954"
        );
    }
}
