//! JSON merge patch (RFC 7386) and JSON patch (RFC 6902) with Kubernetes semantics.
//!
//! The RFC algorithms come from the `json-patch` crate. This module adds what the Kubernetes API
//! server does around them:
//!
//! * a JSON patch is all or nothing: when any operation fails the target is left unchanged;
//! * a `test` operation with the value `null` passes when the key it names is absent from an
//!   existing object (Kubernetes' `evanphx/json-patch` treats a missing key as `null`); kube-rs'
//!   finalizer helper relies on this when it sends `test /metadata/finalizers null` before
//!   `add /metadata/finalizers [...]`. The parent must still exist, as in Kubernetes;
//! * a JSON patch may hold at most 10000 operations, as in Kubernetes.
//!
//! Errors name the index of the operation that is malformed or failed.

use std::fmt;

use json_patch::{PatchErrorKind, PatchOperation};
use serde_json::Value;

/// The most operations a JSON patch may hold, as in the Kubernetes API server.
pub const MAX_OPERATIONS: usize = 10_000;

/// The deepest a JSON patch may place a value, counted in object and array levels from the
/// root of the document. Deeper documents would risk overflowing the stack in the recursive
/// code (clone, drop, serialisation) that later handles them.
const MAX_DEPTH: usize = 1_000;

/// How much `copy` operations may add to the document in one JSON patch, counted in JSON values
/// plus the bytes of their strings and keys. Repeated copies double a document each time.
const MAX_COPIED: usize = 1 << 20;

/// Why a patch could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    /// A merge patch that is not a JSON object.
    #[error("merge patch must be a JSON object, got {0}")]
    MergePatchNotAnObject(&'static str),
    /// The body of a JSON patch is not JSON.
    #[error("JSON patch body is not valid JSON: {0}")]
    InvalidJson(serde_json::Error),
    /// The body of a JSON patch is JSON but not an array.
    #[error("JSON patch must be an array of operations, got {0}")]
    NotAnArray(&'static str),
    /// The JSON patch holds more than [`MAX_OPERATIONS`] operations.
    #[error("JSON patch has {count} operations; at most {MAX_OPERATIONS} are allowed")]
    TooManyOperations {
        /// How many operations the patch holds.
        count: usize,
    },
    /// An element of the JSON patch array is not a valid operation.
    #[error("JSON patch operation {index} is invalid: {reason}")]
    InvalidOperation {
        /// Zero-based index of the operation in the patch.
        index: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// A well-formed operation could not be applied to the document.
    #[error("JSON patch operation {index} ({op} {}) failed: {reason}", Location { path, from })]
    OperationFailed {
        /// Zero-based index of the operation in the patch.
        index: usize,
        /// The operation name: `add`, `remove`, `replace`, `move`, `copy` or `test`.
        op: &'static str,
        /// The operation's `path`.
        path: String,
        /// The operation's `from`, for `move` and `copy`.
        from: Option<String>,
        /// Why it failed.
        reason: String,
    },
}

/// Displays the pointers of an operation for an error message.
struct Location<'a> {
    path: &'a str,
    from: &'a Option<String>,
}

impl fmt::Display for Location<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.from {
            Some(from) => write!(f, "from {from:?} to {:?}", self.path),
            None => write!(f, "at {:?}", self.path),
        }
    }
}

fn kind_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// RFC 7386 JSON merge patch (`application/merge-patch+json`): `null` deletes a key, objects
/// merge recursively, and everything else, arrays included, replaces the target value. The
/// patch must be an object; a target that is not an object becomes one.
pub fn merge_patch(target: &mut Value, patch: &Value) -> Result<(), PatchError> {
    if !patch.is_object() {
        return Err(PatchError::MergePatchNotAnObject(kind_name(patch)));
    }
    json_patch::merge(target, patch);
    Ok(())
}

/// RFC 6902 JSON patch (`application/json-patch+json`) parsed from a request body and applied
/// atomically: on error the target is unchanged. As in Kubernetes, a `test` of a missing key of
/// an existing object passes when the tested value is `null`.
pub fn json_patch(target: &mut Value, body: &[u8]) -> Result<(), PatchError> {
    let operations = parse_operations(body)?;
    // Work on a copy so that a failure part-way leaves the target untouched. The crate's own
    // atomic `patch` undoes applied operations instead, and panics when it cannot (for
    // example after moving a value into the place of its own parent).
    let mut work = target.clone();
    let mut copied = 0;
    for (index, operation) in operations.iter().enumerate() {
        if is_test_of_missing_key_for_null(&work, operation) {
            continue;
        }
        check_growth(&work, index, operation, &mut copied)?;
        json_patch::patch_unsafe(&mut work, std::slice::from_ref(operation))
            .map_err(|e| failure(index, operation, failure_reason(operation, &e.kind)))?;
    }
    *target = work;
    Ok(())
}

fn parse_operations(body: &[u8]) -> Result<Vec<PatchOperation>, PatchError> {
    let elements = match serde_json::from_slice(body).map_err(PatchError::InvalidJson)? {
        Value::Array(elements) => elements,
        other => return Err(PatchError::NotAnArray(kind_name(&other))),
    };
    if elements.len() > MAX_OPERATIONS {
        return Err(PatchError::TooManyOperations {
            count: elements.len(),
        });
    }
    elements
        .into_iter()
        .enumerate()
        .map(|(index, element)| {
            if !element.is_object() {
                return Err(PatchError::InvalidOperation {
                    index,
                    reason: format!("expected an object, got {}", kind_name(&element)),
                });
            }
            serde_json::from_value(element).map_err(|e| PatchError::InvalidOperation {
                index,
                reason: e.to_string(),
            })
        })
        .collect()
}

/// Kubernetes' deviation from RFC 6902: `test` with value `null` passes when the parent of the
/// path is an existing object without that key.
fn is_test_of_missing_key_for_null(document: &Value, operation: &PatchOperation) -> bool {
    let PatchOperation::Test(test) = operation else {
        return false;
    };
    if !test.value.is_null() {
        return false;
    }
    let Some((parent, key)) = test.path.split_back() else {
        return false;
    };
    match document.pointer(parent.as_str()) {
        Some(Value::Object(object)) => !object.contains_key(key.decoded().as_ref()),
        _ => false,
    }
}

/// Refuses operations that would nest values deeper than [`MAX_DEPTH`], or copy more than
/// [`MAX_COPIED`] in total.
fn check_growth(
    document: &Value,
    index: usize,
    operation: &PatchOperation,
    copied: &mut usize,
) -> Result<(), PatchError> {
    let inserted = match operation {
        PatchOperation::Add(op) => Some(&op.value),
        PatchOperation::Replace(op) => Some(&op.value),
        PatchOperation::Move(op) => document.pointer(op.from.as_str()),
        PatchOperation::Copy(op) => document.pointer(op.from.as_str()),
        PatchOperation::Remove(_) | PatchOperation::Test(_) => None,
    };
    // A missing `from` is reported by the operation itself.
    let Some(inserted) = inserted else {
        return Ok(());
    };
    let (size, depth) = measure(inserted);
    let path_depth = operation.path().as_str().matches('/').count();
    if path_depth.saturating_add(depth) > MAX_DEPTH {
        return Err(failure(
            index,
            operation,
            format!("the result would nest values more than {MAX_DEPTH} levels deep"),
        ));
    }
    if let PatchOperation::Copy(_) = operation {
        *copied = copied.saturating_add(size);
        if *copied > MAX_COPIED {
            return Err(failure(
                index,
                operation,
                format!("the patch copies more than {MAX_COPIED} units of data"),
            ));
        }
    }
    Ok(())
}

/// The size of a value (one per JSON value plus the bytes of strings and keys) and its depth
/// (one for a scalar), computed without recursion.
fn measure(value: &Value) -> (usize, usize) {
    let mut size = 0usize;
    let mut max_depth = 0;
    let mut stack = vec![(value, 1usize)];
    while let Some((value, depth)) = stack.pop() {
        size = size.saturating_add(1);
        max_depth = max_depth.max(depth);
        match value {
            Value::String(s) => size = size.saturating_add(s.len()),
            Value::Array(items) => stack.extend(items.iter().map(|item| (item, depth + 1))),
            Value::Object(object) => {
                for (key, item) in object {
                    size = size.saturating_add(key.len());
                    stack.push((item, depth + 1));
                }
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }
    (size, max_depth)
}

fn op_name(operation: &PatchOperation) -> &'static str {
    match operation {
        PatchOperation::Add(_) => "add",
        PatchOperation::Remove(_) => "remove",
        PatchOperation::Replace(_) => "replace",
        PatchOperation::Move(_) => "move",
        PatchOperation::Copy(_) => "copy",
        PatchOperation::Test(_) => "test",
    }
}

fn failure(index: usize, operation: &PatchOperation, reason: String) -> PatchError {
    let from = match operation {
        PatchOperation::Move(op) => Some(op.from.as_str().to_owned()),
        PatchOperation::Copy(op) => Some(op.from.as_str().to_owned()),
        _ => None,
    };
    PatchError::OperationFailed {
        index,
        op: op_name(operation),
        path: operation.path().as_str().to_owned(),
        from,
        reason,
    }
}

fn failure_reason(operation: &PatchOperation, kind: &PatchErrorKind) -> String {
    let inserts = matches!(
        operation,
        PatchOperation::Add(_) | PatchOperation::Move(_) | PatchOperation::Copy(_)
    );
    match kind {
        PatchErrorKind::TestFailed => "the value at the path differs from the tested value".into(),
        PatchErrorKind::InvalidFromPointer => "the \"from\" path does not exist".into(),
        PatchErrorKind::InvalidPointer if inserts => "the parent of the path does not exist or is \
                                                      not an object or array, or the array index \
                                                      is out of range"
            .into(),
        PatchErrorKind::InvalidPointer => "the path does not exist".into(),
        PatchErrorKind::CannotMoveInsideItself => {
            "a value cannot be moved into one of its own children".into()
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    // --- merge patch -------------------------------------------------------------------------

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let rows = [
            // A key set to null is deleted; a missing key is left alone.
            (json!({"a": 1, "b": 2}), json!({"a": null}), json!({"b": 2})),
            (json!({"a": 1}), json!({"x": null}), json!({"a": 1})),
            // Scalars replace and new keys are added.
            (
                json!({"a": 1, "b": "x"}),
                json!({"a": 2, "c": true}),
                json!({"a": 2, "b": "x", "c": true}),
            ),
            // Objects merge recursively.
            (
                json!({"metadata": {"labels": {"app": "web", "tier": "fe"}, "name": "n"}}),
                json!({"metadata": {"labels": {"tier": null, "env": "prod"}}}),
                json!({"metadata": {"labels": {"app": "web", "env": "prod"}, "name": "n"}}),
            ),
            // Arrays replace wholesale, nulls inside them included.
            (
                json!({"finalizers": ["a", "b"]}),
                json!({"finalizers": ["c", null]}),
                json!({"finalizers": ["c", null]}),
            ),
            (
                json!({"a": [1, 2]}),
                json!({"a": {"b": 1}}),
                json!({"a": {"b": 1}}),
            ),
            (json!({"a": {"b": 1}}), json!({"a": [1]}), json!({"a": [1]})),
            // An object patch on a scalar replaces it with the merged object, dropping nulls.
            (
                json!({"a": "x"}),
                json!({"a": {"b": 1, "c": null}}),
                json!({"a": {"b": 1}}),
            ),
            // A target that is not an object becomes one.
            (json!("text"), json!({"a": 1}), json!({"a": 1})),
            // The empty patch changes nothing.
            (json!({"a": 1}), json!({}), json!({"a": 1})),
        ];
        for (mut target, patch, expected) in rows {
            let original = target.clone();
            merge_patch(&mut target, &patch).expect("object patches apply");
            assert_eq!(target, expected, "{original} merged with {patch}");
        }
    }

    #[test]
    fn merge_patch_must_be_an_object() {
        for (patch, message) in [
            (json!(null), "merge patch must be a JSON object, got null"),
            (
                json!([1]),
                "merge patch must be a JSON object, got an array",
            ),
            (
                json!("x"),
                "merge patch must be a JSON object, got a string",
            ),
            (json!(3), "merge patch must be a JSON object, got a number"),
            (
                json!(false),
                "merge patch must be a JSON object, got a boolean",
            ),
        ] {
            let mut target = json!({"a": 1});
            let error = merge_patch(&mut target, &patch).expect_err("non-object patch");
            assert_eq!(error.to_string(), message);
            assert_eq!(target, json!({"a": 1}), "target unchanged");
        }
    }

    // --- JSON patch --------------------------------------------------------------------------

    fn apply(target: &Value, patch: Value) -> Result<Value, PatchError> {
        let mut target = target.clone();
        let body = serde_json::to_vec(&patch).expect("test patches serialise");
        json_patch(&mut target, &body).map(|()| target)
    }

    fn document() -> Value {
        json!({
            "metadata": {"name": "n", "labels": {"app": "web"}, "finalizers": ["a"]},
            "spec": {"items": [1, 2, 3]},
        })
    }

    #[test]
    fn json_patch_operations_follow_rfc_6902() {
        let rows = [
            (
                json!([{"op": "add", "path": "/metadata/labels/env", "value": "prod"}]),
                json!({
                    "metadata": {"name": "n", "labels": {"app": "web", "env": "prod"}, "finalizers": ["a"]},
                    "spec": {"items": [1, 2, 3]},
                }),
            ),
            (
                json!([
                    {"op": "add", "path": "/spec/items/0", "value": 0},
                    {"op": "add", "path": "/spec/items/-", "value": 4},
                ]),
                json!({
                    "metadata": {"name": "n", "labels": {"app": "web"}, "finalizers": ["a"]},
                    "spec": {"items": [0, 1, 2, 3, 4]},
                }),
            ),
            (
                json!([
                    {"op": "remove", "path": "/metadata/labels/app"},
                    {"op": "remove", "path": "/spec/items/1"},
                ]),
                json!({
                    "metadata": {"name": "n", "labels": {}, "finalizers": ["a"]},
                    "spec": {"items": [1, 3]},
                }),
            ),
            (
                json!([{"op": "replace", "path": "/metadata/name", "value": "m"}]),
                json!({
                    "metadata": {"name": "m", "labels": {"app": "web"}, "finalizers": ["a"]},
                    "spec": {"items": [1, 2, 3]},
                }),
            ),
            (
                json!([{"op": "move", "from": "/metadata/labels", "path": "/spec/labels"}]),
                json!({
                    "metadata": {"name": "n", "finalizers": ["a"]},
                    "spec": {"items": [1, 2, 3], "labels": {"app": "web"}},
                }),
            ),
            (
                json!([{"op": "copy", "from": "/metadata/name", "path": "/spec/name"}]),
                json!({
                    "metadata": {"name": "n", "labels": {"app": "web"}, "finalizers": ["a"]},
                    "spec": {"items": [1, 2, 3], "name": "n"},
                }),
            ),
            (
                json!([
                    {"op": "test", "path": "/metadata/finalizers", "value": ["a"]},
                    {"op": "test", "path": "/spec/items/2", "value": 3},
                    {"op": "replace", "path": "/metadata/finalizers", "value": []},
                ]),
                json!({
                    "metadata": {"name": "n", "labels": {"app": "web"}, "finalizers": []},
                    "spec": {"items": [1, 2, 3]},
                }),
            ),
            // Pointer escapes: `~1` is `/` and `~0` is `~`.
            (
                json!([{"op": "add", "path": "/metadata/labels/example.com~1a~0b", "value": "x"}]),
                json!({
                    "metadata": {"name": "n", "labels": {"app": "web", "example.com/a~b": "x"}, "finalizers": ["a"]},
                    "spec": {"items": [1, 2, 3]},
                }),
            ),
            // The empty patch changes nothing.
            (json!([]), document()),
        ];
        for (patch, expected) in rows {
            let patched = apply(&document(), patch.clone())
                .unwrap_or_else(|e| panic!("{patch} should apply: {e}"));
            assert_eq!(patched, expected, "{patch}");
        }
    }

    #[test]
    fn json_patch_is_atomic() {
        let rows = [
            (
                json!([
                    {"op": "replace", "path": "/metadata/name", "value": "m"},
                    {"op": "add", "path": "/metadata/labels/env", "value": "prod"},
                    {"op": "remove", "path": "/spec/missing"},
                ]),
                r#"JSON patch operation 2 (remove at "/spec/missing") failed: the path does not exist"#,
            ),
            (
                json!([
                    {"op": "remove", "path": "/metadata/finalizers/0"},
                    {"op": "test", "path": "/metadata/name", "value": "other"},
                ]),
                r#"JSON patch operation 1 (test at "/metadata/name") failed: the value at the path differs from the tested value"#,
            ),
            // Moving a value up into its own parent, then failing, must also leave the
            // target untouched.
            (
                json!([
                    {"op": "move", "from": "/metadata/labels/app", "path": "/metadata/labels"},
                    {"op": "test", "path": "/metadata/labels", "value": "other"},
                ]),
                r#"JSON patch operation 1 (test at "/metadata/labels") failed: the value at the path differs from the tested value"#,
            ),
            (
                json!([
                    {"op": "move", "from": "/metadata/name", "path": "/spec/name"},
                    {"op": "move", "from": "/metadata/name", "path": "/spec/other"},
                ]),
                r#"JSON patch operation 1 (move from "/metadata/name" to "/spec/other") failed: the "from" path does not exist"#,
            ),
            (
                json!([
                    {"op": "copy", "from": "/spec", "path": "/copy"},
                    {"op": "add", "path": "/missing/child", "value": 1},
                ]),
                r#"JSON patch operation 1 (add at "/missing/child") failed: the parent of the path does not exist or is not an object or array, or the array index is out of range"#,
            ),
            (
                json!([
                    {"op": "add", "path": "/spec/items/3", "value": 4},
                    {"op": "add", "path": "/spec/items/9", "value": 9},
                ]),
                r#"JSON patch operation 1 (add at "/spec/items/9") failed: the parent of the path does not exist or is not an object or array, or the array index is out of range"#,
            ),
            (
                json!([
                    {"op": "replace", "path": "/metadata/labels/other", "value": "x"},
                ]),
                r#"JSON patch operation 0 (replace at "/metadata/labels/other") failed: the path does not exist"#,
            ),
            (
                json!([{"op": "move", "from": "/metadata", "path": "/metadata/inner"}]),
                r#"JSON patch operation 0 (move from "/metadata" to "/metadata/inner") failed: a value cannot be moved into one of its own children"#,
            ),
        ];
        for (patch, message) in rows {
            let mut target = document();
            let body = serde_json::to_vec(&patch).expect("serialises");
            let error = json_patch(&mut target, &body).expect_err("patch fails");
            assert_eq!(error.to_string(), message, "{patch}");
            assert_eq!(target, document(), "target unchanged after {patch}");
        }
    }

    #[test]
    fn json_patch_test_of_missing_key_passes_for_null() {
        // What kube-runtime's finalizer helper sends for an object without finalizers.
        let target = json!({"metadata": {"name": "n"}});
        let patched = apply(
            &target,
            json!([
                {"op": "test", "path": "/metadata/finalizers", "value": null},
                {"op": "add", "path": "/metadata/finalizers", "value": ["example.com/cleanup"]},
            ]),
        )
        .expect("test of a missing key for null passes");
        assert_eq!(
            patched,
            json!({"metadata": {"name": "n", "finalizers": ["example.com/cleanup"]}})
        );

        // The rule applies to the document as left by the earlier operations.
        let error = apply(
            &target,
            json!([
                {"op": "add", "path": "/metadata/finalizers", "value": ["x"]},
                {"op": "test", "path": "/metadata/finalizers", "value": null},
            ]),
        )
        .expect_err("the key exists by then");
        assert!(
            error
                .to_string()
                .starts_with("JSON patch operation 1 (test")
        );

        // A present key holding null also passes; RFC equality covers that.
        apply(
            &json!({"a": null}),
            json!([{"op": "test", "path": "/a", "value": null}]),
        )
        .expect("null equals null");
    }

    #[test]
    fn json_patch_test_of_missing_path_fails_otherwise() {
        let target = json!({"metadata": {"name": "n"}, "list": [1]});
        let rows = [
            // A non-null value at a missing key.
            (
                json!([{"op": "test", "path": "/metadata/finalizers", "value": []}]),
                r#"JSON patch operation 0 (test at "/metadata/finalizers") failed: the path does not exist"#,
            ),
            // A missing parent, as in Kubernetes.
            (
                json!([{"op": "test", "path": "/spec/finalizers", "value": null}]),
                r#"JSON patch operation 0 (test at "/spec/finalizers") failed: the path does not exist"#,
            ),
            // An array index out of range, as in Kubernetes.
            (
                json!([{"op": "test", "path": "/list/5", "value": null}]),
                r#"JSON patch operation 0 (test at "/list/5") failed: the path does not exist"#,
            ),
            // A key below a scalar.
            (
                json!([{"op": "test", "path": "/metadata/name/x", "value": null}]),
                r#"JSON patch operation 0 (test at "/metadata/name/x") failed: the path does not exist"#,
            ),
            // A present key whose value is not null.
            (
                json!([{"op": "test", "path": "/metadata/name", "value": null}]),
                r#"JSON patch operation 0 (test at "/metadata/name") failed: the value at the path differs from the tested value"#,
            ),
        ];
        for (patch, message) in rows {
            let error = apply(&target, patch.clone()).expect_err("test fails");
            assert_eq!(error.to_string(), message, "{patch}");
        }
    }

    #[test]
    fn malformed_json_patch_bodies_are_errors() {
        let rows: [(&[u8], &str); 11] = [
            (b"", "JSON patch body is not valid JSON: "),
            (b"[", "JSON patch body is not valid JSON: "),
            (b"\xff\xfe", "JSON patch body is not valid JSON: "),
            (
                br#"{"op": "add"}"#,
                "JSON patch must be an array of operations, got an object",
            ),
            (b"null", "JSON patch must be an array of operations, got null"),
            (
                br#"[{"op": "test", "path": "/a", "value": 1}, 3]"#,
                "JSON patch operation 1 is invalid: expected an object, got a number",
            ),
            (
                br#"[{"path": "/a", "value": 1}]"#,
                "JSON patch operation 0 is invalid: missing field `op`",
            ),
            (
                br#"[{"op": "test", "path": "/a", "value": 1}, {"op": "frobnicate", "path": "/a"}]"#,
                "JSON patch operation 1 is invalid: unknown variant `frobnicate`",
            ),
            (
                br#"[{"op": "add", "path": "/a"}]"#,
                "JSON patch operation 0 is invalid: missing field `value`",
            ),
            (
                br#"[{"op": "move", "path": "/a"}]"#,
                "JSON patch operation 0 is invalid: missing field `from`",
            ),
            (
                br#"[{"op": "add", "path": "a", "value": 1}]"#,
                "JSON patch operation 0 is invalid: ",
            ),
        ];
        for (body, prefix) in rows {
            let mut target = document();
            let error = json_patch(&mut target, body).expect_err("malformed body");
            let message = error.to_string();
            assert!(
                message.starts_with(prefix),
                "{:?}: {message:?} should start with {prefix:?}",
                String::from_utf8_lossy(body)
            );
            assert_eq!(target, document(), "target unchanged");
        }
    }

    #[test]
    fn json_patch_operation_count_is_limited() {
        let operation = json!({"op": "test", "path": "/metadata/name", "value": "n"});
        let patch = Value::Array(vec![operation; MAX_OPERATIONS + 1]);
        let error = apply(&document(), patch).expect_err("too many operations");
        assert_eq!(
            error.to_string(),
            "JSON patch has 10001 operations; at most 10000 are allowed"
        );
    }

    #[test]
    fn json_patch_refuses_runaway_growth() {
        // Each copy doubles the array; the patch is refused before memory runs out.
        let doubling: Vec<Value> = (0..64)
            .map(|_| json!({"op": "copy", "from": "/a", "path": "/a/-"}))
            .collect();
        let target = json!({"a": ["some text"]});
        let error = apply(&target, Value::Array(doubling)).expect_err("refused");
        assert!(error.to_string().contains("copies more than"), "{error}");

        // Values nested ever deeper, each within the parser's limits, are refused before the
        // document gets deep enough to overflow the stack.
        let mut operations = Vec::new();
        let mut path = String::new();
        for _ in 0..20 {
            let mut value = json!(1);
            for _ in 0..99 {
                value = json!({"a": value});
            }
            path.push_str("/a");
            operations.push(json!({"op": "add", "path": path.clone(), "value": value}));
            path.push_str(&"/a".repeat(98));
        }
        let error = apply(&json!({}), Value::Array(operations)).expect_err("refused");
        assert!(error.to_string().contains("levels deep"), "{error}");
    }

    #[test]
    fn odd_json_patch_bodies_never_panic() {
        let bodies: &[&[u8]] = &[
            b"[]",
            b"[{}]",
            b"[null]",
            br#"[{"op": "remove", "path": ""}]"#,
            br#"[{"op": "add", "path": "", "value": 1}]"#,
            br#"[{"op": "move", "from": "", "path": "/x"}]"#,
            br#"[{"op": "move", "from": "/metadata", "path": ""}, {"op": "test", "path": "/x", "value": 1}]"#,
            br#"[{"op": "move", "from": "/spec/items/0", "path": "/spec/items/-"}]"#,
            br#"[{"op": "remove", "path": "/spec/items/-"}]"#,
            br#"[{"op": "copy", "from": "/spec/items/-", "path": "/x"}]"#,
            br#"[{"op": "add", "path": "/spec/items/99999999999999999999999", "value": 1}]"#,
            br#"[{"op": "add", "path": "/spec/items/-1", "value": 1}]"#,
            br#"[{"op": "add", "path": "/spec/items/01", "value": 1}]"#,
            br#"[{"op": "add", "path": "/a~2b", "value": 1}]"#,
            br#"[{"op": "test", "path": "/", "value": null}]"#,
            br#"[{"op": "test", "path": "", "value": null}]"#,
            br#"[{"op": "copy", "from": "/metadata", "path": "/metadata/x"}]"#,
            br#"[{"op": "add", "path": "/\u00e9", "value": "\u00fc"}]"#,
        ];
        for body in bodies {
            let mut target = document();
            let _ = json_patch(&mut target, body);
        }
    }

    #[test]
    fn json_patch_may_replace_the_whole_document() {
        let patched = apply(
            &document(),
            json!([
                {"op": "move", "from": "/metadata", "path": ""},
                {"op": "test", "path": "/name", "value": "n"},
            ]),
        )
        .expect("moving to the root replaces the document");
        assert_eq!(
            patched,
            json!({"name": "n", "labels": {"app": "web"}, "finalizers": ["a"]})
        );
    }
}
