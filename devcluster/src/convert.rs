//! Resources served in more than one form over one store: events.k8s.io/v1 Events are stored
//! as core/v1 Events, as the API server stores them.

use serde_json::{Map, Value};

use crate::registry::ResourceDef;

/// Field names of core/v1 Event and their events.k8s.io/v1 names.
const EVENT_FIELDS: [(&str, &str); 14] = [
    ("involvedObject", "regarding"),
    ("reason", "reason"),
    ("message", "note"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
    ("type", "type"),
    ("eventTime", "eventTime"),
    ("series", "series"),
    ("action", "action"),
    ("related", "related"),
    ("reportingComponent", "reportingController"),
    ("reportingInstance", "reportingInstance"),
];

/// Whether `def` presents objects stored in another form.
pub fn converts(def: &ResourceDef) -> bool {
    def.group == "events.k8s.io"
}

/// The object in `def`'s form, from its stored form.
pub fn from_storage(def: &ResourceDef, object: &Value) -> Value {
    if converts(def) {
        rename(object, |core| lookup(core, true))
    } else {
        object.clone()
    }
}

/// The stored form of an object written in `def`'s form.
pub fn to_storage(def: &ResourceDef, object: Value) -> Value {
    if converts(def) {
        let mut stored = rename(&object, |new| lookup(new, false));
        if let Some(fields) = stored.as_object_mut() {
            fields.insert("apiVersion".into(), Value::String("v1".into()));
        }
        stored
    } else {
        object
    }
}

fn lookup(name: &str, core_to_new: bool) -> Option<&'static str> {
    EVENT_FIELDS.iter().find_map(|(core, new)| {
        if core_to_new {
            (*core == name).then_some(*new)
        } else {
            (*new == name).then_some(*core)
        }
    })
}

/// Renames the top-level fields `map` knows; keeps metadata, apiVersion and kind; drops the
/// rest (fields the other form does not have).
fn rename(object: &Value, map: impl Fn(&str) -> Option<&'static str>) -> Value {
    let Some(fields) = object.as_object() else {
        return object.clone();
    };
    let mut out = Map::new();
    for (name, value) in fields {
        match name.as_str() {
            "apiVersion" | "kind" | "metadata" => {
                out.insert(name.clone(), value.clone());
            }
            other => {
                if let Some(renamed) = map(other) {
                    out.insert(renamed.into(), value.clone());
                }
            }
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::builtins;
    use serde_json::json;

    #[test]
    fn events_round_trip_between_the_two_forms() {
        let new_def = builtins()
            .into_iter()
            .find(|d| d.group == "events.k8s.io")
            .expect("events.k8s.io is served");
        let new = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "e", "namespace": "default"},
            "regarding": {"kind": "Pod", "name": "p"}, "note": "pulled", "reason": "Pulled",
            "reportingController": "kubelet", "reportingInstance": "node-1", "type": "Normal",
            "eventTime": "2026-11-27T10:00:00.000000Z", "action": "Pull"});
        let stored = to_storage(&new_def, new.clone());
        assert_eq!(stored["apiVersion"], "v1");
        assert_eq!(stored["involvedObject"]["name"], "p");
        assert_eq!(stored["message"], "pulled");
        assert_eq!(stored["reportingComponent"], "kubelet");
        let back = from_storage(&new_def, &stored);
        assert_eq!(back["note"], "pulled");
        assert_eq!(back["regarding"], new["regarding"]);
        assert_eq!(back["reportingController"], "kubelet");
    }
}
