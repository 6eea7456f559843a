//! Canonical terms and the step 2 signatures — PROTOCOL B.4, B.9.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use handover_dm::ServerId;
use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use p256::pkcs8::DecodePublicKey;
use sha2::{Digest, Sha256};

use crate::wire::{DelegationId, NonceB64, Scope, SignatureB64, Term, Terms};

/// The canonical terms of B.9, built from the text as received: subtrees
/// sorted bytewise by URI, rights in the order Add,Delete,Exec,Get,Replace,
/// `Scope=` for `full`, `Expires=` for `permanent`.
pub fn canonical_terms(id: &DelegationId, terms: &Terms) -> String {
    let scope = match &terms.scope {
        Scope::Full => String::new(),
        Scope::Partial(subtrees) => {
            let mut subtrees: Vec<_> = subtrees.iter().collect();
            subtrees.sort_by(|a, b| a.uri.as_bytes().cmp(b.uri.as_bytes()));
            subtrees
                .iter()
                .map(|s| format!("{}|{}", s.uri, s.rights))
                .collect::<Vec<_>>()
                .join(";")
        }
    };
    let (term, expires) = match terms.term {
        Term::Permanent => ("permanent", String::new()),
        Term::Temporary { expires } => ("temporary", expires.to_string()),
    };
    let kind = match terms.scope {
        Scope::Full => "full",
        Scope::Partial(_) => "partial",
    };
    format!(
        "dm-delegation-terms/1\nDelegationID={id}\nInitiator={}\nDelegatingServer={}\n\
         DelegatedServer={}\nDevId={}\nType={kind}\nScope={scope}\nTerm={term}\nExpires={expires}\n",
        terms.initiator.as_str(),
        terms.delegating,
        terms.delegated,
        terms.device.dev_id,
    )
}

/// The signature input of server `signer` (B.9): the canonical terms, then
/// `Signer=`, `OwnNonce=`, `PeerNonce=` lines with the nonces' base64 text.
pub fn signature_input(
    canonical: &str,
    signer: &ServerId,
    own_nonce: &NonceB64,
    peer_nonce: &NonceB64,
) -> String {
    format!(
        "{canonical}Signer={signer}\nOwnNonce={}\nPeerNonce={}\n",
        own_nonce.as_str(),
        peer_nonce.as_str()
    )
}

/// ECDSA P-256 over SHA-256 of `input`, deterministic per RFC 6979, as
/// base64 of ASN.1 DER (B.9 "Signature").
pub fn sign(key: &SigningKey, input: &str) -> SignatureB64 {
    let sig: Signature = key.sign(input.as_bytes());
    let text = B64.encode(sig.to_der().as_bytes());
    SignatureB64::parse(&text).expect("base64 of a DER signature is canonical and non-empty")
}

/// Whether `sig` is `key`'s B.9 signature over `input` (B.4).
pub fn verify(key: &VerifyingKey, input: &str, sig: &SignatureB64) -> bool {
    Signature::from_der(&sig.der())
        .map(|s| key.verify(input.as_bytes(), &s).is_ok())
        .unwrap_or(false)
}

/// Reads a P-256 public key from its DER SubjectPublicKeyInfo (B.1).
pub fn verifying_key_from_spki(spki_der: &[u8]) -> Option<VerifyingKey> {
    VerifyingKey::from_public_key_der(spki_der).ok()
}

/// The SHA-256 of a SubjectPublicKeyInfo as 64 lowercase hex digits: the pin
/// shared out of band (B.1).
pub fn spki_fingerprint(spki_der: &[u8]) -> String {
    hex::encode(Sha256::digest(spki_der))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::terms::{Rights, Subtree};
    use crate::wire::{Device, Initiator, UtcTime};
    use handover_dm::DevId;

    const SPKI: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE32bs3btMFxhMpHyws7BeOtsn19xDMLillVSGNLm26/L/efHfoWSb3rW22Na1ornWj7IYeAHvgEAZXVNgnT28pw==";
    const SCALAR: &str = "b1e9536892eed4183ecd1359dc220aaffbf1f961435964911772e75562c425f7";
    const SIG: &str = "MEUCIEFRwg5gu33DJGNQYnyqbUcp+l21Upm5D3TjjCkczEDoAiEA0yQJRBtb3nogKtHVzQ+cEidqrFp5FxU8ACzQJhYxorQ=";

    fn subtree(uri: &str, rights: &str) -> Subtree {
        Subtree {
            uri: uri.into(),
            rights: Rights::parse(rights).unwrap(),
        }
    }

    /// The terms of the B.9 test vector, subtrees deliberately out of order
    /// and rights in a different order than canonical.
    fn vector_terms() -> Terms {
        Terms {
            initiator: Initiator::Delegated,
            delegating: ServerId::parse("carrier.example").unwrap(),
            delegated: ServerId::parse("corp.example").unwrap(),
            device: Device {
                dev_id: DevId::parse("IMEI:490154203237518").unwrap(),
                man: "Acme".into(),
                model: "X1".into(),
            },
            scope: Scope::Partial(vec![
                subtree("./Vendor/Corp/Apps", "Replace,Get,Delete,Add"),
                subtree("./Vendor-Corp/Certs", "Get"),
                subtree("./DevDetail", "Get"),
            ]),
            term: Term::Temporary {
                expires: UtcTime::parse("2026-12-31T00:00:00Z").unwrap(),
            },
            reason: Some("Ticket 4711".into()),
            requested_by: None,
            approved_by: None,
        }
    }

    fn vector_input() -> String {
        let id = DelegationId::parse("0b7e7c1e-3a52-4c1e-9d7a-2f1c8e4b5a60").unwrap();
        signature_input(
            &canonical_terms(&id, &vector_terms()),
            &ServerId::parse("corp.example").unwrap(),
            &NonceB64::parse("AAECAwQFBgcICQoLDA0ODw==").unwrap(),
            &NonceB64::parse("EBESExQVFhcYGRobHB0eHw==").unwrap(),
        )
    }

    #[test]
    fn b9_vector_input_is_415_bytes_with_the_given_hash() {
        let input = vector_input();
        assert_eq!(input.len(), 415);
        assert!(input.contains(
            "Scope=./DevDetail|Get;./Vendor-Corp/Certs|Get;./Vendor/Corp/Apps|Add,Delete,Get,Replace\n"
        ));
        assert_eq!(
            hex::encode(Sha256::digest(input.as_bytes())),
            "ed67c626413e9e0161040ea9237f719f6c78ac532317a80be8e37e322d279a48"
        );
    }

    #[test]
    fn b9_vector_signature_verifies_with_the_spki() {
        let spki = B64.decode(SPKI).unwrap();
        let key = verifying_key_from_spki(&spki).unwrap();
        let sig = SignatureB64::parse(SIG).unwrap();
        assert!(verify(&key, &vector_input(), &sig));
        assert!(!verify(
            &key,
            &vector_input().replace("corp.", "corq."),
            &sig
        ));
    }

    #[test]
    fn b9_vector_signature_is_reproduced_by_rfc6979() {
        let key = SigningKey::from_slice(&hex::decode(SCALAR).unwrap()).unwrap();
        assert_eq!(sign(&key, &vector_input()).as_str(), SIG);
        let spki = B64.decode(SPKI).unwrap();
        assert_eq!(
            verifying_key_from_spki(&spki).unwrap(),
            *key.verifying_key()
        );
    }

    /// The vector's terms as a received Notification: subtrees unsorted,
    /// rights in another order, one URI written with a character reference.
    #[test]
    fn b9_vector_from_a_received_notification() {
        let doc = r#"<DelegationMessage xmlns="urn:dm-delegation:1.0" Version="1.0">
  <MsgType>Notification</MsgType>
  <MsgID>6f1c2a90-5b1e-4c8e-a1c2-0d9e8f7a6b5c</MsgID>
  <DelegationID>0b7e7c1e-3a52-4c1e-9d7a-2f1c8e4b5a60</DelegationID>
  <Sender>corp.example</Sender>
  <Recipient>carrier.example</Recipient>
  <Sent>2026-11-27T10:00:00Z</Sent>
  <Terms>
    <Initiator>delegated</Initiator>
    <DelegatingServer>carrier.example</DelegatingServer>
    <DelegatedServer>corp.example</DelegatedServer>
    <Device><DevId>IMEI:490154203237518</DevId><Man>Acme</Man><Mod>X1</Mod></Device>
    <Type>partial</Type>
    <Scope>
      <Subtree URI="./Vendor/Corp/Apps" Rights="Replace,Get,Delete,Add"/>
      <Subtree URI="&#x2e;/DevDetail" Rights="Get"/>
      <Subtree URI="./Vendor-Corp/Certs" Rights="Get"/>
    </Scope>
    <Term>temporary</Term>
    <Expires>2026-12-31T00:00:00Z</Expires>
  </Terms>
  <Nonce>AAECAwQFBgcICQoLDA0ODw==</Nonce>
</DelegationMessage>"#;
        let m =
            crate::wire::DelegationMessage::parse(doc.as_bytes(), crate::wire::MEDIA_TYPE).unwrap();
        let crate::wire::Payload::Notification { terms, nonce } = &m.payload else {
            panic!()
        };
        let input = signature_input(
            &canonical_terms(&m.delegation_id, terms),
            &m.sender,
            nonce,
            &NonceB64::parse("EBESExQVFhcYGRobHB0eHw==").unwrap(),
        );
        assert_eq!(input, vector_input());
        let key = verifying_key_from_spki(&B64.decode(SPKI).unwrap()).unwrap();
        assert!(verify(&key, &input, &SignatureB64::parse(SIG).unwrap()));
    }

    #[test]
    fn b1_spki_fingerprint() {
        assert_eq!(
            spki_fingerprint(&B64.decode(SPKI).unwrap()),
            "5bf6ff07134fa8867f4d898504062708ffd96e2f7e9f7e7ab4792f91f3a10954"
        );
    }

    #[test]
    fn b9_full_and_permanent_leave_scope_and_expires_empty() {
        let mut t = vector_terms();
        t.scope = Scope::Full;
        t.term = Term::Permanent;
        let id = DelegationId::parse("0b7e7c1e-3a52-4c1e-9d7a-2f1c8e4b5a60").unwrap();
        let c = canonical_terms(&id, &t);
        assert!(c.contains("\nType=full\nScope=\nTerm=permanent\nExpires=\n"));
        assert!(c.ends_with("Expires=\n"));
    }

    #[test]
    fn b9_a_garbled_signature_does_not_verify() {
        let spki = B64.decode(SPKI).unwrap();
        let key = verifying_key_from_spki(&spki).unwrap();
        let sig = SignatureB64::parse("AAAA").unwrap();
        assert!(!verify(&key, &vector_input(), &sig));
    }
}
