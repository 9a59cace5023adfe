//! Admission of a custom resource against its CRD version's `openAPIV3Schema`, as kube-apiserver
//! does it.
//!
//! The steps and their order are the API server's: unknown fields are pruned and nulls of
//! non-nullable fields dropped (what decoding does), defaults are applied, then the object is
//! validated against the structural schema (kube-openapi's checks, then embedded resources,
//! then `x-kubernetes-list-type`), and finally the `x-kubernetes-validations` CEL rules run,
//! unless a blocking problem (wrong type, missing required field, unsupported enum value, too
//! long, too many) already refused the object. Every problem is reported with the field path,
//! the reason and the message the API server uses, so clients see what a real cluster says.
//!
//! The root object's `apiVersion`, `kind` and `metadata` belong to the caller: they are never
//! pruned, defaulted or validated here; root CEL rules see `metadata.name` and
//! `metadata.generateName` only, as on a real cluster.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::Rc;
use std::sync::{Arc, OnceLock};

use kube_cel::KubeCelExt;
use kube_cel::cel;
use regex::Regex;
use serde_json::{Map, Number, Value};

use crate::status::Cause;

/// What admission changed or noticed, on success.
#[derive(Debug, Default, PartialEq)]
pub struct Admission {
    /// Paths of unknown fields that were pruned, e.g. `spec.replica` (for fieldValidation=Strict/Warn the caller reports them).
    pub pruned: Vec<String>,
}

/// Prunes unknown fields, drops nulls where not nullable, applies defaults, validates the structural schema, then runs the CEL rules (`x-kubernetes-validations`; transition rules using `oldSelf` only when `old` is given and the old value exists at that path). On success `object` is pruned and defaulted in place; on failure every problem is returned (structural problems first; CEL rules are not run on a structurally invalid object).
///
/// "Structurally invalid" is the API server's notion: a wrong type, a missing required field,
/// an unsupported enum value, a value too long or a list or map with too many entries. Other
/// structural problems (a pattern, a bound) are reported together with the CEL rules' findings.
pub fn admit(
    schema: &Value,
    object: &mut Value,
    old: Option<&Value>,
) -> Result<Admission, Vec<Cause>> {
    admit_with(&Plan::new(Arc::new(schema.clone())), object, old)
}

/// [`admit`], with what the schema says about itself worked out once ([`Plan::of`]).
pub fn admit_with(
    plan: &Plan,
    object: &mut Value,
    old: Option<&Value>,
) -> Result<Admission, Vec<Cause>> {
    let schema = &*plan.schema;
    if plan.too_deep {
        return Err(vec![Cause {
            reason: INTERNAL,
            field: NIL.into(),
            message: format!(
                "Internal error: the schema nests deeper than {MAX_SCHEMA_NESTING} levels"
            ),
        }]);
    }
    if nesting(object, MAX_OBJECT_NESTING) > MAX_OBJECT_NESTING {
        return Err(vec![invalid(
            NIL,
            Shown::Text(json_kind(object)),
            &format!("the object nests deeper than {MAX_OBJECT_NESTING} levels"),
        )]);
    }
    let root = schema.as_object();

    let mut pruner = Pruner::default();
    pruner.prune(object, root, true, 0);
    let mut pruned = pruner.pruned;
    pruned.sort();
    drop_nulls(object, root, true, 0);
    apply_defaults(plan, object, root, true, 0);

    // Top-level fields the write left as stored are ratcheted (KEP-4008): neither the
    // structural checks nor the rules within them run again.
    let unchanged = unchanged_fields(object, old);
    let mut causes = Vec::new();
    Checker {
        unchanged: &unchanged,
    }
    .check(root, object, "", true, 0, &mut causes);
    check_embedded(plan, root, object, &mut causes);
    check_list_types(plan, root, object, &mut causes);

    if plan.has_rules {
        if causes.iter().any(|c| blocks_rules(c.reason)) {
            causes.push(invalid(
                NIL,
                Shown::Json(&Value::Null),
                "some validation rules were not checked because the object was invalid; correct the existing errors to complete validation",
            ));
        } else {
            // The stored object went through the same decoding: pruned, nulls dropped, defaulted.
            // Only transition rules read it.
            let old = old
                .filter(|_| root.is_some_and(|r| plan.uses_old_self(r)))
                .filter(|o| nesting(o, MAX_OBJECT_NESTING) <= MAX_OBJECT_NESTING)
                .map(|o| {
                    let mut o = o.clone();
                    Pruner::default().prune(&mut o, root, true, 0);
                    drop_nulls(&mut o, root, true, 0);
                    apply_defaults(plan, &mut o, root, true, 0);
                    o
                });
            let mut rules = RuleRun::new(plan, unchanged);
            rules.walk(root, object, old.as_ref(), "", true, 0);
            causes.extend(rules.causes);
        }
    }

    if causes.is_empty() {
        Ok(Admission { pruned })
    } else {
        Err(causes)
    }
}

type Schema = Map<String, Value>;

/// What a schema says about itself, worked out once rather than on every write: whether it
/// nests too deep, and which of its nodes hold no rule within them (the rules' walk skips
/// them) or a transition rule (never ratcheted).
#[derive(Debug)]
pub struct Plan {
    schema: Arc<Value>,
    too_deep: bool,
    has_rules: bool,
    /// Nodes of `schema`, by address, with no rule at or below them.
    rule_free: HashSet<usize>,
    /// Nodes of `schema`, by address, with a rule using `oldSelf` at or below them.
    old_self: HashSet<usize>,
    /// Nodes of `schema`, by address, with neither an embedded resource nor a set or map
    /// list at or below them: the embedded-resource and list-type checks skip them.
    unmarked: HashSet<usize>,
    /// The compiled rules of each node of `schema` that has any, by address.
    rules: HashMap<usize, Arc<[Rule]>>,
    /// Nodes of `schema`, by address, with no `default` below them: defaulting skips them.
    defaults_free: HashSet<usize>,
}

impl Plan {
    /// The plan of `schema`, shared by every write of its resource: plans are kept by the
    /// schema's address, and hold the schema, so an address is not reused while its plan is
    /// kept. A schema replaced (a CRD updated) gets a plan of its own.
    pub fn of(schema: &Arc<Value>) -> Arc<Plan> {
        static PLANS: OnceLock<std::sync::Mutex<HashMap<usize, Arc<Plan>>>> = OnceLock::new();
        let plans = PLANS.get_or_init(Default::default);
        let key = Arc::as_ptr(schema) as usize;
        let mut plans = plans.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(plan) = plans.get(&key) {
            return plan.clone();
        }
        // Plans of schemas no CRD serves any more: dropped now and then, made again if asked.
        if plans.len() >= 1024 {
            plans.clear();
        }
        let plan = Arc::new(Plan::new(schema.clone()));
        plans.insert(key, plan.clone());
        plan
    }

    fn new(schema: Arc<Value>) -> Plan {
        let too_deep = nesting(&schema, MAX_SCHEMA_NESTING) > MAX_SCHEMA_NESTING;
        let mut plan = Plan {
            has_rules: !too_deep && has_rules(&schema, 0),
            too_deep,
            rule_free: HashSet::new(),
            old_self: HashSet::new(),
            unmarked: HashSet::new(),
            rules: HashMap::new(),
            defaults_free: HashSet::new(),
            schema: schema.clone(),
        };
        if plan.has_rules
            && let Some(root) = schema.as_object()
        {
            plan.survey(root, 0);
        }
        if !too_deep && let Some(root) = schema.as_object() {
            plan.survey_marks(root, 0);
            plan.survey_defaults(root, 0);
        }
        plan
    }

    /// Notes the nodes below `s` (as defaulting walks them: properties, map values, items)
    /// with no `default` below them; returns whether `s` has one at or below it.
    fn survey_defaults(&mut self, s: &Schema, depth: usize) -> bool {
        if depth > WALK_LIMIT {
            return true;
        }
        let mut defaulted = false;
        for child in value_schemas(s) {
            defaulted |= self.survey_defaults(child, depth + 1);
        }
        if !defaulted {
            self.defaults_free.insert(s as *const Schema as usize);
        }
        defaulted || s.contains_key("default")
    }

    fn defaults_free(&self, s: &Schema) -> bool {
        self.defaults_free.contains(&(s as *const Schema as usize))
    }

    /// Notes the nodes below `s` (as the embedded-resource and list-type checks walk them:
    /// properties, map values, items) that hold no embedded resource and no set or map list;
    /// returns whether `s` holds one.
    fn survey_marks(&mut self, s: &Schema, depth: usize) -> bool {
        if depth > WALK_LIMIT {
            return true;
        }
        let mut marked =
            flag(s, EMBEDDED) || matches!(text(s, "x-kubernetes-list-type"), Some("set" | "map"));
        for child in value_schemas(s) {
            marked |= self.survey_marks(child, depth + 1);
        }
        if !marked {
            self.unmarked.insert(s as *const Schema as usize);
        }
        marked
    }

    fn unmarked(&self, s: &Schema) -> bool {
        self.unmarked.contains(&(s as *const Schema as usize))
    }

    /// Notes `s` and the nodes the rules' walk visits below it; returns whether any holds a
    /// rule, and whether one uses `oldSelf`.
    fn survey(&mut self, s: &Schema, depth: usize) -> (bool, bool) {
        if depth > WALK_LIMIT {
            return (true, true);
        }
        let rules = s.get(RULES).and_then(Value::as_array);
        let mut any = rules.is_some_and(|r| !r.is_empty());
        let mut old_self = rules.is_some_and(|r| r.iter().any(mentions_old_self));
        if let Some(raw) = rules.filter(|r| !r.is_empty()) {
            let compiled: Arc<[Rule]> = raw.iter().filter_map(|r| Rule::compile(r, s)).collect();
            self.rules.insert(s as *const Schema as usize, compiled);
        }
        let properties = s.get("properties").and_then(Value::as_object).into_iter();
        let branches = s.get("allOf").and_then(Value::as_array).into_iter();
        let below = properties
            .flat_map(|p| p.values())
            .chain(branches.flatten())
            .chain(s.get("items"))
            .chain(s.get("additionalProperties"))
            .filter_map(Value::as_object);
        for child in below {
            let (a, o) = self.survey(child, depth + 1);
            any |= a;
            old_self |= o;
        }
        let key = s as *const Schema as usize;
        if !any {
            self.rule_free.insert(key);
        }
        if old_self {
            self.old_self.insert(key);
        }
        (any, old_self)
    }

    fn rule_free(&self, s: &Schema) -> bool {
        self.rule_free.contains(&(s as *const Schema as usize))
    }

    fn uses_old_self(&self, s: &Schema) -> bool {
        self.old_self.contains(&(s as *const Schema as usize))
    }

    /// The rules of node `s`, compiled when the plan was made.
    fn rules_of(&self, s: &Schema) -> Option<&Arc<[Rule]>> {
        self.rules.get(&(s as *const Schema as usize))
    }
}

/// The schemas of the values directly under a node's value: its properties', its items',
/// its map values'.
fn value_schemas(s: &Schema) -> impl Iterator<Item = &Schema> {
    let properties = s.get("properties").and_then(Value::as_object).into_iter();
    properties
        .flat_map(|p| p.values())
        .chain(s.get("items"))
        .chain(s.get("additionalProperties"))
        .filter_map(Value::as_object)
}

/// Objects nest at most this deep (serde_json refuses deeper documents anyway).
const MAX_OBJECT_NESTING: usize = 200;
/// Schemas nest at most this deep, counting JSON levels (`properties`, names, `items`).
const MAX_SCHEMA_NESTING: usize = 512;
/// A backstop for every recursive walk: the limits above keep walks far shallower.
const WALK_LIMIT: usize = 1100;
/// CEL rules whose brackets or unary operators nest deeper are refused rather than parsed.
const MAX_RULE_NESTING: usize = 64;

const ROOT_FIELDS: [&str; 3] = ["apiVersion", "kind", "metadata"];
const NIL: &str = "<nil>";

const PRESERVE_UNKNOWN: &str = "x-kubernetes-preserve-unknown-fields";
const EMBEDDED: &str = "x-kubernetes-embedded-resource";
const INT_OR_STRING: &str = "x-kubernetes-int-or-string";
const RULES: &str = "x-kubernetes-validations";

const INVALID: &str = "FieldValueInvalid";
const TYPE_INVALID: &str = "FieldValueTypeInvalid";
const REQUIRED: &str = "FieldValueRequired";
const NOT_SUPPORTED: &str = "FieldValueNotSupported";
const TOO_LONG: &str = "FieldValueTooLong";
const TOO_MANY: &str = "FieldValueTooMany";
const DUPLICATE: &str = "FieldValueDuplicate";
const FORBIDDEN: &str = "FieldValueForbidden";
const INTERNAL: &str = "InternalError";

// ---------------------------------------------------------------------------------------------
// Reading schemas. A node that is not a JSON object is no schema at all.

fn flag(s: &Schema, key: &str) -> bool {
    s.get(key).and_then(Value::as_bool) == Some(true)
}

fn text<'s>(s: &'s Schema, key: &str) -> Option<&'s str> {
    s.get(key).and_then(Value::as_str)
}

fn property<'s>(s: &'s Schema, name: &str) -> Option<&'s Schema> {
    s.get("properties")?
        .as_object()?
        .get(name)
        .and_then(Value::as_object)
}

fn items(s: &Schema) -> Option<&Schema> {
    s.get("items").and_then(Value::as_object)
}

enum Additional<'s> {
    Absent,
    Schema(&'s Schema),
    /// `additionalProperties: true`: any key, values without a schema.
    Any,
}

fn additional(s: &Schema) -> Additional<'_> {
    match s.get("additionalProperties") {
        Some(Value::Object(a)) => Additional::Schema(a),
        Some(Value::Bool(true)) => Additional::Any,
        _ => Additional::Absent,
    }
}

fn additional_schema(s: &Schema) -> Option<&Schema> {
    match additional(s) {
        Additional::Schema(a) => Some(a),
        _ => None,
    }
}

/// The schema of field `key` of an object under `s`: its property, else the map's values.
fn field_schema<'s>(s: Option<&'s Schema>, key: &str) -> Option<&'s Schema> {
    let s = s?;
    property(s, key).or_else(|| additional_schema(s))
}

/// What the structural check reads of a schema node, gathered in one pass over its keys: most
/// keywords are absent from most nodes, and looking each one up costs more than the pass.
#[derive(Default)]
struct View<'s> {
    type_: &'s str,
    int_or_string: bool,
    nullable: bool,
    format: bool,
    /// `allOf`, `anyOf`, `oneOf` or `not`.
    junctors: bool,
    /// `maxLength`, `minLength` or `pattern`.
    strings: bool,
    /// `minProperties`, `maxProperties`, `required` or `additionalProperties: false`.
    objects: bool,
    enumerated: bool,
    properties: Option<&'s Schema>,
    additional: Option<&'s Value>,
}

impl<'s> View<'s> {
    fn of(s: &'s Schema) -> View<'s> {
        let mut view = View::default();
        for (key, value) in s {
            match key.as_str() {
                "type" => view.type_ = value.as_str().unwrap_or_default(),
                INT_OR_STRING => view.int_or_string = value.as_bool() == Some(true),
                "nullable" => view.nullable = value.as_bool() == Some(true),
                "format" => view.format = true,
                "allOf" | "anyOf" | "oneOf" | "not" => view.junctors = true,
                "maxLength" | "minLength" | "pattern" => view.strings = true,
                "minProperties" | "maxProperties" | "required" => view.objects = true,
                "additionalProperties" => {
                    view.objects |= value == &Value::Bool(false);
                    view.additional = Some(value);
                }
                "enum" => view.enumerated = true,
                "properties" => view.properties = value.as_object(),
                _ => {}
            }
        }
        view
    }

    /// The types a value may have; `x-kubernetes-int-or-string` is integer or string.
    fn types(&self) -> &[&'s str] {
        if self.int_or_string {
            &["integer", "string"]
        } else if self.type_.is_empty() {
            &[]
        } else {
            std::slice::from_ref(&self.type_)
        }
    }
}

/// A `default` other than JSON null (a null default is no default).
fn default_of(s: &Schema) -> Option<&Value> {
    s.get("default").filter(|d| !d.is_null())
}

/// An integer keyword (`maxLength`, `minItems`…); integral floats count.
fn int_keyword(s: &Schema, key: &str) -> Option<i64> {
    let v = s.get(key)?;
    v.as_i64().or_else(|| {
        v.as_f64()
            .filter(|f| f.is_finite() && f.fract() == 0.0)
            .map(|f| f as i64)
    })
}

fn number_keyword(s: &Schema, key: &str) -> Option<f64> {
    s.get(key)?.as_f64().filter(|f| f.is_finite())
}

fn is_root_field(root: bool, key: &str) -> bool {
    root && ROOT_FIELDS.contains(&key)
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// How deep `value` nests (a scalar is 1), counted without recursion; stops past `limit`.
fn nesting(value: &Value, limit: usize) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(value, 1usize)];
    while let Some((v, depth)) = stack.pop() {
        deepest = deepest.max(depth);
        if depth > limit {
            return depth;
        }
        match v {
            Value::Array(list) => stack.extend(list.iter().map(|x| (x, depth + 1))),
            Value::Object(map) => stack.extend(map.values().map(|x| (x, depth + 1))),
            _ => {}
        }
    }
    deepest
}

// ---------------------------------------------------------------------------------------------
// Pruning, as the API server's decoder does it.

#[derive(Default)]
struct Pruner {
    /// The path of the value being pruned, in the API server's unknown-field notation.
    path: String,
    pruned: Vec<String>,
}

impl Pruner {
    fn prune(&mut self, value: &mut Value, schema: Option<&Schema>, root: bool, depth: usize) {
        if depth > WALK_LIMIT {
            return;
        }
        if let Some(s) = schema
            && flag(s, PRESERVE_UNKNOWN)
        {
            self.keep_unknown(value, s, root, depth);
            return;
        }
        match value {
            Value::Object(map) => {
                let embedded = schema.is_some_and(|s| flag(s, EMBEDDED));
                let properties = schema
                    .and_then(|s| s.get("properties"))
                    .and_then(Value::as_object);
                let mut unknown = HashSet::new();
                for (key, child) in map.iter_mut() {
                    if is_root_field(root, key) || (embedded && keeps_embedded_field(key, child)) {
                        continue;
                    }
                    let Some(s) = schema else {
                        unknown.insert(key.clone());
                        continue;
                    };
                    let property = properties
                        .and_then(|p| p.get(key))
                        .and_then(Value::as_object);
                    if let Some(p) = property {
                        self.descend(key, child, Some(p), depth);
                    } else {
                        match additional(s) {
                            Additional::Schema(a) => self.descend(key, child, Some(a), depth),
                            Additional::Any => self.descend(key, child, None, depth),
                            Additional::Absent => {
                                unknown.insert(key.clone());
                            }
                        }
                    }
                }
                if !unknown.is_empty() {
                    for key in map.keys().filter(|k| unknown.contains(*k)) {
                        self.pruned.push(join_unknown(&self.path, key));
                    }
                    map.retain(|k, _| !unknown.contains(k));
                }
            }
            Value::Array(list) => {
                let item_schema = schema.and_then(items);
                for (i, item) in list.iter_mut().enumerate() {
                    let mark = self.path.len();
                    self.path.push_str(&format!("[{i}]"));
                    self.prune(item, item_schema, false, depth + 1);
                    self.path.truncate(mark);
                }
            }
            _ => {}
        }
    }

    /// Under `x-kubernetes-preserve-unknown-fields` unknown fields stay, known ones are pruned
    /// by their own schemas.
    fn keep_unknown(&mut self, value: &mut Value, s: &Schema, root: bool, depth: usize) {
        match value {
            Value::Object(map) => {
                let embedded = root || flag(s, EMBEDDED);
                for (key, child) in map.iter_mut() {
                    if embedded && ROOT_FIELDS.contains(&key.as_str()) {
                        continue;
                    }
                    if let Some(p) = property(s, key) {
                        self.descend(key, child, Some(p), depth);
                    } else if let Some(a) = additional_schema(s) {
                        self.descend(key, child, Some(a), depth);
                    }
                }
            }
            Value::Array(list) => {
                if let Some(item_schema) = items(s) {
                    for (i, item) in list.iter_mut().enumerate() {
                        let mark = self.path.len();
                        self.path.push_str(&format!("[{i}]"));
                        self.keep_unknown(item, item_schema, false, depth + 1);
                        self.path.truncate(mark);
                    }
                }
            }
            _ => {}
        }
    }

    fn descend(&mut self, key: &str, child: &mut Value, schema: Option<&Schema>, depth: usize) {
        let mark = self.path.len();
        if !self.path.is_empty() {
            self.path.push('.');
        }
        self.path.push_str(key);
        self.prune(child, schema, false, depth + 1);
        self.path.truncate(mark);
    }
}

fn join_unknown(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// An embedded resource keeps a string `apiVersion` and `kind` and an object `metadata`.
fn keeps_embedded_field(key: &str, value: &Value) -> bool {
    matches!(
        (key, value),
        ("apiVersion" | "kind", Value::String(_)) | ("metadata", Value::Object(_))
    )
}

/// Drops `null` values of fields that are neither nullable nor defaulted (a defaulted null is
/// replaced by its default next). Null list items stay: the type check refuses them.
fn drop_nulls(value: &mut Value, schema: Option<&Schema>, root: bool, depth: usize) {
    if depth > WALK_LIMIT {
        return;
    }
    match value {
        Value::Object(map) => {
            map.retain(|key, child| {
                if is_root_field(root, key) || !child.is_null() {
                    return true;
                }
                match field_schema(schema, key) {
                    Some(s) => flag(s, "nullable") || default_of(s).is_some(),
                    None => true,
                }
            });
            for (key, child) in map.iter_mut() {
                if !is_root_field(root, key) && (child.is_object() || child.is_array()) {
                    drop_nulls(child, field_schema(schema, key), false, depth + 1);
                }
            }
        }
        Value::Array(list) => {
            let item_schema = schema.and_then(items);
            for item in list {
                drop_nulls(item, item_schema, false, depth + 1);
            }
        }
        _ => {}
    }
}

/// Applies `default`s of absent fields (and of non-nullable nulls), recursively: defaults inside
/// a newly defaulted object, in list items and in map values apply too. Nodes with no default
/// below them are passed over.
fn apply_defaults(
    plan: &Plan,
    value: &mut Value,
    schema: Option<&Schema>,
    root: bool,
    depth: usize,
) {
    let Some(s) = schema else {
        return;
    };
    if depth > WALK_LIMIT || plan.defaults_free(s) {
        return;
    }
    match value {
        Value::Object(map) => {
            let props = s.get("properties").and_then(Value::as_object);
            for (key, p) in props.into_iter().flatten() {
                let Some(p) = p.as_object() else {
                    continue;
                };
                if is_root_field(root, key) {
                    continue;
                }
                let Some(default) = default_of(p) else {
                    continue;
                };
                let missing = match map.get(key) {
                    None => true,
                    Some(Value::Null) => !flag(p, "nullable"),
                    Some(_) => false,
                };
                if missing {
                    map.insert(key.clone(), default.clone());
                }
            }
            let map_values = additional_schema(s);
            for (key, child) in map.iter_mut() {
                // Scalars hold nothing to default (a null map value may take its default).
                if is_root_field(root, key)
                    || !(child.is_object() || child.is_array() || child.is_null())
                {
                    continue;
                }
                if let Some(p) = props.and_then(|p| p.get(key)).and_then(Value::as_object) {
                    apply_defaults(plan, child, Some(p), false, depth + 1);
                } else if let Some(a) = map_values {
                    if child.is_null()
                        && !flag(a, "nullable")
                        && let Some(default) = default_of(a)
                    {
                        *child = default.clone();
                    }
                    apply_defaults(plan, child, Some(a), false, depth + 1);
                }
            }
        }
        Value::Array(list) => {
            if let Some(item_schema) = items(s) {
                for item in list {
                    if item.is_null()
                        && !flag(item_schema, "nullable")
                        && let Some(default) = default_of(item_schema)
                    {
                        *item = default.clone();
                    }
                    apply_defaults(plan, item, Some(item_schema), false, depth + 1);
                }
            }
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------------
// Causes, worded as the API server's field errors.

/// A bad value as the API server prints it in a field error.
enum Shown<'a> {
    Json(&'a Value),
    Text(&'a str),
    Int(i64),
}

fn show(value: &Shown) -> String {
    match value {
        Shown::Json(Value::Null) => go_quote("null"),
        Shown::Json(Value::Bool(b)) => b.to_string(),
        Shown::Json(Value::Number(n)) => go_number(n),
        Shown::Json(Value::String(s)) => go_quote(s),
        Shown::Json(v) => go_syntax(v, 0),
        Shown::Text(s) => go_quote(s),
        Shown::Int(i) => i.to_string(),
    }
}

fn field_of(path: &str) -> String {
    if path.is_empty() {
        NIL.to_owned()
    } else {
        path.to_owned()
    }
}

fn with_detail(mut head: String, detail: &str) -> String {
    if !detail.is_empty() {
        head.push_str(": ");
        head.push_str(detail);
    }
    head
}

fn invalid(path: &str, value: Shown, detail: &str) -> Cause {
    Cause {
        reason: INVALID,
        field: field_of(path),
        message: with_detail(format!("Invalid value: {}", show(&value)), detail),
    }
}

fn required(path: &str, detail: &str) -> Cause {
    Cause {
        reason: REQUIRED,
        field: field_of(path),
        message: with_detail("Required value".into(), detail),
    }
}

fn forbidden(path: &str, detail: &str) -> Cause {
    Cause {
        reason: FORBIDDEN,
        field: field_of(path),
        message: with_detail("Forbidden".into(), detail),
    }
}

fn duplicate(path: &str, value: Shown) -> Cause {
    Cause {
        reason: DUPLICATE,
        field: field_of(path),
        message: format!("Duplicate value: {}", show(&value)),
    }
}

fn too_many(path: &str, actual: i64, max: i64) -> Cause {
    let noun = if max == 1 { "item" } else { "items" };
    Cause {
        reason: TOO_MANY,
        field: field_of(path),
        message: format!("Too many: {actual}: must have at most {max} {noun}"),
    }
}

fn too_long(path: &str, max: i64) -> Cause {
    let noun = if max == 1 { "byte" } else { "bytes" };
    Cause {
        reason: TOO_LONG,
        field: field_of(path),
        message: format!("Too long: may not be more than {max} {noun}"),
    }
}

/// Problems the API server treats as blocking: CEL rules are not run after them.
fn blocks_rules(reason: &str) -> bool {
    matches!(
        reason,
        NOT_SUPPORTED | REQUIRED | TOO_LONG | TOO_MANY | TYPE_INVALID
    )
}

// ---------------------------------------------------------------------------------------------
// Structural validation: kube-openapi's schema validator as the API server runs it. Paths here
// are kube-openapi's names: `spec.replicas`, `spec.names[1]`, map values `spec.labels.key`; the
// root is the empty name and becomes the field `<nil>`.

/// The field of a kube-openapi error named `name`.
fn openapi_field(name: &str) -> String {
    if name.is_empty() || name == "." {
        NIL.to_owned()
    } else {
        name.strip_prefix('.').unwrap_or(name).to_owned()
    }
}

/// A kube-openapi error that is not a field error: the API server reports it at `<nil>`.
fn unplaced(message: String) -> Cause {
    Cause {
        reason: INVALID,
        field: NIL.into(),
        message: format!("Invalid value: \"\": {message}"),
    }
}

fn openapi_invalid(name: &str, value: Shown, detail: &str) -> Cause {
    Cause {
        reason: INVALID,
        field: openapi_field(name),
        message: with_detail(format!("Invalid value: {}", show(&value)), detail),
    }
}

fn type_invalid(name: &str, value: &str, expected: &str) -> Cause {
    let shown = go_quote(value);
    Cause {
        reason: TYPE_INVALID,
        field: openapi_field(name),
        message: format!(
            "Invalid value: {shown}: {name} in body must be of type {expected}: {shown}"
        ),
    }
}

/// A thread's cache of compiled expressions by their source.
type Compiled<T> = RefCell<HashMap<String, T>>;

/// The most expressions one thread's cache keeps before it starts afresh.
const COMPILED_LIMIT: usize = 4096;

/// `source` compiled by `compile`, from this thread's `cache`: a CRD's patterns and rules are
/// the same on every write, and compiling one costs far more than running it.
fn compiled<T: Clone>(
    cache: &'static std::thread::LocalKey<Compiled<T>>,
    source: &str,
    compile: impl FnOnce(&str) -> T,
) -> T {
    if let Some(hit) = cache.with(|c| c.borrow().get(source).cloned()) {
        return hit;
    }
    let fresh = compile(source);
    cache.with(|c| {
        let mut c = c.borrow_mut();
        if c.len() >= COMPILED_LIMIT {
            c.clear();
        }
        c.insert(source.to_owned(), fresh.clone());
    });
    fresh
}

thread_local! {
    static PATTERNS: Compiled<Result<Rc<Regex>, String>> = RefCell::default();
}

/// `pattern` compiled as Go would, from this thread's cache. Shared, not cloned: a cloned
/// `Regex` starts with no search caches and builds them again on its first match.
fn compile_pattern(pattern: &str) -> Result<Rc<Regex>, String> {
    compiled(&PATTERNS, pattern, |pattern| {
        compile_go_regex(pattern).map(Rc::new)
    })
}

/// Compiles a Go (RE2) regular expression: `\d`, `\w` and `\s` are ASCII-only there.
fn compile_go_regex(pattern: &str) -> Result<Regex, String> {
    let mut translated = String::with_capacity(pattern.len());
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            translated.push(c);
            continue;
        }
        match chars.next() {
            Some('d') => translated.push_str("[0-9]"),
            Some('D') => translated.push_str("[^0-9]"),
            Some('w') => translated.push_str("[0-9A-Za-z_]"),
            Some('W') => translated.push_str("[^0-9A-Za-z_]"),
            Some('s') => translated.push_str("[\\t\\n\\f\\r ]"),
            Some('S') => translated.push_str("[^\\t\\n\\f\\r ]"),
            Some(other) => {
                translated.push('\\');
                translated.push(other);
            }
            None => translated.push('\\'),
        }
    }
    Regex::new(&translated)
        .or_else(|_| Regex::new(pattern))
        .map_err(|e| {
            e.to_string()
                .lines()
                .last()
                .unwrap_or_default()
                .trim()
                .to_owned()
        })
}

/// The top-level fields of `object` that hold what the stored object `old` holds.
fn unchanged_fields(object: &Value, old: Option<&Value>) -> HashSet<String> {
    let (Some(object), Some(stored)) = (object.as_object(), old.and_then(Value::as_object)) else {
        return HashSet::new();
    };
    object
        .iter()
        .filter(|(key, value)| stored.get(*key) == Some(*value))
        .map(|(key, _)| key.clone())
        .collect()
}

/// Validates a value against its schema. On an update, a top-level field (`spec`, `status`,
/// …) the write left as it was is not validated again, as the API server ratchets unchanged
/// values (KEP-4008, on by default since Kubernetes 1.30): a status write does not pay for
/// the spec, nor fail on a spec a newer schema would refuse.
struct Checker<'a> {
    unchanged: &'a HashSet<String>,
}

impl Checker<'_> {
    /// kube-openapi's `SchemaValidator`: type, junctors, string, format, number, list, enum,
    /// object, in that order.
    fn check(
        &mut self,
        schema: Option<&Schema>,
        value: &Value,
        name: &str,
        root: bool,
        depth: usize,
        out: &mut Vec<Cause>,
    ) {
        let Some(s) = schema else {
            return;
        };
        if depth > WALK_LIMIT {
            return;
        }
        let view = View::of(s);
        let types = view.types();
        if value.is_null() {
            if !types.is_empty() && !view.nullable {
                out.push(type_invalid(name, "null", &types.join(",")));
            }
            if view.enumerated {
                check_enum(s, value, name, out);
            }
            return;
        }
        check_type(s, value, name, types, view.format, out);
        if view.junctors {
            self.check_junctors(s, value, name, root, depth, out);
        }
        match value {
            Value::String(text) => {
                if view.strings {
                    self.check_string(s, text, name, out);
                }
                if view.format {
                    check_format(s, text, name, out);
                }
            }
            Value::Number(n) => check_number(s, n, value, name, types, out),
            Value::Array(list) => self.check_list(s, list, name, depth, out),
            _ => {}
        }
        if view.enumerated {
            check_enum(s, value, name, out);
        }
        if let Value::Object(map) = value {
            self.check_object(s, &view, map, name, root, depth, out);
        }
    }

    fn branch(
        &mut self,
        s: &Schema,
        value: &Value,
        name: &str,
        root: bool,
        depth: usize,
    ) -> Vec<Cause> {
        let mut found = Vec::new();
        self.check(Some(s), value, name, root, depth + 1, &mut found);
        found
    }

    /// `allOf`, `anyOf`, `oneOf` and `not`, with kube-openapi's messages.
    fn check_junctors(
        &mut self,
        s: &Schema,
        value: &Value,
        name: &str,
        root: bool,
        depth: usize,
        out: &mut Vec<Cause>,
    ) {
        let branches = |key: &str| -> Vec<&Schema> {
            s.get(key)
                .and_then(Value::as_array)
                .map(|list| list.iter().filter_map(Value::as_object).collect())
                .unwrap_or_default()
        };
        let quoted = go_quote(name);

        let any_of = branches("anyOf");
        if !any_of.is_empty() {
            let mut best: Option<Vec<Cause>> = None;
            let mut matched = false;
            for b in any_of {
                let found = self.branch(b, value, name, root, depth);
                if found.is_empty() {
                    matched = true;
                    break;
                }
                if best.as_ref().is_none_or(|b| found.len() < b.len()) {
                    best = Some(found);
                }
            }
            if !matched {
                out.push(unplaced(format!(
                    "{quoted} must validate at least one schema (anyOf)"
                )));
                out.extend(best.unwrap_or_default());
            }
        }

        let one_of = branches("oneOf");
        if !one_of.is_empty() {
            let mut valid = 0;
            let mut best: Option<Vec<Cause>> = None;
            for b in one_of {
                let found = self.branch(b, value, name, root, depth);
                if found.is_empty() {
                    valid += 1;
                    best = None;
                } else if valid == 0 && best.as_ref().is_none_or(|b| found.len() < b.len()) {
                    best = Some(found);
                }
            }
            if valid != 1 {
                let why = if valid == 0 {
                    "Found none valid".to_owned()
                } else {
                    format!("Found {valid} valid alternatives")
                };
                out.push(unplaced(format!(
                    "{quoted} must validate one and only one schema (oneOf). {why}"
                )));
                out.extend(best.unwrap_or_default());
            }
        }

        let all_of = branches("allOf");
        if !all_of.is_empty() {
            let count = all_of.len();
            let mut valid = 0;
            for b in all_of {
                let found = self.branch(b, value, name, root, depth);
                if found.is_empty() {
                    valid += 1;
                }
                out.extend(found);
            }
            if valid != count {
                let none = if valid == 0 { ". None validated" } else { "" };
                out.push(unplaced(format!(
                    "{quoted} must validate all the schemas (allOf){none}"
                )));
            }
        }

        if let Some(not) = s.get("not").and_then(Value::as_object)
            && self.branch(not, value, name, root, depth).is_empty()
        {
            out.push(unplaced(format!(
                "{quoted} must not validate the schema (not)"
            )));
        }
    }

    /// `maxLength`, `minLength` (in characters), then `pattern`; only the first problem counts.
    fn check_string(&mut self, s: &Schema, value: &str, name: &str, out: &mut Vec<Cause>) {
        let length = i64::try_from(value.chars().count()).unwrap_or(i64::MAX);
        if let Some(max) = int_keyword(s, "maxLength")
            && length > max
        {
            out.push(Cause {
                field: openapi_field(name),
                ..too_long("", max)
            });
            return;
        }
        if let Some(min) = int_keyword(s, "minLength")
            && length < min
        {
            out.push(openapi_invalid(
                name,
                Shown::Text(value),
                &format!("{name} in body should be at least {min} chars long"),
            ));
            return;
        }
        if let Some(pattern) = text(s, "pattern")
            && !pattern.is_empty()
        {
            let detail = match compile_pattern(pattern) {
                Ok(re) if re.is_match(value) => return,
                Ok(_) => format!("{name} in body should match '{pattern}'"),
                Err(e) => {
                    format!("{name} in body should match '{pattern}, but pattern is invalid: {e}'")
                }
            };
            out.push(openapi_invalid(name, Shown::Text(value), &detail));
        }
    }

    fn check_list(
        &mut self,
        s: &Schema,
        list: &[Value],
        name: &str,
        depth: usize,
        out: &mut Vec<Cause>,
    ) {
        if let Some(item_schema) = items(s) {
            // One name for every item, rewritten in place.
            let mut item_name = String::with_capacity(name.len() + 8);
            for (i, item) in list.iter().enumerate() {
                item_name.clear();
                let _ = write!(item_name, "{name}[{i}]");
                self.check(Some(item_schema), item, &item_name, false, depth + 1, out);
            }
        }
        let size = i64::try_from(list.len()).unwrap_or(i64::MAX);
        if let Some(min) = int_keyword(s, "minItems")
            && size < min
        {
            out.push(openapi_invalid(
                name,
                Shown::Int(size),
                &format!("{name} in body should have at least {min} items"),
            ));
        }
        if let Some(max) = int_keyword(s, "maxItems")
            && size > max
        {
            out.push(Cause {
                field: openapi_field(name),
                ..too_many("", size, max)
            });
        }
        if flag(s, "uniqueItems") {
            let mut seen = HashSet::new();
            if list.iter().any(|item| !seen.insert(identity(item))) {
                out.push(openapi_invalid(
                    name,
                    Shown::Text(""),
                    &format!("{name} in body shouldn't contain duplicates"),
                ));
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn check_object(
        &mut self,
        s: &Schema,
        view: &View,
        map: &Map<String, Value>,
        name: &str,
        root: bool,
        depth: usize,
        out: &mut Vec<Cause>,
    ) {
        if view.objects {
            self.check_object_keywords(s, map, name, root, out);
        }
        let properties = view.properties;
        let map_values = match view.additional {
            Some(Value::Object(a)) => Some(a),
            _ => None,
        };
        // One name for every child, rewritten in place: `name.key` (a property of the root:
        // `key`).
        let mut child_name = String::with_capacity(name.len() + 24);
        for (key, child) in map {
            if is_root_field(root, key) || (root && self.unchanged.contains(key)) {
                continue;
            }
            let property = properties
                .and_then(|p| p.get(key))
                .and_then(Value::as_object);
            let (child_schema, prefixed) = match property {
                Some(p) => (p, !name.is_empty()),
                None => match map_values {
                    Some(a) => (a, true),
                    None => continue,
                },
            };
            child_name.clear();
            if prefixed {
                child_name.push_str(name);
                child_name.push('.');
            }
            child_name.push_str(key);
            self.check(
                Some(child_schema),
                child,
                &child_name,
                false,
                depth + 1,
                out,
            );
        }
    }

    /// `minProperties`, `maxProperties`, `required` and `additionalProperties: false`.
    fn check_object_keywords(
        &mut self,
        s: &Schema,
        map: &Map<String, Value>,
        name: &str,
        root: bool,
        out: &mut Vec<Cause>,
    ) {
        let count = i64::try_from(map.len()).unwrap_or(i64::MAX);
        if let Some(min) = int_keyword(s, "minProperties")
            && count < min
        {
            out.push(openapi_invalid(
                name,
                Shown::Int(count),
                &format!("{name} in body should have at least {min} properties"),
            ));
            return;
        }
        if let Some(max) = int_keyword(s, "maxProperties")
            && count > max
        {
            out.push(Cause {
                field: openapi_field(name),
                ..too_many("", count, max)
            });
            return;
        }
        if let Some(names) = s.get("required").and_then(Value::as_array) {
            for wanted in names.iter().filter_map(Value::as_str) {
                if !map.contains_key(wanted) {
                    out.push(Cause {
                        field: openapi_field(&format!("{name}.{wanted}")),
                        ..required("", "")
                    });
                }
            }
        }
        if s.get("additionalProperties") == Some(&Value::Bool(false)) {
            for key in map.keys() {
                if !is_root_field(root, key) && property(s, key).is_none() {
                    out.push(openapi_invalid(
                        name,
                        Shown::Text(key),
                        &format!("{name}.{key} in body is a forbidden property"),
                    ));
                }
            }
        }
    }
}

/// kube-openapi's type check. Integral numbers pass for `integer` and integers for `number`.
/// As kube-openapi does, a non-numeric schema with a recognized format lets strings and lists
/// through (the format check then applies to strings only).
fn check_type(
    s: &Schema,
    value: &Value,
    name: &str,
    types: &[&str],
    formatted: bool,
    out: &mut Vec<Cause>,
) {
    if types.is_empty() {
        return;
    }
    let numeric = types.contains(&"number") || types.contains(&"integer");
    if !numeric
        && formatted
        && string_format(s).is_some()
        && (value.is_string() || value.is_array())
    {
        return;
    }
    let kind = json_kind(value);
    let float_int = kind == "number"
        && value.as_f64().is_some_and(is_json_integer)
        && types.contains(&"integer");
    let int_float = kind == "integer" && types.contains(&"number");
    if !(types.contains(&kind) || float_int || int_float) {
        out.push(type_invalid(name, kind, &types.join(",")));
    }
}

/// Whether a float is an integer as kube-openapi's number checks see it (within 2^53, with a
/// relative tolerance of 1e-9).
fn is_json_integer(f: f64) -> bool {
    const MAX: f64 = 9_007_199_254_740_991.0;
    if !f.is_finite() || !(-MAX..=MAX).contains(&f) {
        return false;
    }
    if f.fract() == 0.0 {
        return true;
    }
    if f < 0.0 {
        return false;
    }
    let g = f.trunc();
    (f - g) / (f + g) < 1e-9
}

fn check_enum(s: &Schema, value: &Value, name: &str, out: &mut Vec<Cause>) {
    let Some(allowed) = s.get("enum").and_then(Value::as_array) else {
        return;
    };
    if allowed.is_empty() || allowed.iter().any(|a| enum_matches(value, a)) {
        return;
    }
    let supported = allowed
        .iter()
        .map(|a| match a {
            Value::String(s) => go_quote(s),
            other => go_quote(&canonical_json(other)),
        })
        .collect::<Vec<_>>()
        .join(", ");
    out.push(Cause {
        reason: NOT_SUPPORTED,
        field: openapi_field(name),
        message: format!(
            "Unsupported value: {}: supported values: {supported}",
            show(&Shown::Json(value))
        ),
    });
}

/// Enum membership as kube-openapi decides it: a value is converted to the enum value's type
/// before comparing (so `1.5` matches an enum `1`); null matches nothing.
fn enum_matches(value: &Value, allowed: &Value) -> bool {
    match (value, allowed) {
        (Value::Null, _) | (_, Value::Null) => false,
        (Value::Number(v), Value::Number(a)) => match (v.as_i64(), a.as_i64()) {
            (Some(v), Some(a)) => v == a,
            (None, Some(a)) => v.as_f64().is_some_and(|v| v.trunc() == a as f64),
            _ => v.as_f64() == a.as_f64(),
        },
        _ => value == allowed,
    }
}

/// The numeric checks: the range of a retained `int32`/`float` format, then `multipleOf`,
/// `minimum` and `maximum`. Integers are compared as integers (bounds truncated), as
/// kube-openapi does for integer data.
fn check_number(
    s: &Schema,
    n: &Number,
    value: &Value,
    name: &str,
    types: &[&str],
    out: &mut Vec<Cause>,
) {
    let format = text(s, "format").unwrap_or("");
    if types == ["integer"] && format == "int32" {
        let fits = match n.as_i64() {
            Some(i) => i32::try_from(i).is_ok(),
            None => n.as_f64().is_some_and(|f| {
                f.fract() == 0.0 && f >= f64::from(i32::MIN) && f <= f64::from(i32::MAX)
            }),
        };
        if !fits {
            out.push(unplaced(format!(
                "Checked value must be of type integer with format int32 in {name}"
            )));
        }
    }
    if types == ["number"]
        && (format == "float" || format == "float32")
        && n.as_f64().is_some_and(|f| f.abs() > f64::from(f32::MAX))
    {
        out.push(unplaced(format!(
            "Checked value must be of type number with format {format} in {name}"
        )));
    }

    if let Some(factor) = number_keyword(s, "multipleOf") {
        let whole = factor as i64;
        match n.as_i64() {
            Some(data) if whole != 0 => {
                if whole < 0 {
                    out.push(openapi_invalid(
                        name,
                        Shown::Int(whole),
                        &format!("factor MultipleOf declared for {name} must be positive: {whole}"),
                    ));
                } else if data.checked_rem(whole).is_some_and(|r| r != 0) {
                    out.push(openapi_invalid(
                        name,
                        Shown::Json(value),
                        &format!("{name} in body should be a multiple of {whole}"),
                    ));
                }
            }
            _ => {
                let data = n.as_f64().unwrap_or_default();
                if factor < 0.0 {
                    out.push(openapi_invalid(
                        name,
                        Shown::Json(&Value::from(factor)),
                        &format!(
                            "factor MultipleOf declared for {name} must be positive: {}",
                            go_float(factor)
                        ),
                    ));
                } else {
                    let ratio = if factor < 1.0 {
                        1.0 / factor * data
                    } else {
                        data / factor
                    };
                    if !is_json_integer(ratio) {
                        out.push(openapi_invalid(
                            name,
                            Shown::Json(value),
                            &format!(
                                "{name} in body should be a multiple of {}",
                                go_float(factor)
                            ),
                        ));
                    }
                }
            }
        }
    }
    for (key, exclusive_key, below) in [
        ("minimum", "exclusiveMinimum", true),
        ("maximum", "exclusiveMaximum", false),
    ] {
        let Some(bound) = number_keyword(s, key) else {
            continue;
        };
        let exclusive = flag(s, exclusive_key);
        let (fails, bound_text) = match n.as_i64() {
            Some(data) => {
                let bound = bound as i64;
                let fails = match (below, exclusive) {
                    (true, false) => data < bound,
                    (true, true) => data <= bound,
                    (false, false) => data > bound,
                    (false, true) => data >= bound,
                };
                (fails, bound.to_string())
            }
            None => {
                let data = n.as_f64().unwrap_or_default();
                let fails = match (below, exclusive) {
                    (true, false) => data < bound,
                    (true, true) => data <= bound,
                    (false, false) => data > bound,
                    (false, true) => data >= bound,
                };
                (fails, go_float(bound))
            }
        };
        if fails {
            let relation = match (below, exclusive) {
                (true, false) => "greater than or equal to",
                (true, true) => "greater than",
                (false, false) => "less than or equal to",
                (false, true) => "less than",
            };
            out.push(openapi_invalid(
                name,
                Shown::Json(value),
                &format!("{name} in body should be {relation} {bound_text}"),
            ));
        }
    }
}

fn check_format(s: &Schema, value: &str, name: &str, out: &mut Vec<Cause>) {
    let Some(format) = string_format(s) else {
        return;
    };
    if format_accepts(&format, value) == Some(false) {
        let raw = text(s, "format").unwrap_or_default();
        let shown = go_quote(value);
        out.push(Cause {
            reason: TYPE_INVALID,
            field: openapi_field(name),
            message: format!(
                "Invalid value: {shown}: {name} in body must be of type {raw}: {shown}"
            ),
        });
    }
}

// ---------------------------------------------------------------------------------------------
// Embedded resources and list types: the API server's checks after kube-openapi's, with field
// paths proper (`spec.labels[key]` for map values).

fn child_path(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

fn key_path(path: &str, key: &str) -> String {
    format!("{path}[{key}]")
}

fn index_path(path: &str, index: usize) -> String {
    format!("{path}[{index}]")
}

/// Walks `value` along `schema` as the embedded-resource and list-type checks do (properties,
/// map values, list items), calling `visit` with each node's schema, value, path and whether
/// it is the root. Nodes past the walk's limit, and nodes with nothing at or below them marked
/// for these checks ([`Plan::unmarked`]), are passed over.
fn walk_marked(
    plan: &Plan,
    schema: Option<&Schema>,
    value: &Value,
    at: (&str, bool, usize),
    visit: &mut dyn FnMut(&Schema, &Value, &str, bool),
) {
    let (path, root, depth) = at;
    let Some(s) = schema.filter(|s| depth <= WALK_LIMIT && !plan.unmarked(s)) else {
        return;
    };
    visit(s, value, path, root);
    // A child's path is formatted only for a child the walk goes into.
    let marked = |child: &Schema| !plan.unmarked(child);
    match value {
        Value::Object(map) => {
            for (key, child) in map.iter().filter(|(key, _)| !is_root_field(root, key)) {
                let child_path = match property(s, key) {
                    Some(p) => marked(p).then(|| (p, child_path(path, key))),
                    None => additional_schema(s)
                        .filter(|a| marked(a))
                        .map(|a| (a, key_path(path, key))),
                };
                if let Some((c, child_path)) = child_path {
                    walk_marked(plan, Some(c), child, (&child_path, false, depth + 1), visit);
                }
            }
        }
        Value::Array(list) => {
            if let Some(item_schema) = items(s).filter(|i| marked(i)) {
                for (i, item) in list.iter().enumerate() {
                    let item_path = index_path(path, i);
                    walk_marked(
                        plan,
                        Some(item_schema),
                        item,
                        (&item_path, false, depth + 1),
                        visit,
                    );
                }
            }
        }
        _ => {}
    }
}

/// `apiVersion` and `kind` of objects marked `x-kubernetes-embedded-resource`.
fn check_embedded(plan: &Plan, schema: Option<&Schema>, object: &Value, out: &mut Vec<Cause>) {
    walk_marked(
        plan,
        schema,
        object,
        ("", true, 0),
        &mut |s, value, path, root| {
            if let Value::Object(map) = value
                && !root
                && flag(s, EMBEDDED)
            {
                check_embedded_resource(map, path, out);
            }
        },
    );
}

fn check_embedded_resource(map: &Map<String, Value>, path: &str, out: &mut Vec<Cause>) {
    let api_version_path = child_path(path, "apiVersion");
    let kind_path = child_path(path, "kind");
    if !map.contains_key("apiVersion") {
        out.push(required(&api_version_path, ""));
    }
    if !map.contains_key("kind") {
        out.push(required(&kind_path, ""));
    }
    match map.get("apiVersion") {
        Some(Value::String(v)) if v.is_empty() => {
            out.push(invalid(
                &api_version_path,
                Shown::Text(v),
                "must not be empty",
            ));
        }
        Some(Value::String(v)) if v != "/" && v.matches('/').count() > 1 => {
            out.push(invalid(
                &api_version_path,
                Shown::Text(v),
                &format!("unexpected GroupVersion string: {v}"),
            ));
        }
        Some(Value::String(_)) | None => {}
        Some(other) => out.push(invalid(
            &api_version_path,
            Shown::Json(other),
            "must be a string",
        )),
    }
    match map.get("kind") {
        Some(Value::String(k)) if k.is_empty() => {
            out.push(invalid(&kind_path, Shown::Text(k), "must not be empty"));
        }
        Some(Value::String(k)) => {
            let lower = k.to_lowercase();
            let mut problems = Vec::new();
            if lower.len() > 63 {
                problems.push("must be no more than 63 characters".to_owned());
            }
            if !is_dns1035_label(&lower) {
                problems.push("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')".to_owned());
            }
            if !problems.is_empty() {
                out.push(invalid(
                    &kind_path,
                    Shown::Text(k),
                    &format!(
                        "may have mixed case, but should otherwise match: {}",
                        problems.join(",")
                    ),
                ));
            }
        }
        None => {}
        Some(other) => out.push(invalid(&kind_path, Shown::Json(other), "must be a string")),
    }
}

fn is_dns1035_label(s: &str) -> bool {
    let bytes = s.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_lowercase()
                && (last.is_ascii_lowercase() || last.is_ascii_digit())
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        }
        _ => false,
    }
}

/// `x-kubernetes-list-type: set` items and `map` keys must be unique; the first repetition of
/// each is reported.
fn check_list_types(plan: &Plan, schema: Option<&Schema>, object: &Value, out: &mut Vec<Cause>) {
    walk_marked(
        plan,
        schema,
        object,
        ("", true, 0),
        &mut |s, value, path, _| {
            let Value::Array(list) = value else {
                return;
            };
            match text(s, "x-kubernetes-list-type") {
                Some("set") => {
                    for i in first_repeats(list.iter().map(identity)) {
                        if let Some(item) = list.get(i) {
                            out.push(duplicate(&index_path(path, i), Shown::Json(item)));
                        }
                    }
                }
                Some("map") => check_list_map(s, list, path, out),
                _ => {}
            }
        },
    );
}

/// How list items compare for uniqueness: scalars by type and value (`1` and `1.0` differ),
/// objects and lists by their JSON.
fn identity(v: &Value) -> String {
    match v {
        Value::Array(_) | Value::Object(_) => canonical_json(v),
        scalar => format!("{}:{}", json_kind(scalar), canonical_json(scalar)),
    }
}

/// The indexes where a value is seen for the second time.
fn first_repeats(values: impl Iterator<Item = String>) -> Vec<usize> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut repeats = Vec::new();
    for (i, v) in values.enumerate() {
        let times = seen.entry(v).or_insert(0);
        *times += 1;
        if *times == 2 {
            repeats.push(i);
        }
    }
    repeats
}

fn check_list_map(s: &Schema, list: &[Value], path: &str, out: &mut Vec<Cause>) {
    if let Some((i, item)) = list
        .iter()
        .enumerate()
        .find(|(_, item)| !item.is_null() && !item.is_object())
    {
        out.push(invalid(
            &index_path(path, i),
            Shown::Json(item),
            "must be an object for an array of list-type map",
        ));
        return;
    }
    if list.len() <= 1 {
        return;
    }
    let key_names: Vec<&str> = s
        .get("x-kubernetes-list-map-keys")
        .and_then(Value::as_array)
        .map(|keys| keys.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    // The key fields each item has, in the shape the API server reports them.
    let keys: Vec<Map<String, Value>> = list
        .iter()
        .map(|item| {
            let mut key = Map::new();
            if let Some(item) = item.as_object() {
                for name in &key_names {
                    if let Some(v) = item.get(*name) {
                        key.insert((*name).to_owned(), v.clone());
                    }
                }
            }
            key
        })
        .collect();
    let repeats = first_repeats(
        keys.iter()
            .map(|k| canonical_json(&Value::Object(k.clone()))),
    );
    for i in repeats {
        if let Some(key) = keys.get(i) {
            out.push(duplicate(
                &index_path(path, i),
                Shown::Json(&Value::Object(key.clone())),
            ));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// CEL rules (`x-kubernetes-validations`), evaluated with kube-cel's Kubernetes function library
// as the API server's CEL validator walks them: rules of a node, then its `allOf` branches, then
// its children; nulls are not validated; `oldSelf` comes from the same path of the old object,
// through properties, map keys and list-type map keys. As on the API server, a schema whose
// rules all sit in `allOf` branches runs none.

fn has_rules(schema: &Value, depth: usize) -> bool {
    schema
        .as_object()
        .is_some_and(|s| any_rule(s, depth, &|_| true))
}

/// Whether a rule compares with `oldSelf`: such a rule runs on an unchanged value too (the
/// API server does not ratchet transition rules).
fn mentions_old_self(rule: &Value) -> bool {
    ["rule", "messageExpression"].iter().any(|k| {
        rule.get(*k)
            .and_then(Value::as_str)
            .is_some_and(|t| t.contains("oldSelf"))
    })
}

/// Whether `s` or a schema within it holds a rule that `wanted`.
fn any_rule(s: &Schema, depth: usize, wanted: &dyn Fn(&Value) -> bool) -> bool {
    if depth > WALK_LIMIT {
        return false;
    }
    if s.get(RULES)
        .and_then(Value::as_array)
        .is_some_and(|r| r.iter().any(wanted))
    {
        return true;
    }
    let within = |v: &Value| {
        v.as_object()
            .is_some_and(|c| any_rule(c, depth + 1, wanted))
    };
    let in_properties = match s.get("properties") {
        Some(Value::Object(m)) => m.values().any(within),
        _ => false,
    };
    in_properties
        || s.get("items").is_some_and(within)
        || s.get("additionalProperties").is_some_and(within)
}

/// One rule of a schema node, compiled.
struct Rule {
    text: String,
    message: Option<String>,
    reason: Option<String>,
    /// The rule's `fieldPath`, normalized against the schema (`.size` → `size`).
    field_path: Option<String>,
    optional_old_self: bool,
    program: Result<Arc<cel::Program>, String>,
    message_program: Option<Arc<cel::Program>>,
    uses_old_self: bool,
}

impl std::fmt::Debug for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rule")
            .field("text", &self.text)
            .finish_non_exhaustive()
    }
}

impl Rule {
    fn compile(raw: &Value, s: &Schema) -> Option<Rule> {
        let parsed: kube_cel::Rule = match serde_json::from_value(raw.clone()) {
            Ok(r) => r,
            Err(e) => {
                return Some(Rule {
                    text: raw.to_string(),
                    message: None,
                    reason: None,
                    field_path: None,
                    optional_old_self: false,
                    program: Err(format!("invalid rule: {e}")),
                    message_program: None,
                    uses_old_self: false,
                });
            }
        };
        if parsed.rule.trim().is_empty() {
            return None;
        }
        let program = compile_cel(&parsed.rule);
        let uses_old_self = program
            .as_ref()
            .is_ok_and(|p| p.references().has_variable("oldSelf"));
        let message_program = parsed
            .message_expression
            .as_deref()
            .filter(|m| !m.trim().is_empty())
            .and_then(|m| compile_cel(m).ok());
        let field_path = parsed
            .field_path
            .as_deref()
            .filter(|f| !f.is_empty())
            .and_then(|f| normalize_field_path(f, s));
        Some(Rule {
            text: parsed.rule,
            message: parsed.message,
            reason: parsed.reason,
            field_path,
            optional_old_self: parsed.optional_old_self == Some(true),
            program,
            message_program,
            uses_old_self,
        })
    }

    /// The rule's message, or `failed rule: <rule>`.
    fn message_or_default(&self) -> String {
        match self.message.as_deref().map(str::trim) {
            Some(m) if !m.is_empty() => m.to_owned(),
            _ => format!("failed rule: {}", self.text.trim()),
        }
    }

    /// How errors name the rule: its message, else its text.
    fn describe(&self) -> String {
        match self.message.as_deref().map(str::trim) {
            Some(m) if !m.is_empty() => m.to_owned(),
            _ => self.text.trim().to_owned(),
        }
    }
}

thread_local! {
    static PROGRAMS: Compiled<Result<Arc<cel::Program>, String>> = RefCell::default();
}

fn compile_cel(source: &str) -> Result<Arc<cel::Program>, String> {
    compiled(&PROGRAMS, source, |source| {
        compile_cel_uncached(source).map(Arc::new)
    })
}

fn compile_cel_uncached(source: &str) -> Result<cel::Program, String> {
    if rule_nesting(source) > MAX_RULE_NESTING {
        return Err(format!(
            "the expression nests deeper than {MAX_RULE_NESTING} levels"
        ));
    }
    match catch_unwind(AssertUnwindSafe(|| cel::Program::compile(source))) {
        Ok(Ok(program)) => Ok(program),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("the CEL parser failed on this expression".to_owned()),
    }
}

/// How deep brackets and runs of unary operators nest in a CEL expression, outside string
/// literals (a guard for the recursive parser).
fn rule_nesting(source: &str) -> usize {
    let mut deepest = 0usize;
    let mut depth = 0usize;
    let mut unary_run = 0usize;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in source.chars() {
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '\'' | '"' => quote = Some(c),
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        if c == '!' || c == '-' {
            unary_run += 1;
        } else if !c.is_whitespace() {
            unary_run = 0;
        }
        deepest = deepest.max(depth).max(unary_run);
    }
    deepest
}

/// Normalizes a rule's `fieldPath` (`.a.b`, `['a.b']`, map keys) against the schema it applies
/// to, as the API server does; `None` when it names no field of the schema.
fn normalize_field_path(field_path: &str, s: &Schema) -> Option<String> {
    let tokens = field_path_tokens(field_path)?;
    let mut schema = s;
    let mut normalized = String::new();
    let mut tokens = tokens.into_iter();
    while let Some(token) = tokens.next() {
        let name = match token.as_str() {
            "[" => {
                let quoted = tokens.next()?;
                let inner = quoted.strip_prefix('\'')?.strip_suffix('\'')?;
                let name = unescape_single_quoted(inner)?;
                if tokens.next()? != "]" {
                    return None;
                }
                name
            }
            "." => tokens.next()?,
            _ => return None,
        };
        if schema.get("properties").is_some_and(Value::is_object) {
            schema = property(schema, &name)?;
            if !normalized.is_empty() {
                normalized.push('.');
            }
            normalized.push_str(&name);
        } else if let Some(a) = additional_schema(schema) {
            schema = a;
            normalized.push_str(&format!("[{name}]"));
        } else {
            return None;
        }
    }
    Some(normalized)
}

/// Splits a field path into `.`, `[`, `]`, single-quoted strings and names.
fn field_path_tokens(field_path: &str) -> Option<Vec<String>> {
    let chars: Vec<char> = field_path.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        match c {
            '.' | '[' | ']' => {
                tokens.push(c.to_string());
                i += 1;
            }
            '\'' => {
                let mut j = i + 1;
                loop {
                    match chars.get(j) {
                        Some('\'') if chars.get(j - 1) != Some(&'\\') => break,
                        Some(_) => j += 1,
                        None => return None,
                    }
                }
                tokens.push(chars.get(i..=j)?.iter().collect());
                i = j + 1;
            }
            _ => {
                let start = i;
                while chars.get(i).is_some_and(|c| !matches!(c, '.' | '[' | ']')) {
                    i += 1;
                }
                tokens.push(chars.get(start..i)?.iter().collect());
            }
        }
    }
    Some(tokens)
}

fn unescape_single_quoted(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        out.push(match chars.next()? {
            'a' => '\u{7}',
            'b' => '\u{8}',
            'f' => '\u{c}',
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            'v' => '\u{b}',
            '\'' => '\'',
            '\\' => '\\',
            _ => return None,
        });
    }
    Some(out)
}

thread_local! {
    /// The CEL functions Kubernetes offers, registered once per thread.
    static BASE_CONTEXT: Rc<cel::Context<'static>> = {
        let mut base = cel::Context::default();
        base.register_all();
        Rc::new(base)
    };
}

struct RuleRun<'p> {
    plan: &'p Plan,
    base: Rc<cel::Context<'static>>,
    /// The top-level fields the write left as stored.
    unchanged: HashSet<String>,
    causes: Vec<Cause>,
}

impl<'p> RuleRun<'p> {
    fn new(plan: &'p Plan, unchanged: HashSet<String>) -> RuleRun<'p> {
        RuleRun {
            plan,
            base: BASE_CONTEXT.with(Rc::clone),
            unchanged,
            causes: Vec::new(),
        }
    }

    fn walk(
        &mut self,
        schema: Option<&Schema>,
        value: &Value,
        old: Option<&Value>,
        path: &str,
        root: bool,
        depth: usize,
    ) {
        let Some(s) = schema else {
            return;
        };
        if depth > WALK_LIMIT || value.is_null() || self.plan.rule_free(s) {
            return;
        }
        let old = old.filter(|o| !o.is_null());
        self.run_rules(s, value, old, path, root);
        if let Some(branches) = s.get("allOf").and_then(Value::as_array) {
            for b in branches.iter().filter_map(Value::as_object) {
                self.walk(Some(b), value, old, path, root, depth + 1);
            }
        }
        // Maps correlate by key unless they declare a map type the API server does not know.
        let correlatable = matches!(
            text(s, "x-kubernetes-map-type"),
            None | Some("granular" | "atomic")
        );
        match value {
            Value::Object(map) => {
                let old_map = if correlatable {
                    old.and_then(Value::as_object)
                } else {
                    None
                };
                for (key, child) in map {
                    if is_root_field(root, key) {
                        continue;
                    }
                    let old_child = old_map.and_then(|m| m.get(key));
                    // An unchanged top-level field is ratcheted, as in the structural checks,
                    // unless a rule within it compares with oldSelf.
                    let ratcheted = |p: &Schema| {
                        root && self.unchanged.contains(key) && !self.plan.uses_old_self(p)
                    };
                    if let Some(p) = property(s, key) {
                        // The path is made only for a node that may hold rules.
                        if ratcheted(p) || self.plan.rule_free(p) {
                            continue;
                        }
                        self.walk(
                            Some(p),
                            child,
                            old_child,
                            &child_path(path, key),
                            false,
                            depth + 1,
                        );
                    } else if let Some(a) = additional_schema(s).filter(|a| !self.plan.rule_free(a))
                    {
                        self.walk(
                            Some(a),
                            child,
                            old_child,
                            &key_path(path, key),
                            false,
                            depth + 1,
                        );
                    }
                }
            }
            Value::Array(list) => {
                let Some(item_schema) = items(s).filter(|i| !self.plan.rule_free(i)) else {
                    return;
                };
                let keys = list_map_keys(s);
                let old_list = old.and_then(Value::as_array);
                for (i, item) in list.iter().enumerate() {
                    let old_item = match (&keys, old_list) {
                        (Some(keys), Some(old_list)) => {
                            correlate(old_list, item, keys, item_schema)
                        }
                        _ => None,
                    };
                    self.walk(
                        Some(item_schema),
                        item,
                        old_item,
                        &index_path(path, i),
                        false,
                        depth + 1,
                    );
                }
            }
            _ => {}
        }
    }

    fn run_rules(
        &mut self,
        s: &Schema,
        value: &Value,
        old: Option<&Value>,
        path: &str,
        root: bool,
    ) {
        let Some(rules) = self.plan.rules_of(s).filter(|r| !r.is_empty()).cloned() else {
            return;
        };
        // A creation runs no transition rule: when those are all a node has (an Order's spec),
        // its value is not converted for nothing.
        let skipped = |rule: &Rule| {
            rule.program.is_ok() && rule.uses_old_self && old.is_none() && !rule.optional_old_self
        };
        if rules.iter().all(skipped) {
            return;
        }
        let this = to_cel(value, Some(s), root, 0);
        // An unchanged value (a status write's spec) is converted once for both.
        let before = old.map(|o| {
            if o == value {
                this.clone()
            } else {
                to_cel(o, Some(s), root, 0)
            }
        });
        let type_name = text(s, "type").unwrap_or_default();
        // The variables are made once per node for all its rules, one scope for each way a
        // rule sees `oldSelf` (plain or optional): each makes a copy of the whole value.
        let base = self.base.clone();
        let mut scopes: [Option<Option<cel::Context>>; 2] = [None, None];
        for rule in rules.iter() {
            let program = match &rule.program {
                Ok(p) => p,
                Err(e) => {
                    self.causes.push(invalid(
                        path,
                        Shown::Text(type_name),
                        &format!("rule compile error: {e}"),
                    ));
                    continue;
                }
            };
            if skipped(rule) {
                continue;
            }
            let vars = scopes[usize::from(rule.optional_old_self)].get_or_insert_with(|| {
                scope(&base, &this, before.as_ref(), rule.optional_old_self)
            });
            let result = execute(program, vars.as_ref());
            let detail = match result {
                Ok(cel::Value::Bool(true)) => continue,
                Ok(_) => None,
                Err(Evaluation::NoSuchOverload) => Some(format!(
                    "'no such overload': call arguments did not match a supported operator, function or macro signature for rule: {}",
                    rule.describe()
                )),
                Err(Evaluation::Failed(e)) => {
                    Some(format!("{e} evaluating rule: {}", rule.describe()))
                }
            };
            if let Some(detail) = detail {
                self.causes
                    .push(invalid(path, Shown::Text(type_name), &detail));
                continue;
            }
            let message = rule
                .message_program
                .as_ref()
                .and_then(|m| {
                    let vars = scopes[0]
                        .get_or_insert_with(|| scope(&base, &this, before.as_ref(), false));
                    match execute(m, vars.as_ref()) {
                        Ok(cel::Value::String(text))
                            if !text.trim().is_empty() && !text.contains('\n') =>
                        {
                            Some(text.trim().to_owned())
                        }
                        _ => None,
                    }
                })
                .unwrap_or_else(|| rule.message_or_default());
            let field = match &rule.field_path {
                Some(f) => child_path(path, f),
                None => path.to_owned(),
            };
            self.causes.push(match rule.reason.as_deref() {
                Some("FieldValueForbidden") => forbidden(&field, &message),
                Some("FieldValueRequired") => required(&field, &message),
                Some("FieldValueDuplicate") => duplicate(&field, Shown::Text(type_name)),
                _ => invalid(&field, Shown::Text(type_name), &message),
            });
        }
    }
}

/// A scope with `self` and `oldSelf` (optional or not) for rules to run in; `None` if making
/// the variables failed inside the interpreter.
fn scope<'b>(
    base: &'b cel::Context<'static>,
    this: &cel::Value,
    before: Option<&cel::Value>,
    optional_old_self: bool,
) -> Option<cel::Context<'b>> {
    catch_unwind(AssertUnwindSafe(|| {
        let mut scope = base.new_inner_scope();
        scope.add_variable_from_value("self", this.clone());
        if optional_old_self {
            let old = match before {
                Some(o) => cel::objects::OptionalValue::of(o.clone()),
                None => cel::objects::OptionalValue::none(),
            };
            scope.add_variable_from_value("oldSelf", cel::Value::Opaque(Arc::new(old)));
        } else if let Some(o) = before {
            scope.add_variable_from_value("oldSelf", o.clone());
        }
        scope
    }))
    .ok()
}

fn execute(program: &cel::Program, scope: Option<&cel::Context>) -> Result<cel::Value, Evaluation> {
    let Some(scope) = scope else {
        return Err(Evaluation::Failed(
            "internal error: the CEL interpreter failed".to_owned(),
        ));
    };
    let run = catch_unwind(AssertUnwindSafe(|| program.execute(scope)));
    match run {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(cel::ExecutionError::NoSuchOverload)) => Err(Evaluation::NoSuchOverload),
        Ok(Err(cel::ExecutionError::NoSuchKey(key))) => {
            Err(Evaluation::Failed(format!("no such key: {key}")))
        }
        Ok(Err(e)) => Err(Evaluation::Failed(e.to_string())),
        Err(_) => Err(Evaluation::Failed(
            "internal error: the CEL interpreter failed".to_owned(),
        )),
    }
}

enum Evaluation {
    NoSuchOverload,
    Failed(String),
}

fn list_map_keys(s: &Schema) -> Option<Vec<&str>> {
    if text(s, "x-kubernetes-list-type") != Some("map") {
        return None;
    }
    let keys: Vec<&str> = s
        .get("x-kubernetes-list-map-keys")?
        .as_array()?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    (!keys.is_empty()).then_some(keys)
}

/// The item of the old list-type map with the same keys as `item` (absent keys take the key
/// field's default).
fn correlate<'o>(
    old_list: &'o [Value],
    item: &Value,
    keys: &[&str],
    item_schema: &Schema,
) -> Option<&'o Value> {
    let key_of = |v: &Value| -> Option<Vec<Value>> {
        let map = v.as_object()?;
        Some(
            keys.iter()
                .map(|k| {
                    map.get(*k)
                        .or_else(|| property(item_schema, k).and_then(default_of))
                        .cloned()
                        .unwrap_or(Value::Null)
                })
                .collect(),
        )
    };
    let wanted = key_of(item)?;
    old_list
        .iter()
        .find(|o| key_of(o).is_some_and(|k| k == wanted))
}

/// A JSON value as the API server's CEL sees it under `schema`: typed numbers, `date-time` and
/// `date` strings as timestamps, `duration` as durations, `byte` as bytes, object field names
/// escaped, map keys as they are, and embedded resources' (and the root's) `metadata` reduced
/// to `name` and `generateName`.
fn to_cel(value: &Value, schema: Option<&Schema>, root: bool, depth: usize) -> cel::Value {
    if depth > WALK_LIMIT {
        return cel::Value::Null;
    }
    match value {
        Value::Null => cel::Value::Null,
        Value::Bool(b) => cel::Value::Bool(*b),
        Value::Number(n) => number_to_cel(n, schema.and_then(|s| text(s, "type"))),
        Value::String(s) => string_to_cel(s, schema),
        Value::Array(list) => {
            let item_schema = schema.and_then(items);
            cel::Value::List(Arc::new(
                list.iter()
                    .map(|item| to_cel(item, item_schema, false, depth + 1))
                    .collect(),
            ))
        }
        Value::Object(map) => {
            let meta_view = root || schema.is_some_and(|s| flag(s, EMBEDDED));
            let is_map = schema.is_some_and(|s| !matches!(additional(s), Additional::Absent));
            let map_values = schema.and_then(additional_schema);
            let mut fields = HashMap::with_capacity(map.len());
            for (key, child) in map {
                let converted = if meta_view && key == "metadata" {
                    Some((key.clone(), metadata_to_cel(child, depth)))
                } else if let Some(p) = schema.and_then(|s| property(s, key)) {
                    escape_field(key).map(|k| (k, to_cel(child, Some(p), false, depth + 1)))
                } else if is_map {
                    Some((key.clone(), to_cel(child, map_values, false, depth + 1)))
                } else {
                    escape_field(key).map(|k| (k, to_cel(child, None, false, depth + 1)))
                };
                if let Some((k, v)) = converted {
                    fields.insert(cel::objects::Key::String(Arc::new(k)), v);
                }
            }
            cel::Value::Map(cel::objects::Map {
                map: Arc::new(fields),
            })
        }
    }
}

fn metadata_to_cel(value: &Value, depth: usize) -> cel::Value {
    match value.as_object() {
        Some(meta) => {
            let fields = ["name", "generateName"]
                .iter()
                .filter_map(|k| {
                    meta.get(*k).map(|v| {
                        (
                            cel::objects::Key::String(Arc::new((*k).to_owned())),
                            to_cel(v, None, false, depth + 1),
                        )
                    })
                })
                .collect();
            cel::Value::Map(cel::objects::Map {
                map: Arc::new(fields),
            })
        }
        None => to_cel(value, None, false, depth + 1),
    }
}

fn number_to_cel(n: &Number, type_name: Option<&str>) -> cel::Value {
    match type_name {
        Some("number") => cel::Value::Float(n.as_f64().unwrap_or_default()),
        _ => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => cel::Value::Int(i),
            (None, Some(f)) if type_name == Some("integer") && is_json_integer(f) => {
                cel::Value::Int(f as i64)
            }
            (None, Some(f)) => cel::Value::Float(f),
            (None, None) => cel::Value::Null,
        },
    }
}

fn string_to_cel(s: &str, schema: Option<&Schema>) -> cel::Value {
    let plain = || cel::Value::String(Arc::new(s.to_owned()));
    let Some(schema) = schema else {
        return plain();
    };
    if text(schema, "type") != Some("string") {
        return plain();
    }
    match text(schema, "format")
        .map(|f| f.replace('-', ""))
        .as_deref()
    {
        Some("datetime") if is_date_time(s) => {
            cel::functions::time::timestamp(Arc::new(s.to_owned())).unwrap_or_else(|_| plain())
        }
        Some("date") if is_date(s) => {
            cel::functions::time::timestamp(Arc::new(format!("{s}T00:00:00Z")))
                .unwrap_or_else(|_| plain())
        }
        Some("duration") => {
            cel::functions::time::duration(Arc::new(s.to_owned())).unwrap_or_else(|_| plain())
        }
        Some("byte") => {
            use base64::Engine;
            match base64::engine::general_purpose::STANDARD.decode(s) {
                Ok(bytes) => cel::Value::Bytes(Arc::new(bytes)),
                Err(_) => plain(),
            }
        }
        _ => plain(),
    }
}

/// A property name as CEL sees it: reserved words become `__word__`; `__`, `.`, `-` and `/`
/// become `__underscores__`, `__dot__`, `__dash__` and `__slash__`. Names that cannot be
/// escaped are not visible to CEL.
fn escape_field(name: &str) -> Option<String> {
    const RESERVED: [&str; 21] = [
        "true",
        "false",
        "null",
        "in",
        "as",
        "break",
        "const",
        "continue",
        "else",
        "for",
        "function",
        "if",
        "import",
        "let",
        "loop",
        "package",
        "namespace",
        "return",
        "var",
        "void",
        "while",
    ];
    let first = name.chars().next()?;
    if first.is_ascii_digit() {
        return None;
    }
    if RESERVED.contains(&name) {
        return Some(format!("__{name}__"));
    }
    let mut out = String::with_capacity(name.len());
    let mut chars = name.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '_' if chars.peek() == Some(&'_') => {
                chars.next();
                out.push_str("__underscores__");
            }
            '.' => out.push_str("__dot__"),
            '-' => out.push_str("__dash__"),
            '/' => out.push_str("__slash__"),
            c if c.is_ascii_alphanumeric() || c == '_' => out.push(c),
            _ => return None,
        }
    }
    Some(out)
}

// ---------------------------------------------------------------------------------------------
// Formats. The ones the API server recognizes (others are ignored), checked as kube-openapi's
// format registry checks them.

const RECOGNIZED_FORMATS: [&str; 24] = [
    "bsonobjectid",
    "uri",
    "email",
    "hostname",
    "ipv4",
    "ipv6",
    "cidr",
    "mac",
    "uuid",
    "uuid3",
    "uuid4",
    "uuid5",
    "isbn",
    "isbn10",
    "isbn13",
    "creditcard",
    "ssn",
    "hexcolor",
    "rgbcolor",
    "byte",
    "password",
    "date",
    "duration",
    "datetime",
];

/// The schema's string format, normalized (`date-time` → `datetime`), when recognized.
fn string_format(s: &Schema) -> Option<String> {
    let normalized = text(s, "format")?.replace('-', "");
    RECOGNIZED_FORMATS
        .contains(&normalized.as_str())
        .then_some(normalized)
}

/// Whether `value` has the format; `None` for recognized formats not checked here.
fn format_accepts(format: &str, value: &str) -> Option<bool> {
    Some(match format {
        "uri" => is_request_uri(value),
        "email" => is_email(value),
        "hostname" => is_hostname(value),
        "ipv4" => value.parse::<std::net::IpAddr>().is_ok() && value.contains('.'),
        "ipv6" => value.parse::<std::net::IpAddr>().is_ok() && value.contains(':'),
        "cidr" => is_cidr(value),
        "mac" => is_mac(value),
        "uuid" => matches(&UUID, UUID_PATTERN, value),
        "uuid3" => matches(&UUID3, UUID3_PATTERN, value),
        "uuid4" => matches(&UUID4, UUID4_PATTERN, value),
        "uuid5" => matches(&UUID5, UUID5_PATTERN, value),
        "byte" => is_base64(value),
        "password" => true,
        "date" => is_date(value),
        "datetime" => is_date_time(value),
        "duration" => is_duration(value),
        "hexcolor" => matches(&HEX_COLOR, HEX_COLOR_PATTERN, value),
        "ssn" => matches(&SSN, SSN_PATTERN, value),
        "bsonobjectid" => value.len() == 24 && value.bytes().all(|b| b.is_ascii_hexdigit()),
        _ => return None,
    })
}

static UUID: OnceLock<Option<Regex>> = OnceLock::new();
static UUID3: OnceLock<Option<Regex>> = OnceLock::new();
static UUID4: OnceLock<Option<Regex>> = OnceLock::new();
static UUID5: OnceLock<Option<Regex>> = OnceLock::new();
static HEX_COLOR: OnceLock<Option<Regex>> = OnceLock::new();
static SSN: OnceLock<Option<Regex>> = OnceLock::new();
static HOSTNAME: OnceLock<Option<Regex>> = OnceLock::new();
static TIME_OF_DAY: OnceLock<Option<Regex>> = OnceLock::new();
static LOOSE_DURATION: OnceLock<Option<Regex>> = OnceLock::new();

const UUID_PATTERN: &str =
    r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$";
const UUID3_PATTERN: &str =
    r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?3[0-9a-f]{3}-?[0-9a-f]{4}-?[0-9a-f]{12}$";
const UUID4_PATTERN: &str =
    r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?4[0-9a-f]{3}-?[89ab][0-9a-f]{3}-?[0-9a-f]{12}$";
const UUID5_PATTERN: &str =
    r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?5[0-9a-f]{3}-?[89ab][0-9a-f]{3}-?[0-9a-f]{12}$";
const HEX_COLOR_PATTERN: &str = r"^#?([0-9a-fA-F]{3}|[0-9a-fA-F]{6})$";
const SSN_PATTERN: &str = r"^[0-9]{3}[- ]?[0-9]{2}[- ]?[0-9]{4}$";
/// Hours, minutes, seconds, fraction and a mandatory zone, lower-cased.
const TIME_OF_DAY_PATTERN: &str =
    r"^([0-9]{2}):([0-9]{2}):([0-9]{2})(.[0-9]+)?(z|([+-][0-9]{2}:[0-9]{2}))$";
const LOOSE_DURATION_PATTERN: &str = r"([0-9]+)\s*([A-Za-zµ]+)";

fn cached_regex(slot: &'static OnceLock<Option<Regex>>, pattern: &str) -> Option<&'static Regex> {
    slot.get_or_init(|| Regex::new(pattern).ok()).as_ref()
}

/// Whether `value` matches; a pattern that does not compile accepts everything.
fn matches(slot: &'static OnceLock<Option<Regex>>, pattern: &str, value: &str) -> bool {
    cached_regex(slot, pattern).is_none_or(|re| re.is_match(value))
}

/// A host name: labels of letters, digits, symbols and hyphens (not at either end), at most 63
/// bytes each and 255 in all; a dotted name ends in a label of two or more characters.
fn is_hostname(value: &str) -> bool {
    let pattern = HOSTNAME.get_or_init(|| {
        let c = r"[a-zA-Z0-9\p{S}\p{L}]";
        let inner = r"[a-zA-Z0-9\-\p{S}\p{L}]";
        let single = format!("{c}(-?{c}{{0,62}})?");
        let dotted = format!("({c}({inner}{{0,61}}{c})?\\.)+{c}(-?{c}){{1,62}}");
        Regex::new(&format!("^({single}|{dotted})$")).ok()
    });
    pattern.as_ref().is_none_or(|re| re.is_match(value))
        && value.len() <= 255
        && value.split('.').all(|label| label.len() <= 63)
}

/// A URI as an HTTP request carries it: absolute, or an absolute path.
fn is_request_uri(value: &str) -> bool {
    if value.is_empty() || value.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return false;
    }
    let before_query = value.split('?').next().unwrap_or_default();
    let bytes = before_query.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'%' {
            let hex = |j: usize| bytes.get(j).is_some_and(|h| h.is_ascii_hexdigit());
            if !(hex(i + 1) && hex(i + 2)) {
                return false;
            }
        }
    }
    value.starts_with('/') || url::Url::parse(value).is_ok()
}

/// An address as Go's `net/mail` parses one: `local@domain`, optionally `Name <local@domain>`.
fn is_email(value: &str) -> bool {
    let value = value.trim();
    let address = match value.strip_suffix('>') {
        Some(rest) => match rest.rfind('<') {
            Some(open) => {
                let (name, addr) = rest.split_at(open);
                if !is_display_name(name.trim()) {
                    return false;
                }
                addr.get(1..).unwrap_or_default()
            }
            None => return false,
        },
        None => value,
    };
    is_addr_spec(address)
}

fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || !c.is_ascii()
}

fn is_dot_atom(s: &str) -> bool {
    !s.is_empty()
        && s.split('.')
            .all(|part| !part.is_empty() && part.chars().all(is_atext))
}

fn is_quoted_string(s: &str) -> bool {
    let Some(inner) = s.strip_prefix('"').and_then(|s| s.strip_suffix('"')) else {
        return false;
    };
    let mut escaped = false;
    for c in inner.chars() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == '"' || (c.is_ascii_control() && c != '\t') {
            return false;
        }
    }
    !escaped
}

fn is_display_name(name: &str) -> bool {
    name.is_empty()
        || is_quoted_string(name)
        || name
            .split_whitespace()
            .all(|word| word.chars().all(|c| is_atext(c) || c == '.'))
}

fn is_addr_spec(address: &str) -> bool {
    let Some(at) = address.rfind('@') else {
        return false;
    };
    let (local, domain) = address.split_at(at);
    let domain = domain.get(1..).unwrap_or_default();
    let local_ok = is_dot_atom(local) || is_quoted_string(local);
    let domain_ok = is_dot_atom(domain)
        || domain
            .strip_prefix('[')
            .and_then(|d| d.strip_suffix(']'))
            .is_some_and(|d| !d.contains(['[', ']', '\\']));
    local_ok && domain_ok
}

fn is_cidr(value: &str) -> bool {
    let Some((address, bits)) = value.split_once('/') else {
        return false;
    };
    let Ok(address) = address.parse::<std::net::IpAddr>() else {
        return false;
    };
    if bits.is_empty() || bits.len() > 3 || !bits.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let max = if address.is_ipv4() { 32 } else { 128 };
    bits.parse::<u32>().is_ok_and(|b| b <= max)
}

/// A hardware address as Go's `net.ParseMAC` reads one: 6, 8 or 20 octets, as `xx:xx…`,
/// `xx-xx…` or `xxxx.xxxx…`.
fn is_mac(value: &str) -> bool {
    let groups = |separator: char, width: usize| -> Option<usize> {
        let parts: Vec<&str> = value.split(separator).collect();
        parts
            .iter()
            .all(|p| p.len() == width && p.bytes().all(|b| b.is_ascii_hexdigit()))
            .then_some(parts.len() * width / 2)
    };
    let octets = if value.as_bytes().get(2).is_some_and(|b| *b == b':') {
        groups(':', 2)
    } else if value.as_bytes().get(2).is_some_and(|b| *b == b'-') {
        groups('-', 2)
    } else if value.as_bytes().get(4).is_some_and(|b| *b == b'.') {
        groups('.', 4)
    } else {
        None
    };
    matches!(octets, Some(6 | 8 | 20))
}

/// Padded standard base64 of at least one block.
fn is_base64(value: &str) -> bool {
    let bytes = value.as_bytes();
    if bytes.len() < 4 || !bytes.len().is_multiple_of(4) {
        return false;
    }
    let alphabet = |b: &u8| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/';
    let (body, last) = bytes.split_at(bytes.len() - 4);
    body.iter().all(alphabet)
        && match last {
            [a, b, b'=', b'='] => alphabet(a) && alphabet(b),
            [a, b, c, b'='] => alphabet(a) && alphabet(b) && alphabet(c),
            [a, b, c, d] => [a, b, c, d].into_iter().all(alphabet),
            _ => false,
        }
}

/// `YYYY-MM-DD`, a real calendar day.
fn is_date(value: &str) -> bool {
    let bytes = value.as_bytes();
    if bytes.len() != 10 || bytes.get(4) != Some(&b'-') || bytes.get(7) != Some(&b'-') {
        return false;
    }
    let number = |range: std::ops::Range<usize>| -> Option<u32> {
        let part = value.get(range)?;
        part.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| part.parse().ok())
            .flatten()
    };
    let (Some(year), Some(month), Some(day)) = (number(0..4), number(5..7), number(8..10)) else {
        return false;
    };
    let leap = (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400);
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&day)
}

/// A date and a time of day with a zone, separated by `T` (either case).
fn is_date_time(value: &str) -> bool {
    if value.len() < 4 {
        return false;
    }
    let lower = value.to_lowercase();
    let mut parts = lower.split('t');
    let (Some(date), Some(time)) = (parts.next(), parts.next()) else {
        return false;
    };
    if !is_date(date) {
        return false;
    }
    let Some(re) = cached_regex(&TIME_OF_DAY, TIME_OF_DAY_PATTERN) else {
        return true;
    };
    // A match (cheaper than captures) starts with `hh:mm:ss` in ASCII digits, so the parts
    // are the pattern's first three groups.
    if !re.is_match(time) {
        return false;
    }
    let part = |at: usize| time.get(at..at + 2).unwrap_or_default();
    part(0) <= "23" && part(3) <= "59" && part(6) <= "59"
}

/// A Go duration (`1h30m`, `-1.5s`, `0`), or a spelled-out one (`3 days`, `1 week`).
fn is_duration(value: &str) -> bool {
    is_go_duration(value) || is_loose_duration(value)
}

fn is_go_duration(value: &str) -> bool {
    let rest = value
        .strip_prefix('-')
        .or_else(|| value.strip_prefix('+'))
        .unwrap_or(value);
    if rest == "0" {
        return true;
    }
    if rest.is_empty() {
        return false;
    }
    let mut rest = rest;
    while !rest.is_empty() {
        let whole = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        rest = rest.get(whole..).unwrap_or_default();
        let mut fraction = 0;
        if let Some(after) = rest.strip_prefix('.') {
            fraction = after.len() - after.trim_start_matches(|c: char| c.is_ascii_digit()).len();
            rest = after.get(fraction..).unwrap_or_default();
        }
        if whole == 0 && fraction == 0 {
            return false;
        }
        let unit_len = rest.len()
            - rest
                .trim_start_matches(|c: char| c != '.' && !c.is_ascii_digit())
                .len();
        let unit = rest.get(..unit_len).unwrap_or_default();
        if !["ns", "us", "µs", "μs", "ms", "s", "m", "h"].contains(&unit) {
            return false;
        }
        rest = rest.get(unit_len..).unwrap_or_default();
    }
    true
}

fn is_loose_duration(value: &str) -> bool {
    const UNITS: [(&[&str], &str); 8] = [
        (&["ns"], "nano"),
        (&["us", "µs"], "micro"),
        (&["ms"], "milli"),
        (&["s"], "sec"),
        (&["m"], "min"),
        (&["h", "hr"], "hour"),
        (&["d"], "day"),
        (&["w", "wk"], "week"),
    ];
    let Some(re) = cached_regex(&LOOSE_DURATION, LOOSE_DURATION_PATTERN) else {
        return false;
    };
    re.captures_iter(value).any(|found| {
        let unit = found
            .get(2)
            .map(|m| m.as_str().trim().to_lowercase())
            .unwrap_or_default();
        UNITS
            .iter()
            .any(|(short, long)| short.contains(&unit.as_str()) || unit.starts_with(long))
    })
}

// ---------------------------------------------------------------------------------------------
// Printing values as Go does in the API server's messages.

/// Go's `%q`.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if is_go_printable(c) => out.push(c),
            c if (c as u32) < 0x80 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push('"');
    out
}

fn is_go_printable(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    !(c.is_control()
        || c.is_whitespace()
        || matches!(c, '\u{ad}' | '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{206f}' | '\u{feff}' | '\u{fff9}'..='\u{fffb}')
        || ('\u{e000}'..='\u{f8ff}').contains(&c))
}

/// Go's `%v` of a JSON number: integers as they are, floats as `%g` with the shortest digits.
fn go_number(n: &Number) -> String {
    match n.as_i64() {
        Some(i) => i.to_string(),
        None => go_float(n.as_f64().unwrap_or_default()),
    }
}

/// Go's `%v` of a float64: exponent form below 1e-4 and from 1e6 on.
fn go_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0" } else { "0" }.into();
    }
    let scientific = format!("{f:e}");
    let Some((mantissa, exponent)) = scientific.split_once('e') else {
        return f.to_string();
    };
    let exponent: i32 = exponent.parse().unwrap_or_default();
    if (-4..6).contains(&exponent) {
        f.to_string()
    } else {
        let sign = if exponent < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exponent.unsigned_abs())
    }
}

/// Go's `%#v` of a decoded JSON value.
fn go_syntax(v: &Value, depth: usize) -> String {
    if depth > WALK_LIMIT {
        return "…".into();
    }
    match v {
        Value::Null => "interface {}(nil)".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => go_number(n),
        Value::String(s) => go_quote(s),
        Value::Array(list) => format!(
            "[]interface {{}}{{{}}}",
            list.iter()
                .map(|x| go_syntax(x, depth + 1))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            format!(
                "map[string]interface {{}}{{{}}}",
                entries
                    .iter()
                    .map(|(k, x)| format!("{}:{}", go_quote(k), go_syntax(x, depth + 1)))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    }
}

/// JSON as Go's encoder writes it (keys sorted; `1.0` is `1`), to compare and print values.
fn canonical_json(v: &Value) -> String {
    let mut out = String::new();
    write_canonical(v, &mut out, 0);
    out
}

fn write_canonical(v: &Value, out: &mut String, depth: usize) {
    if depth > WALK_LIMIT {
        out.push_str("null");
        return;
    }
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => out.push_str(&i.to_string()),
            (None, Some(u), _) => out.push_str(&u.to_string()),
            (None, None, Some(f)) => {
                let magnitude = f.abs();
                if f == 0.0 || (1e-6..1e21).contains(&magnitude) {
                    out.push_str(&f.to_string());
                } else {
                    let scientific = format!("{f:e}");
                    match scientific.split_once('e') {
                        Some((m, e)) if e.starts_with('-') => {
                            out.push_str(&format!("{m}e{e}"));
                        }
                        Some((m, e)) => out.push_str(&format!("{m}e+{e}")),
                        None => out.push_str(&scientific),
                    }
                }
            }
            _ => out.push_str("null"),
        },
        Value::String(s) => {
            out.push_str(&serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into()));
        }
        Value::Array(list) => {
            out.push('[');
            for (i, x) in list.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(x, out, depth + 1);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, x)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::to_string(k).unwrap_or_else(|_| "\"\"".into()));
                out.push(':');
                write_canonical(x, out, depth + 1);
            }
            out.push('}');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_plan_knows_which_nodes_hold_rules_and_which_compare_with_old_self() {
        let schema = Arc::new(json!({"type": "object", "properties": {
            "spec": {"type": "object", "properties": {
                "name": {"type": "string",
                    "x-kubernetes-validations": [{"rule": "self == oldSelf"}]},
                "size": {"type": "integer"},
            }},
            "status": {"type": "object", "properties": {
                "phase": {"type": "string"},
                "tags": {"type": "array", "items": {"type": "string"}},
            }},
            "extra": {"allOf": [{"x-kubernetes-validations": [{"rule": "true"}]}]},
        }}));
        let plan = Plan::of(&schema);
        assert!(
            Arc::ptr_eq(&plan, &Plan::of(&schema)),
            "made once per schema"
        );
        let node = |path: &str| {
            schema
                .pointer(path)
                .and_then(Value::as_object)
                .expect("a schema node")
        };
        assert!(plan.has_rules);
        assert!(!plan.rule_free(node("")));
        assert!(!plan.rule_free(node("/properties/spec")));
        assert!(plan.uses_old_self(node("/properties/spec")));
        assert!(plan.rule_free(node("/properties/spec/properties/size")));
        assert!(plan.rule_free(node("/properties/status")));
        assert!(plan.rule_free(node("/properties/status/properties/tags/items")));
        assert!(!plan.uses_old_self(node("/properties/status")));
        assert!(
            !plan.rule_free(node("/properties/extra")),
            "a rule in allOf"
        );
        assert!(!plan.uses_old_self(node("/properties/extra")));

        // Rules are compiled with the plan, once: every write of the resource shares them.
        let rules = plan.rules_of(node("/properties/spec/properties/name"));
        assert_eq!(
            rules.map(|r| r.iter().map(|r| r.text.as_str()).collect::<Vec<_>>()),
            Some(vec!["self == oldSelf"])
        );
        assert!(rules.is_some_and(|r| r[0].uses_old_self && r[0].program.is_ok()));
        assert!(plan.rules_of(node("/properties/spec")).is_none());
        assert!(
            plan.rules_of(node("/properties/extra/allOf/0"))
                .is_some_and(|r| r.len() == 1)
        );

        let replaced = Arc::new((*schema).clone());
        assert!(!Arc::ptr_eq(&plan, &Plan::of(&replaced)));
        let plain = Plan::of(&Arc::new(json!({"type": "object"})));
        assert!(!plain.has_rules && !plain.too_deep);
    }

    #[test]
    fn defaulting_passes_over_nodes_with_no_default_below_and_still_reaches_deep_ones() {
        let schema = Arc::new(json!({"type": "object", "properties": {
            "spec": {"type": "object", "properties": {
                "plain": {"type": "object", "properties": {"a": {"type": "string"}}},
                "deep": {"type": "object", "properties": {
                    "list": {"type": "array", "items": {"type": "object", "properties": {
                        "mode": {"type": "string", "default": "auto"},
                    }}},
                    "labels": {"type": "object",
                        "additionalProperties": {"type": "string", "default": "x"}},
                }},
            }},
            "status": {"type": "object", "properties": {"phase": {"type": "string"}}},
        }}));
        let plan = Plan::of(&schema);
        let node = |path: &str| {
            schema
                .pointer(path)
                .and_then(Value::as_object)
                .expect("a schema node")
        };
        assert!(plan.defaults_free(node("/properties/status")));
        assert!(plan.defaults_free(node("/properties/spec/properties/plain")));
        assert!(!plan.defaults_free(node("")));
        assert!(!plan.defaults_free(node("/properties/spec")));
        assert!(!plan.defaults_free(node("/properties/spec/properties/deep")));
        assert!(!plan.defaults_free(node("/properties/spec/properties/deep/properties/list")));

        let mut object = json!({"spec": {
            "plain": {"a": "b"},
            "deep": {"list": [{}, {"mode": "manual"}], "labels": {"k": null}},
        }, "status": {"phase": "Ready"}});
        admit_with(&plan, &mut object, None).expect("admitted");
        assert_eq!(
            object["spec"]["deep"],
            json!({"list": [{"mode": "auto"}, {"mode": "manual"}], "labels": {"k": "x"}})
        );
        assert_eq!(object["spec"]["plain"], json!({"a": "b"}));
    }

    /// `field: message` of every cause, or the admitted object.
    fn admitted(schema: &Value, object: Value) -> Result<(Value, Admission), Vec<String>> {
        let mut object = object;
        match admit(schema, &mut object, None) {
            Ok(admission) => Ok((object, admission)),
            Err(causes) => Err(causes
                .into_iter()
                .map(|c| format!("{}: {}", c.field, c.message))
                .collect()),
        }
    }

    fn refused(schema: &Value, object: Value) -> Vec<String> {
        match admitted(schema, object) {
            Ok((object, _)) => panic!("admitted: {object}"),
            Err(causes) => causes,
        }
    }

    fn causes(schema: &Value, object: Value, old: Option<&Value>) -> Vec<Cause> {
        let mut object = object;
        admit(schema, &mut object, old).err().unwrap_or_default()
    }

    /// A schema whose `spec.x` is `x`.
    fn with_x(x: Value) -> Value {
        json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {"x": x}}}})
    }

    // The expectations of the validator this module replaces.

    fn old_schema() -> Value {
        json!({"type": "object", "properties": {
            "spec": {"type": "object", "required": ["secretName"], "properties": {
                "secretName": {"type": "string"},
                "replicas": {"type": "integer"},
                "ratio": {"type": "number"},
                "mode": {"type": "string", "enum": ["A", "B"]},
                "names": {"type": "array", "items": {"type": "string"}},
                "port": {"x-kubernetes-int-or-string": true},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "note": {"type": "string", "nullable": true}
            }}
        }})
    }

    #[test]
    fn a_valid_object_has_no_problems_and_is_left_as_it_was() {
        let object = json!({"apiVersion": "x/v1", "kind": "X", "metadata": {"name": "a"},
            "spec": {"secretName": "s", "replicas": 2, "ratio": 1, "mode": "A", "names": ["a"],
                     "port": "http", "labels": {"a": "b"}, "note": null}});
        let (after, admission) = admitted(&old_schema(), object.clone()).expect("admitted");
        assert_eq!(after, object);
        assert_eq!(admission, Admission::default());
    }

    #[test]
    fn problems_name_the_field_as_the_api_server_does() {
        let found = refused(
            &old_schema(),
            json!({"spec": {"replicas": "two", "mode": "C",
            "names": ["a", 3], "port": true, "labels": {"a": 1}}}),
        );
        assert_eq!(
            found,
            [
                "spec.secretName: Required value",
                "spec.labels.a: Invalid value: \"integer\": spec.labels.a in body must be of type string: \"integer\"",
                "spec.mode: Unsupported value: \"C\": supported values: \"A\", \"B\"",
                "spec.names[1]: Invalid value: \"integer\": spec.names[1] in body must be of type string: \"integer\"",
                "spec.port: Invalid value: \"boolean\": spec.port in body must be of type integer,string: \"boolean\"",
                "spec.replicas: Invalid value: \"string\": spec.replicas in body must be of type integer: \"string\"",
            ]
        );
    }

    #[test]
    fn each_keyword_accepts_and_refuses_with_the_api_servers_reason_field_and_message() {
        type Expected = Option<(&'static str, &'static str, &'static str)>;
        let cases: Vec<(Value, Value, Expected)> = vec![
            (json!({"type": "integer"}), json!(3), None),
            (json!({"type": "integer"}), json!(3.0), None),
            (
                json!({"type": "integer"}),
                json!("string"),
                Some((
                    TYPE_INVALID,
                    "spec.x",
                    "Invalid value: \"string\": spec.x in body must be of type integer: \"string\"",
                )),
            ),
            (
                json!({"type": "integer"}),
                json!(1.5),
                Some((
                    TYPE_INVALID,
                    "spec.x",
                    "Invalid value: \"number\": spec.x in body must be of type integer: \"number\"",
                )),
            ),
            (json!({"type": "number"}), json!(3), None),
            (
                json!({"type": "boolean"}),
                json!("true"),
                Some((
                    TYPE_INVALID,
                    "spec.x",
                    "Invalid value: \"string\": spec.x in body must be of type boolean: \"string\"",
                )),
            ),
            (
                json!({"type": "object"}),
                json!([]),
                Some((
                    TYPE_INVALID,
                    "spec.x",
                    "Invalid value: \"array\": spec.x in body must be of type object: \"array\"",
                )),
            ),
            (
                json!({"type": "array"}),
                json!({}),
                Some((
                    TYPE_INVALID,
                    "spec.x",
                    "Invalid value: \"object\": spec.x in body must be of type array: \"object\"",
                )),
            ),
            (
                json!({"type": "string"}),
                json!(true),
                Some((
                    TYPE_INVALID,
                    "spec.x",
                    "Invalid value: \"boolean\": spec.x in body must be of type string: \"boolean\"",
                )),
            ),
            (
                json!({"x-kubernetes-int-or-string": true}),
                json!(8080),
                None,
            ),
            (
                json!({"x-kubernetes-int-or-string": true}),
                json!("http"),
                None,
            ),
            (
                json!({"x-kubernetes-int-or-string": true}),
                json!(1.5),
                Some((
                    TYPE_INVALID,
                    "spec.x",
                    "Invalid value: \"number\": spec.x in body must be of type integer,string: \"number\"",
                )),
            ),
            (
                json!({"type": "string", "enum": ["A", "B"]}),
                json!("B"),
                None,
            ),
            (
                json!({"type": "string", "enum": ["A", "B"]}),
                json!("C"),
                Some((
                    NOT_SUPPORTED,
                    "spec.x",
                    "Unsupported value: \"C\": supported values: \"A\", \"B\"",
                )),
            ),
            (
                json!({"type": "integer", "enum": [1, 2]}),
                json!(3),
                Some((
                    NOT_SUPPORTED,
                    "spec.x",
                    "Unsupported value: 3: supported values: \"1\", \"2\"",
                )),
            ),
            (
                json!({"type": "string", "pattern": "^[a-z]+$"}),
                json!("abc"),
                None,
            ),
            (
                json!({"type": "string", "pattern": "^[a-z]+$"}),
                json!("x1"),
                Some((
                    INVALID,
                    "spec.x",
                    "Invalid value: \"x1\": spec.x in body should match '^[a-z]+$'",
                )),
            ),
            // Go's \d is ASCII only.
            (
                json!({"type": "string", "pattern": "^\\d+$"}),
                json!("١٢"),
                Some((
                    INVALID,
                    "spec.x",
                    "Invalid value: \"١٢\": spec.x in body should match '^\\d+$'",
                )),
            ),
            (
                json!({"type": "string", "maxLength": 3}),
                json!("abc"),
                None,
            ),
            // Lengths count characters, not bytes.
            (
                json!({"type": "string", "maxLength": 3}),
                json!("ééé"),
                None,
            ),
            (
                json!({"type": "string", "maxLength": 3}),
                json!("abcd"),
                Some((TOO_LONG, "spec.x", "Too long: may not be more than 3 bytes")),
            ),
            (
                json!({"type": "string", "maxLength": 63, "minLength": 2, "pattern": "^[a-z]+$"}),
                json!("a"),
                Some((
                    INVALID,
                    "spec.x",
                    "Invalid value: \"a\": spec.x in body should be at least 2 chars long",
                )),
            ),
            (
                json!({"type": "array", "minItems": 1, "items": {"type": "integer"}}),
                json!([1]),
                None,
            ),
            (
                json!({"type": "array", "minItems": 1, "items": {"type": "integer"}}),
                json!([]),
                Some((
                    INVALID,
                    "spec.x",
                    "Invalid value: 0: spec.x in body should have at least 1 items",
                )),
            ),
            (
                json!({"type": "array", "maxItems": 3, "items": {"type": "integer"}}),
                json!([1, 2, 3, 4]),
                Some((TOO_MANY, "spec.x", "Too many: 4: must have at most 3 items")),
            ),
            (
                json!({"type": "object", "minProperties": 1, "additionalProperties": {"type": "string"}}),
                json!({}),
                Some((
                    INVALID,
                    "spec.x",
                    "Invalid value: 0: spec.x in body should have at least 1 properties",
                )),
            ),
            (
                json!({"type": "object", "maxProperties": 1, "additionalProperties": {"type": "string"}}),
                json!({"a": "1", "b": "2"}),
                Some((TOO_MANY, "spec.x", "Too many: 2: must have at most 1 item")),
            ),
            (json!({"type": "integer", "minimum": 1}), json!(1), None),
            (
                json!({"type": "integer", "minimum": 1}),
                json!(0),
                Some((
                    INVALID,
                    "spec.x",
                    "Invalid value: 0: spec.x in body should be greater than or equal to 1",
                )),
            ),
            (
                json!({"type": "integer", "minimum": 1, "exclusiveMinimum": true}),
                json!(1),
                Some((
                    INVALID,
                    "spec.x",
                    "Invalid value: 1: spec.x in body should be greater than 1",
                )),
            ),
            (
                json!({"type": "integer", "maximum": 10}),
                json!(11),
                Some((
                    INVALID,
                    "spec.x",
                    "Invalid value: 11: spec.x in body should be less than or equal to 10",
                )),
            ),
            (
                json!({"type": "integer", "maximum": 10, "exclusiveMaximum": true}),
                json!(10),
                Some((
                    INVALID,
                    "spec.x",
                    "Invalid value: 10: spec.x in body should be less than 10",
                )),
            ),
            (
                json!({"type": "number", "minimum": 0.5}),
                json!(0.25),
                Some((
                    INVALID,
                    "spec.x",
                    "Invalid value: 0.25: spec.x in body should be greater than or equal to 0.5",
                )),
            ),
            (
                json!({"type": "number", "maximum": 1_000_000}),
                json!(2_500_000.5),
                Some((
                    INVALID,
                    "spec.x",
                    "Invalid value: 2.5000005e+06: spec.x in body should be less than or equal to 1e+06",
                )),
            ),
            (json!({"type": "integer", "multipleOf": 3}), json!(9), None),
            (
                json!({"type": "integer", "multipleOf": 3}),
                json!(7),
                Some((
                    INVALID,
                    "spec.x",
                    "Invalid value: 7: spec.x in body should be a multiple of 3",
                )),
            ),
            (
                json!({"type": "number", "multipleOf": 0.5}),
                json!(1.5),
                None,
            ),
            (
                json!({"type": "number", "multipleOf": 0.5}),
                json!(1.25),
                Some((
                    INVALID,
                    "spec.x",
                    "Invalid value: 1.25: spec.x in body should be a multiple of 0.5",
                )),
            ),
            (
                json!({"type": "object", "required": ["a"], "properties": {"a": {"type": "string"}}}),
                json!({}),
                Some((REQUIRED, "spec.x.a", "Required value")),
            ),
            (
                json!({"type": "integer", "format": "int32"}),
                json!(2_147_483_647),
                None,
            ),
            (
                json!({"type": "integer", "format": "int32"}),
                json!(2_147_483_648_i64),
                Some((
                    INVALID,
                    "<nil>",
                    "Invalid value: \"\": Checked value must be of type integer with format int32 in spec.x",
                )),
            ),
            (
                json!({"type": "integer", "format": "int64"}),
                json!(9_007_199_254_740_993_i64),
                None,
            ),
            (
                json!({"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}}),
                json!(["a", "b", "a", "a"]),
                Some((DUPLICATE, "spec.x[2]", "Duplicate value: \"a\"")),
            ),
            (
                json!({"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                       "items": {"type": "object", "properties": {"name": {"type": "string"}, "v": {"type": "integer"}}}}),
                json!([{"name": "a", "v": 1}, {"name": "b"}, {"name": "a", "v": 2}]),
                Some((
                    DUPLICATE,
                    "spec.x[2]",
                    "Duplicate value: map[string]interface {}{\"name\":\"a\"}",
                )),
            ),
            (
                json!({"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name", "port"],
                       "items": {"type": "object", "properties": {"name": {"type": "string"}, "port": {"type": "integer"}}}}),
                json!([{"name": "a", "port": 80}, {"name": "a", "port": 443}, {"port": 80, "name": "a"}]),
                Some((
                    DUPLICATE,
                    "spec.x[2]",
                    "Duplicate value: map[string]interface {}{\"name\":\"a\", \"port\":80}",
                )),
            ),
        ];
        for (x, value, expected) in cases {
            let found = causes(&with_x(x.clone()), json!({"spec": {"x": value}}), None);
            let found: Vec<(&str, &str, &str)> = found
                .iter()
                .map(|c| (c.reason, c.field.as_str(), c.message.as_str()))
                .collect();
            let expected: Vec<(&str, &str, &str)> = expected.into_iter().collect();
            assert_eq!(found, expected, "schema {x} with value {value}");
        }
    }

    #[test]
    fn formats_the_api_server_knows_are_checked_and_others_are_ignored() {
        let cases = [
            ("date-time", "2024-05-01T10:00:00Z", "2024-05-01 10:00:00"),
            (
                "date-time",
                "2024-05-01t10:00:00.5+02:00",
                "2024-05-01T25:00:00Z",
            ),
            ("date-time", "2024-05-01T23:59:59Z", "2024-05-01T23:60:00Z"),
            (
                "date-time",
                "2024-05-01T00:00:00-07:00",
                "2024-05-01T00:00:60Z",
            ),
            (
                "date-time",
                "2024-05-01T09:05:07.123z",
                "2024-05-01T9:05:07Z",
            ),
            ("date", "2024-02-29", "2023-02-29"),
            ("email", "jane@example.com", "jane.example.com"),
            ("email", "Jane Doe <jane@example.com>", "jane@@example.com"),
            ("uri", "https://example.com/a?b=c", "example.com"),
            ("uri", "/absolute/path", "https://example.com/%zz"),
            ("hostname", "web.example.com", "-web-.example.com"),
            ("ipv4", "10.0.0.1", "10.0.0.256"),
            ("ipv4", "192.168.1.1", "::1"),
            ("ipv6", "fe80::1", "10.0.0.1"),
            ("cidr", "10.0.0.0/8", "10.0.0.0/33"),
            ("cidr", "2001:db8::/32", "10.0.0.1"),
            ("uuid", "123e4567-e89b-12d3-a456-426614174000", "123e4567"),
            (
                "uuid4",
                "123e4567-e89b-42d3-a456-426614174000",
                "123e4567-e89b-12d3-a456-426614174000",
            ),
            ("byte", "aGVsbG8=", "hello"),
            ("byte", "aGVsbG8gd29ybGQh", ""),
            ("duration", "1h30m", "soon"),
            ("duration", "3 days", "30"),
            ("mac", "00:00:5e:00:53:01", "00:00:5e"),
            ("hexcolor", "#ffaa00", "#ffaa0"),
        ];
        for (format, good, bad) in cases {
            let schema = with_x(json!({"type": "string", "format": format}));
            assert!(
                admitted(&schema, json!({"spec": {"x": good}})).is_ok(),
                "{format} refused {good:?}"
            );
            let quoted = go_quote(bad);
            assert_eq!(
                refused(&schema, json!({"spec": {"x": bad}})),
                [format!(
                    "spec.x: Invalid value: {quoted}: spec.x in body must be of type {format}: {quoted}"
                )],
                "{format} with {bad:?}"
            );
        }
        // Formats Kubernetes does not know are ignored.
        let schema = with_x(json!({"type": "string", "format": "k8s-something-new"}));
        assert!(admitted(&schema, json!({"spec": {"x": "anything"}})).is_ok());
        // kube-openapi lets a list through a non-numeric field with a known format, and so does
        // the API server.
        let schema = with_x(json!({"type": "string", "format": "email"}));
        assert!(admitted(&schema, json!({"spec": {"x": ["a"]}})).is_ok());
        let reason = causes(&schema, json!({"spec": {"x": "nope"}}), None);
        assert_eq!(reason.first().map(|c| c.reason), Some(TYPE_INVALID));
    }

    #[test]
    fn all_of_any_of_one_of_and_not_constrain_values_with_kube_openapis_messages() {
        let cases = [
            (
                json!({"type": "integer", "anyOf": [{"minimum": 10}, {"maximum": 1}]}),
                json!(5),
                vec![
                    "<nil>: Invalid value: \"\": \"spec.x\" must validate at least one schema (anyOf)",
                    "spec.x: Invalid value: 5: spec.x in body should be greater than or equal to 10",
                ],
            ),
            (
                json!({"type": "integer", "anyOf": [{"minimum": 10}, {"maximum": 6}]}),
                json!(5),
                vec![],
            ),
            (
                json!({"type": "integer", "oneOf": [{"minimum": 1}, {"minimum": 2}]}),
                json!(5),
                vec![
                    "<nil>: Invalid value: \"\": \"spec.x\" must validate one and only one schema (oneOf). Found 2 valid alternatives",
                ],
            ),
            (
                json!({"type": "integer", "oneOf": [{"minimum": 1}, {"minimum": 6}]}),
                json!(5),
                vec![],
            ),
            (
                json!({"type": "integer", "allOf": [{"minimum": 1}, {"maximum": 3}]}),
                json!(5),
                vec![
                    "spec.x: Invalid value: 5: spec.x in body should be less than or equal to 3",
                    "<nil>: Invalid value: \"\": \"spec.x\" must validate all the schemas (allOf)",
                ],
            ),
            (
                json!({"type": "string", "not": {"enum": ["bad"]}}),
                json!("bad"),
                vec!["<nil>: Invalid value: \"\": \"spec.x\" must not validate the schema (not)"],
            ),
            (
                json!({"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
                       "oneOf": [{"required": ["a"]}, {"required": ["b"]}]}),
                json!({}),
                vec![
                    "<nil>: Invalid value: \"\": \"spec.x\" must validate one and only one schema (oneOf). Found none valid",
                    "spec.x.a: Required value",
                ],
            ),
        ];
        for (x, value, expected) in cases {
            let found = match admitted(&with_x(x.clone()), json!({"spec": {"x": value}})) {
                Ok(_) => Vec::new(),
                Err(found) => found,
            };
            assert_eq!(found, expected, "schema {x}");
        }
    }

    fn pruning_schema() -> Value {
        json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "replicas": {"type": "integer"},
            "items": {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}}}},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true, "properties": {
                "known": {"type": "object", "properties": {"a": {"type": "string"}}}
            }},
            "pod": {"type": "object", "x-kubernetes-embedded-resource": true, "properties": {
                "spec": {"type": "object", "properties": {"image": {"type": "string"}}}
            }}
        }}}})
    }

    #[test]
    fn unknown_fields_are_pruned_and_reported_sorted() {
        let object = json!({"apiVersion": "x.io/v1", "kind": "X",
            "metadata": {"name": "a", "labels": {"l": "v"}, "unknownMeta": 1},
            "status2": 1,
            "spec": {"replica": 3, "replicas": 1, "items": [{"name": "a", "extra": 1}],
                     "labels": {"a": "b"},
                     "free": {"anything": {"deep": [1, {"x": 2}]}, "known": {"a": "x", "b": "y"}},
                     "pod": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                             "spec": {"image": "i", "junk": 1}, "other": 2}}});
        let (after, admission) = admitted(&pruning_schema(), object).expect("admitted");
        assert_eq!(
            admission.pruned,
            [
                "spec.free.known.b",
                "spec.items[0].extra",
                "spec.pod.other",
                "spec.pod.spec.junk",
                "spec.replica",
                "status2",
            ]
        );
        assert_eq!(
            after,
            json!({"apiVersion": "x.io/v1", "kind": "X",
                "metadata": {"name": "a", "labels": {"l": "v"}, "unknownMeta": 1},
                "spec": {"replicas": 1, "items": [{"name": "a"}], "labels": {"a": "b"},
                         "free": {"anything": {"deep": [1, {"x": 2}]}, "known": {"a": "x"}},
                         "pod": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                                 "spec": {"image": "i"}}}})
        );
    }

    #[test]
    fn the_root_keeps_api_version_kind_and_metadata_even_with_an_empty_schema() {
        let (after, admission) = admitted(
            &json!({}),
            json!({"apiVersion": "x.io/v1", "kind": "X", "metadata": {"name": "a"}, "spec": {"a": 1}}),
        )
        .expect("admitted");
        assert_eq!(admission.pruned, ["spec"]);
        assert_eq!(
            after,
            json!({"apiVersion": "x.io/v1", "kind": "X", "metadata": {"name": "a"}})
        );
    }

    #[test]
    fn embedded_resources_keep_their_type_and_metadata_and_must_name_a_kind() {
        let schema = with_x(
            json!({"type": "object", "x-kubernetes-embedded-resource": true,
            "x-kubernetes-preserve-unknown-fields": true}),
        );
        let (after, admission) = admitted(
            &schema,
            json!({"spec": {"x": {"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "d"}, "spec": {"replicas": 1}}}}),
        )
        .expect("admitted");
        assert!(admission.pruned.is_empty());
        assert_eq!(after["spec"]["x"]["metadata"], json!({"name": "d"}));
        assert_eq!(
            refused(&schema, json!({"spec": {"x": {"kind": "not a_kind"}}})),
            [
                "spec.x.apiVersion: Required value",
                "spec.x.kind: Invalid value: \"not a_kind\": may have mixed case, but should otherwise match: a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')",
            ]
        );
    }

    #[test]
    fn embedded_resources_and_set_lists_deep_in_maps_and_lists_are_checked_and_plain_nodes_skipped()
    {
        let schema = json!({"type": "object", "properties": {
            "spec": {"type": "object", "properties": {
                "plain": {"type": "object", "properties": {"name": {"type": "string"}}},
                "pools": {"type": "object", "additionalProperties": {"type": "array", "items": {
                    "type": "object", "properties": {
                        "template": {"type": "object", "x-kubernetes-embedded-resource": true,
                            "x-kubernetes-preserve-unknown-fields": true},
                        "tags": {"type": "array", "x-kubernetes-list-type": "set",
                            "items": {"type": "string"}}
                    }}}}
            }},
            "status": {"type": "object", "properties": {"note": {"type": "string"}}}
        }});
        assert_eq!(
            refused(
                &schema,
                json!({"spec": {"plain": {"name": "a"}, "pools": {"east": [
                    {"template": {"apiVersion": "v1"}, "tags": ["a", "b", "a"]}
                ]}}, "status": {"note": "n"}}),
            ),
            [
                "spec.pools[east][0].template.kind: Required value",
                "spec.pools[east][0].tags[2]: Duplicate value: \"a\"",
            ]
        );
        let plan = Plan::new(Arc::new(schema));
        let node = |pointer: &str| {
            plan.schema
                .pointer(pointer)
                .and_then(Value::as_object)
                .map(|s| plan.unmarked(s))
        };
        assert_eq!(node("/properties/spec/properties/plain"), Some(true));
        assert_eq!(node("/properties/status"), Some(true));
        assert_eq!(node("/properties/spec"), Some(false));
        assert_eq!(node("/properties/spec/properties/pools"), Some(false));
        assert_eq!(node(""), Some(false));
    }

    #[test]
    fn nulls_are_dropped_unless_nullable_and_defaulted_when_a_default_exists() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "a": {"type": "string"},
            "b": {"type": "string", "nullable": true},
            "c": {"type": "string", "default": "d"},
            "m": {"type": "object", "additionalProperties": {"type": "string"}},
            "names": {"type": "array", "items": {"type": "string"}},
            "maybe": {"type": "array", "nullable": true, "items": {"type": "string", "nullable": true}}
        }}}});
        let (after, _) = admitted(
            &schema,
            json!({"spec": {"a": null, "b": null, "c": null, "m": {"k": null, "l": "v"},
                            "maybe": [null, "x"], "unknown": null}}),
        )
        .expect("admitted");
        assert_eq!(
            after,
            json!({"spec": {"b": null, "c": "d", "m": {"l": "v"}, "maybe": [null, "x"]}})
        );
        assert_eq!(
            refused(&schema, json!({"spec": {"names": [null, "a"]}})),
            [
                "spec.names[0]: Invalid value: \"null\": spec.names[0] in body must be of type string: \"null\""
            ]
        );
    }

    #[test]
    fn defaults_apply_to_absent_fields_recursively_in_new_objects_list_items_and_map_values() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "default": {},
        "properties": {
            "replicas": {"type": "integer", "default": 1},
            "strategy": {"type": "object", "default": {}, "properties": {
                "type": {"type": "string", "default": "Rolling"},
                "maxSurge": {"type": "integer", "default": 25}
            }},
            "ports": {"type": "array", "items": {"type": "object", "properties": {
                "port": {"type": "integer"},
                "protocol": {"type": "string", "default": "TCP"}
            }}},
            "limits": {"type": "object", "additionalProperties": {"type": "object", "properties": {
                "unit": {"type": "string", "default": "Mi"}
            }}},
            "keep": {"type": "integer", "default": 5}
        }}}});
        let (after, _) = admitted(
            &schema,
            json!({"spec": {"ports": [{"port": 80}, {"port": 53, "protocol": "UDP"}],
                            "limits": {"memory": {}}, "keep": 7}}),
        )
        .expect("admitted");
        assert_eq!(
            after,
            json!({"spec": {"ports": [{"port": 80, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}],
                "limits": {"memory": {"unit": "Mi"}}, "keep": 7, "replicas": 1,
                "strategy": {"type": "Rolling", "maxSurge": 25}}})
        );
        let (after, _) = admitted(&schema, json!({"kind": "X"})).expect("admitted");
        assert_eq!(
            after,
            json!({"kind": "X", "spec": {"replicas": 1, "strategy": {"type": "Rolling", "maxSurge": 25}, "keep": 5}})
        );
    }

    #[test]
    fn defaults_are_applied_before_cel_rules_run() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object",
            "properties": {"mode": {"type": "string", "default": "fast"}},
            "x-kubernetes-validations": [{"rule": "self.mode == 'fast'", "message": "mode must be fast"}]}}});
        assert!(admitted(&schema, json!({"spec": {}})).is_ok());
        assert_eq!(
            refused(&schema, json!({"spec": {"mode": "slow"}})),
            ["spec: Invalid value: \"object\": mode must be fast"]
        );
    }

    fn rules_schema() -> Value {
        json!({"type": "object",
        "x-kubernetes-validations": [
            {"rule": "self.metadata.name.startsWith('ok-')", "message": "name must start with ok-"},
            {"rule": "!has(self.metadata.labels)", "message": "only name and generateName are visible"}
        ],
        "properties": {"spec": {"type": "object", "properties": {
            "limits": {"type": "object",
                "properties": {"min": {"type": "integer"}, "max": {"type": "integer"}},
                "x-kubernetes-validations": [{"rule": "self.min <= self.max", "message": "min must not exceed max"}]},
            "tags": {"type": "array", "items": {"type": "string",
                "x-kubernetes-validations": [{"rule": "self.startsWith('x')", "message": "tags start with x"}]}},
            "labels": {"type": "object", "additionalProperties": {"type": "string",
                "x-kubernetes-validations": [{"rule": "self != 'bad'", "message": "no bad labels"}]}}
        }}}})
    }

    #[test]
    fn cel_rules_run_at_the_root_in_nested_objects_list_items_and_map_values() {
        let schema = rules_schema();
        assert!(
            admitted(
                &schema,
                json!({"metadata": {"name": "ok-1", "labels": {"a": "b"}},
                       "spec": {"limits": {"min": 1, "max": 2}, "tags": ["xa"], "labels": {"k": "good"}}})
            )
            .is_ok()
        );
        assert_eq!(
            refused(
                &schema,
                json!({"metadata": {"name": "bad"},
                       "spec": {"limits": {"min": 3, "max": 2}, "tags": ["xa", "b"], "labels": {"k": "bad"}}})
            ),
            // Fields in the object's (sorted) key order; the API server's order is a Go map's.
            [
                "<nil>: Invalid value: \"object\": name must start with ok-",
                "spec.labels[k]: Invalid value: \"string\": no bad labels",
                "spec.limits: Invalid value: \"object\": min must not exceed max",
                "spec.tags[1]: Invalid value: \"string\": tags start with x",
            ]
        );
    }

    #[test]
    fn transition_rules_refuse_changes_on_update_and_are_ignored_on_create() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "name": {"type": "string",
                "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "name is immutable"}]},
            "entries": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["key"],
                "items": {"type": "object", "properties": {"key": {"type": "string"}, "value": {"type": "integer"}},
                    "x-kubernetes-validations": [{"rule": "self.value >= oldSelf.value", "message": "values only grow"}]}}
        }}}});
        let old = json!({"spec": {"name": "a", "entries": [{"key": "k", "value": 2}]}});
        assert!(causes(&schema, json!({"spec": {"name": "b"}}), None).is_empty());
        assert!(causes(&schema, old.clone(), Some(&old)).is_empty());
        let found = causes(&schema, json!({"spec": {"name": "b"}}), Some(&old));
        assert_eq!(
            found,
            [Cause {
                reason: INVALID,
                field: "spec.name".into(),
                message: "Invalid value: \"string\": name is immutable".into()
            }]
        );
        // The old value must exist at that path.
        assert!(
            causes(
                &schema,
                json!({"spec": {"name": "b"}}),
                Some(&json!({"spec": {}}))
            )
            .is_empty()
        );
        // Beside transition rules, a creation still runs a plain rule and reports one that
        // does not compile.
        let beside = |rule: &str| {
            json!({"type": "object", "properties": {"spec": {"type": "object",
                "properties": {"name": {"type": "string"}},
                "x-kubernetes-validations": [
                    {"rule": "self.name == oldSelf.name", "message": "immutable"},
                    {"rule": rule, "message": "plain"}]}}})
        };
        let created = json!({"spec": {"name": "b"}});
        let plain = causes(&beside("self.name == 'a'"), created.clone(), None);
        assert_eq!(plain.len(), 1, "{plain:?}");
        assert_eq!(plain[0].message, "Invalid value: \"object\": plain");
        let broken = causes(&beside("self.name =="), created.clone(), None);
        assert_eq!(broken.len(), 1, "{broken:?}");
        assert!(
            broken[0].message.contains("rule compile error"),
            "{broken:?}"
        );
        assert!(causes(&beside("self.name == 'b'"), created, None).is_empty());
        // Items of other lists have no old value: their transition rules do not run.
        let listed = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "names": {"type": "array", "items": {"type": "string",
                "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "immutable"}]}}}}}});
        let before = json!({"spec": {"names": ["a"]}});
        assert!(causes(&listed, json!({"spec": {"names": ["b"]}}), Some(&before)).is_empty());
        // List-type map items are matched by key, not position.
        let update = json!({"spec": {"name": "a", "entries": [{"key": "new", "value": 0}, {"key": "k", "value": 3}]}});
        assert!(causes(&schema, update, Some(&old)).is_empty());
        let update = json!({"spec": {"name": "a", "entries": [{"key": "new", "value": 0}, {"key": "k", "value": 1}]}});
        let found: Vec<String> = causes(&schema, update, Some(&old))
            .into_iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect();
        assert_eq!(
            found,
            ["spec.entries[1]: Invalid value: \"object\": values only grow"]
        );
    }

    #[test]
    fn an_unchanged_top_level_field_is_ratcheted_unless_a_rule_in_it_compares_with_old_self() {
        // A schema tightened after the object was stored: spec.name is now too long, and a
        // rule on spec.size refuses what is stored.
        let schema = json!({"type": "object", "properties": {
            "spec": {"type": "object", "properties": {
                "name": {"type": "string", "pattern": "^[a-z]{1,3}$"},
                "size": {"type": "integer",
                    "x-kubernetes-validations": [{"rule": "self < 10", "message": "too big"}]}}},
            "status": {"type": "object", "properties": {
                "phase": {"type": "string", "pattern": "^[A-Z][a-z]{0,4}$"}}}}});
        let stored = json!({"spec": {"name": "longer", "size": 12}, "status": {"phase": "New"}});
        // A status write leaves the spec as stored: nothing in it is checked again.
        let status_write =
            json!({"spec": {"name": "longer", "size": 12}, "status": {"phase": "Done"}});
        assert!(causes(&schema, status_write, Some(&stored)).is_empty());
        // The changed field itself is still checked.
        let bad_status =
            json!({"spec": {"name": "longer", "size": 12}, "status": {"phase": "Finished"}});
        assert_eq!(
            causes(&schema, bad_status, Some(&stored))
                .into_iter()
                .map(|c| c.field)
                .collect::<Vec<_>>(),
            ["status.phase"]
        );
        // A changed spec is checked whole, and so is any object on create.
        let spec_write =
            json!({"spec": {"name": "longer", "size": 11}, "status": {"phase": "New"}});
        let fields = |found: Vec<Cause>| found.into_iter().map(|c| c.field).collect::<Vec<_>>();
        assert_eq!(
            fields(causes(&schema, spec_write, Some(&stored))),
            ["spec.name", "spec.size"]
        );
        assert_eq!(
            fields(causes(&schema, stored.clone(), None)),
            ["spec.name", "spec.size"]
        );
        // A rule comparing with oldSelf runs on an unchanged field too.
        let transition = json!({"type": "object", "properties": {
            "spec": {"type": "object", "properties": {"size": {"type": "integer",
                "x-kubernetes-validations": [{"rule": "self > oldSelf", "message": "must grow"}]}}},
            "status": {"type": "object"}}});
        let stored = json!({"spec": {"size": 1}, "status": {}});
        let status_write = json!({"spec": {"size": 1}, "status": {"seen": true}});
        assert_eq!(
            fields(causes(&transition, status_write, Some(&stored))),
            ["spec.size"]
        );
    }

    #[test]
    fn optional_old_self_rules_also_run_on_create() {
        let schema = with_x(json!({"type": "string", "x-kubernetes-validations": [{
            "rule": "oldSelf.hasValue() ? self == oldSelf.value() : self.startsWith('v')",
            "optionalOldSelf": true, "message": "starts with v, then never changes"}]}));
        assert!(causes(&schema, json!({"spec": {"x": "v1"}}), None).is_empty());
        assert_eq!(causes(&schema, json!({"spec": {"x": "w1"}}), None).len(), 1);
        let old = json!({"spec": {"x": "w1"}});
        assert!(causes(&schema, json!({"spec": {"x": "w1"}}), Some(&old)).is_empty());
        assert_eq!(
            causes(&schema, json!({"spec": {"x": "v2"}}), Some(&old)).len(),
            1
        );
    }

    #[test]
    fn plain_and_optional_old_self_rules_at_one_node_each_see_their_own_old_self() {
        let schema = with_x(json!({"type": "string", "x-kubernetes-validations": [
            {"rule": "self == oldSelf", "message": "immutable"},
            {"rule": "oldSelf.hasValue() ? oldSelf.value() != 'z' : self != 'z'",
             "optionalOldSelf": true, "message": "z is final"},
            {"rule": "self.size() < 4 || oldSelf.size() >= 4",
             "messageExpression": "'too long: ' + self + ', was ' + oldSelf"},
            {"rule": "self.size() < 5", "messageExpression": "'far too long: ' + self"}]}));
        let messages = |object: Value, old: Option<Value>| -> Vec<String> {
            causes(&schema, object, old.as_ref())
                .into_iter()
                .map(|c| c.message)
                .collect()
        };
        let x = |v: &str| json!({"spec": {"x": v}});
        assert!(messages(x("v1"), None).is_empty());
        assert_eq!(
            messages(x("z"), None),
            ["Invalid value: \"string\": z is final"]
        );
        // On create the rules with a plain oldSelf are not run, nor their messages.
        assert_eq!(
            messages(x("abcde"), None),
            ["Invalid value: \"string\": far too long: abcde"]
        );
        assert_eq!(
            messages(x("b"), Some(x("a"))),
            ["Invalid value: \"string\": immutable"]
        );
        assert_eq!(
            messages(x("z"), Some(x("z"))),
            ["Invalid value: \"string\": z is final"]
        );
        assert_eq!(
            messages(x("abcd"), Some(x("abc"))),
            [
                "Invalid value: \"string\": immutable",
                "Invalid value: \"string\": too long: abcd, was abc"
            ]
        );
    }

    #[test]
    fn a_rule_with_field_path_reason_or_message_expression_reports_as_the_api_server_does() {
        let rule = |extra: Value| {
            let mut rule = json!({"rule": "self.min <= self.max", "message": "max below min"});
            if let (Some(rule), Some(extra)) = (rule.as_object_mut(), extra.as_object()) {
                rule.extend(extra.clone());
            }
            json!({"type": "object", "properties": {"spec": {"type": "object",
                "properties": {"min": {"type": "integer"}, "max": {"type": "integer"},
                               "m": {"type": "object", "additionalProperties": {"type": "string"}}},
                "x-kubernetes-validations": [rule]}}})
        };
        let object = json!({"spec": {"min": 2, "max": 1}});
        let cases = [
            (json!({}), "spec: Invalid value: \"object\": max below min"),
            (
                json!({"fieldPath": ".max"}),
                "spec.max: Invalid value: \"object\": max below min",
            ),
            (
                json!({"fieldPath": "['max']"}),
                "spec.max: Invalid value: \"object\": max below min",
            ),
            (
                json!({"fieldPath": ".m['some.key']"}),
                "spec.m[some.key]: Invalid value: \"object\": max below min",
            ),
            (
                json!({"fieldPath": ".nope"}),
                "spec: Invalid value: \"object\": max below min",
            ),
            (
                json!({"fieldPath": ".max", "reason": "FieldValueForbidden"}),
                "spec.max: Forbidden: max below min",
            ),
            (
                json!({"reason": "FieldValueRequired"}),
                "spec: Required value: max below min",
            ),
            (
                json!({"reason": "FieldValueDuplicate"}),
                "spec: Duplicate value: \"object\"",
            ),
            (
                json!({"reason": "FieldValueInvalid"}),
                "spec: Invalid value: \"object\": max below min",
            ),
            (
                json!({"messageExpression": "'max ' + string(self.max) + ' is below min ' + string(self.min)"}),
                "spec: Invalid value: \"object\": max 1 is below min 2",
            ),
            // A message expression that fails falls back to the message.
            (
                json!({"messageExpression": "self.nothing"}),
                "spec: Invalid value: \"object\": max below min",
            ),
            (
                json!({"message": ""}),
                "spec: Invalid value: \"object\": failed rule: self.min <= self.max",
            ),
        ];
        for (extra, expected) in cases {
            let found = refused(&rule(extra.clone()), object.clone());
            assert_eq!(found, [expected], "rule with {extra}");
        }
        let forbidden = causes(
            &rule(json!({"reason": "FieldValueForbidden"})),
            object,
            None,
        );
        assert_eq!(forbidden.first().map(|c| c.reason), Some(FORBIDDEN));
    }

    #[test]
    fn a_rule_that_cannot_be_compiled_or_evaluated_refuses_the_object() {
        let with_rule = |rule: &str| {
            json!({"type": "object", "properties": {"spec": {"type": "object",
                "properties": {"a": {"type": "integer"}},
                "x-kubernetes-validations": [{"rule": rule}]}}})
        };
        let object = json!({"spec": {"a": 1}});
        assert_eq!(
            refused(&with_rule("self.missing > 0"), object.clone()),
            [
                "spec: Invalid value: \"object\": no such key: missing evaluating rule: self.missing > 0"
            ]
        );
        let unknown_function = refused(&with_rule("self.a.frobnicate()"), object.clone());
        assert_eq!(unknown_function.len(), 1);
        assert!(
            unknown_function[0].starts_with("spec: Invalid value: \"object\": ")
                && unknown_function[0].ends_with(" evaluating rule: self.a.frobnicate()"),
            "{unknown_function:?}"
        );
        let uncompilable = refused(&with_rule("self.a >"), object.clone());
        assert_eq!(uncompilable.len(), 1);
        assert!(
            uncompilable[0].starts_with("spec: Invalid value: \"object\": rule compile error: "),
            "{uncompilable:?}"
        );
        let not_a_bool = refused(&with_rule("self.a"), object.clone());
        assert_eq!(
            not_a_bool,
            ["spec: Invalid value: \"object\": failed rule: self.a"]
        );
        let nested = format!("{}true{}", "(".repeat(500), ")".repeat(500));
        assert_eq!(refused(&with_rule(&nested), object.clone()).len(), 1);
        // has() makes the same rule safe.
        assert!(admitted(&with_rule("!has(self.missing) || self.missing > 0"), object).is_ok());
    }

    #[test]
    fn property_names_are_escaped_for_cel_as_the_api_server_escapes_them() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object",
            "properties": {
                "namespace": {"type": "string"},
                "x-y": {"type": "string"},
                "a.b": {"type": "string"},
                "a_b": {"type": "string"},
                "a__b": {"type": "string"},
                "x/y": {"type": "string"},
                "m": {"type": "object", "additionalProperties": {"type": "string"}}
            },
            "x-kubernetes-validations": [{"rule":
                "self.__namespace__ == 'n' && self.x__dash__y == 'd' && self.a__dot__b == 'p' && self.a_b == 'u' && self.a__underscores__b == 'uu' && self.x__slash__y == 's' && self.m['a-b'] == 'k'"}]}}});
        assert!(
            admitted(
                &schema,
                json!({"spec": {"namespace": "n", "x-y": "d", "a.b": "p", "a_b": "u", "a__b": "uu",
                                "x/y": "s", "m": {"a-b": "k"}}})
            )
            .is_ok()
        );
    }

    #[test]
    fn cel_sees_typed_values_timestamps_durations_and_bytes() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object",
            "properties": {
                "at": {"type": "string", "format": "date-time"},
                "every": {"type": "string", "format": "duration"},
                "blob": {"type": "string", "format": "byte"},
                "ratio": {"type": "number"},
                "port": {"x-kubernetes-int-or-string": true}
            },
            "x-kubernetes-validations": [{"rule":
                "self.at < timestamp('2030-01-01T00:00:00Z') && self.every > duration('1m') && size(self.blob) == 5 && self.ratio > 0.5 && self.port == 80"}]}}});
        assert!(
            admitted(
                &schema,
                json!({"spec": {"at": "2024-01-01T00:00:00Z", "every": "1h", "blob": "aGVsbG8=",
                                "ratio": 1, "port": 80}})
            )
            .is_ok()
        );
    }

    #[test]
    fn blocking_problems_keep_cel_rules_from_running_and_others_do_not() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object",
            "properties": {"replicas": {"type": "integer"}, "name": {"type": "string", "pattern": "^[a-z]+$"}},
            "x-kubernetes-validations": [{"rule": "self.replicas > 0", "message": "replicas must be positive"}]}}});
        assert_eq!(
            refused(&schema, json!({"spec": {"replicas": "x"}})),
            [
                "spec.replicas: Invalid value: \"string\": spec.replicas in body must be of type integer: \"string\"",
                "<nil>: Invalid value: \"null\": some validation rules were not checked because the object was invalid; correct the existing errors to complete validation",
            ]
        );
        assert_eq!(
            refused(&schema, json!({"spec": {"replicas": 0, "name": "A"}})),
            [
                "spec.name: Invalid value: \"A\": spec.name in body should match '^[a-z]+$'",
                "spec: Invalid value: \"object\": replicas must be positive",
            ]
        );
    }

    #[test]
    fn values_print_as_go_prints_them() {
        for (f, text) in [
            (1e6, "1e+06"),
            (0.5, "0.5"),
            (123_456.0, "123456"),
            (1_234_567.0, "1.234567e+06"),
            (0.0001, "0.0001"),
            (0.000_01, "1e-05"),
            (-2.5e-7, "-2.5e-07"),
            (1e21, "1e+21"),
        ] {
            assert_eq!(go_float(f), text);
        }
        assert_eq!(go_quote("a\"b\\c\nd\u{1}é"), "\"a\\\"b\\\\c\\nd\\x01é\"");
        assert_eq!(
            go_syntax(&json!({"b": [1, "x", null], "a": 1.5}), 0),
            "map[string]interface {}{\"a\":1.5, \"b\":[]interface {}{1, \"x\", interface {}(nil)}}"
        );
        assert_eq!(
            canonical_json(&json!({"b": 1.0, "a": [true, "x"]})),
            "{\"a\":[true,\"x\"],\"b\":1}"
        );
    }

    /// An object and a schema nested `levels` deep, the innermost value and schema given.
    fn nested(levels: usize, leaf: Value, leaf_schema: Value) -> (Value, Value) {
        let mut object = leaf;
        let mut schema = leaf_schema;
        for _ in 0..levels {
            object = json!({"n": object});
            schema = json!({"type": "object", "properties": {"n": schema}});
        }
        (object, schema)
    }

    #[test]
    fn deep_but_reasonable_nesting_is_handled_all_the_way_down() {
        let (object, schema) = nested(
            150,
            json!({"v": 1}),
            json!({"type": "object", "properties": {"v": {"type": "integer", "default": 2}, "d": {"type": "string", "default": "x"}},
                   "x-kubernetes-validations": [{"rule": "self.v > 1", "message": "v must exceed 1"}]}),
        );
        let found = refused(&schema, object);
        assert_eq!(found.len(), 1);
        assert!(found[0].ends_with(".n.n: Invalid value: \"object\": v must exceed 1"));
        assert!(found[0].starts_with("n.n."));
    }

    #[test]
    fn garbage_schemas_and_objects_and_huge_nesting_never_panic() {
        let schemas = [
            json!(null),
            json!(1),
            json!("x"),
            json!([]),
            json!({"type": 5}),
            json!({"type": "object", "properties": 5}),
            json!({"type": "object", "properties": {"spec": 5}}),
            json!({"type": "object", "properties": {"spec": {"type": "array", "items": "x"}}}),
            json!({"x-kubernetes-validations": 5}),
            json!({"x-kubernetes-validations": [5, {"rule": 5}, {"rule": ""}, {"rule": "((("},
                {"rule": "self.spec", "fieldPath": "]]['"}, {"rule": "'", "messageExpression": "("}]}),
            json!({"properties": {"spec": {"enum": 5, "required": [1, null], "pattern": "(",
                "maxLength": "x", "minimum": "y", "multipleOf": 0, "allOf": 5, "anyOf": [5], "oneOf": [[]],
                "not": 1, "format": 7, "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": 1,
                "default": null, "additionalProperties": 3, "items": []}}}),
            json!({"properties": {"spec": {"type": "integer", "multipleOf": 0.5, "minimum": 1e300,
                "maximum": -1e300, "format": "int32", "enum": [{"a": 1}, [1], null]}}}),
            json!({"properties": {"spec": {"type": "array", "x-kubernetes-list-type": "set",
                "items": {"x-kubernetes-validations": [{"rule": "self.all(x, x)"}]}}}}),
            json!({"properties": {"spec": {"type": "array", "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["k"], "items": {"type": "object",
                "properties": {"k": {"type": "string", "default": "d"}},
                "x-kubernetes-validations": [{"rule": "self == oldSelf"}]}}}}),
            json!({"x-kubernetes-embedded-resource": true, "x-kubernetes-preserve-unknown-fields": true,
                "additionalProperties": true}),
        ];
        let objects = [
            json!(null),
            json!(1),
            json!("x"),
            json!([1, [2]]),
            json!({}),
            json!({"spec": null}),
            json!({"spec": [1, {"a": null}, [], "x", {"k": "a"}, {"k": "a"}, null, null]}),
            json!({"spec": {"a": {"b": [null]}}, "metadata": 5, "apiVersion": [], "kind": {}}),
            json!({"spec": 18_446_744_073_709_551_615_u64}),
            json!({"spec": -9_223_372_036_854_775_808_i64}),
            json!({"spec": 1e308}),
            json!({"spec": "\u{0}\u{ffff}\"'\\"}),
        ];
        for schema in &schemas {
            for object in &objects {
                let mut copy = object.clone();
                let _ = admit(schema, &mut copy, Some(object));
                let mut copy = object.clone();
                let _ = admit(schema, &mut copy, None);
            }
        }
        // Huge nesting is refused, not recursed into.
        let (deep_object, deep_schema) = nested(300, json!(1), json!({"type": "integer"}));
        let mut copy = deep_object.clone();
        let found = admit(&deep_schema, &mut copy, None)
            .err()
            .unwrap_or_default();
        assert_eq!(found.first().map(|c| c.reason), Some(INTERNAL));
        let mut copy = deep_object.clone();
        let found = admit(&json!({}), &mut copy, Some(&deep_object))
            .err()
            .unwrap_or_default();
        assert_eq!(found.first().map(|c| c.reason), Some(INVALID));
        let mut deep_list = json!(1);
        for _ in 0..1000 {
            deep_list = json!([deep_list]);
        }
        let mut wrapped = json!({"spec": deep_list});
        assert!(admit(&json!({"type": "object"}), &mut wrapped, None).is_err());
        let long_chain = vec!["self == self"; 2000].join(" || ");
        let schema = json!({"type": "object", "x-kubernetes-validations": [{"rule": long_chain}]});
        let _ = admit(&schema, &mut json!({}), None);
    }

    fn certificate_schema() -> Value {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../crds/certificate.yaml");
        let text = std::fs::read_to_string(path).expect("crds/certificate.yaml");
        let crd: Value = serde_yaml::from_str(&text).expect("the CRD is YAML");
        crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
    }

    fn certificate(spec: Value) -> Value {
        json!({"apiVersion": "certinext.io/v1alpha1", "kind": "Certificate",
               "metadata": {"name": "web", "namespace": "team-a"}, "spec": spec})
    }

    #[test]
    fn a_valid_certificate_is_admitted_and_defaulted() {
        let schema = certificate_schema();
        let (after, admission) = admitted(
            &schema,
            certificate(
                json!({"secretName": "web-tls", "dnsNames": ["web.example.com", "*.example.com"],
                "productRef": {"name": "dv"}, "privateKey": {"algorithm": "RSA", "size": 3072},
                "uris": ["spiffe://example.com/web"], "ipAddresses": ["10.0.0.1"],
                "emailAddresses": ["ops@example.com"], "renewBeforePercentage": 30}),
            ),
        )
        .expect("admitted");
        assert!(admission.pruned.is_empty());
        assert_eq!(after["spec"]["duration"], json!("2160h"));
        assert_eq!(after["spec"]["privateKey"]["encoding"], json!("PKCS1"));
    }

    #[test]
    fn certificates_are_refused_with_the_crds_messages() {
        let schema = certificate_schema();
        assert_eq!(
            refused(
                &schema,
                certificate(
                    json!({"secretName": "web-tls", "dnsNames": "x", "productRef": {"name": "dv"}})
                )
            ),
            [
                "spec.dnsNames: Invalid value: \"string\": spec.dnsNames in body must be of type array: \"string\"",
                "<nil>: Invalid value: \"null\": some validation rules were not checked because the object was invalid; correct the existing errors to complete validation",
            ]
        );
        assert_eq!(
            refused(
                &schema,
                certificate(json!({"secretName": "web-tls", "dnsNames": ["web.example.com"]}))
            ),
            ["spec: Invalid value: \"object\": set exactly one of productRef and issuerRef"]
        );
        assert_eq!(
            refused(
                &schema,
                certificate(
                    json!({"secretName": "web-tls", "dnsNames": ["web.example.com"],
                    "productRef": {"name": "dv"}, "renewBefore": "720h", "renewBeforePercentage": 30})
                )
            ),
            [
                "spec: Invalid value: \"object\": set at most one of renewBefore and renewBeforePercentage"
            ]
        );
        assert_eq!(
            refused(
                &schema,
                certificate(
                    json!({"secretName": "web-tls", "dnsNames": ["web.example.com"],
                    "issuerRef": {"name": "ca"}, "privateKey": {"algorithm": "Ed25519", "size": 256}})
                )
            ),
            [
                "spec.privateKey.size: Invalid value: \"object\": size must not be set for Ed25519 keys"
            ]
        );
        assert_eq!(
            refused(
                &schema,
                certificate(
                    json!({"secretName": "Web_TLS", "dnsNames": ["web.example.com", "web.example.com"],
                    "productRef": {"name": "dv"}, "duration": "10m"})
                )
            ),
            [
                "spec.secretName: Invalid value: \"Web_TLS\": spec.secretName in body should match '^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$'",
                "spec.dnsNames[1]: Duplicate value: \"web.example.com\"",
                "spec.duration: Invalid value: \"string\": duration must be at least 1h",
            ]
        );
        assert_eq!(
            refused(
                &schema,
                certificate(json!({"secretName": "web-tls", "productRef": {"name": "dv"}}))
            ),
            [
                "spec: Invalid value: \"object\": set at least one identity: commonName, dnsNames, ipAddresses, uris or emailAddresses"
            ]
        );
    }
}
