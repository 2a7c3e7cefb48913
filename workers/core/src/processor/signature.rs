//! Stripe's webhook signature: the `Stripe-Signature` header is `t=<unix seconds>,v1=<hex>[,v1=…]`,
//! each `v1` an HMAC-SHA256 of `<t>.<raw body>` under an endpoint's signing secret. A webhook is
//! genuine if one `v1` matches under one of the secrets we hold (the current one, and the one
//! being rotated out) and its time is within [`TOLERANCE`] of ours: an old delivery replayed
//! by someone who captured it is refused.

use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

/// How far a webhook's signed time may be from ours, either way.
pub const TOLERANCE: chrono::Duration = chrono::Duration::minutes(5);

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the Stripe-Signature header is missing or malformed")]
    Malformed,
    #[error("the signature's time is more than five minutes from ours")]
    Stale,
    #[error("no signature matches a secret we hold")]
    Mismatch,
}

/// Checks `header` over `body` at `now` (Unix seconds) against `secrets`; constant-time in the
/// signatures' bytes.
pub fn verify(header: &str, body: &str, secrets: &[SecretString], now: i64) -> Result<(), Refused> {
    let mut time = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => time = t.parse::<i64>().ok(),
            Some(("v1", hex)) => signatures.push(decode_hex(hex).ok_or(Refused::Malformed)?),
            _ => {}
        }
    }
    let time = time.ok_or(Refused::Malformed)?;
    if signatures.is_empty() {
        return Err(Refused::Malformed);
    }
    if (now - time).abs() > TOLERANCE.num_seconds() {
        return Err(Refused::Stale);
    }
    for secret in secrets {
        for signature in &signatures {
            let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes())
                .expect("HMAC takes a key of any length");
            mac.update(time.to_string().as_bytes());
            mac.update(b".");
            mac.update(body.as_bytes());
            if mac.verify_slice(signature).is_ok() {
                return Ok(());
            }
        }
    }
    Err(Refused::Mismatch)
}

/// The header Stripe would send for `body` at `time` under `secret` (for tests and the chaos run's
/// stand-ins).
pub fn sign(body: &str, secret: &str, time: i64) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(format!("{time}.{body}").as_bytes());
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("t={time},v1={hex}")
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) || hex.len() > 128 {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn secrets(s: &[&str]) -> Vec<SecretString> {
        s.iter().map(|s| SecretString::from(*s)).collect()
    }

    #[test]
    fn a_signature_made_with_a_held_secret_passes() {
        let header = sign("{\"id\":\"evt_1\"}", "whsec_a", NOW);
        assert_eq!(
            verify(&header, "{\"id\":\"evt_1\"}", &secrets(&["whsec_a"]), NOW),
            Ok(())
        );
        // The secret being rotated out still signs.
        assert_eq!(
            verify(
                &header,
                "{\"id\":\"evt_1\"}",
                &secrets(&["whsec_new", "whsec_a"]),
                NOW + 10
            ),
            Ok(())
        );
    }

    #[test]
    fn a_forged_altered_or_stale_webhook_is_refused() {
        let header = sign("{\"amount\":100}", "whsec_a", NOW);
        assert_eq!(
            verify(&header, "{\"amount\":100}", &secrets(&["whsec_b"]), NOW),
            Err(Refused::Mismatch)
        );
        assert_eq!(
            verify(&header, "{\"amount\":999}", &secrets(&["whsec_a"]), NOW),
            Err(Refused::Mismatch)
        );
        assert_eq!(
            verify(
                &header,
                "{\"amount\":100}",
                &secrets(&["whsec_a"]),
                NOW + 301
            ),
            Err(Refused::Stale)
        );
        assert_eq!(
            verify(
                &header,
                "{\"amount\":100}",
                &secrets(&["whsec_a"]),
                NOW - 301
            ),
            Err(Refused::Stale)
        );
        for bad in [
            "",
            "t=abc,v1=00",
            "v1=00",
            "t=1800000000",
            "t=1800000000,v1=zz",
        ] {
            assert_eq!(
                verify(bad, "{}", &secrets(&["whsec_a"]), NOW),
                Err(Refused::Malformed),
                "{bad:?}"
            );
        }
        assert_eq!(
            verify(&header, "{\"amount\":100}", &[], NOW),
            Err(Refused::Mismatch)
        );
    }
}
