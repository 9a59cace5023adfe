//! Validating a custom resource against its CRD's structural schema: types, required fields and
//! enums, reported as the API server reports them.

use serde_json::Value;

use crate::status::Cause;

/// Every problem with `object` under `schema`, each naming the field.
pub fn validate(schema: &Value, object: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    check(schema, object, "", &mut causes, true);
    causes
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_owned()
    } else {
        format!("{path}.{field}")
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn check(schema: &Value, value: &Value, path: &str, causes: &mut Vec<Cause>, root: bool) {
    let Some(schema) = schema.as_object() else {
        return;
    };
    if value.is_null() {
        if schema.get("nullable") != Some(&Value::Bool(true)) && !root {
            // Kubernetes drops null for non-nullable fields during decoding of optional fields;
            // a null where a value is expected is reported as the wrong type.
            if let Some(Value::String(expected)) = schema.get("type") {
                causes.push(type_cause(path, value, expected));
            }
        }
        return;
    }
    let int_or_string = schema.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
    if int_or_string {
        if !(value.is_string() || type_name(value) == "integer") {
            causes.push(Cause {
                reason: "FieldValueInvalid",
                field: path.to_owned(),
                message: format!(
                    "Invalid value: \"{}\": {path} in body must be of type integer,string: \"{}\"",
                    type_name(value),
                    type_name(value)
                ),
            });
        }
        return;
    }
    if let Some(Value::String(expected)) = schema.get("type") {
        let actual = type_name(value);
        let matches = actual == expected || (expected == "number" && actual == "integer");
        if !matches {
            causes.push(type_cause(path, value, expected));
            return;
        }
    }
    if let Some(Value::Array(allowed)) = schema.get("enum")
        && !allowed.contains(value)
    {
        let supported = allowed
            .iter()
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        causes.push(Cause {
            reason: "FieldValueNotSupported",
            field: path.to_owned(),
            message: format!("Unsupported value: {value}: supported values: {supported}"),
        });
    }
    match value {
        Value::Object(fields) => {
            if let Some(Value::Array(required)) = schema.get("required") {
                for name in required.iter().filter_map(Value::as_str) {
                    if !fields.contains_key(name) {
                        causes.push(Cause {
                            reason: "FieldValueRequired",
                            field: join(path, name),
                            message: "Required value".into(),
                        });
                    }
                }
            }
            let properties = schema.get("properties").and_then(Value::as_object);
            for (name, child) in fields {
                if root && ["apiVersion", "kind", "metadata"].contains(&name.as_str()) {
                    continue;
                }
                if let Some(child_schema) = properties.and_then(|p| p.get(name)) {
                    check(child_schema, child, &join(path, name), causes, false);
                } else if let Some(additional) = schema.get("additionalProperties")
                    && additional.is_object()
                {
                    check(additional, child, &join(path, name), causes, false);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (index, item) in items.iter().enumerate() {
                    check(
                        item_schema,
                        item,
                        &format!("{path}[{index}]"),
                        causes,
                        false,
                    );
                }
            }
        }
        _ => {}
    }
}

fn type_cause(path: &str, value: &Value, expected: &str) -> Cause {
    let actual = type_name(value);
    Cause {
        reason: "FieldValueTypeInvalid",
        field: path.to_owned(),
        message: format!(
            "Invalid value: \"{actual}\": {path} in body must be of type {expected}: \"{actual}\""
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
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

    fn fields(object: Value) -> Vec<String> {
        validate(&schema(), &object)
            .into_iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect()
    }

    #[test]
    fn a_valid_object_has_no_problems() {
        let object = json!({"apiVersion": "x/v1", "kind": "X", "metadata": {"name": "a"},
            "spec": {"secretName": "s", "replicas": 2, "ratio": 1, "mode": "A", "names": ["a"],
                     "port": "http", "labels": {"a": "b"}, "note": null}});
        assert!(fields(object).is_empty());
    }

    #[test]
    fn problems_name_the_field() {
        let found = fields(json!({"spec": {"replicas": "two", "mode": "C",
            "names": ["a", 3], "port": true, "labels": {"a": 1}}}));
        assert_eq!(
            found,
            [
                "spec.secretName: Required value",
                "spec.replicas: Invalid value: \"string\": spec.replicas in body must be of type integer: \"string\"",
                "spec.mode: Unsupported value: \"C\": supported values: \"A\", \"B\"",
                "spec.names[1]: Invalid value: \"integer\": spec.names[1] in body must be of type string: \"integer\"",
                "spec.port: Invalid value: \"boolean\": spec.port in body must be of type integer,string: \"boolean\"",
                "spec.labels.a: Invalid value: \"integer\": spec.labels.a in body must be of type string: \"integer\"",
            ]
        );
    }
}
