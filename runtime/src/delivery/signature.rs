//! Standard Webhooks signatures (<https://www.standardwebhooks.com>). A secret reads `whsec_`
//! and the base64 of its key bytes. A request carries `webhook-id`, `webhook-timestamp` (Unix
//! seconds) and `webhook-signature`: `v1,` and the base64 HMAC-SHA256 of `id.timestamp.body`,
//! once per current secret, space-separated, so that during a rotation a receiver verifying
//! with either the old or the new secret accepts the request.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac as _};
use sha2::Sha256;

pub const SECRET_PREFIX: &str = "whsec_";
/// Key bytes of a generated secret (the standard allows 24 to 64).
const GENERATED_KEY_BYTES: usize = 32;
const KEY_BYTES_MIN: usize = 24;
const KEY_BYTES_MAX: usize = 64;

/// Why a stored secret cannot sign.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("a webhook secret starts with `{SECRET_PREFIX}`")]
    Prefix,
    #[error("a webhook secret is `{SECRET_PREFIX}` and base64 key bytes")]
    Base64,
    #[error("a webhook secret's key is {KEY_BYTES_MIN} to {KEY_BYTES_MAX} bytes, not {0}")]
    Length(usize),
}

/// A new random secret (256 bits).
pub fn generate_secret() -> String {
    let mut key = [0u8; GENERATED_KEY_BYTES];
    key[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    key[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    format!("{SECRET_PREFIX}{}", STANDARD.encode(key))
}

/// A secret's key, ready to sign.
#[derive(Clone)]
pub struct SigningKey {
    key: Vec<u8>,
}

impl SigningKey {
    pub fn parse(secret: &str) -> Result<SigningKey, SecretError> {
        let encoded = secret
            .strip_prefix(SECRET_PREFIX)
            .ok_or(SecretError::Prefix)?;
        let key = STANDARD.decode(encoded).map_err(|_| SecretError::Base64)?;
        if !(KEY_BYTES_MIN..=KEY_BYTES_MAX).contains(&key.len()) {
            return Err(SecretError::Length(key.len()));
        }
        Ok(SigningKey { key })
    }

    fn mac(&self, id: &str, timestamp_s: i64, body: &[u8]) -> Hmac<Sha256> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes keys of any length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp_s.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }

    /// `v1,<base64 signature>` of one request.
    pub fn sign(&self, id: &str, timestamp_s: i64, body: &[u8]) -> String {
        let tag = self.mac(id, timestamp_s, body).finalize().into_bytes();
        format!("v1,{}", STANDARD.encode(tag))
    }

    /// Whether `header` (a `webhook-signature` value) holds a valid signature by this key, as
    /// a receiver checks it (constant-time comparison).
    pub fn verifies(&self, header: &str, id: &str, timestamp_s: i64, body: &[u8]) -> bool {
        header.split(' ').any(|signature| {
            let Some(encoded) = signature.strip_prefix("v1,") else {
                return false;
            };
            let Ok(tag) = STANDARD.decode(encoded) else {
                return false;
            };
            self.mac(id, timestamp_s, body).verify_slice(&tag).is_ok()
        })
    }
}

/// The `webhook-signature` header of one request: a signature by every current key.
pub fn signature_header(keys: &[SigningKey], id: &str, timestamp_s: i64, body: &[u8]) -> String {
    keys.iter()
        .map(|key| key.sign(id, timestamp_s, body))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification and its reference libraries.
    const SPEC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SPEC_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SPEC_TIMESTAMP_S: i64 = 1_614_265_330;
    const SPEC_BODY: &[u8] = br#"{"test": 2432232314}"#;

    #[test]
    fn signs_the_specification_example_as_the_reference_libraries_do() {
        let key = SigningKey::parse(SPEC_SECRET).unwrap();
        assert_eq!(
            key.sign(SPEC_ID, SPEC_TIMESTAMP_S, SPEC_BODY),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn during_a_rotation_either_secret_verifies_and_nothing_else_does() {
        let old = SigningKey::parse(SPEC_SECRET).unwrap();
        let new = SigningKey::parse(&generate_secret()).unwrap();
        let header = signature_header(&[new.clone(), old.clone()], SPEC_ID, 7, b"{}");
        assert_eq!(header.split(' ').count(), 2);
        assert!(old.verifies(&header, SPEC_ID, 7, b"{}"));
        assert!(new.verifies(&header, SPEC_ID, 7, b"{}"));
        assert!(
            !new.verifies(&header, SPEC_ID, 8, b"{}"),
            "another timestamp"
        );
        assert!(!new.verifies(&header, SPEC_ID, 7, b"{ }"), "another body");
        let stranger = SigningKey::parse(&generate_secret()).unwrap();
        assert!(!stranger.verifies(&header, SPEC_ID, 7, b"{}"));
    }

    #[test]
    fn secrets_that_cannot_sign_say_why() {
        assert_eq!(
            SigningKey::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").err(),
            Some(SecretError::Prefix)
        );
        assert_eq!(
            SigningKey::parse("whsec_not base64!").err(),
            Some(SecretError::Base64)
        );
        assert_eq!(
            SigningKey::parse("whsec_c2hvcnQ=").err(),
            Some(SecretError::Length(5))
        );
        assert_ne!(generate_secret(), generate_secret());
    }
}
