//! What a new password must be (NIST SP 800-63B, 5.1.1.2): long enough, not too long to hash, and
//! not a password people commonly choose. No rules on character classes and no expiry.

use std::collections::HashSet;
use std::sync::LazyLock;

use crate::types::ParseError;

/// A new password has at least this many characters.
pub const MIN_CHARS: usize = 12;

/// The list shipped with the project (`workers/core/data/common-passwords.txt`), in lower case.
static COMMON: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    include_str!("../../data/common-passwords.txt")
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
});

/// Checks a new password; `personal` are words of the account (its username, its email's local
/// part) that the password must not contain. The error says what to change, never the password.
pub fn check(password: &str, personal: &[&str]) -> Result<(), ParseError> {
    if password.chars().count() < MIN_CHARS {
        return Err(ParseError::new(format!(
            "the new password must be at least {MIN_CHARS} characters long"
        )));
    }
    let lower = password.to_lowercase();
    // The common word with digits or symbols before or after it: "password123456", "!!qwerty2024".
    let core = lower.trim_matches(|c: char| !c.is_alphabetic());
    if COMMON.contains(lower.as_str()) || COMMON.contains(core) {
        return Err(ParseError::new(
            "the new password is too common (it is in the list of commonly used passwords); choose another",
        ));
    }
    if is_repetitive(&lower) {
        return Err(ParseError::new(
            "the new password is a repeated pattern or a run of characters; choose another",
        ));
    }
    for word in personal.iter().filter(|w| w.len() >= 4) {
        if lower.contains(&word.to_lowercase()) {
            return Err(ParseError::new(
                "the new password must not contain your username or email address",
            ));
        }
    }
    Ok(())
}

/// One short unit repeated ("abcabcabcabc", "aaaaaaaaaaaa") or a run of consecutive characters
/// ("123456789012", "abcdefghijkl").
fn is_repetitive(password: &str) -> bool {
    let chars: Vec<char> = password.chars().collect();
    let repeated = (1..=chars.len() / 2).any(|unit| {
        chars.len().is_multiple_of(unit) && chars.chunks(unit).all(|c| c == &chars[..unit])
    });
    let run = chars.windows(2).all(|w| {
        let step = w[1] as i64 - w[0] as i64;
        // 9 then 0 continues "…7890", as on a keyboard.
        step == 1 || step == -1 || (w[0] == '9' && w[1] == '0')
    });
    repeated || run
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn short_common_repetitive_and_personal_passwords_are_refused() {
        for (password, because) in [
            ("short-one", "at least 12"),
            ("password1234", "too common"),
            ("!!Qwerty2024!!", "too common"),
            ("iloveyou12345", "too common"),
            ("abcabcabcabc", "repeated"),
            ("123456789012", "repeated"),
            ("zzzzzzzzzzzzzzzz", "repeated"),
            ("jane.doe-likes-tea", "username"),
        ] {
            let e = check(password, &["jane.doe", "jane"]).unwrap_err();
            assert!(e.to_string().contains(because), "{password}: {e}");
        }
    }

    #[test]
    fn a_long_uncommon_password_passes() {
        check("correct horse battery staple", &["jane.doe"]).unwrap();
        check("Tidal-Lantern-Oboe-58", &["jane.doe"]).unwrap();
    }
}
