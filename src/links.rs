//! Signed operator links: HMAC-SHA256 over the link's claims (what it opens, for whom,
//! until when), so that a link cannot be forged, moved to another draft or used after it
//! expires. The token is `base64url(claims JSON) "." base64url(mac)`; the claims are not
//! secret (they name a draft and an operator), only unforgeable.
//!
//! CSRF tokens for the forms on a linked page are derived from the link token with the
//! same key under another label, so a form can only be posted by someone who has the link.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac as _};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::secret::Secret;

/// What a link opens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "p", rename_all = "snake_case")]
pub enum LinkPurpose {
    /// The review page of one draft; `v` is the version the link was sent for.
    Review {
        #[serde(rename = "d")]
        draft_id: i64,
        #[serde(rename = "v")]
        version: i64,
    },
    /// The operators' dashboard.
    Dashboard,
}

/// What a link says: purpose, operator (email address) and expiry (Unix seconds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkClaims {
    #[serde(flatten)]
    pub purpose: LinkPurpose,
    #[serde(rename = "o")]
    pub operator: String,
    #[serde(rename = "e")]
    pub expires_at: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("the link is malformed")]
    Malformed,
    #[error("the link's signature is wrong")]
    BadSignature,
    #[error("the link has expired")]
    Expired,
}

/// Signs and verifies links with the configured link secret.
#[derive(Clone)]
pub struct LinkSigner {
    key: Vec<u8>,
}

const LINK_LABEL: &[u8] = b"samsa-relay link v1\0";
const CSRF_LABEL: &[u8] = b"samsa-relay csrf v1\0";
/// Longest token accepted; real ones are about 150 characters.
const MAX_TOKEN_CHARS: usize = 1024;

impl LinkSigner {
    pub fn new(secret: &Secret) -> LinkSigner {
        LinkSigner {
            key: secret.expose().as_bytes().to_vec(),
        }
    }

    pub fn sign(&self, claims: &LinkClaims) -> String {
        let json = serde_json::to_vec(claims).expect("claims serialize");
        let payload = URL_SAFE_NO_PAD.encode(json);
        let mac = self.mac(LINK_LABEL, payload.as_bytes());
        format!("{payload}.{}", URL_SAFE_NO_PAD.encode(mac))
    }

    /// Checks the signature first (nothing of an unsigned token is trusted), then expiry.
    pub fn verify(&self, token: &str, now: Timestamp) -> Result<LinkClaims, LinkError> {
        if token.len() > MAX_TOKEN_CHARS {
            return Err(LinkError::Malformed);
        }
        let (payload, signature) = token.split_once('.').ok_or(LinkError::Malformed)?;
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| LinkError::Malformed)?;
        let mut mac = self.keyed();
        mac.update(LINK_LABEL);
        mac.update(payload.as_bytes());
        mac.verify_slice(&signature)
            .map_err(|_| LinkError::BadSignature)?;
        let json = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| LinkError::Malformed)?;
        let claims: LinkClaims = serde_json::from_slice(&json).map_err(|_| LinkError::Malformed)?;
        if now.as_second() >= claims.expires_at {
            return Err(LinkError::Expired);
        }
        Ok(claims)
    }

    /// The CSRF token for forms on the page that `link_token` opens.
    pub fn csrf_token(&self, link_token: &str) -> String {
        URL_SAFE_NO_PAD.encode(self.mac(CSRF_LABEL, link_token.as_bytes()))
    }

    /// Constant-time check of a posted CSRF token.
    pub fn check_csrf(&self, link_token: &str, posted: &str) -> bool {
        let Ok(posted) = URL_SAFE_NO_PAD.decode(posted.trim()) else {
            return false;
        };
        let mut mac = self.keyed();
        mac.update(CSRF_LABEL);
        mac.update(link_token.as_bytes());
        mac.verify_slice(&posted).is_ok()
    }

    fn keyed(&self) -> Hmac<Sha256> {
        Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length")
    }

    fn mac(&self, label: &[u8], message: &[u8]) -> Vec<u8> {
        let mut mac = self.keyed();
        mac.update(label);
        mac.update(message);
        mac.finalize().into_bytes().to_vec()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn signer() -> LinkSigner {
        LinkSigner::new(&Secret::new("a-link-secret-that-is-long-enough-0123"))
    }

    fn review(draft_id: i64, expires_at: i64) -> LinkClaims {
        LinkClaims {
            purpose: LinkPurpose::Review {
                draft_id,
                version: 2,
            },
            operator: "anna@example.org".to_owned(),
            expires_at,
        }
    }

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).unwrap()
    }

    #[test]
    fn a_signed_link_verifies_until_it_expires() {
        let token = signer().sign(&review(12, 2_000));
        assert_eq!(
            signer().verify(&token, at(1_999)).unwrap(),
            review(12, 2_000)
        );
        assert_eq!(signer().verify(&token, at(2_000)), Err(LinkError::Expired));
    }

    #[test]
    fn a_link_cannot_be_moved_to_another_draft_or_extended() {
        let signer = signer();
        let token = signer.sign(&review(12, 2_000));
        let (_, mac) = token.split_once('.').unwrap();
        for forged_claims in [review(13, 2_000), review(12, 9_999)] {
            let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged_claims).unwrap());
            let forged = format!("{payload}.{mac}");
            assert_eq!(
                signer.verify(&forged, at(1_000)),
                Err(LinkError::BadSignature)
            );
        }
    }

    #[test]
    fn another_secret_does_not_verify_and_garbage_is_malformed() {
        let token = signer().sign(&review(12, 2_000));
        let other = LinkSigner::new(&Secret::new("another-secret-that-is-long-enough-0123"));
        assert_eq!(
            other.verify(&token, at(1_000)),
            Err(LinkError::BadSignature)
        );
        for garbage in ["", "abc", "a.b.c", "!!!.???", &"x".repeat(5000)] {
            assert!(signer().verify(garbage, at(1_000)).is_err(), "{garbage}");
        }
    }

    #[test]
    fn csrf_tokens_belong_to_their_link() {
        let signer = signer();
        let first = signer.sign(&review(12, 2_000));
        let second = signer.sign(&review(13, 2_000));
        let csrf = signer.csrf_token(&first);
        assert!(signer.check_csrf(&first, &csrf));
        assert!(!signer.check_csrf(&second, &csrf));
        assert!(!signer.check_csrf(&first, ""));
        assert!(!signer.check_csrf(&first, "not base64 !"));
    }

    proptest! {
        #[test]
        fn any_single_character_change_is_rejected(index in 0usize..200, replacement in "[A-Za-z0-9_.-]") {
            let signer = signer();
            let token = signer.sign(&review(12, 2_000));
            let index = index % token.len();
            let mut changed: Vec<char> = token.chars().collect();
            let replacement = replacement.chars().next().unwrap();
            prop_assume!(changed[index] != replacement);
            changed[index] = replacement;
            let changed: String = changed.into_iter().collect();
            prop_assert!(signer.verify(&changed, at(1_000)).is_err());
        }

        #[test]
        fn arbitrary_input_never_panics_and_never_verifies(input in ".{0,300}") {
            prop_assert!(signer().verify(&input, at(1_000)).is_err());
        }
    }
}
