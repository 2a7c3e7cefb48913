//! Activation codes: what a provider prints on a paper bill so that a household can link the
//! account to an apartment (`bills_ingest` issues them, `apartments_link` takes them, the demo
//! data seeds one). A code is derived from the account and a nonce under the signing key, and only
//! its hash is stored.

use sha2::{Digest, Sha256};

use crate::token::Tokens;

/// The longest provider identifier, in characters: an account number, a bill's `external_id`.
pub const MAX_ID_CHARS: usize = 40;

/// The activation code of account `account` with nonce `nonce`: `XXXX-XXXX-XXXX` of 32 letters
/// and digits that are hard to confuse (60 bits), derived under the signing key, so that only its
/// holder can make it from what the database keeps.
pub fn activation_code(tokens: &Tokens, account: i64, nonce: &str) -> String {
    use base64::Engine as _;
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let derived = tokens.derive("activation-code", format!("{account}:{nonce}").as_bytes());
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(derived)
        .expect("derive gives URL-safe base64");
    let bits = u64::from_be_bytes(bytes[..8].try_into().expect("an HMAC has 32 bytes"));
    let chars: Vec<char> = (0..12)
        .map(|i| ALPHABET[((bits >> (59 - 5 * i)) & 31) as usize] as char)
        .collect();
    chars
        .chunks(4)
        .map(|c| c.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join("-")
}

/// What is stored of an activation code: the SHA-256 of its letters and digits in upper case, so
/// that `abcd-efgh-jkmn` and `ABCDEFGHJKMN` are the same code.
pub fn code_hash(code: &str) -> Vec<u8> {
    let normalised: String = code
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_uppercase())
        .collect();
    Sha256::digest(normalised.as_bytes()).to_vec()
}
