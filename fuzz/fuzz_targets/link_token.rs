//! Signed operator links (`LinkSigner::verify`) and their CSRF tokens (`check_csrf`).
//!
//! The first byte of the input picks a mode; the rest is read with `arbitrary`:
//!
//! 0. the rest, as text, is a token: it never verifies (only the key can sign), and it is
//!    never the CSRF token of anything;
//! 1. claims from the input are signed: the token is URL-safe, verifies to the same claims
//!    before the expiry (when it is short enough to be accepted at all) and is `Expired`
//!    from then on; another key's signer rejects it;
//! 2. a signed token is changed by 1 to 8 edits (replace, insert, delete, at any place,
//!    of a token character or any character): if the text changed, it never verifies, and
//!    the link's CSRF token belongs to neither of them; a changed CSRF token is refused
//!    unless it differs only by surrounding whitespace (`check_csrf` trims).
//!
//! Seeds: fuzz/corpus/link_token.
#![no_main]

use std::sync::LazyLock;

use jiff::Timestamp;
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use samsa_relay::config::Secret;
use samsa_relay::links::{LinkClaims, LinkError, LinkPurpose, LinkSigner};

static SIGNER: LazyLock<LinkSigner> =
    LazyLock::new(|| LinkSigner::new(&Secret::new("fuzz-link-secret-that-is-long-enough-0123")));
static OTHER_SIGNER: LazyLock<LinkSigner> =
    LazyLock::new(|| LinkSigner::new(&Secret::new("another-link-secret-long-enough-4567")));

/// What real tokens are made of, so that edits often keep a token well-formed.
const TOKEN_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.";

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut input = Unstructured::new(rest);
    let _ = match mode % 3 {
        0 => arbitrary_token(rest),
        1 => signed_claims(&mut input),
        _ => edited_token(&mut input),
    };
});

fn arbitrary_token(rest: &[u8]) -> Result<()> {
    let token = String::from_utf8_lossy(rest);
    let now = Timestamp::from_second(1_000).expect("in range");
    assert!(
        SIGNER.verify(&token, now).is_err(),
        "an unsigned token verified"
    );
    let some_link = SIGNER.sign(&claims(LinkPurpose::Dashboard, "anna@example.org", 2_000));
    assert!(
        !SIGNER.check_csrf(&some_link, &token),
        "a CSRF token guessed"
    );
    Ok(())
}

fn signed_claims(input: &mut Unstructured<'_>) -> Result<()> {
    let purpose = if input.arbitrary()? {
        LinkPurpose::Dashboard
    } else {
        LinkPurpose::Review {
            draft_id: input.arbitrary()?,
            version: input.arbitrary()?,
        }
    };
    let operator: String = input.arbitrary()?;
    let expires_at: i64 = input.arbitrary()?;
    let now = Timestamp::from_second(
        input.int_in_range(Timestamp::MIN.as_second()..=Timestamp::MAX.as_second())?,
    )
    .expect("in range");
    let claims = claims(purpose, &operator, expires_at);

    let token = SIGNER.sign(&claims);
    assert!(
        token.bytes().all(|byte| TOKEN_ALPHABET.contains(&byte)),
        "a token that is not URL-safe: {token:?}"
    );
    let verified = SIGNER.verify(&token, now);
    if token.len() > 1024 {
        assert_eq!(verified, Err(LinkError::Malformed), "an overlong token");
    } else if now.as_second() >= expires_at {
        assert_eq!(verified, Err(LinkError::Expired), "an expired token");
    } else {
        assert_eq!(verified, Ok(claims), "a signed token does not verify");
    }
    assert!(
        OTHER_SIGNER.verify(&token, now).is_err(),
        "another key verified"
    );
    Ok(())
}

fn edited_token(input: &mut Unstructured<'_>) -> Result<()> {
    let draft_id = input.int_in_range(1..=1_000_000)?;
    let version = input.int_in_range(1..=100)?;
    let token = SIGNER.sign(&claims(
        LinkPurpose::Review { draft_id, version },
        "anna@example.org",
        2_000_000_000,
    ));
    let csrf = SIGNER.csrf_token(&token);
    let now = Timestamp::from_second(1_000).expect("in range");
    let edit_csrf: bool = input.arbitrary()?;
    let original = if edit_csrf { &csrf } else { &token };

    let mut edited: Vec<char> = original.chars().collect();
    for _ in 0..input.int_in_range(1..=8)? {
        let character = if input.ratio(1, 4)? {
            input.arbitrary::<char>()?
        } else {
            char::from(*input.choose(TOKEN_ALPHABET)?)
        };
        let at = input.choose_index(edited.len() + 1)?;
        match input.int_in_range(0..=2)? {
            0 if at < edited.len() => edited[at] = character,
            1 if at < edited.len() => {
                edited.remove(at);
            }
            _ => edited.insert(at, character),
        }
    }
    let edited: String = edited.into_iter().collect();
    if &edited == original {
        return Ok(());
    }

    if edit_csrf {
        assert_eq!(
            SIGNER.check_csrf(&token, &edited),
            edited.trim() == csrf,
            "an edited CSRF token: {edited:?}"
        );
    } else {
        assert!(
            SIGNER.verify(&edited, now).is_err(),
            "an edited token verified: {edited:?} (from {token:?})"
        );
        assert!(
            !SIGNER.check_csrf(&edited, &csrf),
            "a CSRF token fits an edited link"
        );
        assert!(
            !SIGNER.check_csrf(&token, &SIGNER.csrf_token(&edited)),
            "an edited link's CSRF token fits the link"
        );
    }
    Ok(())
}

fn claims(purpose: LinkPurpose, operator: &str, expires_at: i64) -> LinkClaims {
    LinkClaims {
        purpose,
        operator: operator.to_owned(),
        expires_at,
    }
}
