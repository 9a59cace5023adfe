//! Validating objects against the CRDs the code generates, as the API server does it:
//! the structural schema (types, required, enums, patterns, bounds, formats, no unknown fields)
//! and then the CEL rules, with defaults applied first.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::{Map, Value, json};

/// The `openAPIV3Schema` of the CRD for `kind`.
pub fn schema_of(kind: &str) -> Value {
    let crd = crd_of(kind);
    let version = &crd.spec.versions[0];
    let schema = version
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .unwrap_or_else(|| panic!("CRD for {kind} has no openAPIV3Schema"));
    serde_json::to_value(schema).expect("schema serializes")
}

pub fn crd_of(kind: &str) -> CustomResourceDefinition {
    certinext::api::crds()
        .into_iter()
        .map(|(_, crd)| crd)
        .find(|crd| crd.spec.names.kind == kind)
        .unwrap_or_else(|| panic!("no CRD for kind {kind}"))
}

/// Every problem the API server would report for `object` (an update when `old` is given),
/// as `path: message` lines. Empty when the object is valid.
pub fn problems(kind: &str, object: &Value, old: Option<&Value>) -> Vec<String> {
    let schema = schema_of(kind);
    let mut problems = structural_problems(&schema, object);
    if problems.is_empty()
        && let Err(errors) = kube::core::cel::Validator::new().validate(&schema, object, old)
    {
        problems.extend(errors.into_vec().into_iter().map(|e| e.to_string()));
    }
    problems
}

/// Schema problems other than CEL: what the API server reports before it runs any rule.
fn structural_problems(schema: &Value, object: &Value) -> Vec<String> {
    let mut strict = schema.clone();
    make_strict(&mut strict, true);
    let validator = jsonschema::draft4::options()
        .should_validate_formats(true)
        .build(&strict)
        .expect("the CRD schema is a valid JSON schema");
    validator
        .iter_errors(object)
        .map(|error| format!("{}: {}", error.instance_path(), error))
        .collect()
}

/// Turns a Kubernetes structural schema into plain JSON schema with the API server's strictness:
/// `nullable` becomes a null type, and objects refuse unknown fields (which the server would
/// prune, silently losing what the user wrote) unless they preserve them.
fn make_strict(schema: &mut Value, root: bool) {
    let Some(node) = schema.as_object_mut() else {
        return;
    };
    if node.remove("nullable") == Some(Value::Bool(true))
        && let Some(Value::String(ty)) = node.get("type").cloned()
    {
        node.insert("type".into(), json!([ty, "null"]));
    }
    let preserves = node.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    if let Some(Value::Object(properties)) = node.get_mut("properties") {
        if root {
            for field in ["apiVersion", "kind"] {
                properties.entry(field).or_insert(json!({"type": "string"}));
            }
            properties
                .entry("metadata")
                .or_insert(json!({"type": "object"}));
        }
        for property in properties.values_mut() {
            make_strict(property, false);
        }
        if !preserves && !node.contains_key("additionalProperties") {
            node.insert("additionalProperties".into(), Value::Bool(false));
        }
    }
    for key in ["items", "additionalProperties"] {
        if let Some(child) = node.get_mut(key) {
            make_strict(child, false);
        }
    }
    node.retain(|key, _| !key.starts_with("x-kubernetes-"));
}

/// The `x-kubernetes-validations` rules of a schema, with the path of the node that holds each.
pub fn rules(schema: &Value) -> Vec<(String, Value, Map<String, Value>)> {
    let mut found = Vec::new();
    collect_rules(schema, "", &mut found);
    found
}

fn collect_rules(schema: &Value, path: &str, found: &mut Vec<(String, Value, Map<String, Value>)>) {
    let Some(node) = schema.as_object() else {
        return;
    };
    if let Some(Value::Array(rules)) = node.get("x-kubernetes-validations") {
        for rule in rules {
            if let Some(rule) = rule.as_object() {
                found.push((path.to_owned(), schema.clone(), rule.clone()));
            }
        }
    }
    if let Some(Value::Object(properties)) = node.get("properties") {
        for (name, child) in properties {
            collect_rules(child, &format!("{path}.{name}"), found);
        }
    }
    if let Some(items) = node.get("items") {
        collect_rules(items, &format!("{path}[*]"), found);
    }
    if let Some(additional) = node.get("additionalProperties") {
        collect_rules(additional, &format!("{path}{{*}}"), found);
    }
}
