//! DNS name rules: a name within a list of domains, and name constraints (RFC 5280
//! §4.2.1.10, DNS form). Comparison is case-insensitive and tolerates a trailing dot.

use crate::api::privateca::NameConstraints;

/// A name refused by a CA's name constraints, with the rule that refused it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NameConstraintViolation {
    /// The name is within an excluded subtree.
    #[error(
        "DNS name {name:?} is within the excluded domain {rule:?} of the CA's name constraints"
    )]
    Excluded {
        /// The refused name.
        name: String,
        /// The excluded domain it falls in.
        rule: String,
    },
    /// The CA permits only some subtrees and the name is in none of them.
    #[error(
        "DNS name {name:?} is outside the permitted domains {permitted:?} of the CA's name constraints"
    )]
    NotPermitted {
        /// The refused name.
        name: String,
        /// The permitted domains.
        permitted: Vec<String>,
    },
}

/// Lower case, without a trailing dot.
pub fn normalize(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

/// Whether `name` (possibly a wildcard `*.x`) is `domain` or below it. A wildcard covers
/// the names one label below its base, so `*.example.com` is within `example.com` but not
/// within `www.example.com`.
pub fn dns_name_within(name: &str, domain: &str) -> bool {
    let name = normalize(name);
    let domain = normalize(domain);
    // A leading dot (`.example.com`, as some constraints write it) means subdomains only.
    let (domain, subdomains_only) = match domain.strip_prefix('.') {
        Some(rest) => (rest.to_string(), true),
        None => (domain, false),
    };
    if domain.is_empty() {
        return !name.is_empty();
    }
    let base = name.strip_prefix("*.");
    let candidate = base.unwrap_or(&name);
    let below = candidate
        .strip_suffix(domain.as_str())
        .is_some_and(|prefix| prefix.ends_with('.') && prefix.len() > 1);
    let equal = candidate == domain;
    // `*.example.com` names only names below example.com, even when its base equals it.
    below || (equal && (base.is_some() || !subdomains_only))
}

/// Checks the syntax of a DNS name for a certificate: letters, digits and hyphens in labels
/// of 1 to 63 characters, at most 253 in all, optionally a leading `*.` wildcard label.
/// Returns the rule broken.
pub fn validate_dns_name(name: &str) -> Result<(), String> {
    let bare = name.strip_suffix('.').unwrap_or(name);
    let body = bare.strip_prefix("*.").unwrap_or(bare);
    if body.is_empty() {
        return Err("is empty".to_string());
    }
    if bare.len() > 253 {
        return Err("is longer than 253 characters".to_string());
    }
    for label in body.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err("has a label that is empty or longer than 63 characters".to_string());
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(
                "may contain only letters, digits, hyphens and a leading \"*.\" wildcard"
                    .to_string(),
            );
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("has a label that starts or ends with a hyphen".to_string());
        }
    }
    Ok(())
}

/// Whether `name` is within any of `domains` (each covering its subdomains).
pub fn dns_name_in_domains<S: AsRef<str>>(name: &str, domains: &[S]) -> bool {
    domains.iter().any(|d| dns_name_within(name, d.as_ref()))
}

/// Whether a wildcard `name` could stand for a name within `domain` even though its base is
/// not within it: `*.example.com` matches `secret.example.com`. Used for excluded subtrees,
/// where refusing is the safe side.
fn wildcard_reaches(name: &str, domain: &str) -> bool {
    let name = normalize(name);
    let domain = normalize(domain);
    let domain = domain.strip_prefix('.').unwrap_or(&domain);
    match name.strip_prefix("*.") {
        Some(base) => domain
            .split_once('.')
            .is_some_and(|(label, parent)| !label.is_empty() && parent == base),
        None => false,
    }
}

/// Checks a DNS name against one CA's name constraints: refused when within an excluded
/// domain (or a wildcard that could match one), or when the CA permits domains and the name
/// is in none of them.
pub fn check_name_constraints(
    name: &str,
    constraints: &NameConstraints,
) -> Result<(), NameConstraintViolation> {
    if let Some(excluded) = &constraints.excluded {
        for rule in &excluded.dns_domains {
            if dns_name_within(name, rule) || wildcard_reaches(name, rule) {
                return Err(NameConstraintViolation::Excluded {
                    name: name.to_string(),
                    rule: rule.clone(),
                });
            }
        }
    }
    if let Some(permitted) = &constraints.permitted
        && !permitted.dns_domains.is_empty()
        && !dns_name_in_domains(name, &permitted.dns_domains)
    {
        return Err(NameConstraintViolation::NotPermitted {
            name: name.to_string(),
            permitted: permitted.dns_domains.clone(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::privateca::NameConstraintItems;

    #[test]
    fn names_within_a_domain() {
        let cases = [
            ("example.com", "example.com", true),
            ("www.example.com", "example.com", true),
            ("a.b.example.com", "example.com", true),
            ("WWW.Example.COM.", "example.com", true),
            ("www.example.com", "Example.com.", true),
            ("*.example.com", "example.com", true),
            ("*.www.example.com", "example.com", true),
            ("*.example.com", "www.example.com", false),
            ("badexample.com", "example.com", false),
            ("example.com.evil", "example.com", false),
            ("com", "example.com", false),
            ("*.com", "example.com", false),
            ("www.example.com", ".example.com", true),
            ("example.com", ".example.com", false),
            ("*.example.com", ".example.com", true),
        ];
        for (name, domain, want) in cases {
            assert_eq!(
                dns_name_within(name, domain),
                want,
                "{name} within {domain}"
            );
        }
    }

    #[test]
    fn dns_name_syntax() {
        let cases = [
            ("example.com", true),
            ("*.example.com", true),
            ("xn--bcher-kva.example", true),
            ("Example.COM.", true),
            ("", false),
            ("*.", false),
            ("a..b", false),
            ("-a.example", false),
            ("a_b.example", false),
            ("www.*.example", false),
            ("exa mple.com", false),
        ];
        for (name, ok) in cases {
            assert_eq!(validate_dns_name(name).is_ok(), ok, "{name:?}");
        }
        assert!(validate_dns_name(&"a.".repeat(130)).is_err());
    }

    #[test]
    fn names_in_a_list_of_domains() {
        let domains = ["example.com", "example.org"];
        assert!(dns_name_in_domains("api.example.org", &domains));
        assert!(!dns_name_in_domains("api.example.net", &domains));
        assert!(!dns_name_in_domains("api.example.net", &[] as &[&str]));
    }

    fn constraints(permitted: &[&str], excluded: &[&str]) -> NameConstraints {
        let items = |d: &[&str]| {
            (!d.is_empty()).then(|| NameConstraintItems {
                dns_domains: d.iter().map(|s| s.to_string()).collect(),
            })
        };
        NameConstraints {
            critical: true,
            permitted: items(permitted),
            excluded: items(excluded),
        }
    }

    #[test]
    fn constraints_name_the_rule_that_refused() {
        let nc = constraints(&["corp.example"], &["secret.corp.example"]);
        let cases: [(&str, Option<&str>); 7] = [
            ("corp.example", None),
            ("api.corp.example", None),
            ("*.corp.example", Some("excluded")),
            ("db.secret.corp.example", Some("excluded")),
            ("*.secret.corp.example", Some("excluded")),
            ("example.com", Some("permitted")),
            ("corp.example.com", Some("permitted")),
        ];
        for (name, want) in cases {
            let got = check_name_constraints(name, &nc);
            match (want, got) {
                (None, Ok(())) => {}
                (Some("excluded"), Err(NameConstraintViolation::Excluded { rule, .. })) => {
                    assert_eq!(rule, "secret.corp.example", "{name}")
                }
                (Some("permitted"), Err(e @ NameConstraintViolation::NotPermitted { .. })) => {
                    assert!(e.to_string().contains("corp.example"), "{e}")
                }
                (want, got) => panic!("{name}: want {want:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn excluded_only_constraints_permit_everything_else() {
        let nc = constraints(&[], &["internal"]);
        assert!(check_name_constraints("example.com", &nc).is_ok());
        assert!(check_name_constraints("db.internal", &nc).is_err());
    }
}
