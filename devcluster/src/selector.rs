//! Label and field selectors with Kubernetes semantics.
//!
//! [`LabelSelector`] parses the `labelSelector` query parameter with the grammar of
//! `k8s.io/apimachinery/pkg/labels`:
//!
//! ```text
//! selector    = [ requirement { "," requirement } ]
//! requirement = key ( "=" | "==" | "!=" ) [ value ]
//!             | key ( "in" | "notin" ) "(" values ")"
//!             | key ( ">" | "<" ) integer
//!             | key
//!             | "!" key
//! ```
//!
//! Requirements are ANDed. `!=` and `notin` also match objects that do not carry the key.
//! Whitespace may separate any two tokens.
//!
//! [`FieldSelector`] parses the `fieldSelector` query parameter with the grammar of
//! `k8s.io/apimachinery/pkg/fields`: comma-separated `field=value`, `field==value` or
//! `field!=value` terms, where `\,`, `\=` and `\\` escape the special characters in values.

use std::collections::BTreeSet;
use std::fmt;

use serde_json::{Map, Value};

/// Why a label or field selector could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// A token of the label selector was not one the grammar allows at that position.
    #[error(
        "unable to parse requirement: found {}, expected: {expected}",
        Found(found)
    )]
    Unexpected {
        /// The offending token; empty when the selector ended too early.
        found: String,
        /// What the parser would have accepted instead.
        expected: &'static str,
    },
    /// A label key is not a valid qualified name.
    #[error("unable to parse requirement: invalid label key \"{key}\": {reason}")]
    InvalidKey {
        /// The key as written.
        key: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// A label value is not a valid label value.
    #[error(
        "unable to parse requirement: invalid label value \"{value}\" for key \"{key}\": {reason}"
    )]
    InvalidValue {
        /// The key the value belongs to.
        key: String,
        /// The value as written.
        value: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// `key in ()` or `key notin ()`.
    #[error(
        "unable to parse requirement: for 'in', 'notin' operators, values set can't be empty (key \"{key}\")"
    )]
    EmptyValueSet {
        /// The key of the requirement.
        key: String,
    },
    /// The term of a field selector has no `=`, `==` or `!=` operator, or no field name.
    #[error("invalid selector: '{selector}'; can't understand '{term}'")]
    InvalidFieldTerm {
        /// The whole field selector.
        selector: String,
        /// The term that could not be understood.
        term: String,
    },
    /// A backslash in a field selector value is followed by something other than `\`, `,`
    /// or `=`, or ends the value.
    #[error("invalid field selector: invalid escape sequence: {sequence}")]
    InvalidEscape {
        /// The escape sequence as written.
        sequence: String,
    },
    /// A field selector value contains an unescaped `,` or `=`.
    #[error("invalid field selector: unescaped character in value: {character}")]
    UnescapedCharacter {
        /// The character that needs a backslash before it.
        character: char,
    },
}

/// Displays a token for an error message, naming the end of the input in words.
struct Found<'a>(&'a str);

impl fmt::Display for Found<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("end of string")
        } else {
            write!(f, "'{}'", self.0)
        }
    }
}

fn unexpected(found: &Token, expected: &'static str) -> SelectorError {
    SelectorError::Unexpected {
        found: found.literal().to_owned(),
        expected,
    }
}

// ---------------------------------------------------------------------------------------------
// Label selector
// ---------------------------------------------------------------------------------------------

/// The operator of one label requirement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operator {
    /// `key=value`, `key==value`, `key in (..)`: the key is present with one of the values.
    In,
    /// `key!=value`, `key notin (..)`: the key is absent, or present with none of the values.
    NotIn,
    /// `key`: the key is present.
    Exists,
    /// `!key`: the key is absent.
    DoesNotExist,
    /// `key>n`: the key is present with an integer value greater than `n`.
    GreaterThan(i64),
    /// `key<n`: the key is present with an integer value less than `n`.
    LessThan(i64),
}

/// One comma-separated part of a label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Requirement {
    key: String,
    operator: Operator,
    values: BTreeSet<String>,
}

impl Requirement {
    fn matches(&self, labels: Option<&Map<String, Value>>) -> bool {
        let label = labels.and_then(|labels| labels.get(&self.key));
        // Label values are strings; anything else is present but equal to no value.
        let text = label.and_then(Value::as_str);
        match self.operator {
            Operator::Exists => label.is_some(),
            Operator::DoesNotExist => label.is_none(),
            Operator::In => text.is_some_and(|text| self.values.contains(text)),
            Operator::NotIn => !text.is_some_and(|text| self.values.contains(text)),
            Operator::GreaterThan(bound) => parse_integer(text).is_some_and(|n| n > bound),
            Operator::LessThan(bound) => parse_integer(text).is_some_and(|n| n < bound),
        }
    }
}

fn parse_integer(text: Option<&str>) -> Option<i64> {
    text.and_then(|text| text.parse().ok())
}

/// A parsed `labelSelector`: a conjunction of requirements on `metadata.labels`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
}

impl LabelSelector {
    /// Parses a label selector. The empty (or all-whitespace) selector matches everything.
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        Parser::new(s)
            .parse()
            .map(|requirements| Self { requirements })
    }

    /// Whether an object with these `metadata.labels` is selected. `None` means the object has
    /// no labels at all.
    pub fn matches(&self, labels: Option<&Map<String, Value>>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Whether the selector has no requirements and so selects everything.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    End,
    /// A run of characters that are neither whitespace nor special symbols; this includes the
    /// keywords `in` and `notin`, which are only keywords where an operator is expected.
    Identifier(String),
    OpenParen,
    CloseParen,
    Comma,
    Bang,
    Equals,
    DoubleEquals,
    NotEquals,
    GreaterThan,
    LessThan,
}

impl Token {
    fn literal(&self) -> &str {
        match self {
            Token::End => "",
            Token::Identifier(s) => s,
            Token::OpenParen => "(",
            Token::CloseParen => ")",
            Token::Comma => ",",
            Token::Bang => "!",
            Token::Equals => "=",
            Token::DoubleEquals => "==",
            Token::NotEquals => "!=",
            Token::GreaterThan => ">",
            Token::LessThan => "<",
        }
    }
}

fn is_whitespace(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

fn is_special(c: char) -> bool {
    matches!(c, '=' | '!' | '(' | ')' | ',' | '>' | '<')
}

fn tokenize(s: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        let token = match c {
            c if is_whitespace(c) => continue,
            '(' => Token::OpenParen,
            ')' => Token::CloseParen,
            ',' => Token::Comma,
            '>' => Token::GreaterThan,
            '<' => Token::LessThan,
            '=' | '!' => {
                if chars.next_if_eq(&'=').is_some() {
                    if c == '=' {
                        Token::DoubleEquals
                    } else {
                        Token::NotEquals
                    }
                } else if c == '=' {
                    Token::Equals
                } else {
                    Token::Bang
                }
            }
            c => {
                let mut word = String::from(c);
                while let Some(c) = chars.next_if(|&c| !is_whitespace(c) && !is_special(c)) {
                    word.push(c);
                }
                Token::Identifier(word)
            }
        };
        tokens.push(token);
    }
    tokens
}

struct Parser {
    tokens: Vec<Token>,
    position: usize,
}

const END: Token = Token::End;

impl Parser {
    fn new(s: &str) -> Self {
        Self {
            tokens: tokenize(s),
            position: 0,
        }
    }

    fn peek(&self) -> &Token {
        self.tokens.get(self.position).unwrap_or(&END)
    }

    fn next(&mut self) -> Token {
        match self.tokens.get(self.position) {
            Some(token) => {
                self.position += 1;
                token.clone()
            }
            None => Token::End,
        }
    }

    fn parse(&mut self) -> Result<Vec<Requirement>, SelectorError> {
        let mut requirements = Vec::new();
        loop {
            match self.peek() {
                Token::End => return Ok(requirements),
                Token::Identifier(_) | Token::Bang => {}
                other => return Err(unexpected(other, "!, identifier, or 'end of string'")),
            }
            requirements.push(self.parse_requirement()?);
            match self.next() {
                Token::End => return Ok(requirements),
                Token::Comma => match self.peek() {
                    Token::Identifier(_) | Token::Bang => {}
                    other => return Err(unexpected(other, "identifier after ','")),
                },
                other => return Err(unexpected(&other, "',' or 'end of string'")),
            }
        }
    }

    fn parse_requirement(&mut self) -> Result<Requirement, SelectorError> {
        let negated = self.peek() == &Token::Bang;
        if negated {
            self.next();
        }
        let key = match self.next() {
            Token::Identifier(key) => key,
            other => return Err(unexpected(&other, "identifier")),
        };
        validate_key(&key)?;
        if matches!(self.peek(), Token::End | Token::Comma) {
            let operator = if negated {
                Operator::DoesNotExist
            } else {
                Operator::Exists
            };
            return Ok(Requirement {
                key,
                operator,
                values: BTreeSet::new(),
            });
        }
        if negated {
            return Err(unexpected(self.peek(), "',' or 'end of string'"));
        }

        let operator = self.next();
        let (operator, values) = match &operator {
            Token::Equals | Token::DoubleEquals => (Operator::In, self.parse_exact_value()?),
            Token::NotEquals => (Operator::NotIn, self.parse_exact_value()?),
            Token::Identifier(word) if word == "in" => (Operator::In, self.parse_values(&key)?),
            Token::Identifier(word) if word == "notin" => {
                (Operator::NotIn, self.parse_values(&key)?)
            }
            Token::GreaterThan | Token::LessThan => {
                let values = self.parse_exact_value()?;
                let bound = values
                    .first()
                    .and_then(|value| value.parse::<i64>().ok())
                    .ok_or_else(|| SelectorError::InvalidValue {
                        key: key.clone(),
                        value: values.first().cloned().unwrap_or_default(),
                        reason: "for '>', '<' operators, the value must be an integer",
                    })?;
                let operator = if operator == Token::GreaterThan {
                    Operator::GreaterThan(bound)
                } else {
                    Operator::LessThan(bound)
                };
                (operator, values)
            }
            other => return Err(unexpected(other, "in, notin, =, ==, !=, >, <")),
        };
        for value in &values {
            validate_value(&key, value)?;
        }
        Ok(Requirement {
            key,
            operator,
            values,
        })
    }

    /// The value after `=`, `==`, `!=`, `>` or `<`; it may be empty.
    fn parse_exact_value(&mut self) -> Result<BTreeSet<String>, SelectorError> {
        if matches!(self.peek(), Token::End | Token::Comma) {
            return Ok(BTreeSet::from([String::new()]));
        }
        match self.next() {
            Token::Identifier(value) => Ok(BTreeSet::from([value])),
            other => Err(unexpected(&other, "identifier")),
        }
    }

    /// The parenthesised list after `in` or `notin`. As in Kubernetes, empty elements between
    /// commas stand for the empty value (`(a,)` is `a` or empty); an empty list is an error.
    fn parse_values(&mut self, key: &str) -> Result<BTreeSet<String>, SelectorError> {
        match self.next() {
            Token::OpenParen => {}
            other => return Err(unexpected(&other, "'('")),
        }
        match self.peek() {
            Token::Identifier(_) | Token::Comma => {}
            Token::CloseParen => {
                return Err(SelectorError::EmptyValueSet {
                    key: key.to_owned(),
                });
            }
            other => return Err(unexpected(other, "',', ')' or identifier")),
        }
        let mut values = BTreeSet::new();
        let mut expect_value = true;
        loop {
            match self.next() {
                Token::Identifier(value) if expect_value => {
                    values.insert(value);
                    expect_value = false;
                }
                Token::Comma => {
                    if expect_value {
                        // `(,`, `,,`: an empty element.
                        values.insert(String::new());
                    }
                    expect_value = true;
                }
                Token::CloseParen => {
                    if expect_value {
                        // `,)`: a trailing empty element.
                        values.insert(String::new());
                    }
                    return Ok(values);
                }
                other if expect_value => {
                    return Err(unexpected(&other, "',', ')' or identifier"));
                }
                other => return Err(unexpected(&other, "',' or ')'")),
            }
        }
    }
}

const NAME_RULE: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', \
                         and must start and end with an alphanumeric character";
const VALUE_RULE: &str = "a valid label must be an empty string or consist of alphanumeric \
                          characters, '-', '_' or '.', and must start and end with an \
                          alphanumeric character";
const PREFIX_RULE: &str = "prefix part must be a lowercase RFC 1123 subdomain: lowercase \
                           alphanumeric characters, '-' or '.', each dot-separated part \
                           starting and ending with an alphanumeric character";

/// Alphanumerics, `-`, `_` and `.`, starting and ending with an alphanumeric.
fn is_label_text(s: &str) -> bool {
    let bytes = s.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

fn is_dns_subdomain(s: &str) -> bool {
    s.split('.').all(|part| {
        let bytes = part.as_bytes();
        let lower_alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        match (bytes.first(), bytes.last()) {
            (Some(first), Some(last)) => {
                lower_alnum(first)
                    && lower_alnum(last)
                    && bytes.iter().all(|b| lower_alnum(b) || *b == b'-')
            }
            _ => false,
        }
    })
}

/// A label key: an optional DNS subdomain prefix and `/`, then a name of at most 63 characters.
fn validate_key(key: &str) -> Result<(), SelectorError> {
    let invalid = |reason| {
        Err(SelectorError::InvalidKey {
            key: key.to_owned(),
            reason,
        })
    };
    let mut parts = key.split('/');
    let (prefix, name) = match (parts.next(), parts.next(), parts.next()) {
        (Some(name), None, _) => (None, name),
        (Some(prefix), Some(name), None) => (Some(prefix), name),
        _ => {
            return invalid(
                "a qualified name must be a name with an optional DNS subdomain prefix and '/'",
            );
        }
    };
    if let Some(prefix) = prefix {
        if prefix.is_empty() {
            return invalid("prefix part must be non-empty");
        }
        if prefix.len() > 253 {
            return invalid("prefix part must be no more than 253 characters");
        }
        if !is_dns_subdomain(prefix) {
            return invalid(PREFIX_RULE);
        }
    }
    if name.is_empty() {
        return invalid("name part must be non-empty");
    }
    if name.len() > 63 {
        return invalid("name part must be no more than 63 characters");
    }
    if !is_label_text(name) {
        return invalid(NAME_RULE);
    }
    Ok(())
}

/// A label value: empty, or at most 63 characters of label text.
fn validate_value(key: &str, value: &str) -> Result<(), SelectorError> {
    let reason = if value.len() > 63 {
        "must be no more than 63 characters"
    } else if !value.is_empty() && !is_label_text(value) {
        VALUE_RULE
    } else {
        return Ok(());
    };
    Err(SelectorError::InvalidValue {
        key: key.to_owned(),
        value: value.to_owned(),
        reason,
    })
}

// ---------------------------------------------------------------------------------------------
// Field selector
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
struct FieldTerm {
    field: String,
    value: String,
    equal: bool,
}

/// A parsed `fieldSelector`: a conjunction of equality tests on dotted field paths.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    terms: Vec<FieldTerm>,
}

impl FieldSelector {
    /// Parses a field selector. Empty terms are skipped, so the empty selector matches
    /// everything. Whitespace around a field name is ignored; values are taken verbatim after
    /// unescaping `\,`, `\=` and `\\`.
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        let mut terms = Vec::new();
        for term in split_terms(s) {
            if term.is_empty() {
                continue;
            }
            let invalid = || SelectorError::InvalidFieldTerm {
                selector: s.to_owned(),
                term: term.to_owned(),
            };
            let (field, equal, value) = split_term(term).ok_or_else(invalid)?;
            let field = field.trim_matches(is_whitespace);
            if field.is_empty() {
                return Err(invalid());
            }
            terms.push(FieldTerm {
                field: field.to_owned(),
                value: unescape_value(value)?,
                equal,
            });
        }
        Ok(Self { terms })
    }

    /// Whether the object is selected. Each field is a dotted path into the object (for
    /// example `metadata.name` or `involvedObject.kind`); a missing field or `null` compares as
    /// the empty string, booleans and numbers as their JSON text, and objects and arrays
    /// equal no value.
    pub fn matches(&self, object: &Value) -> bool {
        self.terms.iter().all(|term| {
            let equal = match resolve(object, &term.field) {
                None | Some(Value::Null) => term.value.is_empty(),
                Some(Value::String(s)) => *s == term.value,
                Some(Value::Bool(b)) => term.value == if *b { "true" } else { "false" },
                Some(Value::Number(n)) => n.to_string() == term.value,
                Some(Value::Array(_) | Value::Object(_)) => false,
            };
            equal == term.equal
        })
    }

    /// The field paths the selector tests, in the order written, so the server can refuse
    /// fields it does not support for a resource.
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.terms.iter().map(|term| term.field.as_str())
    }

    /// Whether the selector has no terms and so selects everything.
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }
}

fn resolve<'a>(object: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.')
        .try_fold(object, |value, segment| value.as_object()?.get(segment))
}

/// Splits at commas that are not escaped with a backslash; escapes are kept.
fn split_terms(s: &str) -> Vec<&str> {
    let mut terms = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == ',' {
            terms.push(&s[start..i]);
            start = i + 1;
        }
    }
    terms.push(&s[start..]);
    terms
}

/// Splits a term at its first operator: `(field, is_equality, raw_value)`.
fn split_term(term: &str) -> Option<(&str, bool, &str)> {
    term.char_indices().find_map(|(i, _)| {
        let (field, rest) = term.split_at(i);
        if let Some(value) = rest.strip_prefix("!=") {
            Some((field, false, value))
        } else if let Some(value) = rest.strip_prefix("==") {
            Some((field, true, value))
        } else {
            rest.strip_prefix('=').map(|value| (field, true, value))
        }
    })
}

/// Undoes Kubernetes' `fields.EscapeValue`: `\\`, `\,` and `\=` stand for `\`, `,` and `=`,
/// which may not appear unescaped.
fn unescape_value(raw: &str) -> Result<String, SelectorError> {
    let mut value = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(c @ ('\\' | ',' | '=')) => value.push(c),
                Some(c) => {
                    return Err(SelectorError::InvalidEscape {
                        sequence: format!("\\{c}"),
                    });
                }
                None => {
                    return Err(SelectorError::InvalidEscape {
                        sequence: "\\".to_owned(),
                    });
                }
            },
            ',' | '=' => return Err(SelectorError::UnescapedCharacter { character: c }),
            c => value.push(c),
        }
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            other => panic!("test labels must be an object, got {other}"),
        }
    }

    /// Checks every (selector, labels, expected) row, with `None` standing for an object
    /// without `metadata.labels`.
    fn check_label_table(rows: &[(&str, Option<Value>, bool)]) {
        for (selector, object_labels, expected) in rows {
            let parsed = LabelSelector::parse(selector)
                .unwrap_or_else(|e| panic!("selector {selector:?} should parse: {e}"));
            let object_labels = object_labels.clone().map(labels);
            assert_eq!(
                parsed.matches(object_labels.as_ref()),
                *expected,
                "selector {selector:?} against labels {object_labels:?}"
            );
        }
    }

    #[test]
    fn label_equality_operators_need_the_key_with_that_value() {
        check_label_table(&[
            ("app=web", Some(json!({"app": "web"})), true),
            ("app=web", Some(json!({"app": "db"})), false),
            ("app=web", Some(json!({})), false),
            ("app=web", None, false),
            ("app==web", Some(json!({"app": "web"})), true),
            ("app==web", Some(json!({"app": "db"})), false),
            ("app==web", None, false),
            // The value may be empty; it then matches only an empty label value.
            ("app=", Some(json!({"app": ""})), true),
            ("app=", Some(json!({"app": "web"})), false),
            ("app=", None, false),
            ("app==", Some(json!({"app": ""})), true),
        ]);
    }

    #[test]
    fn label_not_equals_also_matches_objects_without_the_key() {
        check_label_table(&[
            ("app!=web", Some(json!({"app": "db"})), true),
            ("app!=web", Some(json!({"app": "web"})), false),
            ("app!=web", Some(json!({"other": "web"})), true),
            ("app!=web", Some(json!({})), true),
            ("app!=web", None, true),
            ("app!=", Some(json!({"app": ""})), false),
            ("app!=", Some(json!({"app": "x"})), true),
        ]);
    }

    #[test]
    fn label_set_operators() {
        check_label_table(&[
            ("env in (prod,staging)", Some(json!({"env": "prod"})), true),
            (
                "env in (prod,staging)",
                Some(json!({"env": "staging"})),
                true,
            ),
            ("env in (prod,staging)", Some(json!({"env": "dev"})), false),
            ("env in (prod,staging)", None, false),
            ("env in (prod)", Some(json!({"env": "prod"})), true),
            // `notin` also matches objects without the key.
            (
                "env notin (prod,staging)",
                Some(json!({"env": "dev"})),
                true,
            ),
            (
                "env notin (prod,staging)",
                Some(json!({"env": "prod"})),
                false,
            ),
            ("env notin (prod,staging)", Some(json!({})), true),
            ("env notin (prod,staging)", None, true),
            // Empty elements in the list stand for the empty value, as in Kubernetes.
            ("env in (prod,)", Some(json!({"env": ""})), true),
            ("env in (,prod)", Some(json!({"env": ""})), true),
            ("env in (a,,b)", Some(json!({"env": ""})), true),
            ("env in (prod)", Some(json!({"env": ""})), false),
            // `in` and `notin` are keywords only where an operator is expected.
            ("in in (in,notin)", Some(json!({"in": "notin"})), true),
            ("notin=in", Some(json!({"notin": "in"})), true),
        ]);
    }

    #[test]
    fn label_existence_operators() {
        check_label_table(&[
            ("app", Some(json!({"app": "web"})), true),
            ("app", Some(json!({"app": ""})), true),
            ("app", Some(json!({"other": "x"})), false),
            ("app", None, false),
            ("!app", Some(json!({"app": "web"})), false),
            ("!app", Some(json!({"other": "x"})), true),
            ("!app", None, true),
            ("in", Some(json!({"in": "x"})), true),
        ]);
    }

    #[test]
    fn label_integer_comparisons() {
        check_label_table(&[
            ("replicas>2", Some(json!({"replicas": "3"})), true),
            ("replicas>2", Some(json!({"replicas": "2"})), false),
            ("replicas>2", Some(json!({"replicas": "many"})), false),
            ("replicas>2", None, false),
            ("replicas<2", Some(json!({"replicas": "1"})), true),
            ("replicas<2", Some(json!({"replicas": "2"})), false),
            ("replicas<2", None, false),
        ]);
    }

    #[test]
    fn label_requirements_are_anded() {
        let object = json!({"app": "web", "tier": "frontend", "env": "prod"});
        check_label_table(&[
            ("app=web,tier=frontend", Some(object.clone()), true),
            ("app=web,tier=backend", Some(object.clone()), false),
            (
                "app=web,!canary,env in (prod,staging)",
                Some(object.clone()),
                true,
            ),
            ("app=web,canary", Some(object.clone()), false),
            (
                "app,tier!=backend,env notin (dev)",
                Some(object.clone()),
                true,
            ),
            ("app=web,app=db", Some(object.clone()), false),
            (
                "example.com/team=core,app",
                Some(json!({"example.com/team": "core", "app": "x"})),
                true,
            ),
        ]);
    }

    #[test]
    fn label_whitespace_between_tokens_is_ignored() {
        let object = json!({"app": "web", "env": "prod"});
        check_label_table(&[
            ("  app = web  ", Some(object.clone()), true),
            ("app == web , env != dev", Some(object.clone()), true),
            ("env in ( prod , staging )", Some(object.clone()), true),
            ("env   notin(dev)", Some(object.clone()), true),
            ("\tapp\n,\r! canary", Some(object.clone()), true),
            ("env in(prod)", Some(object.clone()), true),
        ]);
    }

    #[test]
    fn empty_label_selector_matches_everything() {
        for selector in ["", "   ", "\t\n"] {
            let parsed = LabelSelector::parse(selector).expect("empty selector parses");
            assert!(parsed.is_empty(), "{selector:?}");
            assert!(parsed.matches(None));
            assert!(parsed.matches(Some(&labels(json!({"a": "b"})))));
        }
        assert!(!LabelSelector::parse("a").expect("parses").is_empty());
    }

    #[test]
    fn non_string_label_values_equal_no_value() {
        let object = labels(json!({"app": 1}));
        let matches = |s: &str| {
            LabelSelector::parse(s)
                .expect("parses")
                .matches(Some(&object))
        };
        assert!(!matches("app=1"));
        assert!(matches("app!=1"));
        assert!(matches("app"));
    }

    #[test]
    fn label_keys_and_values_are_validated() {
        let long = "a".repeat(63);
        let too_long = "a".repeat(64);
        let valid = [
            format!("{long}=x"),
            format!("x={long}"),
            "a.b_c-d=E.f_G-h".to_owned(),
            "example.com/name".to_owned(),
            "a-b.example.com/x.y=1".to_owned(),
            "9=9".to_owned(),
        ];
        for selector in &valid {
            assert!(
                LabelSelector::parse(selector).is_ok(),
                "{selector:?} should be valid"
            );
        }
        let invalid_keys = [
            format!("{too_long}=x"),
            "-a=x".to_owned(),
            "a-=x".to_owned(),
            "a b".to_owned(),
            "/a=x".to_owned(),
            "a/=x".to_owned(),
            "a/b/c=x".to_owned(),
            "Example.com/a=x".to_owned(),
            "exa_mple.com/a=x".to_owned(),
            "example..com/a=x".to_owned(),
            "ünï=x".to_owned(),
            "a@b".to_owned(),
            format!("{}/a", "a".repeat(254)),
        ];
        for selector in &invalid_keys {
            assert!(
                LabelSelector::parse(selector).is_err(),
                "{selector:?} should be invalid"
            );
        }
        let invalid_values = [
            format!("a={too_long}"),
            "a=-x".to_owned(),
            "a=x_".to_owned(),
            "a=x/y".to_owned(),
            "a in (ok,-bad)".to_owned(),
            "a notin (ok,bad@)".to_owned(),
            "a=ünï".to_owned(),
            "a>x".to_owned(),
            "a<-1".to_owned(),
            "a>".to_owned(),
        ];
        for selector in &invalid_values {
            assert!(
                matches!(
                    LabelSelector::parse(selector),
                    Err(SelectorError::InvalidValue { .. })
                ),
                "{selector:?} should have an invalid value"
            );
        }
    }

    #[test]
    fn malformed_label_selectors_name_the_offending_text() {
        let rows = [
            (
                "a in b",
                "unable to parse requirement: found 'b', expected: '('",
            ),
            (
                "a in (b",
                "unable to parse requirement: found end of string, expected: ',' or ')'",
            ),
            (
                "=a",
                "unable to parse requirement: found '=', expected: !, identifier, or 'end of string'",
            ),
            (
                "a=b=c",
                "unable to parse requirement: found '=', expected: ',' or 'end of string'",
            ),
            (
                "a!b",
                "unable to parse requirement: found '!', expected: in, notin, =, ==, !=, >, <",
            ),
            (
                "a in ()",
                "unable to parse requirement: for 'in', 'notin' operators, values set can't be empty (key \"a\")",
            ),
            (
                "a notin ( )",
                "unable to parse requirement: for 'in', 'notin' operators, values set can't be empty (key \"a\")",
            ),
            (
                "a,",
                "unable to parse requirement: found end of string, expected: identifier after ','",
            ),
            (
                "a,,b",
                "unable to parse requirement: found ',', expected: identifier after ','",
            ),
            (
                "!a=b",
                "unable to parse requirement: found '=', expected: ',' or 'end of string'",
            ),
            (
                "!",
                "unable to parse requirement: found end of string, expected: identifier",
            ),
            (
                "a in ((b))",
                "unable to parse requirement: found '(', expected: ',', ')' or identifier",
            ),
            (
                "a in (b c)",
                "unable to parse requirement: found 'c', expected: ',' or ')'",
            ),
            (
                "a==!b",
                "unable to parse requirement: found '!', expected: identifier",
            ),
            (
                "a b",
                "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, >, <",
            ),
            (
                "a/b/c",
                "unable to parse requirement: invalid label key \"a/b/c\": a qualified name must be a name with an optional DNS subdomain prefix and '/'",
            ),
        ];
        for (selector, message) in rows {
            match LabelSelector::parse(selector) {
                Ok(parsed) => panic!("{selector:?} should not parse, got {parsed:?}"),
                Err(e) => assert_eq!(e.to_string(), message, "{selector:?}"),
            }
        }
    }

    #[test]
    fn odd_label_selector_inputs_never_panic() {
        let long_key = format!("{}=b", "k".repeat(10_000));
        let deep = "(".repeat(1_000);
        let inputs = [
            "",
            ",",
            "a,",
            ",a",
            "(",
            ")",
            "in",
            "notin",
            "in in",
            "a in",
            "a notin",
            "a in (",
            "a in (,",
            "a in (,)",
            "a in (b,,)",
            "!",
            "!!",
            "!!a",
            "!=",
            "==",
            "===",
            "a===b",
            "a!==b",
            "a in ((b))",
            "a in (b))",
            "a=(b)",
            "a>1>2",
            "a>99999999999999999999",
            "<",
            ">",
            "\\",
            "\0",
            "a=\0",
            "ä=ö",
            "é in (ü)",
            "日本=語",
            "🦀",
            "a\u{00a0}=b",
            "a=b,,",
            " , , ",
            long_key.as_str(),
            deep.as_str(),
        ];
        for input in inputs {
            // Either outcome is fine; the point is that parsing and matching return.
            if let Ok(parsed) = LabelSelector::parse(input) {
                parsed.matches(None);
                parsed.matches(Some(&labels(json!({"a": "b", "in": ""}))));
            }
        }
        assert!(LabelSelector::parse("in").is_ok());
        assert!(LabelSelector::parse("a in (,)").is_ok());
        assert!(LabelSelector::parse("").is_ok());
        for input in [",", "a,", "(", "!", "a in ((b))", "🦀", "ä=ö", "\\"] {
            assert!(LabelSelector::parse(input).is_err(), "{input:?}");
        }
    }

    fn pod() -> Value {
        json!({
            "metadata": {"name": "web-1", "namespace": "default", "labels": {"app": "web"}},
            "spec": {"nodeName": "node-a", "unschedulable": false, "priority": 10},
            "status": {"phase": "Running"},
            "involvedObject": {"kind": "Pod", "name": "a,b=c\\d"},
            "type": "Warning",
        })
    }

    #[test]
    fn field_selector_matches_dotted_paths() {
        let rows: &[(&str, bool)] = &[
            ("metadata.name=web-1", true),
            ("metadata.name==web-1", true),
            ("metadata.name=web-2", false),
            ("metadata.name!=web-2", true),
            ("metadata.name!=web-1", false),
            ("metadata.namespace=default", true),
            ("status.phase=Running", true),
            ("status.phase!=Running", false),
            ("spec.nodeName=node-a", true),
            ("involvedObject.kind=Pod", true),
            ("type=Warning", true),
            ("type=Normal", false),
            // Booleans and numbers compare as their JSON text.
            ("spec.unschedulable=false", true),
            ("spec.priority=10", true),
            // A missing field compares as the empty string.
            ("spec.missing=", true),
            ("spec.missing!=", false),
            ("spec.missing=x", false),
            ("spec.missing!=x", true),
            ("metadata.name.deeper=", true),
            ("nothing.at.all!=x", true),
            // Objects are not scalar fields.
            ("metadata.labels=", false),
            ("metadata.labels!=", true),
            // Terms are ANDed.
            ("metadata.name=web-1,status.phase=Running", true),
            ("metadata.name=web-1,status.phase=Pending", false),
            ("metadata.namespace=default,spec.nodeName!=node-b", true),
            // Whitespace around field names is ignored; empty terms are skipped.
            (" metadata.name =web-1", true),
            ("metadata.name=web-1,,", true),
        ];
        let object = pod();
        for (selector, expected) in rows {
            let parsed = FieldSelector::parse(selector)
                .unwrap_or_else(|e| panic!("{selector:?} should parse: {e}"));
            assert_eq!(parsed.matches(&object), *expected, "{selector:?}");
        }
    }

    #[test]
    fn field_selector_values_unescape_backslash_comma_and_equals() {
        let object = pod();
        let parsed = FieldSelector::parse(r"involvedObject.name=a\,b\=c\\d,type=Warning")
            .expect("escaped value parses");
        assert!(parsed.matches(&object));
        assert_eq!(
            parsed.fields().collect::<Vec<_>>(),
            ["involvedObject.name", "type"]
        );
        let parsed = FieldSelector::parse(r"involvedObject.name!=a\,b").expect("parses");
        assert!(parsed.matches(&object));
    }

    #[test]
    fn field_selector_reports_fields_and_emptiness() {
        let parsed = FieldSelector::parse("metadata.name=a,spec.nodeName!=b").expect("parses");
        assert_eq!(
            parsed.fields().collect::<Vec<_>>(),
            ["metadata.name", "spec.nodeName"]
        );
        assert!(!parsed.is_empty());
        for selector in ["", ",", ",,"] {
            let parsed = FieldSelector::parse(selector).expect("empty selector parses");
            assert!(parsed.is_empty());
            assert!(parsed.matches(&pod()));
            assert_eq!(parsed.fields().count(), 0);
        }
    }

    #[test]
    fn malformed_field_selectors_are_errors() {
        let rows = [
            (
                "metadata.name",
                "invalid selector: 'metadata.name'; can't understand 'metadata.name'",
            ),
            ("a=b,c", "invalid selector: 'a=b,c'; can't understand 'c'"),
            ("=x", "invalid selector: '=x'; can't understand '=x'"),
            (" !=x", "invalid selector: ' !=x'; can't understand ' !=x'"),
            (
                "a=b=c",
                "invalid field selector: unescaped character in value: =",
            ),
            (
                "a==b=c",
                "invalid field selector: unescaped character in value: =",
            ),
            (
                "a=b\\",
                "invalid field selector: invalid escape sequence: \\",
            ),
            (
                "a=b\\n",
                "invalid field selector: invalid escape sequence: \\n",
            ),
            (
                "a in (b)",
                "invalid selector: 'a in (b)'; can't understand 'a in (b)'",
            ),
        ];
        for (selector, message) in rows {
            match FieldSelector::parse(selector) {
                Ok(parsed) => panic!("{selector:?} should not parse, got {parsed:?}"),
                Err(e) => assert_eq!(e.to_string(), message, "{selector:?}"),
            }
        }
    }

    #[test]
    fn odd_field_selector_inputs_never_panic() {
        let inputs = [
            "",
            ",",
            "=",
            "==",
            "!=",
            "!",
            "\\",
            "\\,",
            "a=\\",
            "a=\\,",
            "a\\=b",
            "a=é\\ü",
            "ä=ö",
            "🦀=🦀",
            "a!==b",
            "a=!b",
            "..=x",
            ".=",
            "a..b=c",
            "\0=\0",
        ];
        for input in inputs {
            if let Ok(parsed) = FieldSelector::parse(input) {
                parsed.matches(&pod());
                parsed.matches(&Value::Null);
                parsed.matches(&json!([1, 2]));
                parsed.fields().for_each(drop);
            }
        }
        // `a!==b` is `a != "=b"`, which has an unescaped `=`.
        assert!(FieldSelector::parse("a!==b").is_err());
        // `a=!b` is `a == "!b"`.
        assert!(
            FieldSelector::parse("a=!b")
                .expect("parses")
                .matches(&json!({"a": "!b"}))
        );
    }
}
