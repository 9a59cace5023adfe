//! Server-side apply and `metadata.managedFields`, following the semantics of kube-apiserver
//! (structured-merge-diff).
//!
//! Objects are plain [`serde_json::Value`]s. Field ownership is tracked as sets of field paths,
//! serialized in the `FieldsV1` format that Kubernetes stores in `metadata.managedFields`:
//!
//! * `f:<name>` — a field of a struct or an entry of a map,
//! * `k:{"name":"x"}` — an element of an associative list (`x-kubernetes-list-type: map`),
//! * `v:"value"` — an element of a set list (`x-kubernetes-list-type: set`),
//! * `.` — the node itself is owned as well as some of its children,
//! * `{}` — a leaf.
//!
//! List and map semantics come from the resource's OpenAPI v3 schema when there is one; see
//! [`apply`], [`record_update`] and [`field_set`].
//!
//! As in Kubernetes, a field set never contains `apiVersion`, `kind`, or the server-owned parts
//! of `metadata`; of `metadata` only `labels`, `annotations`, `finalizers` (a set) and
//! `ownerReferences` (keyed by `uid`) are tracked.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use serde_json::{Map, Value};

/// What a write does, for the managedFields entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// Server-side apply (`PATCH` with `application/apply-patch+yaml`).
    Apply,
    /// Any other write: create, update, JSON patch, merge patch, strategic merge patch.
    Update,
}

impl Operation {
    /// The value of the `operation` field of a managedFields entry.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "Apply" => Some(Operation::Apply),
            "Update" => Some(Operation::Update),
            _ => None,
        }
    }
}

/// Who writes, and through which endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Manager<'a> {
    /// The field manager (`?fieldManager=`, or the user agent for non-apply writes).
    pub name: &'a str,
    /// `Some("status")` for writes to the `/status` subresource; `None` for the main resource.
    pub subresource: Option<&'a str>,
    /// Drop `.status` from the written object's tracked fields: the main endpoint of a resource
    /// with a status subresource ignores status. Has no effect for the status subresource.
    pub ignore_status: bool,
}

impl<'a> Manager<'a> {
    /// A manager writing to the main resource, with `.status` tracked like any other field.
    pub fn new(name: &'a str) -> Self {
        Manager {
            name,
            subresource: None,
            ignore_status: false,
        }
    }

    /// A manager writing to the `/status` subresource.
    pub fn status(name: &'a str) -> Self {
        Manager {
            name,
            subresource: Some("status"),
            ignore_status: false,
        }
    }

    /// The same manager, ignoring `.status` (main endpoint of a resource with a status
    /// subresource).
    pub fn ignoring_status(self) -> Self {
        Manager {
            ignore_status: true,
            ..self
        }
    }
}

/// A field owned by another manager that the apply would change.
#[derive(Debug, Clone, PartialEq)]
pub struct Conflict {
    /// The other manager's name.
    pub manager: String,
    /// A human path like `.spec.replicas` or `.spec.containers[name="x"].image`.
    pub field: String,
}

/// The message kube-apiserver puts in the 409 `Status` of a conflicting apply, e.g.
/// `Apply failed with 1 conflict: conflict with "kubectl": .spec.replicas`.
pub fn conflict_message(conflicts: &[Conflict]) -> String {
    let detail = if let [only] = conflicts {
        format!("conflict with {:?}: {}", only.manager, only.field)
    } else {
        let mut by_manager: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for c in conflicts {
            by_manager.entry(&c.manager).or_default().push(&c.field);
        }
        let mut lines = Vec::new();
        for (manager, fields) in by_manager {
            lines.push(format!("conflicts with {manager:?}:"));
            lines.extend(fields.into_iter().map(|f| format!("- {f}")));
        }
        lines.join("\n")
    };
    let plural = if conflicts.len() == 1 { "" } else { "s" };
    format!(
        "Apply failed with {} conflict{plural}: {detail}",
        conflicts.len()
    )
}

/// Server-side apply: merge `applied` (the user's apply configuration) into `live` (`None` when
/// the object does not exist yet).
///
/// Returns the new object with `metadata.managedFields` updated, or the conflicts (only when
/// `!force`). A non-object `applied` is not a valid apply configuration: the live object (or an
/// empty object) is returned unchanged, so callers should reject it beforehand.
///
/// `schema` is the resource's OpenAPI v3 schema (a CRD's `openAPIV3Schema`), `None` for built-in
/// types; `now` is the RFC 3339 time recorded in the manager's entry.
pub fn apply(
    live: Option<&Value>,
    applied: &Value,
    manager: &Manager,
    force: bool,
    schema: Option<&Value>,
    now: &str,
) -> Result<Value, Vec<Conflict>> {
    let empty = Value::Object(Map::new());
    let live_obj = match live {
        Some(v) if v.is_object() => v,
        _ => &empty,
    };
    let Some(applied_map) = applied.as_object() else {
        return Ok(live_obj.clone());
    };
    let root = root_shape(schema);
    let scope = Scope::of(manager);
    let config = scoped_config(applied_map, scope);

    // Other managers' entries are read only when the apply may take or free their fields.
    let mut entries = parse_entries_lazily(managed_fields_of(live_obj));
    if live.is_some() && entries.is_empty() {
        // An object nobody has claimed yet: its current fields belong to "before-first-apply",
        // so that an apply conflicts instead of silently taking them over.
        let diff = diff_objects(&Value::Object(Map::new()), live_obj, root, scope);
        if !diff.added.is_empty() {
            entries.push(Entry {
                manager: "before-first-apply".to_owned(),
                operation: Operation::Update,
                api_version: string_at(live_obj, "apiVersion"),
                time: Some(now.to_owned()),
                subresource: manager.subresource.map(str::to_owned),
                set: diff.added,
                fields: None,
                parsed: true,
            });
        }
    }

    let own = entries
        .iter()
        .position(|e| e.is(manager.name, Operation::Apply, manager.subresource));
    if let Some(i) = own {
        entries[i].read();
    }
    let last_set = own
        .map(|i| scope.track(entries[i].set.clone()))
        .unwrap_or_default();
    let applied_set = scope.track(collect_set(&config, root));

    let mut merged =
        merge(Some(live_obj), Some(&config), root, 0).unwrap_or_else(|| live_obj.clone());

    // What this manager applied last time and no longer applies: removed unless someone else
    // owns it. A manager applying the same fields again (a controller's next status) frees
    // nothing, and the other entries and the object's fields need not be gathered.
    let dropped: FieldSet = if last_set.is_empty() || last_set == applied_set {
        FieldSet::new()
    } else {
        let applied_named = with_named_parents(&applied_set);
        with_named_parents(&last_set)
            .into_iter()
            .filter(|p| !applied_named.contains(p) && scope.tracks(p))
            .collect()
    };
    if !dropped.is_empty() {
        let mut managed = applied_set.clone();
        for (i, e) in entries.iter_mut().enumerate() {
            if Some(i) != own {
                e.read();
                managed.extend(e.set.iter().cloned());
            }
        }
        let managed = with_named_parents(&managed);
        let present = with_named_parents(&collect_set(&merged, root));
        let to_remove: FieldSet = dropped
            .intersection(&present)
            .filter(|p| !managed.contains(*p))
            .cloned()
            .collect();
        remove_paths(&mut merged, root, &mut Vec::new(), &to_remove);
    }

    let diff = diff_objects(live_obj, &merged, root, scope);
    let (changed, removed) = diff.changed_and_removed();
    for (i, e) in entries.iter_mut().enumerate() {
        if Some(i) != own && e.holds_any(changed.iter().chain(&removed)) {
            e.read();
        }
    }

    let mut conflicts: Vec<Conflict> = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        if Some(i) == own {
            continue;
        }
        for p in e.set.intersection(&changed) {
            let c = Conflict {
                manager: e.manager.clone(),
                field: path_string(p),
            };
            if !conflicts.contains(&c) {
                conflicts.push(c);
            }
        }
    }
    if !force && !conflicts.is_empty() {
        return Err(conflicts);
    }

    for (i, e) in entries.iter_mut().enumerate() {
        if Some(i) != own && e.parsed {
            e.retain(|p| !changed.contains(p) && !removed.contains(p));
        }
    }
    let api_version =
        string_at(applied, "apiVersion").or_else(|| string_at(live_obj, "apiVersion"));
    // Applying the same fields again (a controller's next status) keeps their FieldsV1 as is.
    let fields = own
        .map(|i| &entries[i])
        .filter(|e| e.set == applied_set)
        .and_then(|e| e.fields.clone());
    let entry = Entry {
        manager: manager.name.to_owned(),
        operation: Operation::Apply,
        api_version,
        time: Some(now.to_owned()),
        subresource: manager.subresource.map(str::to_owned),
        set: applied_set,
        fields,
        parsed: true,
    };
    match own {
        Some(i) => entries[i] = entry,
        None => entries.push(entry),
    }
    entries.retain(|e| !e.is_empty());
    set_managed_fields(&mut merged, &entries);
    Ok(merged)
}

/// Record a non-apply write (create, update, JSON/merge patch) by `manager`.
///
/// Every tracked field whose value differs between `old` and `new` (added or changed) becomes
/// owned by `manager` (operation `Update`) and is removed from the other managers' sets; fields
/// that disappeared are removed from every set; managers left with empty sets are dropped. On
/// create `old` is `None` and the manager owns every tracked field of `new`.
///
/// As in Kubernetes, a node that appears as a whole (a new struct, map or list element) is owned
/// itself too (`".": {}`), and a write that changes nothing leaves managedFields as they were. If
/// `new` carries a non-empty `metadata.managedFields` (a main-resource write that sets them on
/// purpose, as a list of objects), those entries are the starting point instead of `old`'s; this
/// is how a client resets managedFields (`[{}]`).
pub fn record_update(
    old: Option<&Value>,
    new: &mut Value,
    manager: &Manager,
    schema: Option<&Value>,
    now: &str,
) {
    if !new.is_object() {
        return;
    }
    let root = root_shape(schema);
    let scope = Scope::of(manager);
    let empty = Value::Object(Map::new());
    let old_obj = match old {
        Some(v) if v.is_object() => v,
        _ => &empty,
    };

    // Like kube-apiserver: managedFields sent with a main-resource write replace the stored ones
    // when they decode (`[{}]` resets them); missing, empty or undecodable ones are ignored.
    let provided = managed_fields_of(new).filter(|m| {
        m.as_array()
            .is_some_and(|a| !a.is_empty() && a.iter().all(Value::is_object))
    });
    let stored = managed_fields_of(old_obj);
    let diff = diff_objects(old_obj, new, root, scope);
    let (changed, removed) = diff.changed_and_removed();
    let mut entries = match provided {
        // A client's own entries are written back as this server would write them; entries
        // sent back as read are the stored ones.
        Some(m) if manager.subresource.is_none() && Some(m) != stored => parse_entries(Some(m))
            .into_iter()
            .map(|e| Entry { fields: None, ..e })
            .collect(),
        _ => stored_entries(stored, manager, &changed, &removed),
    };
    for e in entries.iter_mut().filter(|e| e.parsed) {
        e.retain(|p| !changed.contains(p) && !removed.contains(p));
    }
    if !changed.is_empty() {
        let api_version = string_at(new, "apiVersion").or_else(|| string_at(old_obj, "apiVersion"));
        let own = entries
            .iter_mut()
            .find(|e| e.is(manager.name, Operation::Update, manager.subresource));
        match own {
            Some(e) => {
                let before = e.set.len();
                e.set.extend(changed);
                if e.set.len() != before {
                    e.fields = None;
                }
                e.time = Some(now.to_owned());
                e.api_version = api_version;
            }
            None => entries.push(Entry {
                manager: manager.name.to_owned(),
                operation: Operation::Update,
                api_version,
                time: Some(now.to_owned()),
                subresource: manager.subresource.map(str::to_owned),
                set: changed,
                fields: None,
                parsed: true,
            }),
        }
    }
    entries.retain(|e| !e.is_empty());
    set_managed_fields(new, &entries);
}

/// The field set of an object (what a manager owning all of it would own), in FieldsV1 JSON.
pub fn field_set(object: &Value, schema: Option<&Value>) -> Value {
    let mut set = collect_set(object, root_shape(schema));
    set.remove(&metadata_path());
    fields_v1(&set)
}

// ---------------------------------------------------------------------------------------------
// Paths and sets

/// One step of a field path, ordered as structured-merge-diff orders them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Pe {
    /// A struct field or map key.
    Field(String),
    /// An associative-list element: its key fields as compact JSON with sorted keys.
    Key(String),
    /// A set-list element: its value as compact JSON.
    Value(String),
    /// A positional list element (never produced here; accepted when parsing).
    Index(u64),
}

type Path = Vec<Pe>;
type FieldSet = BTreeSet<Path>;

/// Deeper than any object serde_json parses by default; guards the recursive walkers.
const MAX_DEPTH: usize = 512;

fn metadata_path() -> Path {
    vec![Pe::Field("metadata".to_owned())]
}

/// Whether `path` is [`metadata_path`], without making one.
fn is_metadata_path(path: &[Pe]) -> bool {
    matches!(path, [Pe::Field(f)] if f == "metadata")
}

fn pe_key(pe: &Pe) -> String {
    let prefixed = |prefix: &str, text: &str| {
        let mut key = String::with_capacity(prefix.len() + text.len());
        key.push_str(prefix);
        key.push_str(text);
        key
    };
    match pe {
        Pe::Field(f) => prefixed("f:", f),
        Pe::Key(k) => prefixed("k:", k),
        Pe::Value(v) => prefixed("v:", v),
        Pe::Index(i) => format!("i:{i}"),
    }
}

fn parse_pe(key: &str) -> Option<Pe> {
    if let Some(f) = key.strip_prefix("f:") {
        Some(Pe::Field(f.to_owned()))
    } else if let Some(k) = key.strip_prefix("k:") {
        let v: Value = serde_json::from_str(k).ok()?;
        v.is_object().then(|| Pe::Key(canonical_json(&v)))
    } else if let Some(v) = key.strip_prefix("v:") {
        let v: Value = serde_json::from_str(v).ok()?;
        Some(Pe::Value(canonical_json(&v)))
    } else if let Some(i) = key.strip_prefix("i:") {
        i.parse().ok().map(Pe::Index)
    } else {
        None
    }
}

/// `.spec.containers[name="x"].image`, as structured-merge-diff prints paths.
fn path_string(path: &Path) -> String {
    let mut s = String::new();
    for pe in path {
        match pe {
            Pe::Field(f) => {
                s.push('.');
                s.push_str(f);
            }
            Pe::Key(k) => {
                let parts: Vec<String> = match serde_json::from_str::<Value>(k) {
                    Ok(Value::Object(m)) => m.iter().map(|(n, v)| format!("{n}={v}")).collect(),
                    _ => vec![k.clone()],
                };
                s.push('[');
                s.push_str(&parts.join(","));
                s.push(']');
            }
            Pe::Value(v) => {
                s.push_str("[=");
                s.push_str(v);
                s.push(']');
            }
            Pe::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

fn sorted_value(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut fields: Vec<(&String, &Value)> = m.iter().collect();
            fields.sort_by(|a, b| a.0.cmp(b.0));
            Value::Object(
                fields
                    .into_iter()
                    .map(|(k, v)| (k.clone(), sorted_value(v)))
                    .collect(),
            )
        }
        Value::Array(a) => Value::Array(a.iter().map(sorted_value).collect()),
        other => other.clone(),
    }
}

fn canonical_json(v: &Value) -> String {
    serde_json::to_string(&sorted_value(v)).unwrap_or_default()
}

fn value_pe(item: &Value) -> Pe {
    Pe::Value(canonical_json(item))
}

fn key_pe(item: &Value, keys: &[String]) -> Pe {
    match item {
        Value::Object(m) => {
            let mut key = Map::new();
            let mut names: Vec<&String> = keys.iter().collect();
            names.sort();
            names.dedup();
            for name in names {
                if let Some(v) = m.get(name) {
                    key.insert(name.clone(), v.clone());
                }
            }
            Pe::Key(canonical_json(&Value::Object(key)))
        }
        other => value_pe(other),
    }
}

/// Adds every struct-field ancestor of the set's paths as a member, so that removing it removes
/// the whole field (structured-merge-diff's `EnsureNamedFieldsAreMembers`).
fn with_named_parents(set: &FieldSet) -> FieldSet {
    let mut out = set.clone();
    for p in set {
        for i in 1..p.len() {
            if matches!(p[i - 1], Pe::Field(_)) {
                out.insert(p[..i].to_vec());
            }
        }
    }
    out
}

fn has_descendant(set: &FieldSet, path: &Path) -> bool {
    set.range::<Path, _>((Bound::Excluded(path), Bound::Unbounded))
        .next()
        .is_some_and(|p| p.starts_with(path))
}

/// Serializes a set as FieldsV1. The paths come sorted, each after its ancestors and before
/// the paths of its next sibling, so the tree is built one branch at a time: every node is
/// made once and closed into its parent when the paths leave it.
fn fields_v1(set: &FieldSet) -> Value {
    struct Open {
        key: String,
        member: bool,
        children: Map<String, Value>,
    }
    /// Closes the open nodes above the first `depth` into their parents.
    fn close_to(stack: &mut Vec<Open>, depth: usize) {
        while stack.len() > depth {
            let Some(node) = stack.pop() else { break };
            let Some(parent) = stack.last_mut() else {
                break;
            };
            let mut children = node.children;
            if node.member && !children.is_empty() {
                children.insert(".".to_owned(), Value::Object(Map::new()));
            }
            parent.children.insert(node.key, Value::Object(children));
        }
    }
    let open = |key: String| Open {
        key,
        member: false,
        children: Map::new(),
    };
    let mut stack = vec![open(String::new())];
    let mut branch: &[Pe] = &[];
    for path in set {
        let common = branch
            .iter()
            .zip(path.iter())
            .take_while(|(a, b)| a == b)
            .count();
        close_to(&mut stack, common + 1);
        for pe in &path[common..] {
            stack.push(open(pe_key(pe)));
        }
        if !path.is_empty()
            && let Some(node) = stack.last_mut()
        {
            node.member = true;
        }
        branch = path;
    }
    close_to(&mut stack, 1);
    Value::Object(stack.pop().map(|root| root.children).unwrap_or_default())
}

/// Parses FieldsV1, skipping what is not understood.
fn parse_fields_v1(v: &Value) -> FieldSet {
    fn walk(v: &Value, path: &mut Path, out: &mut FieldSet) {
        if path.len() > MAX_DEPTH {
            return;
        }
        let m = match v {
            Value::Object(m) if !m.is_empty() => m,
            _ => {
                if !path.is_empty() {
                    out.insert(path.clone());
                }
                return;
            }
        };
        for (k, child) in m {
            if k == "." {
                if !path.is_empty() {
                    out.insert(path.clone());
                }
                continue;
            }
            if let Some(pe) = parse_pe(k) {
                path.push(pe);
                walk(child, path, out);
                path.pop();
            }
        }
    }
    let mut out = FieldSet::new();
    if v.is_object() {
        walk(v, &mut Vec::new(), &mut out);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Schema

/// What is known about the type of a node.
#[derive(Debug, Clone, Copy)]
enum Shape<'a> {
    /// The object itself, with the resource's schema if any.
    Root(Option<&'a Value>),
    /// A node of an OpenAPI v3 schema.
    Schema(&'a Value),
    /// No schema: objects are structs, lists are atomic.
    Untyped,
    /// `x-kubernetes-preserve-unknown-fields`: objects are granular maps, lists are atomic.
    Deduced,
    /// `metadata` (ObjectMeta).
    Meta,
    /// `metadata.finalizers`: a set of strings.
    ScalarSet,
    /// `metadata.ownerReferences`: a list keyed by `uid`.
    OwnerRefs,
}

/// How a node with a given value is merged and tracked.
#[derive(Debug)]
enum Kind<'a> {
    /// Scalars, atomic lists and maps, and values that do not fit their schema.
    Leaf,
    /// A struct or granular map.
    Struct,
    /// `x-kubernetes-list-type: set`.
    Set,
    /// `x-kubernetes-list-type: map`.
    Map { keys: Vec<String>, item: Shape<'a> },
}

fn root_shape(schema: Option<&Value>) -> Shape<'_> {
    Shape::Root(schema.map(|s| match s.get("openAPIV3Schema") {
        Some(inner) if inner.is_object() => inner,
        _ => s,
    }))
}

fn kind_of<'a>(shape: Shape<'a>, v: &Value) -> Kind<'a> {
    match v {
        Value::Object(_) => match shape {
            Shape::Schema(s)
                if s.get("x-kubernetes-map-type").and_then(Value::as_str) == Some("atomic") =>
            {
                Kind::Leaf
            }
            Shape::ScalarSet | Shape::OwnerRefs => Kind::Leaf,
            _ => Kind::Struct,
        },
        Value::Array(_) => match shape {
            Shape::Schema(s) => {
                let item = match s.get("items") {
                    Some(i) if i.is_object() => Shape::Schema(i),
                    _ => Shape::Untyped,
                };
                match s.get("x-kubernetes-list-type").and_then(Value::as_str) {
                    Some("set") => Kind::Set,
                    Some("map") => {
                        let keys: Vec<String> = s
                            .get("x-kubernetes-list-map-keys")
                            .and_then(Value::as_array)
                            .map(|a| {
                                a.iter()
                                    .filter_map(Value::as_str)
                                    .map(str::to_owned)
                                    .collect()
                            })
                            .unwrap_or_default();
                        if keys.is_empty() {
                            Kind::Leaf
                        } else {
                            Kind::Map { keys, item }
                        }
                    }
                    _ => Kind::Leaf,
                }
            }
            Shape::ScalarSet => Kind::Set,
            Shape::OwnerRefs => Kind::Map {
                keys: vec!["uid".to_owned()],
                item: Shape::Untyped,
            },
            _ => Kind::Leaf,
        },
        _ => Kind::Leaf,
    }
}

/// The shape of a struct or map child, and whether it is a map entry (rather than a declared
/// struct field). `None` for fields that are never tracked.
fn field_child<'a>(shape: Shape<'a>, key: &str) -> Option<(Shape<'a>, bool)> {
    match shape {
        Shape::Root(schema) => match key {
            "apiVersion" | "kind" => None,
            "metadata" => Some((Shape::Meta, false)),
            _ => Some(match schema {
                Some(s) => schema_child(s, key),
                None => (Shape::Untyped, false),
            }),
        },
        Shape::Schema(s) => Some(schema_child(s, key)),
        Shape::Meta => match key {
            "labels" | "annotations" => Some((Shape::Deduced, false)),
            "finalizers" => Some((Shape::ScalarSet, false)),
            "ownerReferences" => Some((Shape::OwnerRefs, false)),
            _ => None,
        },
        Shape::Deduced => Some((Shape::Deduced, true)),
        Shape::Untyped | Shape::ScalarSet | Shape::OwnerRefs => Some((Shape::Untyped, false)),
    }
}

fn schema_child<'a>(s: &'a Value, key: &str) -> (Shape<'a>, bool) {
    if let Some(p) = s.get("properties").and_then(|p| p.get(key))
        && p.is_object()
    {
        return (Shape::Schema(p), false);
    }
    match s.get("additionalProperties") {
        Some(ap @ Value::Object(_)) => return (Shape::Schema(ap), true),
        Some(Value::Bool(true)) => return (Shape::Deduced, true),
        _ => {}
    }
    if s.get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        == Some(true)
    {
        return (Shape::Deduced, true);
    }
    (Shape::Untyped, false)
}

fn is_empty_container(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::Object(m)) => m.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        Some(_) => false,
    }
}

/// The kind used when walking two versions of a node together. `null` takes the other side's
/// kind; kinds that disagree, and two empty containers, make a leaf.
fn pair_kind<'a>(shape: Shape<'a>, l: Option<&Value>, r: Option<&Value>) -> Kind<'a> {
    let l = l.filter(|v| !v.is_null());
    let r = r.filter(|v| !v.is_null());
    let kind = match (l, r) {
        (None, None) => return Kind::Leaf,
        (Some(v), None) | (None, Some(v)) => kind_of(shape, v),
        (Some(a), Some(b)) => {
            let ka = kind_of(shape, a);
            let kb = kind_of(shape, b);
            if std::mem::discriminant(&ka) == std::mem::discriminant(&kb) {
                ka
            } else {
                Kind::Leaf
            }
        }
    };
    if !matches!(kind, Kind::Leaf) && is_empty_container(l) && is_empty_container(r) {
        Kind::Leaf
    } else {
        kind
    }
}

fn list_items(v: Option<&Value>) -> &[Value] {
    v.and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

// ---------------------------------------------------------------------------------------------
// Walkers

/// The paths of everything set in `v` (structured-merge-diff's `ToFieldSet`): leaves, list
/// elements, map entries, and struct fields that are null or empty objects.
fn collect_set(v: &Value, shape: Shape) -> FieldSet {
    fn walk(v: &Value, shape: Shape, path: &mut Path, out: &mut FieldSet) {
        if path.len() > MAX_DEPTH {
            return;
        }
        match (kind_of(shape, v), v) {
            (Kind::Struct, Value::Object(m)) => {
                for (k, child) in m {
                    let Some((child_shape, entry)) = field_child(shape, k) else {
                        continue;
                    };
                    path.push(Pe::Field(k.clone()));
                    walk(child, child_shape, path, out);
                    let empty = child.is_null() || child.as_object().is_some_and(Map::is_empty);
                    if entry || empty {
                        out.insert(path.clone());
                    }
                    path.pop();
                }
            }
            (Kind::Set, Value::Array(a)) => {
                for item in a {
                    path.push(value_pe(item));
                    out.insert(path.clone());
                    path.pop();
                }
            }
            (Kind::Map { keys, item }, Value::Array(a)) => {
                for element in a {
                    path.push(key_pe(element, &keys));
                    walk(element, item, path, out);
                    out.insert(path.clone());
                    path.pop();
                }
            }
            _ => {
                if !path.is_empty() {
                    out.insert(path.clone());
                }
            }
        }
    }
    let mut out = FieldSet::new();
    walk(v, shape, &mut Vec::new(), &mut out);
    out
}

/// What changed between two versions of an object (structured-merge-diff's `Compare`).
#[derive(Debug, Default)]
struct Diff {
    added: FieldSet,
    modified: FieldSet,
    removed: FieldSet,
}

impl Diff {
    /// The paths added or modified, and the paths removed; the sets are moved, not copied (a
    /// creation adds every field of the object).
    fn changed_and_removed(self) -> (FieldSet, FieldSet) {
        let Diff {
            added,
            modified,
            removed,
        } = self;
        let (mut larger, smaller) = if added.len() >= modified.len() {
            (added, modified)
        } else {
            (modified, added)
        };
        larger.extend(smaller);
        (larger, removed)
    }
}

fn diff_objects(old: &Value, new: &Value, root: Shape, scope: Scope) -> Diff {
    let mut d = Diff::default();
    let (Some(lm), Some(rm)) = (old.as_object(), new.as_object()) else {
        compare(Some(old), Some(new), root, &mut Vec::new(), &mut d);
        return Diff {
            added: scope.track(d.added),
            modified: scope.track(d.modified),
            removed: scope.track(d.removed),
        };
    };
    // Only the top-level fields the scope tracks are compared: a status write's spec is not
    // walked at all.
    let mut path = Vec::new();
    let only_left = lm.keys();
    let only_right = rm.keys().filter(|k| !lm.contains_key(*k));
    for key in only_left.chain(only_right) {
        if !scope.tracks_field(key) {
            continue;
        }
        if let Some((shape, _)) = field_child(root, key) {
            path.push(Pe::Field(key.clone()));
            compare(lm.get(key), rm.get(key), shape, &mut path, &mut d);
            path.pop();
        }
    }
    let metadata = metadata_path();
    for set in [&mut d.added, &mut d.modified, &mut d.removed] {
        set.remove(&metadata);
    }
    d
}

fn compare(l: Option<&Value>, r: Option<&Value>, shape: Shape, path: &mut Path, d: &mut Diff) {
    if path.len() > MAX_DEPTH {
        return;
    }
    // Equal values differ nowhere below: a write's untouched parts (a status write's spec)
    // are passed over without a path made for each of their fields.
    if let (Some(a), Some(b)) = (l, r)
        && a == b
    {
        return;
    }
    match pair_kind(shape, l, r) {
        Kind::Leaf => {
            if !path.is_empty() {
                match (l, r) {
                    (None, Some(_)) => d.added.insert(path.clone()),
                    (Some(_), None) => d.removed.insert(path.clone()),
                    (Some(a), Some(b)) if a != b => d.modified.insert(path.clone()),
                    _ => false,
                };
            }
            return;
        }
        Kind::Struct => {
            let lm = l.and_then(Value::as_object);
            let rm = r.and_then(Value::as_object);
            for (k, lv) in lm.into_iter().flatten() {
                if let Some((child_shape, _)) = field_child(shape, k) {
                    path.push(Pe::Field(k.clone()));
                    compare(Some(lv), rm.and_then(|m| m.get(k)), child_shape, path, d);
                    path.pop();
                }
            }
            for (k, rv) in rm.into_iter().flatten() {
                if lm.is_some_and(|m| m.contains_key(k)) {
                    continue;
                }
                if let Some((child_shape, _)) = field_child(shape, k) {
                    path.push(Pe::Field(k.clone()));
                    compare(None, Some(rv), child_shape, path, d);
                    path.pop();
                }
            }
        }
        Kind::Set => {
            let lset: BTreeSet<Pe> = list_items(l).iter().map(value_pe).collect();
            let rset: BTreeSet<Pe> = list_items(r).iter().map(value_pe).collect();
            for pe in lset.difference(&rset) {
                path.push(pe.clone());
                d.removed.insert(path.clone());
                path.pop();
            }
            for pe in rset.difference(&lset) {
                path.push(pe.clone());
                d.added.insert(path.clone());
                path.pop();
            }
        }
        Kind::Map { keys, item } => {
            let mut rindex: BTreeMap<Pe, &Value> = BTreeMap::new();
            for element in list_items(r) {
                rindex.entry(key_pe(element, &keys)).or_insert(element);
            }
            let mut seen: BTreeSet<Pe> = BTreeSet::new();
            for element in list_items(l) {
                let pe = key_pe(element, &keys);
                if !seen.insert(pe.clone()) {
                    continue;
                }
                let other = rindex.get(&pe).copied();
                path.push(pe);
                compare(Some(element), other, item, path, d);
                path.pop();
            }
            for (pe, element) in rindex {
                if !seen.contains(&pe) {
                    path.push(pe);
                    compare(None, Some(element), item, path, d);
                    path.pop();
                }
            }
        }
    }
    if !path.is_empty() {
        if l.is_none() {
            d.added.insert(path.clone());
        } else if r.is_none() {
            d.removed.insert(path.clone());
        }
    }
}

/// Merges an apply configuration `r` into `l` (structured-merge-diff's `Merge`, except that list
/// elements keep the live order with new ones appended).
fn merge(l: Option<&Value>, r: Option<&Value>, shape: Shape, depth: usize) -> Option<Value> {
    let (l, r) = match (l, r) {
        (None, None) => return None,
        (Some(v), None) | (None, Some(v)) => return Some(v.clone()),
        (Some(l), Some(r)) => (l, r),
    };
    if depth > MAX_DEPTH {
        return Some(r.clone());
    }
    match pair_kind(shape, Some(l), Some(r)) {
        Kind::Leaf => Some(r.clone()),
        Kind::Struct => {
            let (live, config) = (l.as_object(), r.as_object());
            // A field the configuration merges into is copied by that merge, not here too.
            let merged_below = |k: &str| {
                config.is_some_and(|c| c.contains_key(k)) && field_child(shape, k).is_some()
            };
            let mut out: Map<String, Value> = live
                .into_iter()
                .flatten()
                .filter(|(k, _)| !merged_below(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            for (k, rv) in config.into_iter().flatten() {
                match field_child(shape, k) {
                    Some((child_shape, _)) => {
                        let current = live.and_then(|m| m.get(k));
                        if let Some(v) = merge(current, Some(rv), child_shape, depth + 1) {
                            out.insert(k.clone(), v);
                        }
                    }
                    // Untracked fields (apiVersion, kind, metadata.name, …) keep their live
                    // value; the configuration only fills them in when they are missing.
                    None => {
                        if !out.contains_key(k) {
                            out.insert(k.clone(), rv.clone());
                        }
                    }
                }
            }
            Some(Value::Object(out))
        }
        Kind::Set => {
            let mut out: Vec<Value> = list_items(Some(l)).to_vec();
            let mut seen: BTreeSet<Pe> = out.iter().map(value_pe).collect();
            for item in list_items(Some(r)) {
                if seen.insert(value_pe(item)) {
                    out.push(item.clone());
                }
            }
            Some(Value::Array(out))
        }
        Kind::Map { keys, item } => {
            let mut rindex: BTreeMap<Pe, &Value> = BTreeMap::new();
            for element in list_items(Some(r)) {
                rindex.entry(key_pe(element, &keys)).or_insert(element);
            }
            let mut out = Vec::new();
            let mut seen: BTreeSet<Pe> = BTreeSet::new();
            for element in list_items(Some(l)) {
                let pe = key_pe(element, &keys);
                let first = seen.insert(pe.clone());
                match rindex.get(&pe) {
                    Some(other) if first => {
                        if let Some(v) = merge(Some(element), Some(other), item, depth + 1) {
                            out.push(v);
                        }
                    }
                    _ => out.push(element.clone()),
                }
            }
            for element in list_items(Some(r)) {
                if seen.insert(key_pe(element, &keys)) {
                    out.push(element.clone());
                }
            }
            Some(Value::Array(out))
        }
    }
}

/// Removes every node whose path is in `set`, with everything under it.
fn remove_paths(v: &mut Value, shape: Shape, path: &mut Path, set: &FieldSet) {
    if path.len() > MAX_DEPTH {
        return;
    }
    match kind_of(shape, v) {
        Kind::Leaf => {}
        Kind::Struct => {
            if let Value::Object(m) = v {
                m.retain(|k, child| {
                    let Some((child_shape, _)) = field_child(shape, k) else {
                        return true;
                    };
                    path.push(Pe::Field(k.clone()));
                    let keep = !set.contains(path);
                    if keep && has_descendant(set, path) {
                        remove_paths(child, child_shape, path, set);
                    }
                    path.pop();
                    keep
                });
            }
        }
        Kind::Set => {
            if let Value::Array(a) = v {
                a.retain(|item| {
                    path.push(value_pe(item));
                    let keep = !set.contains(path);
                    path.pop();
                    keep
                });
            }
        }
        Kind::Map { keys, item } => {
            if let Value::Array(a) = v {
                a.retain_mut(|element| {
                    path.push(key_pe(element, &keys));
                    let keep = !set.contains(path);
                    if keep && has_descendant(set, path) {
                        remove_paths(element, item, path, set);
                    }
                    path.pop();
                    keep
                });
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Scopes and managedFields entries

/// Which part of the object a write may touch.
#[derive(Debug, Clone, Copy)]
enum Scope {
    /// The `/status` subresource: only `.status`.
    Status,
    /// The main resource, optionally without `.status`.
    Main { ignore_status: bool },
}

impl Scope {
    fn of(manager: &Manager) -> Self {
        if manager.subresource == Some("status") {
            Scope::Status
        } else {
            Scope::Main {
                ignore_status: manager.ignore_status,
            }
        }
    }

    fn tracks(self, path: &Path) -> bool {
        let top = match path.first() {
            Some(Pe::Field(f)) => f.as_str(),
            _ => "",
        };
        self.tracks_field(top) && !is_metadata_path(path)
    }

    /// Whether paths under the top-level field `key` are in scope ([`Scope::tracks`], but for
    /// the `metadata` node itself).
    fn tracks_field(self, key: &str) -> bool {
        match self {
            Scope::Status => key == "status",
            Scope::Main { ignore_status } => !(ignore_status && key == "status"),
        }
    }

    fn track(self, mut set: FieldSet) -> FieldSet {
        set.retain(|p| self.tracks(p));
        set
    }
}

/// The part of an apply configuration the endpoint considers, without `metadata.managedFields`.
fn scoped_config(applied: &Map<String, Value>, scope: Scope) -> Value {
    let mut out = Map::new();
    for (k, v) in applied {
        let keep = match scope {
            Scope::Status => matches!(k.as_str(), "status" | "apiVersion" | "kind"),
            Scope::Main { ignore_status } => !(ignore_status && k == "status"),
        };
        if keep {
            out.insert(k.clone(), v.clone());
        }
    }
    if let Some(Value::Object(meta)) = out.get_mut("metadata") {
        meta.retain(|k, _| k != "managedFields");
    }
    Value::Object(out)
}

#[derive(Debug, Clone)]
struct Entry {
    manager: String,
    operation: Operation,
    api_version: Option<String>,
    time: Option<String>,
    subresource: Option<String>,
    set: FieldSet,
    /// The entry's `fieldsV1` as stored, kept while `set` is still what it says: most writes
    /// leave most entries' fields alone, and writing the set out again is a large part of a
    /// write's cost. Stored entries were written by [`set_managed_fields`], so the copy is what
    /// serializing `set` would give.
    fields: Option<Value>,
    /// Whether `set` was read from `fields`. A stored entry a non-apply write does not touch
    /// is not read at all ([`stored_entries`]): its `set` stays empty and `fields` says it.
    parsed: bool,
}

impl Entry {
    /// The stored entry `raw` of `identity` with its `fields`, read as `set` (`None`: not
    /// read).
    fn stored(
        raw: &Value,
        identity: (&str, Operation, Option<&str>),
        set: Option<FieldSet>,
        fields: Option<Value>,
    ) -> Entry {
        let (manager, operation, subresource) = identity;
        Entry {
            manager: manager.to_owned(),
            operation,
            api_version: string_at(raw, "apiVersion"),
            time: string_at(raw, "time"),
            subresource: subresource.map(str::to_owned),
            parsed: set.is_some(),
            set: set.unwrap_or_default(),
            fields,
        }
    }

    /// Reads the entry's stored `fieldsV1` into `set`, if not read yet.
    fn read(&mut self) {
        if !self.parsed {
            self.set = self
                .fields
                .as_ref()
                .map(parse_fields_v1)
                .unwrap_or_default();
            self.parsed = true;
        }
    }

    /// Whether the entry owns any of `paths` (an unread entry: as its stored fields say).
    fn holds_any<'p>(&self, mut paths: impl Iterator<Item = &'p Path>) -> bool {
        match (&self.fields, self.parsed) {
            (Some(fields), false) => {
                // Paths come sorted, most under a few top-level fields: an entry without the
                // field holds none of them.
                let mut last: Option<(&Pe, bool)> = None;
                paths.any(|p| {
                    let under = match (p.first(), last) {
                        (Some(first), Some((seen, under))) if first == seen => under,
                        (Some(first @ Pe::Field(_)), _) => {
                            let under = fields.get(pe_key(first)).is_some();
                            last = Some((first, under));
                            under
                        }
                        _ => true,
                    };
                    under && holds(fields, p)
                })
            }
            _ => paths.any(|p| self.set.contains(p)),
        }
    }

    /// Keeps the paths `keep` accepts, dropping the stored `fieldsV1` if any path goes.
    fn retain(&mut self, keep: impl FnMut(&Path) -> bool) {
        let before = self.set.len();
        self.set.retain(keep);
        if self.set.len() != before {
            self.fields = None;
        }
    }

    /// Whether the entry owns nothing (and is dropped).
    fn is_empty(&self) -> bool {
        match (&self.fields, self.parsed) {
            (Some(fields), false) => fields.as_object().is_none_or(Map::is_empty),
            _ => self.set.is_empty(),
        }
    }

    fn is(&self, manager: &str, operation: Operation, subresource: Option<&str>) -> bool {
        self.manager == manager
            && self.operation == operation
            && self.subresource.as_deref() == subresource
    }

    fn to_value(&self) -> Value {
        let mut m = Map::new();
        m.insert("manager".to_owned(), Value::from(self.manager.clone()));
        m.insert("operation".to_owned(), Value::from(self.operation.as_str()));
        if let Some(v) = &self.api_version {
            m.insert("apiVersion".to_owned(), Value::from(v.clone()));
        }
        if let Some(t) = &self.time {
            m.insert("time".to_owned(), Value::from(t.clone()));
        }
        m.insert("fieldsType".to_owned(), Value::from("FieldsV1"));
        let fields = match &self.fields {
            Some(stored) => stored.clone(),
            None => fields_v1(&self.set),
        };
        m.insert("fieldsV1".to_owned(), fields);
        if let Some(s) = &self.subresource {
            m.insert("subresource".to_owned(), Value::from(s.clone()));
        }
        Value::Object(m)
    }
}

fn string_at(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_owned)
}

fn managed_fields_of(object: &Value) -> Option<&Value> {
    object.get("metadata")?.get("managedFields")
}

/// A managedFields entry's manager, operation and subresource; `None` for an entry that is not
/// understood (no manager, an unknown operation, fields other than FieldsV1).
fn identity(raw: &Value) -> Option<(&str, Operation, Option<&str>)> {
    let manager = raw.get("manager").and_then(Value::as_str)?;
    let operation = raw
        .get("operation")
        .and_then(Value::as_str)
        .and_then(Operation::parse)?;
    if raw
        .get("fieldsType")
        .is_some_and(|t| t.as_str() != Some("FieldsV1"))
    {
        return None;
    }
    let subresource = raw
        .get("subresource")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty());
    Some((manager, operation, subresource))
}

/// Parses managedFields leniently: entries that are not understood are dropped, and entries
/// with the same identity (manager, operation, subresource) are merged.
fn parse_entries(v: Option<&Value>) -> Vec<Entry> {
    let mut out: Vec<Entry> = Vec::new();
    for raw in v.and_then(Value::as_array).into_iter().flatten() {
        let Some((manager, operation, subresource)) = identity(raw) else {
            continue;
        };
        let stored = raw.get("fieldsV1");
        let set = stored.map(parse_fields_v1).unwrap_or_default();
        if let Some(existing) = out
            .iter_mut()
            .find(|e| e.is(manager, operation, subresource))
        {
            existing.set.extend(set);
            existing.fields = None;
            continue;
        }
        let fields = stored.filter(|v| v.is_object()).cloned();
        out.push(Entry::stored(
            raw,
            (manager, operation, subresource),
            Some(set),
            fields,
        ));
    }
    out
}

/// The stored managedFields `v` for a non-apply write of `manager` that takes `changed` and
/// lets go of `removed`: as [`parse_entries`], except that an entry holding none of those
/// paths (and not the writer's own, which the write extends) is kept as stored, unread.
fn stored_entries(
    v: Option<&Value>,
    manager: &Manager,
    changed: &FieldSet,
    removed: &FieldSet,
) -> Vec<Entry> {
    let mut entries = parse_entries_lazily(v);
    for e in entries.iter_mut().filter(|e| !e.parsed) {
        let own = !changed.is_empty() && e.is(manager.name, Operation::Update, manager.subresource);
        if own || e.holds_any(changed.iter().chain(removed)) {
            e.read();
        }
    }
    entries
}

/// [`parse_entries`] without reading any entry's fields, unless two entries of one identity
/// must be merged.
fn parse_entries_lazily(v: Option<&Value>) -> Vec<Entry> {
    let stored = v.and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
    let mut out: Vec<Entry> = Vec::with_capacity(stored.len());
    for raw in stored {
        let Some((manager, operation, subresource)) = identity(raw) else {
            continue;
        };
        let fields = raw.get("fieldsV1").filter(|f| f.is_object());
        if fields.is_none() || out.iter().any(|e| e.is(manager, operation, subresource)) {
            // Nothing stored to keep, or entries to merge: read them all.
            return parse_entries(v);
        }
        out.push(Entry::stored(
            raw,
            (manager, operation, subresource),
            None,
            fields.cloned(),
        ));
    }
    out
}

/// Whether the FieldsV1 `fields` holds `path` as [`parse_fields_v1`] reads it: the path's
/// node exists and is a leaf or is marked a member (`"."`).
fn holds(fields: &Value, path: &Path) -> bool {
    if path.is_empty() {
        return false;
    }
    let mut node = fields;
    for pe in path {
        let Value::Object(children) = node else {
            return false;
        };
        let found = children.get(&pe_key(pe)).or_else(|| match pe {
            // Keys and values are stored canonical; one written otherwise still counts.
            Pe::Key(_) | Pe::Value(_) => children
                .iter()
                .find(|(k, _)| parse_pe(k).as_ref() == Some(pe))
                .map(|(_, child)| child),
            Pe::Field(_) | Pe::Index(_) => None,
        });
        match found {
            Some(child) => node = child,
            None => return false,
        }
    }
    match node {
        Value::Object(m) => m.is_empty() || m.contains_key("."),
        _ => true,
    }
}

fn set_managed_fields(object: &mut Value, entries: &[Entry]) {
    let Value::Object(root) = object else {
        return;
    };
    if entries.is_empty() {
        if let Some(Value::Object(meta)) = root.get_mut("metadata") {
            meta.retain(|k, _| k != "managedFields");
        }
        return;
    }
    let meta = root
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(Map::new());
    }
    if let Value::Object(meta) = meta {
        meta.insert(
            "managedFields".to_owned(),
            Value::Array(entries.iter().map(Entry::to_value).collect()),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const T1: &str = "2026-11-27T10:00:00Z";
    const T2: &str = "2026-11-27T11:00:00Z";
    const T3: &str = "2026-11-27T12:00:00Z";
    const API: &str = "certinext.io/v1alpha1";

    /// A CRD schema exercising every list and map flavour.
    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "apiVersion": {"type": "string"},
                "kind": {"type": "string"},
                "metadata": {"type": "object"},
                "spec": {
                    "type": "object",
                    "properties": {
                        "a": {"type": "string"},
                        "b": {"type": "string"},
                        "replicas": {"type": "integer"},
                        "args": {"type": "array", "items": {"type": "string"}},
                        "tags": {
                            "type": "array",
                            "x-kubernetes-list-type": "set",
                            "items": {"type": "string"}
                        },
                        "containers": {
                            "type": "array",
                            "x-kubernetes-list-type": "map",
                            "x-kubernetes-list-map-keys": ["name"],
                            "items": {
                                "type": "object",
                                "properties": {
                                    "name": {"type": "string"},
                                    "image": {"type": "string"},
                                    "ports": {"type": "array", "items": {"type": "integer"}}
                                }
                            }
                        },
                        "selector": {
                            "type": "object",
                            "x-kubernetes-map-type": "atomic",
                            "additionalProperties": {"type": "string"}
                        },
                        "settings": {
                            "type": "object",
                            "additionalProperties": {"type": "string"}
                        },
                        "config": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
                    }
                },
                "status": {
                    "type": "object",
                    "properties": {
                        "phase": {"type": "string"},
                        "conditions": {
                            "type": "array",
                            "x-kubernetes-list-type": "map",
                            "x-kubernetes-list-map-keys": ["type"],
                            "items": {
                                "type": "object",
                                "properties": {
                                    "type": {"type": "string"},
                                    "status": {"type": "string"},
                                    "reason": {"type": "string"}
                                }
                            }
                        }
                    }
                }
            }
        })
    }

    fn widget(metadata: Value, spec: Value) -> Value {
        let mut meta = json!({"name": "w1", "namespace": "default"});
        if let (Some(m), Some(extra)) = (meta.as_object_mut(), metadata.as_object()) {
            m.extend(extra.clone());
        }
        json!({"apiVersion": API, "kind": "Widget", "metadata": meta, "spec": spec})
    }

    fn spec(spec: Value) -> Value {
        widget(json!({}), spec)
    }

    fn status(status: Value) -> Value {
        json!({"apiVersion": API, "kind": "Widget", "metadata": {"name": "w1"}, "status": status})
    }

    fn entries(object: &Value) -> Vec<Value> {
        object["metadata"]["managedFields"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    fn entry(object: &Value, manager: &str, op: &str, sub: Option<&str>) -> Option<Value> {
        entries(object).into_iter().find(|e| {
            e["manager"] == manager
                && e["operation"] == op
                && e.get("subresource").and_then(Value::as_str) == sub
        })
    }

    /// The human paths a manager's entry owns.
    fn owned(object: &Value, manager: &str, op: &str, sub: Option<&str>) -> Vec<String> {
        entry(object, manager, op, sub)
            .map(|e| {
                parse_fields_v1(&e["fieldsV1"])
                    .iter()
                    .map(path_string)
                    .collect()
            })
            .unwrap_or_default()
    }

    fn managers(object: &Value) -> Vec<String> {
        entries(object)
            .iter()
            .map(|e| {
                let sub = e.get("subresource").and_then(Value::as_str).unwrap_or("");
                format!(
                    "{}/{}/{sub}",
                    e["manager"].as_str().unwrap_or("?"),
                    e["operation"].as_str().unwrap_or("?")
                )
            })
            .collect()
    }

    fn apply_ok(live: Option<&Value>, applied: &Value, manager: &Manager, now: &str) -> Value {
        let s = schema();
        match apply(live, applied, manager, false, Some(&s), now) {
            Ok(v) => v,
            Err(c) => panic!("unexpected conflicts: {c:?}"),
        }
    }

    fn conflicts_of(live: &Value, applied: &Value, manager: &Manager) -> Vec<Conflict> {
        let s = schema();
        match apply(Some(live), applied, manager, false, Some(&s), T3) {
            Ok(v) => panic!("expected conflicts, got {v}"),
            Err(c) => c,
        }
    }

    fn conflict(manager: &str, field: &str) -> Conflict {
        Conflict {
            manager: manager.to_owned(),
            field: field.to_owned(),
        }
    }

    #[test]
    fn field_set_covers_nested_lists_maps_and_metadata() {
        let object = json!({
            "apiVersion": API,
            "kind": "Widget",
            "metadata": {
                "name": "w1", "namespace": "default", "uid": "u-1", "resourceVersion": "7",
                "generation": 2, "creationTimestamp": T1, "managedFields": [],
                "labels": {"app": "web"},
                "finalizers": ["a.io/x", "b.io/y"],
                "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "cm", "uid": "o-1"}]
            },
            "spec": {
                "replicas": 2,
                "args": ["--x", "--y"],
                "tags": ["blue", "green"],
                "containers": [{"name": "app", "image": "img:1", "ports": [80]}],
                "selector": {"app": "web"},
                "settings": {"k": "v"},
                "config": {"nested": {"deep": 1}, "list": [1, 2]}
            },
            "status": {"phase": "Ready"}
        });
        let expected = json!({
            "f:metadata": {
                "f:finalizers": {"v:\"a.io/x\"": {}, "v:\"b.io/y\"": {}},
                "f:labels": {"f:app": {}},
                "f:ownerReferences": {
                    "k:{\"uid\":\"o-1\"}": {
                        ".": {}, "f:apiVersion": {}, "f:kind": {}, "f:name": {}, "f:uid": {}
                    }
                }
            },
            "f:spec": {
                "f:args": {},
                "f:config": {"f:list": {}, "f:nested": {".": {}, "f:deep": {}}},
                "f:containers": {
                    "k:{\"name\":\"app\"}": {".": {}, "f:image": {}, "f:name": {}, "f:ports": {}}
                },
                "f:replicas": {},
                "f:selector": {},
                "f:settings": {"f:k": {}},
                "f:tags": {"v:\"blue\"": {}, "v:\"green\"": {}}
            },
            "f:status": {"f:phase": {}}
        });
        let s = schema();
        // Same content and the same (sorted) key order as Kubernetes serializes.
        assert_eq!(
            field_set(&object, Some(&s)).to_string(),
            expected.to_string()
        );
    }

    #[test]
    fn field_set_without_schema_treats_lists_as_atomic_except_metadata() {
        let object = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "d", "finalizers": ["f"], "annotations": {"a": "1"}},
            "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}, "empty": {}}
        });
        let expected = json!({
            "f:metadata": {"f:annotations": {"f:a": {}}, "f:finalizers": {"v:\"f\"": {}}},
            "f:spec": {"f:empty": {}, "f:template": {"f:spec": {"f:containers": {}}}}
        });
        assert_eq!(field_set(&object, None).to_string(), expected.to_string());
    }

    #[test]
    fn a_stored_entry_holds_exactly_the_paths_its_fields_parse_to() {
        let s = schema();
        let object = spec(json!({"containers": [{"name": "a", "image": "x", "ports": [
            {"containerPort": 80, "protocol": "TCP"}]}], "tags": ["t", "u"], "labels": {"k": "v"}}));
        let fields = field_set(&object, Some(&s));
        let set = parse_fields_v1(&fields);
        assert_eq!(set.len(), 7, "{set:?}");
        for path in &set {
            assert!(holds(&fields, path), "{}", path_string(path));
        }
        // The parents of members are not members themselves, and absent paths are not held.
        let spec_path = vec![Pe::Field("spec".into())];
        assert!(!set.contains(&spec_path) && !holds(&fields, &spec_path));
        let absent = vec![Pe::Field("spec".into()), Pe::Field("replicas".into())];
        assert!(!holds(&fields, &absent));
        assert!(!holds(&fields, &Vec::new()));
        // A key stored in another order or spacing is the same key.
        let stored = json!({"f:spec": {"f:c": {"k:{ \"port\": 80, \"name\": \"x\" }": {}}}});
        for path in &parse_fields_v1(&stored) {
            assert!(holds(&stored, path), "{}", path_string(path));
        }
    }

    #[test]
    fn a_write_reads_only_the_entries_it_takes_fields_from() {
        let s = schema();
        let mut object = widget(
            json!({}),
            json!({"replicas": 1, "containers": [{"name": "a", "image": "x"}]}),
        );
        record_update(None, &mut object, &Manager::new("maker"), Some(&s), T1);
        let mut with_status = object.clone();
        with_status["status"] = json!({"phase": "Up"});
        record_update(
            Some(&object),
            &mut with_status,
            &Manager::status("watcher"),
            Some(&s),
            T2,
        );
        // A stored entry whose fields the write does not touch stays unread and as stored.
        let stored = with_status.clone();
        let touched = |object: &Value, changed: Value| {
            let changed: FieldSet = parse_fields_v1(&changed);
            let entries = stored_entries(
                managed_fields_of(object),
                &Manager::new("scaler"),
                &changed,
                &FieldSet::new(),
            );
            entries
                .iter()
                .map(|e| (e.manager.clone(), e.parsed))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            touched(&stored, json!({"f:spec": {"f:replicas": {}}})),
            [("maker".to_owned(), true), ("watcher".to_owned(), false)]
        );
        assert_eq!(
            touched(&stored, json!({"f:metadata": {"f:labels": {"f:new": {}}}})),
            [("maker".to_owned(), false), ("watcher".to_owned(), false)]
        );
        // And the write's result is the one every entry read would give.
        let mut scaled = stored.clone();
        scaled["spec"]["replicas"] = json!(3);
        record_update(
            Some(&stored),
            &mut scaled,
            &Manager::new("scaler"),
            Some(&s),
            T3,
        );
        assert_eq!(owned(&scaled, "scaler", "Update", None), [".spec.replicas"]);
        let maker = owned(&scaled, "maker", "Update", None);
        assert!(!maker.contains(&".spec.replicas".to_owned()), "{maker:?}");
        assert!(
            maker.contains(&".spec.containers[name=\"a\"].image".to_owned()),
            "{maker:?}"
        );
        assert_eq!(
            entry(&scaled, "watcher", "Update", Some("status")),
            entry(&stored, "watcher", "Update", Some("status")),
            "untouched: kept as stored"
        );
    }

    #[test]
    fn an_apply_reads_only_the_entries_it_takes_or_frees_fields_of() {
        let s = schema();
        let mut object = widget(
            json!({}),
            json!({"replicas": 1, "containers": [{"name": "a", "image": "x"}]}),
        );
        record_update(None, &mut object, &Manager::new("maker"), Some(&s), T1);
        // The maker's entry as another server may have written it: an element key with a
        // space, which reading the entry and writing it out again makes canonical.
        let containers =
            &mut object["metadata"]["managedFields"][0]["fieldsV1"]["f:spec"]["f:containers"];
        let element = containers
            .as_object_mut()
            .and_then(|c| c.remove(r#"k:{"name":"a"}"#))
            .expect("the container's element");
        containers[r#"k:{"name": "a"}"#] = element;
        let stored = entry(&object, "maker", "Update", None);

        // A controller applying its status, again and again, never reads the maker's entry.
        let ctl = Manager::status("ctl");
        let first = apply_ok(Some(&object), &status(json!({"phase": "Up"})), &ctl, T2);
        let second = apply_ok(Some(&first), &status(json!({"phase": "Down"})), &ctl, T3);
        assert_eq!(second["status"], json!({"phase": "Down"}));
        assert_eq!(entry(&second, "maker", "Update", None), stored);
        assert_eq!(
            owned(&second, "ctl", "Apply", Some("status")),
            [".status.phase"]
        );

        // Applying fields no longer applied frees them, and an apply taking the maker's field
        // reads its entry (written out canonical, without the field taken).
        let nothing = json!({"apiVersion": API, "kind": "Widget", "metadata": {"name": "w1"}});
        let third = apply_ok(Some(&second), &nothing, &ctl, T3);
        assert_eq!(third.get("status"), None, "{third}");
        assert_eq!(entry(&third, "maker", "Update", None), stored);
        let s = schema();
        let scaled = apply(
            Some(&third),
            &spec(json!({"replicas": 3})),
            &Manager::new("scaler"),
            true,
            Some(&s),
            T3,
        )
        .expect("forced");
        let maker = entry(&scaled, "maker", "Update", None).expect("the maker's entry");
        assert!(
            maker["fieldsV1"]["f:spec"]["f:containers"]
                .get(r#"k:{"name":"a"}"#)
                .is_some()
        );
        assert_eq!(maker["fieldsV1"]["f:spec"].get("f:replicas"), None);
    }

    #[test]
    fn fields_v1_round_trips_and_keys_are_canonical() {
        let s = schema();
        let object = spec(json!({"containers": [{"name": "a", "image": "x"}], "tags": ["t"]}));
        let fs = field_set(&object, Some(&s));
        assert_eq!(fields_v1(&parse_fields_v1(&fs)), fs);
        // Whitespace and key order in a stored `k:` are normalized.
        let stored = json!({"f:spec": {"f:c": {"k:{ \"port\": 80, \"name\": \"x\" }": {}}}});
        let parsed = parse_fields_v1(&stored);
        let paths: Vec<String> = parsed.iter().map(path_string).collect();
        assert_eq!(paths, vec![".spec.c[name=\"x\",port=80]"]);
        assert_eq!(
            fields_v1(&parsed),
            json!({"f:spec": {"f:c": {"k:{\"name\":\"x\",\"port\":80}": {}}}})
        );
    }

    #[test]
    fn fields_v1_nests_members_with_children_and_closes_deep_branches_before_siblings() {
        let f = |name: &str| Pe::Field(name.to_owned());
        let set: FieldSet = [
            vec![f("metadata"), f("labels"), f("app")],
            vec![f("spec")],
            vec![f("spec"), f("a"), f("b"), f("c")],
            vec![f("spec"), f("a"), f("d")],
            vec![f("spec"), f("list"), Pe::Key(r#"{"name":"x"}"#.to_owned())],
            vec![
                f("spec"),
                f("list"),
                Pe::Key(r#"{"name":"x"}"#.to_owned()),
                f("port"),
            ],
            vec![f("spec"), f("tags"), Pe::Value(r#""t""#.to_owned())],
            vec![f("status")],
        ]
        .into_iter()
        .collect();
        let fields = fields_v1(&set);
        assert_eq!(
            fields,
            json!({
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {
                    ".": {},
                    "f:a": {"f:b": {"f:c": {}}, "f:d": {}},
                    "f:list": {r#"k:{"name":"x"}"#: {".": {}, "f:port": {}}},
                    "f:tags": {r#"v:"t""#: {}},
                },
                "f:status": {},
            })
        );
        assert_eq!(parse_fields_v1(&fields), set);
        assert_eq!(fields_v1(&FieldSet::new()), json!({}));
    }

    #[test]
    fn first_apply_creates_object_and_entry() {
        let applied = widget(
            json!({"labels": {"app": "web"}}),
            json!({"replicas": 1, "a": "x"}),
        );
        let out = apply_ok(None, &applied, &Manager::new("alice"), T1);
        assert_eq!(out["spec"], json!({"replicas": 1, "a": "x"}));
        assert_eq!(out["metadata"]["name"], "w1");
        assert_eq!(out["metadata"]["labels"], json!({"app": "web"}));
        assert_eq!(
            out["metadata"]["managedFields"],
            json!([{
                "manager": "alice",
                "operation": "Apply",
                "apiVersion": API,
                "time": T1,
                "fieldsType": "FieldsV1",
                "fieldsV1": {
                    "f:metadata": {"f:labels": {"f:app": {}}},
                    "f:spec": {"f:a": {}, "f:replicas": {}}
                }
            }])
        );
    }

    #[test]
    fn second_manager_applying_other_fields_coexists() {
        let v1 = apply_ok(
            None,
            &spec(json!({"replicas": 1, "a": "x"})),
            &Manager::new("alice"),
            T1,
        );
        let v2 = apply_ok(
            Some(&v1),
            &spec(json!({"b": "y"})),
            &Manager::new("bob"),
            T2,
        );
        assert_eq!(v2["spec"], json!({"replicas": 1, "a": "x", "b": "y"}));
        assert_eq!(managers(&v2), vec!["alice/Apply/", "bob/Apply/"]);
        assert_eq!(
            owned(&v2, "alice", "Apply", None),
            vec![".spec.a", ".spec.replicas"]
        );
        assert_eq!(owned(&v2, "bob", "Apply", None), vec![".spec.b"]);
        // alice's entry is untouched, time included.
        assert_eq!(
            entry(&v2, "alice", "Apply", None).map(|e| e["time"].clone()),
            Some(json!(T1))
        );
    }

    #[test]
    fn an_entry_a_write_leaves_alone_keeps_its_fields_v1_as_stored() {
        let mut v1 = apply_ok(
            None,
            &spec(json!({"replicas": 1, "a": "x"})),
            &Manager::new("alice"),
            T1,
        );
        // The same set as this server writes it, with its keys in another order: only a
        // copy of what was stored can come out this way.
        let stored = json!({"f:spec": {"f:replicas": {}, "f:a": {}}});
        v1["metadata"]["managedFields"][0]["fieldsV1"] = stored.clone();
        let fields_of = |object: &Value, manager: &str| {
            entry(object, manager, "Apply", None).map(|e| e["fieldsV1"].to_string())
        };

        let v2 = apply_ok(
            Some(&v1),
            &spec(json!({"b": "y"})),
            &Manager::new("bob"),
            T2,
        );
        assert_eq!(fields_of(&v2, "alice"), Some(stored.to_string()));

        // A main-resource write that sends the managedFields back as read keeps them too.
        let mut put = v2.clone();
        put["spec"]["c"] = json!("z");
        record_update(
            Some(&v2),
            &mut put,
            &Manager::new("carol"),
            Some(&schema()),
            T3,
        );
        assert_eq!(fields_of(&put, "alice"), Some(stored.to_string()));

        // An entry that loses a field is written out again.
        let s = schema();
        let forced = apply(
            Some(&v2),
            &spec(json!({"a": "w"})),
            &Manager::new("bob"),
            true,
            Some(&s),
            T3,
        )
        .unwrap_or_else(|c| panic!("a forced apply conflicts: {c:?}"));
        assert_eq!(
            fields_of(&forced, "alice"),
            Some(json!({"f:spec": {"f:replicas": {}}}).to_string())
        );

        // Entries a client sends of its own are written as this server writes them.
        let mut reset = v2.clone();
        reset["metadata"]["managedFields"] = json!([{
            "manager": "alice", "operation": "Apply", "apiVersion": API, "time": T1,
            "fieldsType": "FieldsV1", "fieldsV1": stored
        }]);
        record_update(Some(&v2), &mut reset, &Manager::new("carol"), Some(&s), T3);
        assert_eq!(
            fields_of(&reset, "alice"),
            Some(json!({"f:spec": {"f:a": {}, "f:replicas": {}}}).to_string())
        );
    }

    #[test]
    fn conflicting_apply_without_force_names_manager_and_field() {
        let v1 = apply_ok(
            None,
            &spec(json!({"replicas": 1, "a": "x"})),
            &Manager::new("alice"),
            T1,
        );
        let conflicts = conflicts_of(
            &v1,
            &spec(json!({"replicas": 3, "b": "y"})),
            &Manager::new("bob"),
        );
        assert_eq!(conflicts, vec![conflict("alice", ".spec.replicas")]);
        assert_eq!(
            conflict_message(&conflicts),
            "Apply failed with 1 conflict: conflict with \"alice\": .spec.replicas"
        );
    }

    #[test]
    fn forced_apply_takes_ownership_from_the_other_manager() {
        let s = schema();
        let v1 = apply_ok(
            None,
            &spec(json!({"replicas": 1, "a": "x"})),
            &Manager::new("alice"),
            T1,
        );
        let v2 = apply(
            Some(&v1),
            &spec(json!({"replicas": 3})),
            &Manager::new("bob"),
            true,
            Some(&s),
            T2,
        )
        .expect("force never conflicts");
        assert_eq!(v2["spec"], json!({"replicas": 3, "a": "x"}));
        assert_eq!(owned(&v2, "alice", "Apply", None), vec![".spec.a"]);
        assert_eq!(owned(&v2, "bob", "Apply", None), vec![".spec.replicas"]);
        // alice now conflicts with bob if she insists on her old value.
        let conflicts = conflicts_of(
            &v2,
            &spec(json!({"replicas": 1, "a": "x"})),
            &Manager::new("alice"),
        );
        assert_eq!(conflicts, vec![conflict("bob", ".spec.replicas")]);
    }

    #[test]
    fn forced_apply_drops_managers_left_with_nothing() {
        let s = schema();
        let v1 = apply_ok(None, &spec(json!({"a": "x"})), &Manager::new("alice"), T1);
        let v2 = apply(
            Some(&v1),
            &spec(json!({"a": "z"})),
            &Manager::new("bob"),
            true,
            Some(&s),
            T2,
        )
        .expect("force never conflicts");
        assert_eq!(managers(&v2), vec!["bob/Apply/"]);
    }

    #[test]
    fn field_dropped_from_apply_is_removed_from_the_object() {
        let v1 = apply_ok(
            None,
            &spec(json!({"replicas": 1, "a": "x", "config": {"x": {"y": 1}, "z": 2}})),
            &Manager::new("alice"),
            T1,
        );
        let v2 = apply_ok(
            Some(&v1),
            &spec(json!({"a": "x", "config": {"z": 2}})),
            &Manager::new("alice"),
            T2,
        );
        assert_eq!(v2["spec"], json!({"a": "x", "config": {"z": 2}}));
        assert_eq!(
            owned(&v2, "alice", "Apply", None),
            vec![".spec.a", ".spec.config.z"]
        );
        // A struct whose last owned field goes is removed as a whole.
        let v3 = apply_ok(
            Some(&v2),
            &spec(json!({"a": "x"})),
            &Manager::new("alice"),
            T3,
        );
        assert_eq!(v3["spec"], json!({"a": "x"}));
    }

    #[test]
    fn dropped_field_still_owned_by_another_manager_stays() {
        let v1 = apply_ok(
            None,
            &spec(json!({"replicas": 1, "a": "x"})),
            &Manager::new("alice"),
            T1,
        );
        // Same value: no conflict, both own it.
        let v2 = apply_ok(
            Some(&v1),
            &spec(json!({"replicas": 1})),
            &Manager::new("bob"),
            T2,
        );
        assert_eq!(
            owned(&v2, "alice", "Apply", None),
            vec![".spec.a", ".spec.replicas"]
        );
        assert_eq!(owned(&v2, "bob", "Apply", None), vec![".spec.replicas"]);
        let v3 = apply_ok(
            Some(&v2),
            &spec(json!({"a": "x"})),
            &Manager::new("alice"),
            T3,
        );
        assert_eq!(v3["spec"], json!({"replicas": 1, "a": "x"}));
        assert_eq!(owned(&v3, "alice", "Apply", None), vec![".spec.a"]);
        // Once bob lets go too, it goes.
        let v4 = apply_ok(
            Some(&v3),
            &spec(json!({"b": "y"})),
            &Manager::new("bob"),
            T3,
        );
        assert_eq!(v4["spec"], json!({"a": "x", "b": "y"}));
    }

    #[test]
    fn equal_value_apply_by_two_managers_shares_ownership() {
        let v1 = apply_ok(
            None,
            &spec(json!({"replicas": 2, "containers": [{"name": "app", "image": "i:1"}]})),
            &Manager::new("alice"),
            T1,
        );
        let v2 = apply_ok(
            Some(&v1),
            &spec(json!({"replicas": 2, "containers": [{"name": "app", "image": "i:1"}]})),
            &Manager::new("bob"),
            T2,
        );
        assert_eq!(v2["spec"], v1["spec"]);
        let both = vec![
            ".spec.containers[name=\"app\"]",
            ".spec.containers[name=\"app\"].image",
            ".spec.containers[name=\"app\"].name",
            ".spec.replicas",
        ];
        assert_eq!(owned(&v2, "alice", "Apply", None), both);
        assert_eq!(owned(&v2, "bob", "Apply", None), both);
        // A shared field can then only be changed by one of them with force.
        let conflicts = conflicts_of(&v2, &spec(json!({"replicas": 5})), &Manager::new("bob"));
        assert_eq!(conflicts, vec![conflict("alice", ".spec.replicas")]);
    }

    #[test]
    fn set_lists_merge_and_owners_remove_only_their_values() {
        let meta = |fins: Value| widget(json!({"finalizers": fins}), json!({"a": "x"}));
        let v1 = apply_ok(None, &meta(json!(["a.io/one"])), &Manager::new("alice"), T1);
        let v2 = apply_ok(
            Some(&v1),
            &widget(json!({"finalizers": ["b.io/two", "a.io/one"]}), json!({})),
            &Manager::new("bob"),
            T2,
        );
        assert_eq!(
            v2["metadata"]["finalizers"],
            json!(["a.io/one", "b.io/two"])
        );
        assert_eq!(
            owned(&v2, "bob", "Apply", None),
            vec![
                ".metadata.finalizers[=\"a.io/one\"]",
                ".metadata.finalizers[=\"b.io/two\"]",
                ".spec"
            ]
        );
        // bob stops applying both; a.io/one stays because alice still owns it.
        let v3 = apply_ok(
            Some(&v2),
            &widget(json!({}), json!({"b": "y"})),
            &Manager::new("bob"),
            T3,
        );
        assert_eq!(v3["metadata"]["finalizers"], json!(["a.io/one"]));
        // An empty set owns nothing, so alice applying [] drops her value, and the field that
        // nobody owns anything of any more goes with it.
        let v4 = apply_ok(Some(&v3), &meta(json!([])), &Manager::new("alice"), T3);
        assert_eq!(v4["metadata"].get("finalizers"), None);
        assert_eq!(v4["metadata"]["name"], "w1");
    }

    #[test]
    fn map_lists_merge_by_key_and_owner_removes_its_element() {
        let c = |items: Value| spec(json!({"containers": items}));
        let v1 = apply_ok(
            None,
            &c(json!([{"name": "app", "image": "i:1"}, {"name": "side", "image": "s:1"}])),
            &Manager::new("alice"),
            T1,
        );
        let v2 = apply_ok(
            Some(&v1),
            &c(json!([{"name": "extra", "image": "e:1"}, {"name": "app", "ports": [80]}])),
            &Manager::new("bob"),
            T2,
        );
        assert_eq!(
            v2["spec"]["containers"],
            json!([
                {"name": "app", "image": "i:1", "ports": [80]},
                {"name": "side", "image": "s:1"},
                {"name": "extra", "image": "e:1"}
            ])
        );
        assert_eq!(
            owned(&v2, "bob", "Apply", None),
            vec![
                ".spec.containers[name=\"app\"]",
                ".spec.containers[name=\"app\"].name",
                ".spec.containers[name=\"app\"].ports",
                ".spec.containers[name=\"extra\"]",
                ".spec.containers[name=\"extra\"].image",
                ".spec.containers[name=\"extra\"].name",
            ]
        );
        // alice drops "side": only that element goes.
        let v3 = apply_ok(
            Some(&v2),
            &c(json!([{"name": "app", "image": "i:1"}])),
            &Manager::new("alice"),
            T3,
        );
        assert_eq!(
            v3["spec"]["containers"],
            json!([
                {"name": "app", "image": "i:1", "ports": [80]},
                {"name": "extra", "image": "e:1"}
            ])
        );
        // bob changing alice's image conflicts on the element's field.
        let conflicts = conflicts_of(
            &v3,
            &c(json!([{"name": "app", "image": "i:2"}])),
            &Manager::new("bob"),
        );
        assert_eq!(
            conflicts,
            vec![conflict("alice", ".spec.containers[name=\"app\"].image")]
        );
        // alice dropping image of "app" removes just that field; bob still holds the element.
        let v4 = apply_ok(Some(&v3), &c(json!([])), &Manager::new("alice"), T3);
        assert_eq!(
            v4["spec"]["containers"],
            json!([{"name": "app", "ports": [80]}, {"name": "extra", "image": "e:1"}])
        );
    }

    #[test]
    fn atomic_lists_and_maps_are_replaced_whole_and_conflict_whole() {
        let v1 = apply_ok(
            None,
            &spec(json!({"args": ["--a", "--b"], "selector": {"x": "1", "y": "2"}})),
            &Manager::new("alice"),
            T1,
        );
        assert_eq!(
            owned(&v1, "alice", "Apply", None),
            vec![".spec.args", ".spec.selector"]
        );
        let conflicts = conflicts_of(
            &v1,
            &spec(json!({"args": ["--c"], "selector": {"x": "1"}})),
            &Manager::new("bob"),
        );
        assert_eq!(
            conflicts,
            vec![
                conflict("alice", ".spec.args"),
                conflict("alice", ".spec.selector")
            ]
        );
        let v2 = apply_ok(
            Some(&v1),
            &spec(json!({"args": ["--c"], "selector": {"x": "1"}})),
            &Manager::new("alice"),
            T2,
        );
        assert_eq!(v2["spec"], json!({"args": ["--c"], "selector": {"x": "1"}}));
    }

    #[test]
    fn built_in_types_without_schema_use_atomic_lists() {
        let d = |image: &str| {
            json!({
                "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
                "spec": {"template": {"spec": {"containers": [{"name": "c", "image": image}]}}}
            })
        };
        let v1 = apply(None, &d("i:1"), &Manager::new("alice"), false, None, T1).expect("create");
        let conflicts = apply(Some(&v1), &d("i:2"), &Manager::new("bob"), false, None, T2)
            .expect_err("whole list conflicts");
        assert_eq!(
            conflicts,
            vec![conflict("alice", ".spec.template.spec.containers")]
        );
    }

    #[test]
    fn owner_references_merge_by_uid() {
        let owner =
            |uid: &str| json!({"apiVersion": "v1", "kind": "ConfigMap", "name": uid, "uid": uid});
        let v1 = apply_ok(
            None,
            &widget(json!({"ownerReferences": [owner("u1")]}), json!({})),
            &Manager::new("alice"),
            T1,
        );
        let v2 = apply_ok(
            Some(&v1),
            &widget(json!({"ownerReferences": [owner("u2")]}), json!({})),
            &Manager::new("bob"),
            T2,
        );
        assert_eq!(
            v2["metadata"]["ownerReferences"],
            json!([owner("u1"), owner("u2")])
        );
        assert!(
            owned(&v2, "bob", "Apply", None)
                .contains(&".metadata.ownerReferences[uid=\"u2\"]".to_owned())
        );
    }

    #[test]
    fn untracked_fields_are_never_owned_and_keep_live_values() {
        let mut applied = widget(
            json!({"uid": "forged", "resourceVersion": "1", "managedFields": [{"manager": "evil", "operation": "Apply", "fieldsV1": {"f:spec": {}}}]}),
            json!({"a": "x"}),
        );
        let v1 = apply_ok(None, &applied, &Manager::new("alice"), T1);
        assert_eq!(managers(&v1), vec!["alice/Apply/"]);
        assert_eq!(owned(&v1, "alice", "Apply", None), vec![".spec.a"]);
        let mut live = v1.clone();
        live["metadata"]["uid"] = json!("real");
        live["metadata"]["resourceVersion"] = json!("42");
        applied["spec"]["a"] = json!("y");
        let v2 = apply_ok(Some(&live), &applied, &Manager::new("alice"), T2);
        assert_eq!(v2["metadata"]["uid"], "real");
        assert_eq!(v2["metadata"]["resourceVersion"], "42");
        assert_eq!(v2["spec"]["a"], "y");
    }

    #[test]
    fn status_subresource_applies_only_status_and_conditions_merge_by_type() {
        let live = apply_ok(
            None,
            &spec(json!({"a": "x"})),
            &Manager::new("alice").ignoring_status(),
            T1,
        );
        let mut applied = status(json!({"phase": "Ready", "conditions": [
            {"type": "Ready", "status": "True"}, {"type": "Synced", "status": "True"}
        ]}));
        applied["spec"] = json!({"a": "ignored"});
        let v1 = apply_ok(Some(&live), &applied, &Manager::status("ctrl"), T2);
        assert_eq!(v1["spec"], json!({"a": "x"}));
        assert_eq!(
            entry(&v1, "ctrl", "Apply", Some("status")).map(|e| e["fieldsV1"].clone()),
            Some(json!({"f:status": {
                "f:conditions": {
                    "k:{\"type\":\"Ready\"}": {".": {}, "f:status": {}, "f:type": {}},
                    "k:{\"type\":\"Synced\"}": {".": {}, "f:status": {}, "f:type": {}}
                },
                "f:phase": {}
            }}))
        );
        let v2 = apply_ok(
            Some(&v1),
            &status(json!({"conditions": [{"type": "Healthy", "status": "False"}]})),
            &Manager::status("probe"),
            T2,
        );
        let v3 = apply_ok(
            Some(&v2),
            &status(
                json!({"phase": "Ready", "conditions": [{"type": "Ready", "status": "False", "reason": "Down"}]}),
            ),
            &Manager::status("ctrl"),
            T3,
        );
        assert_eq!(
            v3["status"]["conditions"],
            json!([
                {"type": "Ready", "status": "False", "reason": "Down"},
                {"type": "Healthy", "status": "False"}
            ])
        );
        assert_eq!(
            managers(&v3),
            vec!["alice/Apply/", "ctrl/Apply/status", "probe/Apply/status"]
        );
        // probe may not flip ctrl's condition.
        let conflicts = conflicts_of(
            &v3,
            &status(json!({"conditions": [{"type": "Ready", "status": "True"}]})),
            &Manager::status("probe"),
        );
        assert_eq!(
            conflicts,
            vec![conflict(
                "ctrl",
                ".status.conditions[type=\"Ready\"].status"
            )]
        );
    }

    #[test]
    fn status_and_main_entries_of_one_manager_are_separate() {
        let m = Manager::new("ctrl").ignoring_status();
        let mut applied = spec(json!({"a": "x"}));
        applied["status"] = json!({"phase": "Ignored"});
        let v1 = apply_ok(None, &applied, &m, T1);
        assert_eq!(v1.get("status"), None);
        let v2 = apply_ok(
            Some(&v1),
            &status(json!({"phase": "Ready"})),
            &Manager::status("ctrl"),
            T2,
        );
        assert_eq!(managers(&v2), vec!["ctrl/Apply/", "ctrl/Apply/status"]);
        assert_eq!(owned(&v2, "ctrl", "Apply", None), vec![".spec.a"]);
        assert_eq!(
            owned(&v2, "ctrl", "Apply", Some("status")),
            vec![".status.phase"]
        );
        assert_eq!(
            entry(&v2, "ctrl", "Apply", Some("status")).map(|e| e["time"].clone()),
            Some(json!(T2))
        );
        // A main apply that drops everything leaves status (and the status entry) alone.
        let v3 = apply_ok(Some(&v2), &spec(json!({"b": "y"})), &m, T3);
        assert_eq!(v3["status"], json!({"phase": "Ready"}));
        assert_eq!(v3["spec"], json!({"b": "y"}));
        assert_eq!(
            owned(&v3, "ctrl", "Apply", Some("status")),
            vec![".status.phase"]
        );
        // And a status apply that drops phase does not touch spec.
        let bare = json!({"apiVersion": API, "kind": "Widget", "metadata": {"name": "w1"}});
        let v4 = apply_ok(Some(&v3), &bare, &Manager::status("ctrl"), T3);
        assert_eq!(v4.get("status"), None);
        assert_eq!(v4["spec"], json!({"b": "y"}));
        assert_eq!(managers(&v4), vec!["ctrl/Apply/"]);
    }

    #[test]
    fn record_update_on_create_owns_every_tracked_field() {
        let s = schema();
        let mut new = widget(
            json!({"labels": {"app": "web"}, "uid": "u1"}),
            json!({"replicas": 1, "containers": [{"name": "app", "image": "i"}]}),
        );
        record_update(
            None,
            &mut new,
            &Manager::new("kubectl-create"),
            Some(&s),
            T1,
        );
        assert_eq!(
            new["metadata"]["managedFields"],
            json!([{
                "manager": "kubectl-create",
                "operation": "Update",
                "apiVersion": API,
                "time": T1,
                "fieldsType": "FieldsV1",
                "fieldsV1": {
                    "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
                    "f:spec": {
                        ".": {},
                        "f:containers": {
                            ".": {},
                            "k:{\"name\":\"app\"}": {".": {}, "f:image": {}, "f:name": {}}
                        },
                        "f:replicas": {}
                    }
                }
            }])
        );
    }

    #[test]
    fn record_update_takes_changed_fields_and_apply_then_conflicts() {
        let s = schema();
        let v1 = apply_ok(
            None,
            &spec(json!({"replicas": 1, "a": "x"})),
            &Manager::new("alice"),
            T1,
        );
        let mut v2 = v1.clone();
        v2["spec"]["replicas"] = json!(3);
        v2["spec"]["b"] = json!("new");
        record_update(
            Some(&v1),
            &mut v2,
            &Manager::new("kubectl-edit"),
            Some(&s),
            T2,
        );
        assert_eq!(managers(&v2), vec!["alice/Apply/", "kubectl-edit/Update/"]);
        assert_eq!(owned(&v2, "alice", "Apply", None), vec![".spec.a"]);
        assert_eq!(
            owned(&v2, "kubectl-edit", "Update", None),
            vec![".spec.b", ".spec.replicas"]
        );
        let conflicts = conflicts_of(
            &v2,
            &spec(json!({"replicas": 1, "a": "x"})),
            &Manager::new("alice"),
        );
        assert_eq!(conflicts, vec![conflict("kubectl-edit", ".spec.replicas")]);
        // Agreeing with the current value is fine and shares the field again.
        let v3 = apply_ok(
            Some(&v2),
            &spec(json!({"replicas": 3, "a": "x"})),
            &Manager::new("alice"),
            T3,
        );
        assert_eq!(
            owned(&v3, "alice", "Apply", None),
            vec![".spec.a", ".spec.replicas"]
        );
        assert_eq!(
            owned(&v3, "kubectl-edit", "Update", None),
            vec![".spec.b", ".spec.replicas"]
        );
    }

    #[test]
    fn record_update_removes_vanished_fields_from_every_set() {
        let s = schema();
        let v1 = apply_ok(
            None,
            &spec(json!({"a": "x", "b": "y"})),
            &Manager::new("alice"),
            T1,
        );
        let v2 = apply_ok(
            Some(&v1),
            &spec(json!({"b": "y"})),
            &Manager::new("bob"),
            T1,
        );
        let mut v3 = v2.clone();
        if let Some(spec) = v3["spec"].as_object_mut() {
            spec.retain(|k, _| k != "b");
        }
        record_update(Some(&v2), &mut v3, &Manager::new("patcher"), Some(&s), T2);
        // Nothing was added or changed: no entry for the patcher; bob is left with nothing.
        assert_eq!(managers(&v3), vec!["alice/Apply/"]);
        assert_eq!(owned(&v3, "alice", "Apply", None), vec![".spec.a"]);
    }

    #[test]
    fn record_update_merges_into_the_managers_existing_entry() {
        let s = schema();
        let mut v1 = spec(json!({"a": "x"}));
        record_update(None, &mut v1, &Manager::new("ctl"), Some(&s), T1);
        let v1 = apply_ok(
            Some(&v1),
            &spec(json!({"b": "y"})),
            &Manager::new("alice"),
            T1,
        );
        let mut v2 = v1.clone();
        v2["spec"]["replicas"] = json!(2);
        record_update(Some(&v1), &mut v2, &Manager::new("ctl"), Some(&s), T2);
        assert_eq!(managers(&v2), vec!["ctl/Update/", "alice/Apply/"]);
        assert_eq!(
            owned(&v2, "ctl", "Update", None),
            vec![".spec", ".spec.a", ".spec.replicas"]
        );
        assert_eq!(
            entry(&v2, "ctl", "Update", None).map(|e| e["time"].clone()),
            Some(json!(T2))
        );
        // A write that changes nothing keeps the entry as it was, time included.
        let mut v3 = v2.clone();
        record_update(Some(&v2), &mut v3, &Manager::new("ctl"), Some(&s), T3);
        assert_eq!(v3, v2);
    }

    #[test]
    fn record_update_on_status_subresource_tracks_only_status() {
        let s = schema();
        let v1 = apply_ok(None, &spec(json!({"a": "x"})), &Manager::new("alice"), T1);
        let mut v2 = v1.clone();
        v2["status"] =
            json!({"phase": "Ready", "conditions": [{"type": "Ready", "status": "True"}]});
        v2["spec"]["a"] = json!("sneaky");
        record_update(Some(&v1), &mut v2, &Manager::status("ctrl"), Some(&s), T2);
        assert_eq!(owned(&v2, "alice", "Apply", None), vec![".spec.a"]);
        assert_eq!(
            entry(&v2, "ctrl", "Update", Some("status")).map(|e| e["fieldsV1"].clone()),
            Some(json!({"f:status": {
                ".": {},
                "f:conditions": {".": {}, "k:{\"type\":\"Ready\"}": {".": {}, "f:status": {}, "f:type": {}}},
                "f:phase": {}
            }}))
        );
    }

    #[test]
    fn record_update_uses_managed_fields_sent_by_the_client() {
        let s = schema();
        let v1 = apply_ok(None, &spec(json!({"a": "x"})), &Manager::new("alice"), T1);
        let mut v2 = v1.clone();
        v2["metadata"]["managedFields"] = json!([{}]);
        v2["spec"]["b"] = json!("y");
        record_update(Some(&v1), &mut v2, &Manager::new("resetter"), Some(&s), T2);
        assert_eq!(managers(&v2), vec!["resetter/Update/"]);
        // An empty list means "keep what is there".
        let mut v3 = v1.clone();
        v3["metadata"]["managedFields"] = json!([]);
        v3["spec"]["b"] = json!("y");
        record_update(Some(&v1), &mut v3, &Manager::new("other"), Some(&s), T2);
        assert_eq!(managers(&v3), vec!["alice/Apply/", "other/Update/"]);
        // So does a list that is not made of entries.
        let mut v4 = v1.clone();
        v4["metadata"]["managedFields"] = json!(["junk"]);
        v4["spec"]["b"] = json!("y");
        record_update(Some(&v1), &mut v4, &Manager::new("other"), Some(&s), T2);
        assert_eq!(managers(&v4), vec!["alice/Apply/", "other/Update/"]);
    }

    #[test]
    fn apply_to_an_unmanaged_object_conflicts_with_before_first_apply() {
        let live = spec(json!({"replicas": 1, "a": "x"}));
        let conflicts = conflicts_of(&live, &spec(json!({"replicas": 2})), &Manager::new("alice"));
        assert_eq!(
            conflicts,
            vec![conflict("before-first-apply", ".spec.replicas")]
        );
        let v1 = apply_ok(
            Some(&live),
            &spec(json!({"replicas": 1})),
            &Manager::new("alice"),
            T2,
        );
        assert_eq!(
            managers(&v1),
            vec!["before-first-apply/Update/", "alice/Apply/"]
        );
        assert_eq!(v1["spec"], json!({"replicas": 1, "a": "x"}));
    }

    #[test]
    fn empty_apply_releases_everything_the_manager_applied() {
        let v1 = apply_ok(None, &spec(json!({"a": "x"})), &Manager::new("alice"), T1);
        let v2 = apply_ok(
            Some(&v1),
            &spec(json!({"b": "y"})),
            &Manager::new("bob"),
            T1,
        );
        let bare = json!({"apiVersion": API, "kind": "Widget", "metadata": {"name": "w1"}});
        let v3 = apply_ok(Some(&v2), &bare, &Manager::new("alice"), T2);
        assert_eq!(v3["spec"], json!({"b": "y"}));
        assert_eq!(managers(&v3), vec!["bob/Apply/"]);
        // An explicit null is a value: applying it owns the field (the live map is kept).
        let v4 = apply_ok(Some(&v2), &spec(json!(null)), &Manager::new("alice"), T2);
        assert_eq!(v4["spec"], json!({"b": "y"}));
        assert_eq!(owned(&v4, "alice", "Apply", None), vec![".spec"]);
    }

    #[test]
    fn conflict_message_groups_by_manager() {
        let msg = conflict_message(&[
            conflict("bob", ".spec.b"),
            conflict("alice", ".spec.a"),
            conflict("bob", ".spec.c"),
        ]);
        assert_eq!(
            msg,
            "Apply failed with 3 conflicts: conflicts with \"alice\":\n- .spec.a\nconflicts with \"bob\":\n- .spec.b\n- .spec.c"
        );
    }

    #[test]
    fn garbage_input_does_not_panic() {
        let s = schema();
        let good = apply_ok(None, &spec(json!({"a": "x"})), &Manager::new("alice"), T1);
        let bad_schema = json!({"properties": {"spec": {"properties": 5, "additionalProperties": "x",
            "x-kubernetes-list-map-keys": "name"}}, "items": 3});
        let weird_schema = json!({"properties": {"spec": {"properties": {
            "containers": {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": [1, "name"]},
            "tags": {"x-kubernetes-list-type": "set", "items": "nope"}
        }}}});
        let weird_lists = spec(json!({
            "containers": [1, "x", null, {"image": "no-key"}, {"name": "d"}, {"name": "d", "image": "dup"}, [1]],
            "tags": [{"a": 1}, [2], null, "t", "t"]
        }));
        let mut bad_managed = good.clone();
        bad_managed["metadata"]["managedFields"] = json!([
            1, "x", null, {}, {"manager": 5}, {"manager": "m", "operation": "Delete"},
            {"manager": "m", "operation": "Apply", "fieldsV1": "bad"},
            {"manager": "m", "operation": "Apply", "fieldsType": "FieldsV2", "fieldsV1": {}},
            {"manager": "n", "operation": "Update", "fieldsV1": {"f:spec": {"k:notjson": {}, "x:bad": 1, "f:a": 5, "v:": {}, "i:-1": {}, ".": 3}}},
            {"manager": "n", "operation": "Update", "fieldsV1": {"f:spec": {"f:a": {}}}}
        ]);
        let mut meta_string = good.clone();
        meta_string["metadata"] = json!("oops");
        let mut managed_object = good.clone();
        managed_object["metadata"]["managedFields"] = json!({"f:spec": {}});

        let lives: Vec<Option<Value>> = vec![
            None,
            Some(good.clone()),
            Some(bad_managed),
            Some(meta_string),
            Some(managed_object),
            Some(json!(42)),
            Some(json!(null)),
            Some(weird_lists.clone()),
        ];
        let applieds = vec![
            json!("string"),
            json!(null),
            json!([1, 2]),
            json!({}),
            json!({"metadata": 5, "spec": [1], "status": "x"}),
            json!({"spec": {"containers": {"name": "x"}, "tags": "t", "args": {"x": 1}, "selector": [1]}}),
            json!({"spec": null, "metadata": {"labels": null, "finalizers": {"x": 1}}}),
            weird_lists,
            spec(json!({"a": "changed"})),
        ];
        let schemas = [None, Some(&s), Some(&bad_schema), Some(&weird_schema)];
        let mgrs = [
            Manager::new("alice"),
            Manager::new("bob").ignoring_status(),
            Manager::status("ctrl"),
        ];
        for live in &lives {
            for applied in &applieds {
                for schema in schemas {
                    for m in &mgrs {
                        for force in [false, true] {
                            let _ = apply(live.as_ref(), applied, m, force, schema, T2);
                        }
                        let mut new = applied.clone();
                        record_update(live.as_ref(), &mut new, m, schema, T2);
                        let _ = field_set(applied, schema);
                    }
                }
            }
        }
        // Non-object applied: nothing happens.
        assert_eq!(
            apply(
                Some(&good),
                &json!("x"),
                &Manager::new("bob"),
                false,
                Some(&s),
                T2
            ),
            Ok(good.clone())
        );
        // Well-formed entries survive next to garbage ones, duplicates are merged.
        let mut bad_managed = good.clone();
        bad_managed["metadata"]["managedFields"] = json!([
            "junk",
            {"manager": "n", "operation": "Update", "fieldsV1": {"f:spec": {"f:b": {}, "k:notjson": {}}}},
            entries(&good)[0].clone(),
            {"manager": "n", "operation": "Update", "fieldsV1": {"f:spec": {"f:c": {}}}}
        ]);
        let out = apply_ok(
            Some(&bad_managed),
            &spec(json!({"a": "x", "d": "z"})),
            &Manager::new("alice"),
            T2,
        );
        assert_eq!(managers(&out), vec!["n/Update/", "alice/Apply/"]);
        assert_eq!(owned(&out, "n", "Update", None), vec![".spec.b", ".spec.c"]);
    }
}
