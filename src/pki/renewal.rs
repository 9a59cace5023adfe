//! When to renew a certificate, after cert-manager's rule.
//!
//! With `renewBeforePercentage: p`, renewal starts when p% of the issued lifetime
//! (notAfter − notBefore) remains. With `renewBefore: d`, it starts d before notAfter — unless
//! d is as long as the lifetime or longer (the lifetime may have been clipped by the product
//! or the CA), in which case the default applies, as it does without either: renewal when
//! one third of the lifetime remains (two thirds in). The result is truncated to the second
//! and never earlier than notBefore.

use jiff::{SignedDuration, Timestamp};

use super::{PkiError, Result, std_duration};
use crate::api::common::Duration;

/// The renewal time of a certificate valid from `not_before` to `not_after`.
pub fn renewal_time(
    not_before: Timestamp,
    not_after: Timestamp,
    renew_before: Option<&Duration>,
    renew_before_percentage: Option<i32>,
) -> Result<Timestamp> {
    let lifetime = not_after.duration_since(not_before);
    if lifetime <= SignedDuration::ZERO {
        return Err(PkiError::Validity {
            reason: format!("notAfter {not_after} is not after notBefore {not_before}"),
        });
    }
    let default = lifetime / 3;
    let before = match (renew_before_percentage, renew_before) {
        (Some(p), _) => {
            if !(1..=99).contains(&p) {
                return Err(PkiError::InvalidField {
                    field: "renewBeforePercentage".to_string(),
                    value: p.to_string(),
                    reason: "must be between 1 and 99".to_string(),
                });
            }
            SignedDuration::from_nanos(
                i64::try_from(lifetime.as_nanos() * i128::from(p) / 100).unwrap_or(i64::MAX),
            )
        }
        (None, Some(d)) => {
            let d = SignedDuration::try_from(std_duration("renewBefore", d)?).map_err(|e| {
                PkiError::InvalidField {
                    field: "renewBefore".to_string(),
                    value: d.to_string(),
                    reason: format!("is out of range: {e}"),
                }
            })?;
            if d < lifetime { d } else { default }
        }
        (None, None) => default,
    };
    let at = not_after
        .checked_sub(before)
        .map_err(|e| PkiError::Validity {
            reason: format!("renewal time out of range: {e}"),
        })?;
    let at = Timestamp::from_second(at.as_second()).map_err(|e| PkiError::Validity {
        reason: format!("renewal time out of range: {e}"),
    })?;
    Ok(at.max(not_before))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn dur(s: &str) -> Duration {
        s.parse().unwrap()
    }

    #[test]
    fn renewal_time_table() {
        let nb = ts("2026-01-01T00:00:00Z");
        let na = ts("2026-04-01T00:00:00Z"); // 90 days
        let cases: [(Option<&str>, Option<i32>, &str); 7] = [
            (None, None, "2026-03-02T00:00:00Z"), // default: 30 days left
            (Some("720h"), None, "2026-03-02T00:00:00Z"), // 30 days before
            (Some("24h"), None, "2026-03-31T00:00:00Z"), // 1 day before
            (Some("2160h"), None, "2026-03-02T00:00:00Z"), // = lifetime: default
            (Some("10000h"), None, "2026-03-02T00:00:00Z"), // > lifetime: default
            (None, Some(10), "2026-03-23T00:00:00Z"), // 9 days left
            (None, Some(50), "2026-02-15T00:00:00Z"), // half way
        ];
        for (before, pct, want) in cases {
            let before = before.map(dur);
            let got = renewal_time(nb, na, before.as_ref(), pct).unwrap();
            assert_eq!(got, ts(want), "renewBefore {before:?} percentage {pct:?}");
        }
    }

    #[test]
    fn truncates_to_the_second_and_never_precedes_not_before() {
        let nb = ts("2026-01-01T00:00:00Z");
        let na = ts("2026-01-01T00:00:10Z");
        // A third of 10 s before notAfter is 6.67 s in: truncated to 6 s.
        assert_eq!(
            renewal_time(nb, na, None, None).unwrap(),
            ts("2026-01-01T00:00:06Z")
        );
        assert_eq!(
            renewal_time(nb, na, None, Some(99)).unwrap(),
            ts("2026-01-01T00:00:00Z")
        );
    }

    #[test]
    fn refuses_bad_input_naming_it() {
        let nb = ts("2026-01-01T00:00:00Z");
        let err = renewal_time(nb, nb, None, None).unwrap_err().to_string();
        assert!(err.contains("notAfter"), "{err}");
        let na = ts("2026-02-01T00:00:00Z");
        let err = renewal_time(nb, na, None, Some(100))
            .unwrap_err()
            .to_string();
        assert!(err.contains("renewBeforePercentage"), "{err}");
        let err = renewal_time(nb, na, Some(&dur("-1h")), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("renewBefore"), "{err}");
    }
}
