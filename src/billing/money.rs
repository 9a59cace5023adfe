//! Exact money: decimal strings with at most two places, held as integer minor units.
//!
//! No floats anywhere. `"1250.00"`, `"1250.5"` and `"1250"` all parse to 125 000 minor units
//! and print back as `"1250.00"`. Amounts in the API are never signed; signed values only
//! appear in arithmetic (a ledger delta, an overdrawn wallet) and print with a leading `-`.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Minor units per major unit: every currency we bill in has two decimal places.
const SCALE: i64 = 100;

/// The largest number of integer digits an amount in the API may have. Fifteen digits keep any
/// single amount, and the sum of thousands of them, far from `i64::MAX` (≈ 9.2 × 10^16 units).
pub const MAX_INTEGER_DIGITS: usize = 15;

/// The schema pattern for an amount in the API: unsigned, no leading zeros, at most two decimals.
pub const MONEY_PATTERN: &str = r"^(0|[1-9][0-9]{0,14})(\.[0-9]{1,2})?$";

/// An exact amount of money in minor units (cents). Signed so that arithmetic can express a
/// deficit; whether a negative amount is acceptable is the caller's rule, not this type's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Money(i64);

/// Why a money string or a money operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("amount is empty")]
    Empty,
    #[error("amount {0:?} must not be negative")]
    Negative(String),
    #[error("amount {0:?} must not carry a sign")]
    Signed(String),
    #[error("amount {0:?} has more than two decimal places")]
    TooManyDecimals(String),
    #[error("amount {0:?} is not a decimal number like \"1250.00\"")]
    Malformed(String),
    #[error("amount {0:?} is too large (at most {MAX_INTEGER_DIGITS} integer digits)")]
    TooLarge(String),
    #[error("money arithmetic overflowed: {0}")]
    Overflow(String),
}

impl Money {
    pub const ZERO: Money = Money(0);

    /// An amount from minor units (cents).
    pub const fn from_minor(units: i64) -> Self {
        Money(units)
    }

    /// The amount in minor units (cents).
    pub const fn minor_units(self) -> i64 {
        self.0
    }

    pub const fn is_negative(self) -> bool {
        self.0 < 0
    }

    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// Parses an unsigned amount as written in the API: `"1250"`, `"1250.5"`, `"1250.00"`.
    /// A sign of either kind is refused.
    pub fn parse(s: &str) -> Result<Self, MoneyError> {
        if s.starts_with(['+', '-']) {
            return Err(MoneyError::Signed(s.to_owned()));
        }
        parse_digits(s, s)
    }

    /// Parses an amount that may be negative (`"-12.50"`), as a ledger delta is written.
    /// A leading `+` is still refused: there is exactly one way to write each amount's sign.
    pub fn parse_signed(s: &str) -> Result<Self, MoneyError> {
        match s.strip_prefix('-') {
            Some(rest) if rest.starts_with(['+', '-']) => Err(MoneyError::Malformed(s.to_owned())),
            Some(rest) => parse_digits(rest, s).map(|m| Money(-m.0)),
            None if s.starts_with('+') => Err(MoneyError::Signed(s.to_owned())),
            None => parse_digits(s, s),
        }
    }

    /// `self + other`, or an error naming the operands on overflow.
    pub fn checked_add(self, other: Money) -> Result<Money, MoneyError> {
        self.0
            .checked_add(other.0)
            .map(Money)
            .ok_or_else(|| MoneyError::Overflow(format!("{self} + {other}")))
    }

    /// `self - other`, or an error naming the operands on overflow. The result may be negative.
    pub fn checked_sub(self, other: Money) -> Result<Money, MoneyError> {
        self.0
            .checked_sub(other.0)
            .map(Money)
            .ok_or_else(|| MoneyError::Overflow(format!("{self} - {other}")))
    }

    /// The sum of `amounts`, or an overflow error.
    pub fn checked_sum<I: IntoIterator<Item = Money>>(amounts: I) -> Result<Money, MoneyError> {
        amounts
            .into_iter()
            .try_fold(Money::ZERO, |total, amount| total.checked_add(amount))
    }
}

/// Parses the unsigned digits of `digits`; `original` is what the user wrote, for errors.
fn parse_digits(digits: &str, original: &str) -> Result<Money, MoneyError> {
    let malformed = || MoneyError::Malformed(original.to_owned());
    if original.is_empty() {
        return Err(MoneyError::Empty);
    }
    let (whole, fraction) = match digits.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (digits, None),
    };
    let all_digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(whole) {
        return Err(malformed());
    }
    if whole.len() > 1 && whole.starts_with('0') {
        return Err(malformed());
    }
    if whole.len() > MAX_INTEGER_DIGITS {
        return Err(MoneyError::TooLarge(original.to_owned()));
    }
    let cents = match fraction {
        None => 0,
        Some(fraction) if !all_digits(fraction) => return Err(malformed()),
        Some(fraction) if fraction.len() > 2 => {
            return Err(MoneyError::TooManyDecimals(original.to_owned()));
        }
        Some(fraction) => {
            let value: i64 = fraction.parse().map_err(|_| malformed())?;
            if fraction.len() == 1 {
                value * 10
            } else {
                value
            }
        }
    };
    let units: i64 = whole.parse().map_err(|_| malformed())?;
    units
        .checked_mul(SCALE)
        .and_then(|u| u.checked_add(cents))
        .map(Money)
        .ok_or_else(|| MoneyError::TooLarge(original.to_owned()))
}

impl fmt::Display for Money {
    /// Always two decimals: `1250.00`, `0.05`, `-12.50`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        let scale = SCALE.unsigned_abs();
        write!(f, "{sign}{}.{:02}", abs / scale, abs % scale)
    }
}

impl FromStr for Money {
    type Err = MoneyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Money::parse(s)
    }
}

impl Serialize for Money {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Money {
    /// Accepts what the API schema accepts (unsigned), and the signed form the operator itself
    /// writes into status for an overdrawn wallet.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = Cow::<str>::deserialize(deserializer)?;
        Money::parse_signed(&s).map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for Money {
    fn schema_name() -> Cow<'static, str> {
        "Money".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": MONEY_PATTERN,
            "maxLength": MAX_INTEGER_DIGITS + 3,
        })
    }
}

/// The schema of an amount the operator writes that may be negative, such as the balance of an
/// overdrawn wallet.
pub fn signed_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "string",
        "pattern": r"^-?(0|[1-9][0-9]*)\.[0-9]{2}$",
    })
}

/// [`signed_schema`] for an optional field.
pub fn signed_schema_optional(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut schema = signed_schema(generator);
    schema.insert("nullable".into(), true.into());
    schema
}

/// An ISO 4217 currency code such as `USD` or `EUR`; one per account.
pub const CURRENCY_PATTERN: &str = "^[A-Z]{3}$";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_exact_amounts_into_minor_units() {
        for (text, units) in [
            ("0", 0),
            ("0.00", 0),
            ("0.05", 5),
            ("0.5", 50),
            ("1", 100),
            ("1250", 125_000),
            ("1250.5", 125_050),
            ("1250.00", 125_000),
            ("1250.99", 125_099),
            ("999999999999999.99", 99_999_999_999_999_999),
        ] {
            assert_eq!(Money::parse(text), Ok(Money::from_minor(units)), "{text}");
        }
    }

    #[test]
    fn prints_two_decimals_and_round_trips() {
        for (units, text) in [
            (0, "0.00"),
            (5, "0.05"),
            (50, "0.50"),
            (125_000, "1250.00"),
            (-1_250, "-12.50"),
            (-5, "-0.05"),
        ] {
            let money = Money::from_minor(units);
            assert_eq!(money.to_string(), text);
            assert_eq!(Money::parse_signed(text), Ok(money), "{text}");
        }
    }

    #[test]
    fn prints_the_extremes_without_overflow() {
        assert_eq!(
            Money::from_minor(i64::MIN).to_string(),
            "-92233720368547758.08"
        );
        assert_eq!(
            Money::from_minor(i64::MAX).to_string(),
            "92233720368547758.07"
        );
    }

    #[test]
    fn refuses_more_than_two_decimals() {
        for text in ["1.001", "0.000", "12.345"] {
            assert_eq!(
                Money::parse(text),
                Err(MoneyError::TooManyDecimals(text.into()))
            );
        }
    }

    #[test]
    fn refuses_signs_where_not_allowed() {
        for text in ["-1.00", "+1.00", "-0"] {
            assert_eq!(Money::parse(text), Err(MoneyError::Signed(text.into())));
        }
        assert_eq!(
            Money::parse_signed("+1.00"),
            Err(MoneyError::Signed("+1.00".into()))
        );
        assert!(Money::parse_signed("--1").is_err());
        assert!(Money::parse_signed("-+1").is_err());
        assert_eq!(Money::parse_signed("-1.5"), Ok(Money::from_minor(-150)));
    }

    #[test]
    fn refuses_malformed_text() {
        assert_eq!(Money::parse(""), Err(MoneyError::Empty));
        for text in [
            ".5", "1.", "1..0", "1,00", "1e3", " 1", "1 ", "01", "00.10", "abc", "1.a", "½",
        ] {
            assert!(
                matches!(Money::parse(text), Err(MoneyError::Malformed(_))),
                "{text:?} gave {:?}",
                Money::parse(text)
            );
        }
    }

    #[test]
    fn refuses_overflow() {
        assert_eq!(
            Money::parse("1000000000000000"),
            Err(MoneyError::TooLarge("1000000000000000".into()))
        );
        assert!(matches!(
            Money::parse("99999999999999999999999"),
            Err(MoneyError::TooLarge(_))
        ));
        let max = Money::from_minor(i64::MAX);
        assert!(matches!(
            max.checked_add(Money::from_minor(1)),
            Err(MoneyError::Overflow(_))
        ));
        let min = Money::from_minor(i64::MIN);
        assert!(matches!(
            min.checked_sub(Money::from_minor(1)),
            Err(MoneyError::Overflow(_))
        ));
        assert!(Money::checked_sum([max, Money::from_minor(1)]).is_err());
    }

    #[test]
    fn adds_and_subtracts_exactly() {
        let a = Money::parse("1250.00").unwrap();
        let b = Money::parse("0.10").unwrap();
        let c = Money::parse("0.20").unwrap();
        assert_eq!(b.checked_add(c).unwrap().to_string(), "0.30");
        assert_eq!(a.checked_sub(b).unwrap().to_string(), "1249.90");
        assert_eq!(b.checked_sub(a).unwrap().to_string(), "-1249.90");
        assert!(b.checked_sub(a).unwrap().is_negative());
        assert_eq!(
            Money::checked_sum([a, b, c]).unwrap(),
            Money::from_minor(125_030)
        );
        assert_eq!(Money::checked_sum([]).unwrap(), Money::ZERO);
    }

    #[test]
    fn serde_uses_the_decimal_string() {
        let money: Money = serde_json::from_str("\"1250.5\"").unwrap();
        assert_eq!(serde_json::to_string(&money).unwrap(), "\"1250.50\"");
        assert!(serde_json::from_str::<Money>("\"1.234\"").is_err());
        assert!(
            serde_json::from_str::<Money>("12.5").is_err(),
            "numbers are not money"
        );
    }

    #[test]
    fn schema_pattern_agrees_with_the_parser() {
        let pattern = regex::Regex::new(MONEY_PATTERN).unwrap();
        for text in [
            "0",
            "0.5",
            "0.05",
            "1250",
            "1250.00",
            "999999999999999.99",
            "",
            "-1",
            "+1",
            "1.001",
            "01",
            "1.",
            ".5",
            "1000000000000000",
            "1e3",
        ] {
            assert_eq!(
                pattern.is_match(text),
                Money::parse(text).is_ok(),
                "pattern and parser disagree on {text:?}"
            );
        }
    }
}
