//! WAMP-cryptosign: Ed25519 challenge–response.

use ed25519_dalek::{Signature, VerifyingKey};
use rand::RngCore;

/// A fresh 32-byte challenge.
pub fn new_challenge() -> [u8; 32] {
    let mut c = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut c);
    c
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SignatureError {
    #[error("signature is not 96 bytes of hex")]
    Malformed,
    #[error("signed message does not match the challenge")]
    WrongMessage,
    #[error("signature is invalid")]
    Invalid,
}

/// Checks an AUTHENTICATE signature: hex of a 64-byte Ed25519 signature followed by the 32-byte
/// message it signs, which must equal `message` (the challenge, or it bound to the channel).
pub fn verify(
    key: &VerifyingKey,
    message: &[u8; 32],
    signature_hex: &str,
) -> Result<(), SignatureError> {
    let raw = hex::decode(signature_hex).map_err(|_| SignatureError::Malformed)?;
    if raw.len() != 96 {
        return Err(SignatureError::Malformed);
    }
    let (sig, signed) = raw.split_at(64);
    if signed != message {
        return Err(SignatureError::WrongMessage);
    }
    let sig = Signature::from_slice(sig).map_err(|_| SignatureError::Malformed)?;
    key.verify_strict(signed, &sig)
        .map_err(|_| SignatureError::Invalid)
}

/// The message signed under channel binding: the challenge XOR the channel id.
pub fn bind(challenge: &[u8; 32], channel_id: &[u8; 32]) -> [u8; 32] {
    std::array::from_fn(|i| challenge[i] ^ channel_id[i])
}

/// The client side: what a client puts into AUTHENTICATE for a challenge.
pub fn sign(key: &ed25519_dalek::SigningKey, challenge: &[u8]) -> String {
    use ed25519_dalek::Signer;
    let sig = key.sign(challenge);
    let mut out = hex::encode(sig.to_bytes());
    out.push_str(&hex::encode(challenge));
    out
}

pub fn parse_pubkey(hex_str: &str) -> Option<VerifyingKey> {
    let bytes: [u8; 32] = hex::decode(hex_str).ok()?.try_into().ok()?;
    VerifyingKey::from_bytes(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;

    #[test]
    fn a_bound_signature_verifies_only_against_the_bound_message() {
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let challenge = [1u8; 32];
        let channel_id = [0x5au8; 32];
        let bound = bind(&challenge, &channel_id);
        let signature = sign(&key, &bound);
        assert_eq!(verify(&key.verifying_key(), &bound, &signature), Ok(()));
        assert_eq!(
            verify(&key.verifying_key(), &challenge, &signature),
            Err(SignatureError::WrongMessage)
        );
        assert_eq!(bind(&bound, &channel_id), challenge);
    }

    #[test]
    fn sign_and_verify() {
        let key = SigningKey::from_bytes(&[1u8; 32]);
        let challenge = new_challenge();
        let sig = sign(&key, &challenge);
        assert_eq!(sig.len(), 192);
        assert_eq!(verify(&key.verifying_key(), &challenge, &sig), Ok(()));
        let other = SigningKey::from_bytes(&[2u8; 32]);
        assert_eq!(
            verify(&other.verifying_key(), &challenge, &sig),
            Err(SignatureError::Invalid)
        );
        assert_eq!(
            verify(&key.verifying_key(), &new_challenge(), &sig),
            Err(SignatureError::WrongMessage)
        );
        assert_eq!(
            verify(&key.verifying_key(), &challenge, "abcd"),
            Err(SignatureError::Malformed)
        );
    }
}
