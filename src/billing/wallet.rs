//! A wallet's allocations: which funds requests (groups, sub-accounts) are granted from what
//! the wallet holds. Pure arithmetic over plain values.
//!
//! The rules: requests are considered oldest first; an allocation once granted stays in force
//! (no flapping) even when credits are later removed, which marks the wallet overdrawn
//! instead; a request that asks for more than it has waits until the wallet can cover the
//! whole increase; asking for less releases funds at once.

use super::{Money, MoneyError};

/// One request for funds from a wallet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'a> {
    /// Who asks, e.g. `group/payments/payments-team`; ties in `requested_at` break by it.
    pub id: &'a str,
    /// The amount asked for.
    pub amount: Money,
    /// When it was first asked (creation time, seconds): older requests are served first.
    pub requested_at: i64,
    /// The allocation in force for this requester, if one was granted before.
    pub granted: Option<Money>,
}

/// The decision for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub id: String,
    /// What is allocated to the requester now.
    pub in_force: Money,
    /// When the request (or its increase) could not be granted: the amount asked for and
    /// what the wallet had left for it.
    pub refused: Option<Refused>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub wanted: Money,
    pub available: Money,
}

/// A wallet's allocations after deciding every request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    pub decisions: Vec<Decision>,
    /// Sum of the allocations in force.
    pub allocated: Money,
    /// `credited - allocated - spent`; negative when the wallet is overdrawn.
    pub balance: Money,
}

impl Allocation {
    pub fn overdrawn(&self) -> bool {
        self.balance.is_negative()
    }

    pub fn decision(&self, id: &str) -> Option<&Decision> {
        self.decisions.iter().find(|d| d.id == id)
    }
}

/// Decides every request against a wallet that was `credited` and has `spent` directly.
pub fn allocate(
    credited: Money,
    spent: Money,
    requests: &[Request<'_>],
) -> Result<Allocation, MoneyError> {
    let mut ordered: Vec<&Request<'_>> = requests.iter().collect();
    ordered.sort_by(|a, b| (a.requested_at, a.id).cmp(&(b.requested_at, b.id)));

    // Grants in force stay, shrunk to what is asked if that is less.
    let kept: Vec<Money> = ordered
        .iter()
        .map(|r| r.granted.map_or(Money::ZERO, |g| g.min(r.amount)))
        .collect();
    let mut allocated = Money::checked_sum(kept.iter().copied())?;
    let mut decisions = Vec::with_capacity(ordered.len());
    for (request, kept) in ordered.iter().zip(kept) {
        let mut decision = Decision {
            id: request.id.to_owned(),
            in_force: kept,
            refused: None,
        };
        if request.amount > kept {
            let increase = request.amount.checked_sub(kept)?;
            let available = credited.checked_sub(spent)?.checked_sub(allocated)?;
            if increase <= available {
                allocated = allocated.checked_add(increase)?;
                decision.in_force = request.amount;
            } else {
                decision.refused = Some(Refused {
                    wanted: request.amount,
                    available: available.max(Money::ZERO).checked_add(kept)?,
                });
            }
        }
        decisions.push(decision);
    }
    let balance = credited.checked_sub(allocated)?.checked_sub(spent)?;
    Ok(Allocation {
        decisions,
        allocated,
        balance,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(text: &str) -> Money {
        Money::parse(text).unwrap()
    }

    fn request<'a>(id: &'a str, amount: &str, at: i64, granted: Option<&str>) -> Request<'a> {
        Request {
            id,
            amount: m(amount),
            requested_at: at,
            granted: granted.map(m),
        }
    }

    fn in_force(allocation: &Allocation, id: &str) -> String {
        allocation.decision(id).unwrap().in_force.to_string()
    }

    #[test]
    fn oldest_first_wins_when_funds_are_short() {
        let requests = [
            request("group/b", "600.00", 20, None),
            request("group/a", "600.00", 10, None),
        ];
        let allocation = allocate(m("1000"), Money::ZERO, &requests).unwrap();
        assert_eq!(in_force(&allocation, "group/a"), "600.00");
        assert_eq!(in_force(&allocation, "group/b"), "0.00");
        assert_eq!(
            allocation.decision("group/b").unwrap().refused,
            Some(Refused {
                wanted: m("600"),
                available: m("400")
            })
        );
        assert_eq!(allocation.allocated, m("600"));
        assert_eq!(allocation.balance, m("400"));
    }

    #[test]
    fn ties_break_by_id_so_the_outcome_is_deterministic() {
        let requests = [request("z", "700", 5, None), request("a", "700", 5, None)];
        let allocation = allocate(m("1000"), Money::ZERO, &requests).unwrap();
        assert_eq!(in_force(&allocation, "a"), "700.00");
        assert!(allocation.decision("z").unwrap().refused.is_some());
    }

    #[test]
    fn a_grant_in_force_does_not_flap_to_a_newer_request() {
        // b was granted while a did not exist; a is older but b keeps its funds.
        let requests = [
            request("a", "600", 10, None),
            request("b", "600", 20, Some("600")),
        ];
        let allocation = allocate(m("1000"), Money::ZERO, &requests).unwrap();
        assert_eq!(in_force(&allocation, "b"), "600.00");
        assert_eq!(in_force(&allocation, "a"), "0.00");
    }

    #[test]
    fn an_increase_waits_for_funds_and_keeps_the_current_grant() {
        let requests = [
            request("a", "900", 10, Some("500")),
            request("b", "300", 20, Some("300")),
        ];
        let allocation = allocate(m("1000"), Money::ZERO, &requests).unwrap();
        assert_eq!(in_force(&allocation, "a"), "500.00");
        assert_eq!(
            allocation.decision("a").unwrap().refused,
            Some(Refused {
                wanted: m("900"),
                available: m("700")
            })
        );
        assert_eq!(allocation.balance, m("200"));
    }

    #[test]
    fn asking_for_less_releases_funds() {
        let requests = [
            request("a", "100", 10, Some("500")),
            request("b", "800", 20, None),
        ];
        let allocation = allocate(m("1000"), Money::ZERO, &requests).unwrap();
        assert_eq!(in_force(&allocation, "a"), "100.00");
        assert_eq!(in_force(&allocation, "b"), "800.00");
        assert_eq!(allocation.balance, m("100"));
    }

    #[test]
    fn removing_a_credit_overdraws_without_touching_grants_and_blocks_new_ones() {
        let requests = [
            request("a", "600", 10, Some("600")),
            request("b", "300", 20, Some("300")),
            request("c", "50", 30, None),
        ];
        let allocation = allocate(m("500"), m("20"), &requests).unwrap();
        assert!(allocation.overdrawn());
        assert_eq!(allocation.balance, m("500").checked_sub(m("920")).unwrap());
        assert_eq!(in_force(&allocation, "a"), "600.00");
        assert_eq!(in_force(&allocation, "b"), "300.00");
        assert_eq!(
            allocation.decision("c").unwrap().refused,
            Some(Refused {
                wanted: m("50"),
                available: Money::ZERO
            })
        );
    }

    #[test]
    fn spending_counts_against_what_can_be_allocated() {
        let requests = [request("a", "500", 10, None)];
        let allocation = allocate(m("1000"), m("600"), &requests).unwrap();
        assert_eq!(in_force(&allocation, "a"), "0.00");
        assert_eq!(allocation.balance, m("400"));
    }

    #[test]
    fn overflow_is_an_error_not_a_wrap() {
        let huge = Money::from_minor(i64::MAX);
        let requests = [
            Request {
                id: "a",
                amount: huge,
                requested_at: 1,
                granted: Some(huge),
            },
            Request {
                id: "b",
                amount: huge,
                requested_at: 2,
                granted: Some(huge),
            },
        ];
        assert!(allocate(huge, Money::ZERO, &requests).is_err());
    }
}
