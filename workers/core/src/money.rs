//! Money: an amount and its currency as one value, so that neither travels without the other.
//!
//! The books keep amounts with two decimal places (`NUMERIC(12,2)`) and the contract carries them
//! as strings with two places ("12.50"), whatever the currency. What a currency's own smallest
//! unit is comes from ISO 4217's exponent ([`Currency::exponent`]): 2 for most, 0 for the yen, 3
//! for the Bahraini dinar. A payments processor counts in those minor units
//! ([`Money::minor_units`]). Adding or subtracting amounts of two currencies is an error, never a
//! number.

use std::fmt;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::types::{Currency, ParseError, amount};

/// An amount of one currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Money {
    #[serde(with = "amount")]
    #[schemars(with = "crate::contract::Amount")]
    amount: Decimal,
    currency: Currency,
}

/// Why two amounts could not be combined, or one not counted in minor units.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("amounts in {0} and {1} cannot be combined")]
    MixedCurrencies(Currency, Currency),
    #[error("{0} has more decimal places than {1} has minor units")]
    FinerThanMinorUnit(Decimal, Currency),
    #[error("an amount too large to count")]
    Overflow,
}

/// ISO 4217 currencies whose minor unit is not the hundredth: with no minor unit at all, and
/// with a thousandth.
const NO_MINOR_UNIT: &[&str] = &[
    "BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI", "VND",
    "VUV", "XAF", "XOF", "XPF",
];
const THOUSANDTHS: &[&str] = &["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"];

impl Currency {
    /// ISO 4217's exponent: the decimal places of the currency's minor unit.
    pub fn exponent(&self) -> u32 {
        let code = self.as_str();
        if NO_MINOR_UNIT.contains(&code) {
            0
        } else if THOUSANDTHS.contains(&code) {
            3
        } else {
            2
        }
    }
}

impl Money {
    /// `amount` of `currency`, as the books hold it.
    pub fn new(amount: Decimal, currency: Currency) -> Self {
        Self { amount, currency }
    }

    pub fn zero(currency: Currency) -> Self {
        Self::new(Decimal::ZERO, currency)
    }

    /// An amount as the contract carries it (digits, a point, two places; above zero) in the
    /// field `field`, of `currency`.
    pub fn parse(field: &str, raw: &str, currency: Currency) -> Result<Self, ParseError> {
        crate::common::parse_amount(field, raw).map(|amount| Self::new(amount, currency))
    }

    pub fn amount(&self) -> Decimal {
        self.amount
    }

    pub fn currency(&self) -> Currency {
        self.currency
    }

    /// The amount in the currency's minor units (cents for the euro, yen for the yen); an
    /// amount finer than that unit is an error, not a rounding.
    pub fn minor_units(&self) -> Result<i64, MoneyError> {
        let scaled = self
            .amount
            .checked_mul(Decimal::from(10i64.pow(self.currency.exponent())))
            .ok_or(MoneyError::Overflow)?;
        if !scaled.fract().is_zero() {
            return Err(MoneyError::FinerThanMinorUnit(self.amount, self.currency));
        }
        i64::try_from(scaled).map_err(|_| MoneyError::Overflow)
    }

    /// `units` of the currency's minor unit.
    pub fn from_minor_units(units: i64, currency: Currency) -> Self {
        Self::new(
            Decimal::from_i128_with_scale(i128::from(units), currency.exponent()),
            currency,
        )
    }

    pub fn checked_add(self, other: Money) -> Result<Money, MoneyError> {
        let currency = self.same_currency(other)?;
        let amount = self
            .amount
            .checked_add(other.amount)
            .ok_or(MoneyError::Overflow)?;
        Ok(Self::new(amount, currency))
    }

    pub fn checked_sub(self, other: Money) -> Result<Money, MoneyError> {
        let currency = self.same_currency(other)?;
        let amount = self
            .amount
            .checked_sub(other.amount)
            .ok_or(MoneyError::Overflow)?;
        Ok(Self::new(amount, currency))
    }

    /// The sum of `amounts`, all of `currency` (zero when there are none).
    pub fn sum(
        currency: Currency,
        amounts: impl IntoIterator<Item = Money>,
    ) -> Result<Money, MoneyError> {
        amounts
            .into_iter()
            .try_fold(Self::zero(currency), Money::checked_add)
    }

    fn same_currency(self, other: Money) -> Result<Currency, MoneyError> {
        if self.currency == other.currency {
            Ok(self.currency)
        } else {
            Err(MoneyError::MixedCurrencies(self.currency, other.currency))
        }
    }
}

/// `1234.50 EUR`: the amount as the contract writes it, then the code.
impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}",
            crate::types::amount_string(self.amount),
            self.currency
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eur(raw: &str) -> Money {
        Money::new(raw.parse().unwrap(), Currency::parse("EUR").unwrap())
    }

    fn of(raw: &str, code: &str) -> Money {
        Money::new(raw.parse().unwrap(), Currency::parse(code).unwrap())
    }

    #[test]
    fn minor_units_follow_the_iso_4217_exponent() {
        assert_eq!(eur("12.50").minor_units(), Ok(1250));
        assert_eq!(of("1250.00", "JPY").minor_units(), Ok(1250));
        assert_eq!(of("1.25", "KWD").minor_units(), Ok(1250));
        assert_eq!(
            of("12.50", "JPY").minor_units(),
            Err(MoneyError::FinerThanMinorUnit(
                "12.50".parse().unwrap(),
                Currency::parse("JPY").unwrap()
            ))
        );
        for (units, code) in [(1250, "EUR"), (1250, "JPY"), (1250, "BHD"), (-3, "USD")] {
            let money = Money::from_minor_units(units, Currency::parse(code).unwrap());
            assert_eq!(money.minor_units(), Ok(units), "{money}");
        }
        assert_eq!(
            Money::from_minor_units(1250, Currency::parse("EUR").unwrap()),
            eur("12.5")
        );
    }

    #[test]
    fn amounts_of_two_currencies_never_add_up() {
        assert_eq!(eur("12.50").checked_add(eur("0.75")), Ok(eur("13.25")));
        assert_eq!(eur("12.50").checked_sub(eur("0.75")), Ok(eur("11.75")));
        let mixed = Err(MoneyError::MixedCurrencies(
            Currency::parse("EUR").unwrap(),
            Currency::parse("USD").unwrap(),
        ));
        assert_eq!(eur("12.50").checked_add(of("1.00", "USD")), mixed);
        assert_eq!(eur("12.50").checked_sub(of("1.00", "USD")), mixed);
        let euro = Currency::parse("EUR").unwrap();
        assert_eq!(
            Money::sum(euro, [eur("1.10"), eur("2.20")]),
            Ok(eur("3.30"))
        );
        assert_eq!(Money::sum(euro, []), Ok(Money::zero(euro)));
        assert!(Money::sum(euro, [eur("1.10"), of("2.20", "GBP")]).is_err());
        let huge = eur(&Decimal::MAX.to_string());
        assert_eq!(huge.checked_add(eur("1")), Err(MoneyError::Overflow));
    }

    #[test]
    fn it_travels_as_an_amount_string_and_a_code() {
        let money = eur("1234.5");
        let json = serde_json::to_value(money).unwrap();
        assert_eq!(
            json,
            serde_json::json!({ "amount": "1234.50", "currency": "EUR" })
        );
        assert_eq!(serde_json::from_value::<Money>(json).unwrap(), money);
        assert_eq!(money.to_string(), "1234.50 EUR");
        let euro = Currency::parse("EUR").unwrap();
        assert_eq!(Money::parse("total", "12.50", euro), Ok(eur("12.50")));
        for bad in ["12.5", "-1.00", "0.00", "1e3", "12,50"] {
            assert!(Money::parse("total", bad, euro).is_err(), "{bad}");
        }
    }
}
