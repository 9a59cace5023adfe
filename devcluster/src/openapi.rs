//! OpenAPI v3, as `kubectl explain` and kubectl's field validation read it: `GET /openapi/v3`
//! (the index of group-versions) and one document per served group-version, computed from
//! the registry when asked. Built-in kinds have their real schemas, generated from
//! `k8s-openapi`'s types; a custom resource has its CRD version's `openAPIV3Schema` with
//! `apiVersion`, `kind` and `metadata` added, named as Kubernetes names it
//! (`com.example.v1.Widget`).
//!
//! Also the server's side of `fieldValidation=Strict`. A document whose PATCH operations list
//! the `fieldValidation` parameter tells kubectl that the server reports unknown fields, so
//! kubectl skips its own validation (which would need `/openapi/v2`, not served) and relies on
//! the server: [`check_field_validation`] refuses a write with fields its schema does not
//! declare, with the API server's message.

use std::collections::{BTreeMap, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use k8s_openapi::api::{
    admissionregistration::v1 as admissionregistration, apps::v1 as apps, batch::v1 as batch,
    coordination::v1 as coordination, core::v1 as core, events::v1 as events,
    networking::v1 as networking, policy::v1 as policy, rbac::v1 as rbac,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiextensions;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use schemars::generate::{SchemaGenerator, SchemaSettings};
use serde_json::{Map, Value, json};

use crate::api::{Request, Response};
use crate::registry::{Registry, ResourceDef};
use crate::status::{ApiError, Cause};

/// Where schemas live in a document, as `$ref`s point at them.
const SCHEMAS: &str = "#/components/schemas/";
const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";
const LIST_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta";
const STATUS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";
const GVK: &str = "x-kubernetes-group-version-kind";

const API_VERSION_DESCRIPTION: &str = "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources";
const KIND_DESCRIPTION: &str = "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds";
const METADATA_DESCRIPTION: &str = "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";
const LIST_METADATA_DESCRIPTION: &str = "Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds";

// ---- built-in schemas ----------------------------------------------------------------------

/// A built-in kind whose schema comes from a `k8s-openapi` type.
struct BuiltinKind {
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    /// Adds the type's schema (and those it references) to the generator; returns the `$ref`.
    schema: fn(&mut SchemaGenerator) -> schemars::Schema,
}

fn kind<T: k8s_openapi::Resource + schemars::JsonSchema>() -> BuiltinKind {
    BuiltinKind {
        group: T::GROUP,
        version: T::VERSION,
        kind: T::KIND,
        schema: |generator| generator.subschema_for::<T>(),
    }
}

/// The schemas of built-in kinds, found by (group, version, kind). A kind listed here and not
/// served costs nothing; a kind served and not listed gets a schema that accepts any field.
/// When `registry::builtins()` gains a kind, add its `k8s-openapi` type here.
fn builtin_kinds() -> Vec<BuiltinKind> {
    vec![
        kind::<core::Namespace>(),
        kind::<core::Secret>(),
        kind::<core::ConfigMap>(),
        kind::<core::ServiceAccount>(),
        kind::<core::Service>(),
        kind::<core::Event>(),
        kind::<core::Pod>(),
        kind::<core::Endpoints>(),
        kind::<core::PersistentVolumeClaim>(),
        kind::<coordination::Lease>(),
        kind::<apiextensions::CustomResourceDefinition>(),
        kind::<rbac::Role>(),
        kind::<rbac::RoleBinding>(),
        kind::<rbac::ClusterRole>(),
        kind::<rbac::ClusterRoleBinding>(),
        kind::<apps::Deployment>(),
        kind::<apps::StatefulSet>(),
        kind::<apps::DaemonSet>(),
        kind::<apps::ReplicaSet>(),
        kind::<batch::Job>(),
        kind::<batch::CronJob>(),
        kind::<admissionregistration::ValidatingWebhookConfiguration>(),
        kind::<admissionregistration::MutatingWebhookConfiguration>(),
        kind::<events::Event>(),
        kind::<networking::Ingress>(),
        kind::<networking::NetworkPolicy>(),
        kind::<policy::PodDisruptionBudget>(),
    ]
}

/// Every built-in schema, generated once.
struct Builtins {
    /// By name (`io.k8s.api.core.v1.ConfigMap`), with OpenAPI 3 `$ref`s.
    definitions: Map<String, Value>,
    /// The schema name of each (group, version, kind).
    kinds: HashMap<(String, String, String), String>,
}

fn builtins() -> &'static Builtins {
    static BUILTINS: OnceLock<Builtins> = OnceLock::new();
    BUILTINS.get_or_init(generate_builtins)
}

fn generate_builtins() -> Builtins {
    let mut generator = SchemaSettings::openapi3().into_generator();
    let mut kinds = HashMap::new();
    for builtin in builtin_kinds() {
        let reference = (builtin.schema)(&mut generator);
        if let Some(name) = ref_name(reference.as_value()) {
            kinds.insert(
                (
                    builtin.group.to_owned(),
                    builtin.version.to_owned(),
                    builtin.kind.to_owned(),
                ),
                name.to_owned(),
            );
        }
    }
    // What custom resources, lists and operations refer to.
    generator.subschema_for::<meta::ObjectMeta>();
    generator.subschema_for::<meta::ListMeta>();
    generator.subschema_for::<meta::Status>();
    let mut definitions = generator.take_definitions(true);
    // k8s-openapi requires `metadata` because its Rust field is not optional; the API
    // server's schemas do not.
    for name in kinds.values() {
        if let Some(Value::Array(required)) = definitions
            .get_mut(name)
            .and_then(|schema| schema.get_mut("required"))
        {
            required.retain(|field| field != "metadata");
            if required.is_empty()
                && let Some(schema) = definitions.get_mut(name).and_then(Value::as_object_mut)
            {
                schema.remove("required");
            }
        }
    }
    // The list semantics kubectl's client-side apply and patch read (merge keys and patch
    // strategies), which the Rust types do not carry, from the tables strategic merge uses.
    for ((group, _, kind), name) in &kinds {
        if let Some(merge) = crate::strategic::builtin_schema(group, kind) {
            annotate(&mut definitions, name, &merge);
        }
    }
    Builtins { definitions, kinds }
}

/// Copies the `x-kubernetes-*` list and patch extensions of `merge` (an inline schema tree)
/// onto the properties of the component `name` and, through their references, of the
/// components below it.
fn annotate(definitions: &mut Map<String, Value>, name: &str, merge: &Value) {
    let mut work = vec![(name.to_owned(), merge.clone())];
    let mut seen = std::collections::HashSet::new();
    while let Some((name, merge)) = work.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        let Some(merge_properties) = merge.get("properties").and_then(Value::as_object) else {
            continue;
        };
        let Some(properties) = definitions
            .get_mut(&name)
            .and_then(|schema| schema.get_mut("properties"))
            .and_then(Value::as_object_mut)
        else {
            continue;
        };
        for (field, merge_child) in merge_properties {
            let Some(property) = properties.get_mut(field).and_then(Value::as_object_mut) else {
                continue;
            };
            if let Some(extensions) = merge_child.as_object() {
                for (key, value) in extensions
                    .iter()
                    .filter(|(k, _)| k.starts_with("x-kubernetes-"))
                {
                    property.insert(key.clone(), value.clone());
                }
            }
            // Follow the property to the component it names, directly, through list items,
            // through map values, or through `allOf`.
            let property = Value::Object(property.clone());
            let targets = [
                (ref_name(&property), merge_child),
                (
                    property.get("items").and_then(ref_name),
                    merge_child.get("items").unwrap_or(&Value::Null),
                ),
                (
                    property.get("additionalProperties").and_then(ref_name),
                    merge_child
                        .get("additionalProperties")
                        .unwrap_or(&Value::Null),
                ),
                (property.pointer("/allOf/0").and_then(ref_name), merge_child),
            ];
            for (target, merge_target) in targets {
                if let Some(target) = target
                    && merge_target.get("properties").is_some()
                {
                    work.push((target.to_owned(), merge_target.clone()));
                }
            }
        }
    }
}

/// `io.k8s.api.core.v1.Secret` from `{"$ref": "#/components/schemas/io.k8s.api.core.v1.Secret"}`.
fn ref_name(schema: &Value) -> Option<&str> {
    schema.get("$ref")?.as_str()?.strip_prefix(SCHEMAS)
}

// ---- names ---------------------------------------------------------------------------------

/// `com.example` for `example.com`, as Kubernetes prefixes custom resources' schema names.
fn reverse_domain(group: &str) -> String {
    group.split('.').rev().collect::<Vec<_>>().join(".")
}

/// The schema name of a resource's kind: `io.certinext.v1alpha1.Certificate`,
/// `io.k8s.api.core.v1.Secret`.
fn schema_name(def: &ResourceDef) -> String {
    if !def.custom
        && let Some(name) =
            builtins()
                .kinds
                .get(&(def.group.clone(), def.version.clone(), def.kind.clone()))
    {
        return name.clone();
    }
    let prefix = if def.custom {
        reverse_domain(&def.group)
    } else if def.group.is_empty() {
        "io.k8s.api.core".to_owned()
    } else {
        format!(
            "io.k8s.api.{}",
            def.group.split('.').next().unwrap_or_default()
        )
    };
    format!("{prefix}.{}.{}", def.version, def.kind)
}

/// The name of the list kind's schema beside the kind's: `io.k8s.api.core.v1.SecretList`.
fn list_schema_name(def: &ResourceDef, kind_name: &str) -> String {
    match kind_name.rsplit_once('.') {
        Some((prefix, _)) => format!("{prefix}.{}", def.list_kind),
        None => def.list_kind.clone(),
    }
}

fn gvk(group: &str, version: &str, kind: &str) -> Value {
    json!({"group": group, "version": version, "kind": kind})
}

fn reference(name: &str) -> Value {
    json!({"$ref": format!("{SCHEMAS}{name}")})
}

/// `{"allOf": [{"$ref": ...}], "description": ...}`: a reference with its own description, as
/// Kubernetes writes them in OpenAPI 3.
fn described_reference(name: &str, description: &str) -> Value {
    json!({"description": description, "allOf": [reference(name)]})
}

// ---- schemas of served kinds ---------------------------------------------------------------

/// A custom resource's schema: the CRD version's `openAPIV3Schema` with `apiVersion`, `kind`
/// and `metadata` declared at the root, as the API server publishes it.
fn custom_schema(def: &ResourceDef) -> Value {
    let mut schema = def
        .schema
        .as_deref()
        .filter(|s| s.is_object())
        .cloned()
        .unwrap_or_else(|| json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}));
    if let Some(fields) = schema.as_object_mut() {
        fields.entry("type").or_insert_with(|| json!("object"));
        let properties = fields
            .entry("properties")
            .or_insert_with(|| Value::Object(Map::new()));
        if !properties.is_object() {
            *properties = Value::Object(Map::new());
        }
        if let Some(properties) = properties.as_object_mut() {
            properties.insert(
                "apiVersion".into(),
                json!({"description": API_VERSION_DESCRIPTION, "type": "string"}),
            );
            properties.insert(
                "kind".into(),
                json!({"description": KIND_DESCRIPTION, "type": "string"}),
            );
            properties.insert(
                "metadata".into(),
                described_reference(OBJECT_META, METADATA_DESCRIPTION),
            );
        }
    }
    schema
}

/// A built-in kind served without a schema in [`builtin_kinds`]: any field is accepted.
fn open_schema(def: &ResourceDef) -> Value {
    json!({
        "description": format!("{} (no schema is published for this kind yet).", def.kind),
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
        "properties": {
            "apiVersion": {"description": API_VERSION_DESCRIPTION, "type": "string"},
            "kind": {"description": KIND_DESCRIPTION, "type": "string"},
            "metadata": described_reference(OBJECT_META, METADATA_DESCRIPTION),
        },
    })
}

/// The schema of a served kind, without its group-version-kind.
fn kind_schema(def: &ResourceDef, name: &str) -> Value {
    if def.custom {
        return custom_schema(def);
    }
    builtins()
        .definitions
        .get(name)
        .cloned()
        .unwrap_or_else(|| open_schema(def))
}

fn list_schema(def: &ResourceDef, kind_name: &str) -> Value {
    json!({
        "description": format!("{} is a list of {}.", def.list_kind, def.kind),
        "type": "object",
        "required": ["items"],
        "properties": {
            "apiVersion": {"description": API_VERSION_DESCRIPTION, "type": "string"},
            "items": {
                "description": format!("List of {}.", def.plural),
                "type": "array",
                "items": reference(kind_name),
            },
            "kind": {"description": KIND_DESCRIPTION, "type": "string"},
            "metadata": described_reference(LIST_META, LIST_METADATA_DESCRIPTION),
        },
        GVK: [gvk(&def.group, &def.version, &def.list_kind)],
    })
}

// ---- paths ---------------------------------------------------------------------------------

fn pascal(text: &str) -> String {
    text.split(['.', '-'])
        .map(|part| {
            let mut chars = part.chars();
            match chars.next() {
                Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
                None => String::new(),
            }
        })
        .collect()
}

/// `readCoreV1NamespacedConfigMap`, `patchExampleComV1WidgetStatus`.
fn operation_id(verb: &str, def: &ResourceDef, suffix: &str) -> String {
    let group = if def.group.is_empty() {
        "Core".to_owned()
    } else {
        pascal(def.group.trim_end_matches(".k8s.io"))
    };
    let scope = if def.namespaced { "Namespaced" } else { "" };
    format!(
        "{verb}{group}{}{scope}{}{suffix}",
        pascal(&def.version),
        def.kind
    )
}

fn path_parameter(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "path", "description": description, "required": true,
        "schema": {"type": "string", "uniqueItems": true}})
}

fn query_parameter(name: &str, kind: &str, description: &str) -> Value {
    json!({"name": name, "in": "query", "description": description,
        "schema": {"type": kind, "uniqueItems": true}})
}

/// The parameters of writes. `fieldValidation` tells kubectl the server checks fields.
fn write_parameters() -> Vec<Value> {
    vec![
        query_parameter(
            "dryRun",
            "string",
            "When present, indicates that modifications should not be persisted. Valid values are: - All: all dry run stages will be processed",
        ),
        query_parameter(
            "fieldManager",
            "string",
            "fieldManager is a name associated with the actor or entity that is making these changes.",
        ),
        query_parameter(
            "fieldValidation",
            "string",
            "fieldValidation instructs the server on how to handle objects in the request containing unknown or duplicate fields. Valid values are: - Ignore: unknown fields are dropped silently. - Warn: unknown fields are accepted (no warning is sent yet). - Strict: the request fails with a BadRequest error naming every unknown field.",
        ),
    ]
}

struct Operation<'a> {
    verb: &'a str,
    action: &'a str,
    suffix: &'a str,
    parameters: Vec<Value>,
    body: Option<Value>,
    response: &'a str,
}

fn operation(def: &ResourceDef, op: Operation<'_>) -> Value {
    let content = json!({"schema": reference(op.response)});
    let mut value = json!({
        "description": format!("{} {}", op.action, def.kind),
        "operationId": operation_id(op.verb, def, op.suffix),
        "parameters": op.parameters,
        "responses": {
            "200": {"description": "OK", "content": {
                "application/json": content.clone(), "application/yaml": content}},
            "401": {"description": "Unauthorized"},
        },
        "x-kubernetes-action": op.action,
        GVK: gvk(&def.group, &def.version, &def.kind),
    });
    if let Some(body) = op.body {
        value["requestBody"] = body;
    }
    value
}

fn object_body(name: &str) -> Value {
    json!({"required": true, "content": {"*/*": {"schema": reference(name)}}})
}

fn patch_body(def: &ResourceDef) -> Value {
    let schema = json!({"schema": {"type": "object", "description": "A patch."}});
    let mut content = Map::new();
    let mut types = vec![
        "application/apply-patch+yaml",
        "application/json-patch+json",
        "application/merge-patch+json",
    ];
    if !def.custom {
        types.push("application/strategic-merge-patch+json");
    }
    for media_type in types {
        content.insert(media_type.into(), schema.clone());
    }
    json!({"required": true, "content": content})
}

/// The collection, item and status paths of one resource, with their operations.
fn add_paths(paths: &mut Map<String, Value>, def: &ResourceDef, kind: &str, list: &str) {
    let prefix = if def.group.is_empty() {
        format!("/api/{}", def.version)
    } else {
        format!("/apis/{}/{}", def.group, def.version)
    };
    let (collection, mut scope) = if def.namespaced {
        (
            format!("{prefix}/namespaces/{{namespace}}/{}", def.plural),
            vec![path_parameter(
                "namespace",
                "object name and auth scope, such as for teams and projects",
            )],
        )
    } else {
        (format!("{prefix}/{}", def.plural), Vec::new())
    };
    let with = |mut base: Vec<Value>, extra: Vec<Value>| {
        base.extend(extra);
        base
    };
    paths.insert(
        collection.clone(),
        json!({
            "get": operation(def, Operation { verb: "list", action: "list", suffix: "",
                parameters: scope.clone(), body: None, response: list }),
            "post": operation(def, Operation { verb: "create", action: "post", suffix: "",
                parameters: with(scope.clone(), write_parameters()), body: Some(object_body(kind)),
                response: kind }),
            "delete": operation(def, Operation { verb: "deletecollection", action: "deletecollection",
                suffix: "", parameters: scope.clone(), body: None, response: STATUS }),
        }),
    );
    scope.push(path_parameter("name", &format!("name of the {}", def.kind)));
    let force = query_parameter(
        "force",
        "boolean",
        "Force is going to \"force\" Apply requests. It must be unset for non-apply patch requests.",
    );
    let item = format!("{collection}/{{name}}");
    let item_operations = |suffix: &str| {
        json!({
            "get": operation(def, Operation { verb: "read", action: "get", suffix,
                parameters: scope.clone(), body: None, response: kind }),
            "put": operation(def, Operation { verb: "replace", action: "put", suffix,
                parameters: with(scope.clone(), write_parameters()), body: Some(object_body(kind)),
                response: kind }),
            "patch": operation(def, Operation { verb: "patch", action: "patch", suffix,
                parameters: with(scope.clone(), with(write_parameters(), vec![force.clone()])),
                body: Some(patch_body(def)), response: kind }),
        })
    };
    let mut item_value = item_operations("");
    let status = def.status_subresource.then(|| item_operations("Status"));
    item_value["delete"] = operation(
        def,
        Operation {
            verb: "delete",
            action: "delete",
            suffix: "",
            parameters: scope.clone(),
            body: None,
            response: STATUS,
        },
    );
    paths.insert(item.clone(), item_value);
    if let Some(status) = status {
        paths.insert(format!("{item}/status"), status);
    }
}

// ---- documents -----------------------------------------------------------------------------

/// One group-version's document and its digest.
struct Document {
    value: Value,
    hash: String,
}

/// Every `$ref`ed schema name in `value`.
fn collect_refs<'a>(value: &'a Value, into: &mut Vec<&'a str>) {
    match value {
        Value::Object(fields) => {
            for (key, child) in fields {
                if key == "$ref"
                    && let Some(name) = child.as_str().and_then(|r| r.strip_prefix(SCHEMAS))
                {
                    into.push(name);
                } else {
                    collect_refs(child, into);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_refs(item, into)),
        _ => {}
    }
}

/// The OpenAPI 3 document of the resources of one group-version.
fn build_document(defs: &[Arc<ResourceDef>]) -> Value {
    let builtins = builtins();
    let mut schemas: BTreeMap<String, Value> = BTreeMap::new();
    let mut paths = Map::new();
    for def in defs {
        let name = schema_name(def);
        let list = list_schema_name(def, &name);
        let mut schema = kind_schema(def, &name);
        if let Some(fields) = schema.as_object_mut() {
            fields.insert(
                GVK.into(),
                json!([gvk(&def.group, &def.version, &def.kind)]),
            );
        }
        schemas.insert(name.clone(), schema);
        schemas.insert(list.clone(), list_schema(def, &name));
        add_paths(&mut paths, def, &name, &list);
    }
    // Everything the kinds and the operations refer to, transitively.
    let mut pending: Vec<String> = vec![STATUS.to_owned()];
    for schema in schemas.values() {
        let mut names = Vec::new();
        collect_refs(schema, &mut names);
        pending.extend(names.into_iter().map(str::to_owned));
    }
    while let Some(name) = pending.pop() {
        if schemas.contains_key(&name) {
            continue;
        }
        if let Some(schema) = builtins.definitions.get(&name) {
            let mut names = Vec::new();
            collect_refs(schema, &mut names);
            pending.extend(names.into_iter().map(str::to_owned));
            schemas.insert(name, schema.clone());
        }
    }
    let schemas: Map<String, Value> = schemas.into_iter().collect();
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": crate::api::version()["gitVersion"]},
        "paths": paths,
        "components": {"schemas": schemas},
    })
}

/// A hex digest of a document: stable while the document is unchanged.
fn digest(bytes: &[u8]) -> String {
    let half = |salt: u8| {
        let mut hasher = DefaultHasher::new();
        salt.hash(&mut hasher);
        bytes.hash(&mut hasher);
        hasher.finish()
    };
    format!("{:016X}{:016X}", half(1), half(2))
}

/// What a group-version's document is computed from: its resources as served.
fn signature(defs: &[Arc<ResourceDef>]) -> String {
    let mut signature = String::new();
    for def in defs {
        let schema = def
            .schema
            .as_deref()
            .map(Value::to_string)
            .unwrap_or_default();
        signature.push_str(&format!(
            "{}|{}|{}|{}|{}|{}|{}|{}|{}\n",
            def.group,
            def.version,
            def.plural,
            def.kind,
            def.list_kind,
            def.namespaced,
            def.status_subresource,
            def.custom,
            schema
        ));
    }
    signature
}

/// The document of `defs`, from the cache when the resources are as they were.
fn document(defs: &[Arc<ResourceDef>]) -> Arc<Document> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<Document>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let key = signature(defs);
    if let Some(document) = cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&key)
        .cloned()
    {
        return document;
    }
    let value = build_document(defs);
    let hash = digest(&serde_json::to_vec(&value).unwrap_or_default());
    let document = Arc::new(Document { value, hash });
    let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
    // Many clusters in one process, CRDs coming and going: keep the cache small.
    if cache.len() >= 256 {
        cache.clear();
    }
    cache.insert(key, document.clone());
    document
}

fn read(registry: &RwLock<Registry>) -> std::sync::RwLockReadGuard<'_, Registry> {
    registry.read().unwrap_or_else(|e| e.into_inner())
}

/// The served resources by (group, version), taken under the registry's lock.
fn group_versions(
    registry: &RwLock<Registry>,
) -> BTreeMap<(String, String), Vec<Arc<ResourceDef>>> {
    let mut group_versions: BTreeMap<_, Vec<_>> = BTreeMap::new();
    for def in read(registry).all() {
        group_versions
            .entry((def.group.clone(), def.version.clone()))
            .or_default()
            .push(def.clone());
    }
    group_versions
}

/// `api/v1` or `apis/example.com/v1`.
fn group_version_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// `GET /openapi/v3`: each served group-version and where its document is.
pub fn index(registry: &RwLock<Registry>) -> Value {
    let mut paths = Map::new();
    for ((group, version), defs) in group_versions(registry) {
        let path = group_version_path(&group, &version);
        let url = format!("/openapi/v3/{path}?hash={}", document(&defs).hash);
        paths.insert(path, json!({"serverRelativeURL": url}));
    }
    json!({"paths": paths})
}

/// The document of one group-version, if the registry serves it.
pub fn group_version_document(
    registry: &RwLock<Registry>,
    group: &str,
    version: &str,
) -> Option<Value> {
    let defs: Vec<_> = read(registry)
        .all()
        .filter(|d| d.group == group && d.version == version)
        .cloned()
        .collect();
    if defs.is_empty() {
        return None;
    }
    Some(document(&defs).value.clone())
}

/// `/openapi/...`: `segments` are the path's segments after `openapi`. Only v3 is served.
pub fn serve(
    registry: &RwLock<Registry>,
    request: &Request,
    segments: &[&str],
) -> Result<Response, ApiError> {
    let document = match segments {
        ["v3"] => Some(index(registry)),
        ["v3", "api", version] => group_version_document(registry, "", version),
        ["v3", "apis", group, version] => group_version_document(registry, group, version),
        _ => None,
    };
    let document = document.ok_or_else(|| ApiError::no_route(&request.path))?;
    if request.method != "GET" {
        return Err(ApiError::method_not_allowed(&request.method, &request.path));
    }
    Ok(Response::Json(200, document))
}

// ---- fieldValidation=Strict ----------------------------------------------------------------

/// Finds the fields of an object (or a patch) its schema does not declare.
struct UnknownFields<'a> {
    definitions: &'a Map<String, Value>,
    /// A strategic merge patch: `$patch`, `$setElementOrder/...` and the like are directives.
    directives: bool,
    /// A patch: `null` removes a field, whatever it is.
    patch: bool,
    found: Vec<String>,
}

/// A schema and what it is made of: its `$ref` and `allOf` members, resolved.
fn schema_parts<'s>(
    definitions: &'s Map<String, Value>,
    schema: &'s Value,
    parts: &mut Vec<&'s Value>,
    depth: usize,
) {
    if depth > 16 || !schema.is_object() {
        return;
    }
    parts.push(schema);
    if let Some(target) = ref_name(schema).and_then(|name| definitions.get(name)) {
        schema_parts(definitions, target, parts, depth + 1);
    }
    if let Some(Value::Array(members)) = schema.get("allOf") {
        for member in members {
            schema_parts(definitions, member, parts, depth + 1);
        }
    }
}

impl UnknownFields<'_> {
    fn check(&mut self, schema: &Value, value: &Value, path: &str, depth: usize) {
        if depth > 64 {
            return;
        }
        let mut parts = Vec::new();
        schema_parts(self.definitions, schema, &mut parts, 0);
        let flag = |name: &str| {
            parts
                .iter()
                .any(|p| p.get(name) == Some(&Value::Bool(true)))
        };
        match value {
            Value::Object(fields) => {
                let preserve = flag("x-kubernetes-preserve-unknown-fields");
                let embedded = flag("x-kubernetes-embedded-resource");
                let declares = parts.iter().any(|p| p.get("properties").is_some());
                let additional = parts.iter().find_map(|p| p.get("additionalProperties"));
                for (name, child) in fields {
                    if (self.directives && name.starts_with('$')) || (self.patch && child.is_null())
                    {
                        continue;
                    }
                    let child_path = if path.is_empty() {
                        name.clone()
                    } else {
                        format!("{path}.{name}")
                    };
                    let property = parts
                        .iter()
                        .find_map(|p| p.get("properties").and_then(|props| props.get(name)));
                    match (property, additional) {
                        (Some(property), _) => self.check(property, child, &child_path, depth + 1),
                        (None, Some(additional)) if additional.is_object() => {
                            self.check(additional, child, &child_path, depth + 1)
                        }
                        _ if embedded
                            && matches!(name.as_str(), "apiVersion" | "kind" | "metadata") => {}
                        (None, Some(Value::Bool(true))) => {}
                        // An object whose fields are not declared (RawExtension, FieldsV1):
                        // anything goes.
                        _ if preserve || !declares => {}
                        _ => self.found.push(child_path),
                    }
                }
            }
            Value::Array(items) => {
                if let Some(item_schema) = parts.iter().find_map(|p| p.get("items")) {
                    for (index, item) in items.iter().enumerate() {
                        self.check(item_schema, item, &format!("{path}[{index}]"), depth + 1);
                    }
                }
            }
            _ => {}
        }
    }
}

/// The fields of `object` that the schema of `def` does not declare, as `spec.colour`,
/// `spec.items[0].name`.
pub fn unknown_fields(def: &ResourceDef, object: &Value, patch: Option<&str>) -> Vec<String> {
    let builtins = builtins();
    let schema = if def.custom {
        custom_schema(def)
    } else {
        match builtins.definitions.get(&schema_name(def)) {
            Some(schema) => schema.clone(),
            None => return Vec::new(),
        }
    };
    let mut walker = UnknownFields {
        definitions: &builtins.definitions,
        directives: patch == Some("application/strategic-merge-patch+json"),
        patch: patch.is_some(),
        found: Vec::new(),
    };
    walker.check(&schema, object, "", 0);
    walker.found
}

/// `fieldValidation=Strict` on a create, update or patch: refuses fields the resource's schema
/// does not declare, as the API server does. `Ignore` and `Warn` accept them (no warning is
/// sent); bodies this cannot read (protobuf, JSON patches, malformed ones) are left to the
/// handler. `segments` are the request path's.
pub fn check_field_validation(
    def: &ResourceDef,
    request: &Request,
    namespace: Option<&str>,
    name: Option<&str>,
) -> Result<(), ApiError> {
    let method = request.method.as_str();
    if !matches!(method, "POST" | "PUT" | "PATCH")
        || request.query.get("fieldValidation").map(String::as_str) != Some("Strict")
    {
        return Ok(());
    }
    let media = request
        .content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim();
    let (body, patch) = match (method, media) {
        ("PATCH", "application/merge-patch+json" | "application/strategic-merge-patch+json") => (
            serde_json::from_slice::<Value>(&request.body).ok(),
            Some(media),
        ),
        ("PATCH", "application/apply-patch+yaml") => (
            serde_json::from_slice::<Value>(&request.body)
                .ok()
                .or_else(|| serde_yaml::from_slice::<Value>(&request.body).ok()),
            Some(media),
        ),
        ("PATCH", _) => return Ok(()),
        (_, "" | "application/json" | "*/*") => {
            (serde_json::from_slice::<Value>(&request.body).ok(), None)
        }
        _ => return Ok(()),
    };
    let Some(body) = body.filter(Value::is_object) else {
        return Ok(());
    };
    let unknown = unknown_fields(def, &body, patch);
    if unknown.is_empty() {
        return Ok(());
    }
    let strict = |field: &String| format!("unknown field \"{field}\"");
    let errors = unknown.iter().map(strict).collect::<Vec<_>>().join(", ");
    Err(match patch {
        None => ApiError::bad_request(format!(
            "{kind} in version \"{version}\" cannot be handled as a {kind}: strict decoding error: {errors}",
            kind = def.kind,
            version = def.version,
        )),
        // Server-side apply reports fields its typed schema lacks.
        Some("application/apply-patch+yaml") => {
            let namespace = namespace.unwrap_or_default();
            let undeclared = unknown
                .iter()
                .map(|field| format!(".{field}: field not declared in schema"))
                .collect::<Vec<_>>()
                .join("\n");
            ApiError::bad_request(format!(
                "failed to create typed patch object ({namespace}/{name}; {api_version}, Kind={kind}): {undeclared}",
                name = name.unwrap_or_default(),
                api_version = def.api_version(),
                kind = def.kind,
            ))
        }
        // Other patches: the request is invalid, the patch the culprit.
        Some(_) => ApiError::invalid(
            "",
            "",
            "",
            vec![Cause {
                reason: "FieldValueInvalid",
                field: "patch".into(),
                message: format!(
                    "Invalid value: {:?}: strict decoding error: {errors}",
                    body.to_string()
                ),
            }],
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{builtins as builtin_defs, defs_from_crd};

    fn widget_crd() -> Value {
        json!({
            "metadata": {"name": "widgets.example.com"},
            "spec": {"group": "example.com", "scope": "Namespaced",
                "names": {"plural": "widgets", "kind": "Widget"},
                "versions": [{"name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                        "spec": {"type": "object", "description": "What the widget is.", "properties": {
                            "size": {"type": "integer", "description": "How big."},
                            "parts": {"type": "array", "items": {"type": "object",
                                "properties": {"name": {"type": "string"}}}},
                            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                            "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                        }},
                    }}}}]}
        })
    }

    fn widget() -> ResourceDef {
        defs_from_crd(&widget_crd())
            .ok()
            .and_then(|mut defs| defs.pop())
            .expect("the widget CRD serves v1")
    }

    fn configmap() -> ResourceDef {
        builtin_defs()
            .into_iter()
            .find(|d| d.kind == "ConfigMap")
            .expect("ConfigMaps are built in")
    }

    #[test]
    fn names_follow_kubernetes() {
        assert_eq!(schema_name(&widget()), "com.example.v1.Widget");
        assert_eq!(schema_name(&configmap()), "io.k8s.api.core.v1.ConfigMap");
        assert_eq!(
            list_schema_name(&configmap(), "io.k8s.api.core.v1.ConfigMap"),
            "io.k8s.api.core.v1.ConfigMapList"
        );
        assert_eq!(reverse_domain("certinext.io"), "io.certinext");
        assert_eq!(
            operation_id("read", &configmap(), ""),
            "readCoreV1NamespacedConfigMap"
        );
    }

    #[test]
    fn every_builtin_has_its_real_schema() {
        for def in builtin_defs() {
            let name = schema_name(&def);
            let schema = builtins()
                .definitions
                .get(&name)
                .unwrap_or_else(|| panic!("no schema for {}", def.kind));
            assert!(schema["properties"]["metadata"].is_object(), "{name}");
            let required = schema.get("required").cloned().unwrap_or(json!([]));
            assert!(!required.to_string().contains("metadata"), "{name}");
        }
    }

    #[test]
    fn a_document_holds_its_kinds_and_what_they_refer_to() {
        let document = build_document(&[Arc::new(widget())]);
        let schemas = &document["components"]["schemas"];
        let root = &schemas["com.example.v1.Widget"];
        assert_eq!(
            root[GVK],
            json!([{"group": "example.com", "version": "v1", "kind": "Widget"}])
        );
        assert_eq!(
            root["properties"]["metadata"]["allOf"][0]["$ref"],
            format!("{SCHEMAS}{OBJECT_META}")
        );
        assert_eq!(
            root["properties"]["spec"]["properties"]["size"]["description"],
            "How big."
        );
        for name in [OBJECT_META, LIST_META, STATUS, "com.example.v1.WidgetList"] {
            assert!(schemas[name].is_object(), "{name} missing");
        }
        // Every reference resolves within the document.
        let mut names = Vec::new();
        collect_refs(&document, &mut names);
        for name in names {
            assert!(schemas[name].is_object(), "dangling {name}");
        }
        let patch = &document["paths"]["/apis/example.com/v1/namespaces/{namespace}/widgets/{name}"]
            ["patch"];
        assert_eq!(patch[GVK]["kind"], "Widget");
        assert!(patch["parameters"].to_string().contains("fieldValidation"));
    }

    #[test]
    fn unknown_fields_are_found_where_the_schema_declares_fields() {
        let object = json!({"apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {"name": "w", "labels": {"a": "b"}, "colour": "red"},
            "spec": {"size": 1, "colour": "red", "parts": [{"name": "a"}, {"nom": "b"}],
                "labels": {"any": "thing"}, "extra": {"anything": {"goes": true}}},
            "status": {}});
        assert_eq!(
            unknown_fields(&widget(), &object, None),
            [
                "metadata.colour",
                "spec.colour",
                "spec.parts[1].nom",
                "status"
            ]
        );
        let configmap_object = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "managedFields": [{"fieldsV1": {"f:data": {}}}]},
            "data": {"a": "b"}, "spec": {}});
        assert_eq!(
            unknown_fields(&configmap(), &configmap_object, None),
            ["spec"]
        );
        let patch = json!({"$setElementOrder/x": [], "data": {"a": null}, "gone": null});
        assert!(
            unknown_fields(
                &configmap(),
                &patch,
                Some("application/strategic-merge-patch+json")
            )
            .is_empty()
        );
    }
}
