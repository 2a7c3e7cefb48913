//! Amounts and dates as people read them, in mails and in documents alike: `€1,234.50`,
//! `1,234.00 CHF`, `20 December 2026`. What machines read (replies, CSV files) keeps the plain
//! forms: `1234.50`, `2026-12-20`.

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use rust_decimal::{Decimal, RoundingStrategy};

/// An amount for people: the currency's sign where it has a common one, thousands grouped, two
/// decimals.
pub fn money(amount: Decimal, currency: &str) -> String {
    let value = amount.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero);
    with_currency(value, 2, currency)
}

/// [`money`] of an amount that travels as a string; it is read as a decimal, never a float.
/// `None` if it is not a decimal.
pub fn format_money(amount: &str, currency: &str) -> Option<String> {
    Some(money(amount.parse().ok()?, currency))
}

/// A price per unit as a provider sent it (up to six places): like [`money`], but keeping every
/// place given beyond the two of cents (`€0.123456`, `€0.10`). `None` if it is not a decimal.
pub fn unit_price(price: &str, currency: &str) -> Option<String> {
    let value: Decimal = price.parse().ok()?;
    let places = value.normalize().scale().max(2);
    Some(with_currency(value, places, currency))
}

/// A day for people: `1 December 2026`.
pub fn day(day: NaiveDate) -> String {
    day.format("%-d %B %Y").to_string()
}

/// A day in a table, where space is short: `1 Dec 2026`.
pub fn short_day(day: NaiveDate) -> String {
    day.format("%-d %b %Y").to_string()
}

/// An instant for people, in UTC and saying so: `30 November 2026, 14:05 UTC`.
pub fn time(at: DateTime<Utc>) -> String {
    at.format("%-d %B %Y, %H:%M UTC").to_string()
}

/// A span of days, both included, as short as it reads unambiguously: `1–30 Nov 2026`,
/// `15 Nov – 14 Dec 2026`, `15 Dec 2026 – 14 Jan 2027`.
pub fn period(start: NaiveDate, end: NaiveDate) -> String {
    if start.year() != end.year() {
        format!("{} – {}", short_day(start), short_day(end))
    } else if start.month() != end.month() {
        format!("{} – {}", start.format("%-d %b"), short_day(end))
    } else if start.day() != end.day() {
        format!("{}–{}", start.day(), short_day(end))
    } else {
        short_day(end)
    }
}

/// `value` with `places` decimals (it has no more), thousands grouped, and the currency.
fn with_currency(value: Decimal, places: u32, currency: &str) -> String {
    let negative = value.is_sign_negative() && !value.is_zero();
    let plain = format!("{:.*}", places as usize, value.abs());
    let (whole, decimals) = plain.split_once('.').unwrap_or((&plain, ""));
    let mut grouped = String::with_capacity(whole.len() + whole.len() / 3);
    for (i, digit) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    let sign = if negative { "-" } else { "" };
    match currency {
        "EUR" => format!("{sign}€{grouped}.{decimals}"),
        "USD" => format!("{sign}${grouped}.{decimals}"),
        "GBP" => format!("{sign}£{grouped}.{decimals}"),
        other => format!("{sign}{grouped}.{decimals} {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_formatted_for_people() {
        assert_eq!(format_money("1234.5", "EUR").unwrap(), "€1,234.50");
        assert_eq!(format_money("0.005", "USD").unwrap(), "$0.01");
        assert_eq!(
            format_money("1234567.00", "CHF").unwrap(),
            "1,234,567.00 CHF"
        );
        assert_eq!(format_money("12", "GBP").unwrap(), "£12.00");
        assert_eq!(format_money("-120", "EUR").unwrap(), "-€120.00");
        assert_eq!(format_money("-0.001", "EUR").unwrap(), "€0.00");
        assert!(format_money("12,5", "EUR").is_none());
    }

    #[test]
    fn unit_prices_keep_the_places_the_provider_gave() {
        assert_eq!(unit_price("0.123456", "EUR").unwrap(), "€0.123456");
        assert_eq!(unit_price("0.1", "EUR").unwrap(), "€0.10");
        assert_eq!(unit_price("1000.500", "CHF").unwrap(), "1,000.50 CHF");
        assert!(unit_price("a lot", "EUR").is_none());
    }

    #[test]
    fn days_and_periods_read_as_people_write_them() {
        let d = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).unwrap();
        assert_eq!(day(d(2026, 12, 20)), "20 December 2026");
        assert_eq!(period(d(2026, 11, 1), d(2026, 11, 30)), "1–30 Nov 2026");
        assert_eq!(
            period(d(2026, 11, 15), d(2026, 12, 14)),
            "15 Nov – 14 Dec 2026"
        );
        assert_eq!(
            period(d(2026, 12, 15), d(2027, 1, 14)),
            "15 Dec 2026 – 14 Jan 2027"
        );
        assert_eq!(period(d(2026, 11, 3), d(2026, 11, 3)), "3 Nov 2026");
        let at = DateTime::parse_from_rfc3339("2026-11-30T14:05:09Z").unwrap();
        assert_eq!(time(at.to_utc()), "30 November 2026, 14:05 UTC");
    }
}
