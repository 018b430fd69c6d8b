//! Signed operator links: HMAC-SHA256 over the link's claims (what it opens, for whom,
//! until when), so that a link cannot be forged, moved to another draft or used after it
//! expires. The token is `base64url(claims JSON) "." base64url(mac)`; the claims are not
//! secret (they name a draft and an operator), only unforgeable.
//!
//! Every token also carries its issue time (`i`, signed with the rest), so that
//! `samsa-relay revoke-links` can invalidate every link issued before a moment: the
//! operator pages compare it with the stored "links valid from" time.
//!
//! CSRF tokens for the forms on a linked page are derived from the link token with the
//! same key under another label, so a form can only be posted by someone who has the link
//! (and stop working when it expires). Forms with no link behind them (the login form,
//! pages behind single sign-on) get a fresh token per page instead
//! ([`LinkSigner::fresh_csrf_token`]): a random nonce and the issue time, MACed together
//! with what the form is for, and refused once older than the age the caller allows.
//!
//! Subscribers' links (confirm a subscription, manage or end it: [`SubscriptionClaims`])
//! are signed with the same key under a label of their own, so that a subscriber's link
//! never opens an operator page and an operator link never touches a subscription.

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

/// A verified link: its claims and when it was signed (Unix milliseconds, so that a link
/// asked for right after a revocation is not taken for one issued before it; 0 for a
/// token signed before links carried their issue time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedLink {
    pub claims: LinkClaims,
    pub issued_at: i64,
}

/// The signed payload: the claims and the issue time.
#[derive(Serialize, Deserialize)]
struct SignedClaims {
    #[serde(flatten)]
    claims: LinkClaims,
    #[serde(rename = "i", default)]
    issued_at: i64,
}

/// What a subscriber's link does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SubscriptionAction {
    /// Confirms a requested subscription (double opt-in); expires.
    #[serde(rename = "c")]
    Confirm,
    /// Opens the subscription's own page (change, end, delete) and ends it in one click
    /// (RFC 8058); in every mail, valid while the subscription's nonce is unchanged.
    #[serde(rename = "m")]
    Manage,
}

/// What a subscriber's link says: the action, the subscription and its nonce (a new
/// nonce invalidates every earlier link), and an expiry (Unix seconds) for confirmations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionClaims {
    #[serde(rename = "a")]
    pub action: SubscriptionAction,
    #[serde(rename = "s")]
    pub subscriber_id: i64,
    #[serde(rename = "n")]
    pub nonce: String,
    #[serde(rename = "e", default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
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
const FRESH_CSRF_LABEL: &[u8] = b"samsa-relay fresh csrf v1\0";
const SUBSCRIPTION_LABEL: &[u8] = b"samsa-relay subscription v1\0";
/// The random part of a fresh CSRF token. It needs to be unique, not secret: the MAC is
/// what makes the token unforgeable.
const NONCE_BYTES: usize = 16;
/// Longest token accepted; real ones are about 150 characters.
const MAX_TOKEN_CHARS: usize = 1024;

impl LinkSigner {
    pub fn new(secret: &Secret) -> LinkSigner {
        LinkSigner {
            key: secret.expose().as_bytes().to_vec(),
        }
    }

    /// Signs `claims` as issued now.
    pub fn sign(&self, claims: &LinkClaims) -> String {
        self.sign_issued(claims, Timestamp::now())
    }

    /// Signs `claims` as issued at `issued_at`.
    pub fn sign_issued(&self, claims: &LinkClaims, issued_at: Timestamp) -> String {
        let json = serde_json::to_vec(&SignedClaims {
            claims: claims.clone(),
            issued_at: issued_at.as_millisecond(),
        })
        .expect("claims serialize");
        let payload = URL_SAFE_NO_PAD.encode(json);
        let mac = self.mac(LINK_LABEL, payload.as_bytes());
        format!("{payload}.{}", URL_SAFE_NO_PAD.encode(mac))
    }

    /// Checks the signature first (nothing of an unsigned token is trusted), then expiry.
    pub fn verify(&self, token: &str, now: Timestamp) -> Result<LinkClaims, LinkError> {
        self.verify_issued(token, now)
            .map(|verified| verified.claims)
    }

    /// [`LinkSigner::verify`], also returning when the link was issued.
    pub fn verify_issued(&self, token: &str, now: Timestamp) -> Result<VerifiedLink, LinkError> {
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
        let signed: SignedClaims =
            serde_json::from_slice(&json).map_err(|_| LinkError::Malformed)?;
        if now.as_second() >= signed.claims.expires_at {
            return Err(LinkError::Expired);
        }
        Ok(VerifiedLink {
            claims: signed.claims,
            issued_at: signed.issued_at,
        })
    }

    /// Signs a subscriber's link.
    pub fn sign_subscription(&self, claims: &SubscriptionClaims) -> String {
        let json = serde_json::to_vec(claims).expect("claims serialize");
        let payload = URL_SAFE_NO_PAD.encode(json);
        let mac = self.mac(SUBSCRIPTION_LABEL, payload.as_bytes());
        format!("{payload}.{}", URL_SAFE_NO_PAD.encode(mac))
    }

    /// Checks a subscriber's link: the signature first, then the expiry if it has one.
    /// The caller compares the nonce with the stored one.
    pub fn verify_subscription(
        &self,
        token: &str,
        now: Timestamp,
    ) -> Result<SubscriptionClaims, LinkError> {
        if token.len() > MAX_TOKEN_CHARS {
            return Err(LinkError::Malformed);
        }
        let (payload, signature) = token.split_once('.').ok_or(LinkError::Malformed)?;
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| LinkError::Malformed)?;
        let mut mac = self.keyed();
        mac.update(SUBSCRIPTION_LABEL);
        mac.update(payload.as_bytes());
        mac.verify_slice(&signature)
            .map_err(|_| LinkError::BadSignature)?;
        let json = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| LinkError::Malformed)?;
        let claims: SubscriptionClaims =
            serde_json::from_slice(&json).map_err(|_| LinkError::Malformed)?;
        if claims
            .expires_at
            .is_some_and(|expires_at| now.as_second() >= expires_at)
        {
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

    /// A CSRF token for one form with no link behind it, bound to `context` (what the form
    /// is for and, behind single sign-on, whom): `base64url(nonce ‖ issue time) "."
    /// base64url(mac)`. Each page gets a new one.
    pub fn fresh_csrf_token(&self, context: &str, now: Timestamp) -> String {
        let mut body = [0_u8; NONCE_BYTES + 8];
        body[..NONCE_BYTES].copy_from_slice(&fastrand::u128(..).to_be_bytes());
        body[NONCE_BYTES..].copy_from_slice(&now.as_second().to_be_bytes());
        let mac = self.fresh_csrf_mac(context, &body).finalize().into_bytes();
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(body),
            URL_SAFE_NO_PAD.encode(mac)
        )
    }

    /// Checks a posted fresh CSRF token: the MAC (constant time), then that it was issued
    /// for `context` no more than `max_age` before `now` (and not in the future).
    pub fn check_fresh_csrf(
        &self,
        context: &str,
        posted: &str,
        now: Timestamp,
        max_age: std::time::Duration,
    ) -> bool {
        let Some((body, signature)) = posted.trim().split_once('.') else {
            return false;
        };
        let (Ok(body), Ok(signature)) = (
            URL_SAFE_NO_PAD.decode(body),
            URL_SAFE_NO_PAD.decode(signature),
        ) else {
            return false;
        };
        if body.len() != NONCE_BYTES + 8 {
            return false;
        }
        if self
            .fresh_csrf_mac(context, &body)
            .verify_slice(&signature)
            .is_err()
        {
            return false;
        }
        let issued_at = i64::from_be_bytes(body[NONCE_BYTES..].try_into().expect("8 bytes"));
        let age = now.as_second().saturating_sub(issued_at);
        // A minute of clock skew between instances behind one proxy is allowed.
        (-60..=max_age.as_secs() as i64).contains(&age)
    }

    /// The MAC state over a fresh token's context (length-prefixed, so no context is a
    /// prefix of another) and body.
    fn fresh_csrf_mac(&self, context: &str, body: &[u8]) -> Hmac<Sha256> {
        let mut mac = self.keyed();
        mac.update(FRESH_CSRF_LABEL);
        mac.update(&(context.len() as u64).to_be_bytes());
        mac.update(context.as_bytes());
        mac.update(body);
        mac
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

    #[test]
    fn a_link_carries_its_issue_time() {
        let signer = signer();
        let token = signer.sign_issued(&review(12, 2_000), at(1_500));
        assert_eq!(
            signer.verify_issued(&token, at(1_600)).unwrap(),
            VerifiedLink {
                claims: review(12, 2_000),
                issued_at: 1_500_000
            }
        );
        // A token from before issue times were signed counts as issued at 0.
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&review(12, 2_000)).unwrap());
        let mac = URL_SAFE_NO_PAD.encode(signer.mac(LINK_LABEL, payload.as_bytes()));
        let old = format!("{payload}.{mac}");
        assert_eq!(signer.verify_issued(&old, at(1_600)).unwrap().issued_at, 0);
    }

    #[test]
    fn fresh_csrf_tokens_differ_belong_to_their_context_and_expire() {
        let signer = signer();
        let hour = std::time::Duration::from_secs(3600);
        let first = signer.fresh_csrf_token("login form", at(10_000));
        let second = signer.fresh_csrf_token("login form", at(10_000));
        assert_ne!(first, second, "every page gets its own token");
        assert!(signer.check_fresh_csrf("login form", &first, at(10_000), hour));
        assert!(signer.check_fresh_csrf("login form", &first, at(13_600), hour));
        assert!(!signer.check_fresh_csrf("login form", &first, at(13_601), hour));
        assert!(!signer.check_fresh_csrf("login form", &first, at(9_000), hour));
        assert!(!signer.check_fresh_csrf("sso\0anna@example.org", &first, at(10_000), hour));
        // Moving the issue time forward breaks the MAC.
        let (body, mac) = first.split_once('.').unwrap();
        let mut body = URL_SAFE_NO_PAD.decode(body).unwrap();
        body[NONCE_BYTES..].copy_from_slice(&13_000_i64.to_be_bytes());
        let moved = format!("{}.{mac}", URL_SAFE_NO_PAD.encode(body));
        assert!(!signer.check_fresh_csrf("login form", &moved, at(13_601), hour));
        for garbage in ["", ".", "abc", "a.b", &"x".repeat(5000)] {
            assert!(!signer.check_fresh_csrf("login form", garbage, at(10_000), hour));
        }
    }

    fn subscription(action: SubscriptionAction, expires_at: Option<i64>) -> SubscriptionClaims {
        SubscriptionClaims {
            action,
            subscriber_id: 42,
            nonce: "0123456789abcdef".to_owned(),
            expires_at,
        }
    }

    #[test]
    fn a_subscription_link_verifies_until_it_expires_and_cannot_be_moved() {
        let signer = signer();
        let confirm =
            signer.sign_subscription(&subscription(SubscriptionAction::Confirm, Some(2_000)));
        assert_eq!(
            signer.verify_subscription(&confirm, at(1_999)).unwrap(),
            subscription(SubscriptionAction::Confirm, Some(2_000))
        );
        assert_eq!(
            signer.verify_subscription(&confirm, at(2_000)),
            Err(LinkError::Expired)
        );
        let manage = signer.sign_subscription(&subscription(SubscriptionAction::Manage, None));
        assert!(manage.len() < 150, "short enough for a header: {manage}");
        assert!(
            signer
                .verify_subscription(&manage, at(i64::from(i32::MAX)))
                .is_ok()
        );
        // Another subscriber, or a confirm link made a manage link, breaks the MAC.
        let (_, mac) = manage.split_once('.').unwrap();
        let mut other = subscription(SubscriptionAction::Manage, None);
        other.subscriber_id = 43;
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&other).unwrap());
        assert_eq!(
            signer.verify_subscription(&format!("{payload}.{mac}"), at(1_000)),
            Err(LinkError::BadSignature)
        );
    }

    #[test]
    fn subscription_links_and_operator_links_never_stand_in_for_each_other() {
        let signer = signer();
        let operator = signer.sign(&review(12, 2_000));
        assert!(signer.verify_subscription(&operator, at(1_000)).is_err());
        let manage = signer.sign_subscription(&subscription(SubscriptionAction::Manage, None));
        assert!(signer.verify(&manage, at(1_000)).is_err());
        // Same claims bytes under the other label: still refused.
        let (payload, _) = operator.split_once('.').unwrap();
        let mac = URL_SAFE_NO_PAD.encode(signer.mac(SUBSCRIPTION_LABEL, payload.as_bytes()));
        assert!(
            signer
                .verify(&format!("{payload}.{mac}"), at(1_000))
                .is_err()
        );
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
