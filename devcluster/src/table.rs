//! Server-side printing: `meta.k8s.io/v1` Tables (what `kubectl get` shows) from a CRD's
//! `additionalPrinterColumns` or a built-in's usual columns, and PartialObjectMetadata.

use crate::At;
use serde_json::{Value, json};

use crate::registry::ResourceDef;

/// What a client asked the response to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The objects themselves.
    Object,
    /// A Table, with each row carrying none, the metadata, or all of its object.
    Table(Include),
    /// PartialObjectMetadata (and PartialObjectMetadataList for lists).
    Metadata,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Include {
    None,
    Metadata,
    Object,
}

impl Format {
    /// The first media type of an `Accept` header this server produces.
    pub fn from_accept(accept: &str, include_object: Option<&str>) -> Format {
        for media in accept.split(',') {
            let mut parts = media.split(';').map(str::trim);
            let base = parts.next().unwrap_or_default();
            if base != "application/json" && base != "*/*" && !base.is_empty() {
                continue;
            }
            let params: Vec<(&str, &str)> = parts.filter_map(|p| p.split_once('=')).collect();
            let param = |name: &str| params.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
            match (param("as"), param("g"), param("v")) {
                (None, _, _) => return Format::Object,
                (Some("Table"), Some("meta.k8s.io"), Some("v1" | "v1beta1")) => {
                    let include = match include_object {
                        Some("None") => Include::None,
                        Some("Object") => Include::Object,
                        _ => Include::Metadata,
                    };
                    return Format::Table(include);
                }
                (
                    Some("PartialObjectMetadata" | "PartialObjectMetadataList"),
                    Some("meta.k8s.io"),
                    Some("v1" | "v1beta1"),
                ) => return Format::Metadata,
                _ => continue,
            }
        }
        Format::Object
    }
}

/// One column of a table: its definition and where its cells come from.
struct Column {
    name: String,
    kind: String,
    format: String,
    description: String,
    priority: i64,
    cell: Cell,
}

enum Cell {
    Name,
    Age,
    Path(String),
    Count(&'static str),
    ServicePorts,
    Involved,
}

fn column(name: &str, kind: &str, description: &str, cell: Cell) -> Column {
    Column {
        name: name.into(),
        kind: kind.into(),
        format: if matches!(cell, Cell::Name) {
            "name".into()
        } else {
            String::new()
        },
        description: description.into(),
        priority: 0,
        cell,
    }
}

fn columns(def: &ResourceDef) -> Vec<Column> {
    let name = || {
        column(
            "Name",
            "string",
            "Name must be unique within a namespace.",
            Cell::Name,
        )
    };
    let age = || {
        column(
            "Age",
            "date",
            "Time since the object was created.",
            Cell::Age,
        )
    };
    let path =
        |title: &str, kind: &str, path: &str| column(title, kind, "", Cell::Path(path.into()));
    if def.custom {
        let mut columns = vec![name()];
        for printer in &def.printer_columns {
            let text = |key: &str| {
                printer
                    .get(key)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            };
            columns.push(Column {
                name: text("name"),
                kind: text("type"),
                format: text("format"),
                description: text("description"),
                priority: printer.get("priority").and_then(Value::as_i64).unwrap_or(0),
                cell: Cell::Path(text("jsonPath")),
            });
        }
        if def.printer_columns.is_empty() {
            columns.push(age());
        }
        return columns;
    }
    match (def.group.as_str(), def.kind.as_str()) {
        ("", "Namespace") => vec![name(), path("Status", "string", ".status.phase"), age()],
        ("", "Secret") => vec![
            name(),
            path("Type", "string", ".type"),
            column("Data", "string", "", Cell::Count("data")),
            age(),
        ],
        ("", "ConfigMap") => vec![
            name(),
            column("Data", "string", "", Cell::Count("data")),
            age(),
        ],
        ("", "Service") => vec![
            name(),
            path("Type", "string", ".spec.type"),
            path("Cluster-IP", "string", ".spec.clusterIP"),
            column("Port(s)", "string", "", Cell::ServicePorts),
            age(),
        ],
        ("", "Event") => vec![
            path("Last Seen", "string", ".lastTimestamp"),
            path("Type", "string", ".type"),
            path("Reason", "string", ".reason"),
            column("Object", "string", "", Cell::Involved),
            path("Message", "string", ".message"),
        ],
        ("coordination.k8s.io", "Lease") => vec![
            name(),
            path("Holder", "string", ".spec.holderIdentity"),
            age(),
        ],
        ("apps", "Deployment") => vec![
            name(),
            path("Ready", "string", ".status.readyReplicas"),
            path("Up-to-date", "string", ".status.updatedReplicas"),
            path("Available", "string", ".status.availableReplicas"),
            age(),
        ],
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => {
            vec![name(), path("Role", "string", ".roleRef.name"), age()]
        }
        _ => vec![name(), age()],
    }
}

/// A Table of `objects` (already in the requested version's form).
pub fn table(
    def: &ResourceDef,
    objects: &[Value],
    list_metadata: Value,
    include: Include,
    with_definitions: bool,
) -> Value {
    let columns = columns(def);
    let definitions: Vec<Value> = if with_definitions {
        columns
            .iter()
            .map(|c| {
                json!({"name": c.name, "type": c.kind, "format": c.format,
                "description": c.description, "priority": c.priority})
            })
            .collect()
    } else {
        Vec::new()
    };
    let rows: Vec<Value> = objects
        .iter()
        .map(|object| {
            let cells: Vec<Value> = columns
                .iter()
                .map(|c| cell(&c.cell, &c.kind, object))
                .collect();
            let mut row = json!({"cells": cells});
            match include {
                Include::None => {}
                Include::Metadata => row["object"] = partial(object),
                Include::Object => row["object"] = object.clone(),
            }
            row
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_metadata,
        "columnDefinitions": definitions,
        "rows": rows,
    })
}

/// The object's metadata as a PartialObjectMetadata.
pub fn partial(object: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": object.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

/// A list of PartialObjectMetadata.
pub fn partial_list(objects: &[Value], list_metadata: Value) -> Value {
    json!({
        "kind": "PartialObjectMetadataList",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_metadata,
        "items": objects.iter().map(partial).collect::<Vec<_>>(),
    })
}

fn cell(cell: &Cell, kind: &str, object: &Value) -> Value {
    match cell {
        Cell::Name => object
            .at(&["metadata", "name"])
            .cloned()
            .unwrap_or(Value::Null),
        Cell::Age => age(object.at(&["metadata", "creationTimestamp"])),
        Cell::Count(field) => json!(
            object
                .get(*field)
                .and_then(Value::as_object)
                .map_or(0, |m| m.len())
        ),
        Cell::ServicePorts => {
            let ports: Vec<String> = object
                .at(&["spec", "ports"])
                .and_then(Value::as_array)
                .map(|ports| {
                    ports
                        .iter()
                        .map(|p| {
                            format!(
                                "{}/{}",
                                p["port"],
                                p.get("protocol").and_then(Value::as_str).unwrap_or("TCP")
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            if ports.is_empty() {
                json!("<none>")
            } else {
                json!(ports.join(","))
            }
        }
        Cell::Involved => {
            let involved = &object["involvedObject"];
            json!(format!(
                "{}/{}",
                involved["kind"]
                    .as_str()
                    .unwrap_or_default()
                    .to_ascii_lowercase(),
                involved["name"].as_str().unwrap_or_default()
            ))
        }
        Cell::Path(path) => {
            let found = jsonpath(object, path);
            match (found.as_slice(), kind) {
                ([], _) => Value::Null,
                ([one], "date") => age(Some(one)),
                ([one], _) => (*one).clone(),
                (many, _) => json!(many.iter().map(|v| text(v)).collect::<Vec<_>>().join(",")),
            }
        }
    }
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Time since a timestamp, as `kubectl get` prints ages.
fn age(timestamp: Option<&Value>) -> Value {
    let Some(when) = timestamp
        .and_then(Value::as_str)
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
    else {
        return json!("<unknown>");
    };
    let seconds = jiff::Timestamp::now().as_second() - when.as_second();
    json!(human_duration(seconds))
}

/// Kubernetes' human-readable duration (`5s`, `3m20s`, `5h`, `3d4h`, `2y30d`).
pub fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".into();
    }
    let seconds = seconds.max(0);
    let minutes = seconds / 60;
    let hours = minutes / 60;
    let days = hours / 24;
    let years = days / 365;
    if seconds < 120 {
        format!("{seconds}s")
    } else if minutes < 10 {
        match seconds % 60 {
            0 => format!("{minutes}m"),
            s => format!("{minutes}m{s}s"),
        }
    } else if minutes < 180 {
        format!("{minutes}m")
    } else if hours < 8 {
        match minutes % 60 {
            0 => format!("{hours}h"),
            m => format!("{hours}h{m}m"),
        }
    } else if hours < 48 {
        format!("{hours}h")
    } else if hours < 24 * 8 {
        match hours % 24 {
            0 => format!("{days}d"),
            h => format!("{days}d{h}h"),
        }
    } else if days < 365 * 2 {
        format!("{days}d")
    } else if days < 365 * 8 {
        match days % 365 {
            0 => format!("{years}y"),
            d => format!("{years}y{d}d"),
        }
    } else {
        format!("{years}y")
    }
}

/// The values a printer column's JSONPath selects: `.a.b`, `[0]`, `[*]`,
/// `[?(@.type=="Ready")]`, optionally wrapped in `{}`.
pub fn jsonpath<'a>(object: &'a Value, path: &str) -> Vec<&'a Value> {
    let path = path.trim().trim_start_matches('{').trim_end_matches('}');
    let mut current = vec![object];
    let mut rest = path;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('.') {
            let end = after.find(['.', '[']).unwrap_or(after.len());
            let field = &after[..end];
            rest = &after[end..];
            if field.is_empty() {
                continue;
            }
            current = current.into_iter().filter_map(|v| v.get(field)).collect();
        } else if let Some(after) = rest.strip_prefix('[') {
            let Some(end) = after.find(']') else {
                return Vec::new();
            };
            let selector = &after[..end];
            rest = &after[end + 1..];
            current = current
                .into_iter()
                .filter_map(Value::as_array)
                .flat_map(|items| select(items, selector))
                .collect();
        } else {
            return Vec::new();
        }
    }
    current
}

fn select<'a>(items: &'a [Value], selector: &str) -> Vec<&'a Value> {
    if selector == "*" {
        return items.iter().collect();
    }
    if let Ok(index) = selector.parse::<usize>() {
        return items.get(index).into_iter().collect();
    }
    let Some(filter) = selector
        .strip_prefix("?(")
        .and_then(|f| f.strip_suffix(')'))
    else {
        return Vec::new();
    };
    let Some((left, right)) = filter.split_once("==") else {
        return Vec::new();
    };
    let field = left.trim().trim_start_matches('@');
    let expected = right.trim().trim_matches(|c| c == '"' || c == '\'');
    items
        .iter()
        .filter(|item| {
            jsonpath(item, field)
                .first()
                .is_some_and(|v| text(v) == expected)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonpath_selects_fields_indexes_and_filters() {
        let object = json!({"spec": {"names": ["a", "b"]}, "status": {"conditions": [
            {"type": "Issuing", "status": "False"}, {"type": "Ready", "status": "True"}]}});
        assert_eq!(jsonpath(&object, ".spec.names[1]"), [&json!("b")]);
        assert_eq!(jsonpath(&object, ".spec.names[*]").len(), 2);
        assert_eq!(
            jsonpath(&object, ".status.conditions[?(@.type==\"Ready\")].status"),
            [&json!("True")]
        );
        assert!(jsonpath(&object, ".status.missing").is_empty());
        assert!(jsonpath(&object, ".spec.names[9]").is_empty());
        assert!(jsonpath(&object, "spec[").is_empty());
    }

    #[test]
    fn durations_read_as_kubectl_prints_them() {
        for (seconds, text) in [
            (5, "5s"),
            (119, "119s"),
            (200, "3m20s"),
            (600, "10m"),
            (3 * 3600 + 5 * 60, "3h5m"),
            (30 * 3600, "30h"),
            (3 * 86_400 + 4 * 3600, "3d4h"),
            (40 * 86_400, "40d"),
            (3 * 365 * 86_400, "3y"),
            (-5, "<invalid>"),
        ] {
            assert_eq!(human_duration(seconds), text);
        }
    }

    #[test]
    fn accept_headers_choose_the_format() {
        let kubectl = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert_eq!(
            Format::from_accept(kubectl, None),
            Format::Table(Include::Metadata)
        );
        assert_eq!(
            Format::from_accept(kubectl, Some("Object")),
            Format::Table(Include::Object)
        );
        assert_eq!(
            Format::from_accept(
                "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1",
                None
            ),
            Format::Metadata
        );
        assert_eq!(
            Format::from_accept("application/json", None),
            Format::Object
        );
        assert_eq!(Format::from_accept("", None), Format::Object);
        assert_eq!(
            Format::from_accept("application/yaml;as=Table", None),
            Format::Object
        );
    }
}
