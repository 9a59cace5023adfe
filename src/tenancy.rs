//! Which account owns which namespace. Pure: the Account controller feeds it the accounts it
//! sees and writes what it decides into their status.
//!
//! A namespace belongs to at most one account: the one created first (ties broken by name),
//! so the outcome does not depend on the order the controller happens to see accounts in.

use std::collections::BTreeMap;

/// An account's claim on namespaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim<'a> {
    pub account: &'a str,
    /// Creation time in seconds; earlier claims win.
    pub created: i64,
    pub namespaces: &'a [String],
}

/// A namespace an account claims but another account holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub namespace: String,
    pub held_by: String,
}

/// The outcome for every claim.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Claims {
    /// Each claimed namespace and the account that holds it.
    pub owners: BTreeMap<String, String>,
    /// For each account, the namespaces it claims but does not hold.
    pub conflicts: BTreeMap<String, Vec<Conflict>>,
}

impl Claims {
    /// The namespaces `account` holds.
    pub fn held_by(&self, account: &str) -> Vec<String> {
        self.owners
            .iter()
            .filter(|(_, owner)| owner.as_str() == account)
            .map(|(namespace, _)| namespace.clone())
            .collect()
    }

    /// The account that holds `namespace`, if any.
    pub fn owner_of(&self, namespace: &str) -> Option<&str> {
        self.owners.get(namespace).map(String::as_str)
    }
}

/// Decides every claim.
pub fn resolve(claims: &[Claim<'_>]) -> Claims {
    let mut ordered: Vec<&Claim<'_>> = claims.iter().collect();
    ordered.sort_by(|a, b| (a.created, a.account).cmp(&(b.created, b.account)));
    let mut outcome = Claims::default();
    for claim in ordered {
        for namespace in claim.namespaces {
            match outcome.owners.get(namespace) {
                Some(owner) if owner != claim.account => {
                    let conflict = Conflict {
                        namespace: namespace.clone(),
                        held_by: owner.clone(),
                    };
                    outcome
                        .conflicts
                        .entry(claim.account.to_owned())
                        .or_default()
                        .push(conflict);
                }
                Some(_) => {}
                None => {
                    outcome
                        .owners
                        .insert(namespace.clone(), claim.account.to_owned());
                }
            }
        }
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn the_earlier_account_holds_a_contested_namespace() {
        let (a, b) = (names(&["shared", "a-only"]), names(&["shared", "b-only"]));
        for claims in [
            [
                Claim {
                    account: "late",
                    created: 20,
                    namespaces: &b,
                },
                Claim {
                    account: "early",
                    created: 10,
                    namespaces: &a,
                },
            ],
            [
                Claim {
                    account: "early",
                    created: 10,
                    namespaces: &a,
                },
                Claim {
                    account: "late",
                    created: 20,
                    namespaces: &b,
                },
            ],
        ] {
            let outcome = resolve(&claims);
            assert_eq!(outcome.owner_of("shared"), Some("early"));
            assert_eq!(outcome.held_by("late"), ["b-only"]);
            assert_eq!(
                outcome.conflicts["late"],
                [Conflict {
                    namespace: "shared".into(),
                    held_by: "early".into()
                }]
            );
            assert!(!outcome.conflicts.contains_key("early"));
        }
    }

    #[test]
    fn simultaneous_claims_break_ties_by_name() {
        let ns = names(&["shared"]);
        let outcome = resolve(&[
            Claim {
                account: "zeta",
                created: 5,
                namespaces: &ns,
            },
            Claim {
                account: "alpha",
                created: 5,
                namespaces: &ns,
            },
        ]);
        assert_eq!(outcome.owner_of("shared"), Some("alpha"));
    }

    #[test]
    fn an_account_listing_a_namespace_twice_is_no_conflict_with_itself() {
        let ns = names(&["a", "a"]);
        let outcome = resolve(&[Claim {
            account: "x",
            created: 1,
            namespaces: &ns,
        }]);
        assert_eq!(outcome.held_by("x"), ["a"]);
        assert!(outcome.conflicts.is_empty());
    }
}
