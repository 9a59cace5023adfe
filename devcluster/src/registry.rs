//! The resources the server serves: the built-ins, and one per version of every established
//! CustomResourceDefinition. Also renders discovery documents from them.

use crate::At;
use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};

/// One served resource at one group-version.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceDef {
    /// API group; empty for the core group.
    pub group: String,
    pub version: String,
    /// Plural name, as in URLs: `secrets`, `accounts`.
    pub plural: String,
    pub singular: String,
    pub kind: String,
    pub list_kind: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    /// Whether `/status` is a subresource whose writes touch only `.status`.
    pub status_subresource: bool,
    /// The OpenAPI v3 schema of a custom resource version.
    pub schema: Option<Arc<Value>>,
    /// The list and map semantics server-side apply merges by: the CRD schema of a custom
    /// resource, the Kubernetes types' markers for a built-in.
    pub merge_schema: Option<Arc<Value>>,
    /// Printer columns of a custom resource version.
    pub printer_columns: Vec<Value>,
    /// Whether the resource is a custom resource (status on create, schema admission).
    pub custom: bool,
    /// Whether objects carry `metadata.generation`, bumped when their spec changes.
    pub generation: bool,
    /// The storage key of another resource whose objects this one serves in its own form
    /// (events.k8s.io/v1 Events are core/v1 Events).
    pub shares_storage_of: Option<&'static str>,
}

impl ResourceDef {
    /// The storage key of the resource: one per group and plural, whatever the version.
    pub fn key(&self) -> String {
        match self.shares_storage_of {
            Some(key) => key.to_owned(),
            None => format!("{}/{}", self.group, self.plural),
        }
    }

    /// Whether [`ResourceDef::key`] is `key`, without making the key: writes ask this of
    /// every object they store.
    pub fn has_key(&self, key: &str) -> bool {
        match self.shares_storage_of {
            Some(own) => own == key,
            None => {
                key.strip_prefix(self.group.as_str())
                    .and_then(|rest| rest.strip_prefix('/'))
                    == Some(self.plural.as_str())
            }
        }
    }

    /// `v1` or `certinext.io/v1alpha1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    fn builtin(
        group: &str,
        version: &str,
        plural: &str,
        kind: &str,
        namespaced: bool,
        short_names: &[&str],
        status_subresource: bool,
    ) -> Self {
        ResourceDef {
            group: group.into(),
            version: version.into(),
            plural: plural.into(),
            singular: kind.to_ascii_lowercase(),
            kind: kind.into(),
            list_kind: format!("{kind}List"),
            namespaced,
            short_names: short_names.iter().map(|s| (*s).into()).collect(),
            categories: Vec::new(),
            status_subresource,
            schema: None,
            merge_schema: crate::strategic::builtin_schema(group, kind).map(Arc::new),
            printer_columns: Vec::new(),
            custom: false,
            generation: false,
            shares_storage_of: None,
        }
    }

    fn with_generation(mut self) -> Self {
        self.generation = true;
        self
    }

    fn sharing_storage_of(mut self, key: &'static str) -> Self {
        self.shares_storage_of = Some(key);
        self
    }
}

/// The group of CustomResourceDefinitions.
pub const CRD_GROUP: &str = "apiextensions.k8s.io";
/// The storage key of CustomResourceDefinitions.
pub const CRD_KEY: &str = "apiextensions.k8s.io/customresourcedefinitions";
/// The storage key of Namespaces.
pub const NAMESPACE_KEY: &str = "/namespaces";

/// The storage key of core/v1 Events, which events.k8s.io/v1 serves too.
pub const EVENT_KEY: &str = "/events";

/// The resources a fresh server serves.
pub fn builtins() -> Vec<ResourceDef> {
    use ResourceDef as R;
    const RBAC: &str = "rbac.authorization.k8s.io";
    const ADMISSION: &str = "admissionregistration.k8s.io";
    vec![
        R::builtin("", "v1", "namespaces", "Namespace", false, &["ns"], true),
        R::builtin("", "v1", "secrets", "Secret", true, &[], false),
        R::builtin("", "v1", "configmaps", "ConfigMap", true, &["cm"], false),
        R::builtin(
            "",
            "v1",
            "serviceaccounts",
            "ServiceAccount",
            true,
            &["sa"],
            false,
        ),
        R::builtin("", "v1", "services", "Service", true, &["svc"], true),
        R::builtin("", "v1", "events", "Event", true, &["ev"], false),
        R::builtin(
            "events.k8s.io",
            "v1",
            "events",
            "Event",
            true,
            &["ev"],
            false,
        )
        .sharing_storage_of(EVENT_KEY),
        R::builtin(
            "coordination.k8s.io",
            "v1",
            "leases",
            "Lease",
            true,
            &[],
            false,
        ),
        R::builtin(RBAC, "v1", "roles", "Role", true, &[], false),
        R::builtin(RBAC, "v1", "clusterroles", "ClusterRole", false, &[], false),
        R::builtin(RBAC, "v1", "rolebindings", "RoleBinding", true, &[], false),
        R::builtin(
            RBAC,
            "v1",
            "clusterrolebindings",
            "ClusterRoleBinding",
            false,
            &[],
            false,
        ),
        R::builtin(
            "apps",
            "v1",
            "deployments",
            "Deployment",
            true,
            &["deploy"],
            true,
        )
        .with_generation(),
        R::builtin(
            ADMISSION,
            "v1",
            "validatingwebhookconfigurations",
            "ValidatingWebhookConfiguration",
            false,
            &[],
            false,
        )
        .with_generation(),
        R::builtin(
            ADMISSION,
            "v1",
            "mutatingwebhookconfigurations",
            "MutatingWebhookConfiguration",
            false,
            &[],
            false,
        )
        .with_generation(),
        R::builtin(
            CRD_GROUP,
            "v1",
            "customresourcedefinitions",
            "CustomResourceDefinition",
            false,
            &["crd", "crds"],
            true,
        )
        .with_generation(),
    ]
}

/// What the server serves, by (group, version, plural).
#[derive(Debug, Default, Clone)]
pub struct Registry {
    resources: BTreeMap<(String, String, String), Arc<ResourceDef>>,
}

impl Registry {
    pub fn with_builtins() -> Self {
        let mut registry = Registry::default();
        for def in builtins() {
            registry.insert(def);
        }
        registry
    }

    pub fn insert(&mut self, def: ResourceDef) {
        self.resources.insert(
            (def.group.clone(), def.version.clone(), def.plural.clone()),
            Arc::new(def),
        );
    }

    /// Removes every version of the resource with this storage key.
    pub fn remove_key(&mut self, key: &str) {
        self.resources.retain(|_, def| def.key() != key);
    }

    pub fn get(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceDef>> {
        self.resources
            .get(&(group.to_owned(), version.to_owned(), plural.to_owned()))
            .cloned()
    }

    /// The resource that owns the storage key (any of its versions).
    pub fn by_key(&self, key: &str) -> Option<Arc<ResourceDef>> {
        self.resources
            .values()
            .find(|d| d.has_key(key) && d.shares_storage_of.is_none())
            .cloned()
    }

    pub fn all(&self) -> impl Iterator<Item = &Arc<ResourceDef>> {
        self.resources.values()
    }

    /// Groups and their versions, the core group excluded, in a stable order.
    fn groups(&self) -> BTreeMap<&str, Vec<&str>> {
        let mut groups: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for def in self.resources.values().filter(|d| !d.group.is_empty()) {
            let versions = groups.entry(&def.group).or_default();
            if !versions.contains(&def.version.as_str()) {
                versions.push(&def.version);
            }
        }
        for versions in groups.values_mut() {
            versions.sort_by_key(|v| std::cmp::Reverse(version_priority(v)));
        }
        groups
    }

    /// `GET /apis`: an APIGroupList.
    pub fn api_group_list(&self) -> Value {
        let groups: Vec<_> = self
            .groups()
            .into_iter()
            .map(|(group, versions)| {
                let versions: Vec<_> = versions
                    .iter()
                    .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
                    .collect();
                json!({"name": group, "versions": versions, "preferredVersion": versions[0]})
            })
            .collect();
        json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
    }

    /// `GET /apis/{group}`: an APIGroup, if the group is served.
    pub fn api_group(&self, group: &str) -> Option<Value> {
        let groups = self.groups();
        let versions = groups.get(group)?;
        let versions: Vec<_> = versions
            .iter()
            .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
            .collect();
        Some(
            json!({"kind": "APIGroup", "apiVersion": "v1", "name": group,
            "versions": versions, "preferredVersion": versions[0]}),
        )
    }

    /// `GET /api/v1` or `GET /apis/{group}/{version}`: an APIResourceList, if served.
    pub fn api_resource_list(&self, group: &str, version: &str) -> Option<Value> {
        let defs: Vec<_> = self
            .resources
            .values()
            .filter(|d| d.group == group && d.version == version)
            .collect();
        if defs.is_empty() {
            return None;
        }
        let mut resources = Vec::new();
        for def in defs {
            let mut resource = json!({
                "name": def.plural,
                "singularName": def.singular,
                "namespaced": def.namespaced,
                "kind": def.kind,
                "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
            });
            if !def.short_names.is_empty() {
                resource["shortNames"] = json!(def.short_names);
            }
            if !def.categories.is_empty() {
                resource["categories"] = json!(def.categories);
            }
            resources.push(resource);
            if def.status_subresource {
                resources.push(json!({
                    "name": format!("{}/status", def.plural),
                    "singularName": "",
                    "namespaced": def.namespaced,
                    "kind": def.kind,
                    "verbs": ["get", "patch", "update"],
                }));
            }
        }
        let group_version = if group.is_empty() {
            version.to_owned()
        } else {
            format!("{group}/{version}")
        };
        Some(json!({"kind": "APIResourceList", "apiVersion": "v1",
            "groupVersion": group_version, "resources": resources}))
    }
}

/// Kubernetes' version priority: GA over beta over alpha, then by number.
fn version_priority(version: &str) -> (u8, u32, u32) {
    let Some(rest) = version.strip_prefix('v') else {
        return (0, 0, 0);
    };
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let major = digits.parse().unwrap_or(0);
    let tail = &rest[digits.len()..];
    let (stage, minor) = if tail.is_empty() {
        (3, 0)
    } else if let Some(n) = tail.strip_prefix("beta") {
        (2, n.parse().unwrap_or(0))
    } else if let Some(n) = tail.strip_prefix("alpha") {
        (1, n.parse().unwrap_or(0))
    } else {
        (0, 0)
    };
    (stage, major, minor)
}

/// The resources a CustomResourceDefinition serves, one per served version, or why it cannot.
pub fn defs_from_crd(crd: &Value) -> Result<Vec<ResourceDef>, String> {
    let spec = crd.get("spec").ok_or("spec is required")?;
    let text = |value: &Value, field: &str| -> Result<String, String> {
        value
            .get(field)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| format!("spec.names.{field} is required"))
    };
    let group = spec
        .get("group")
        .and_then(Value::as_str)
        .ok_or("spec.group is required")?;
    let names = spec.get("names").ok_or("spec.names is required")?;
    let plural = text(names, "plural")?;
    let kind = text(names, "kind")?;
    let expected_name = format!("{plural}.{group}");
    let name = crd.at(&["metadata", "name"]).and_then(Value::as_str);
    if name != Some(expected_name.as_str()) {
        return Err(format!(
            "metadata.name: Invalid value: {name:?}: must be spec.names.plural+\".\"+spec.group ({expected_name:?})"
        ));
    }
    let singular = names
        .get("singular")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| kind.to_ascii_lowercase());
    let list_kind = names
        .get("listKind")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| format!("{kind}List"));
    let strings = |value: Option<&Value>| -> Vec<String> {
        value
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    let namespaced = match spec.get("scope").and_then(Value::as_str) {
        Some("Namespaced") => true,
        Some("Cluster") => false,
        other => {
            return Err(format!(
                "spec.scope: Unsupported value: {other:?}: supported values: \"Cluster\", \"Namespaced\""
            ));
        }
    };
    let versions = spec
        .get("versions")
        .and_then(Value::as_array)
        .filter(|v| !v.is_empty())
        .ok_or("spec.versions: Required value: must have at least one version")?;
    let mut defs = Vec::new();
    for version in versions {
        if version.get("served").and_then(Value::as_bool) != Some(true) {
            continue;
        }
        let schema = version
            .at(&["schema", "openAPIV3Schema"])
            .cloned()
            .map(Arc::new);
        let version_name = version
            .get("name")
            .and_then(Value::as_str)
            .ok_or("spec.versions[].name is required")?;
        defs.push(ResourceDef {
            group: group.to_owned(),
            version: version_name.to_owned(),
            plural: plural.clone(),
            singular: singular.clone(),
            kind: kind.clone(),
            list_kind: list_kind.clone(),
            namespaced,
            short_names: strings(names.get("shortNames")),
            categories: strings(names.get("categories")),
            status_subresource: version.at(&["subresources", "status"]).is_some(),
            schema: schema.clone(),
            merge_schema: schema,
            printer_columns: version
                .get("additionalPrinterColumns")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
            custom: true,
            generation: true,
            shares_storage_of: None,
        });
    }
    Ok(defs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_sort_as_kubernetes_does() {
        let mut versions = vec!["v1alpha1", "v2beta1", "v1", "v1beta2", "v2"];
        versions.sort_by_key(|v| std::cmp::Reverse(version_priority(v)));
        assert_eq!(versions, ["v2", "v1", "v2beta1", "v1beta2", "v1alpha1"]);
    }

    #[test]
    fn a_definition_has_exactly_its_own_storage_key() {
        let defs = builtins();
        let keys: Vec<String> = defs.iter().map(ResourceDef::key).collect();
        let odd = [
            "",
            "/",
            "secrets",
            "/secrets/",
            "apps",
            "apps/",
            "example.com/widgets",
        ];
        for def in &defs {
            for key in keys.iter().map(String::as_str).chain(odd) {
                assert_eq!(
                    def.has_key(key),
                    def.key() == key,
                    "{} / {key:?}",
                    def.key()
                );
            }
        }
        assert!(
            defs.iter().any(|d| d.shares_storage_of.is_some()),
            "both kinds covered"
        );
    }

    #[test]
    fn a_crd_serves_each_served_version() {
        let crd = json!({
            "metadata": {"name": "widgets.example.com"},
            "spec": {"group": "example.com", "scope": "Namespaced",
                "names": {"plural": "widgets", "kind": "Widget", "shortNames": ["wd"]},
                "versions": [
                    {"name": "v1", "served": true, "storage": true, "subresources": {"status": {}}},
                    {"name": "v1beta1", "served": false, "storage": false}
                ]}
        });
        let defs = defs_from_crd(&crd).unwrap();
        assert_eq!(defs.len(), 1);
        assert_eq!(defs[0].singular, "widget");
        assert_eq!(defs[0].list_kind, "WidgetList");
        assert!(defs[0].status_subresource && defs[0].namespaced && defs[0].custom);
        assert_eq!(defs[0].key(), "example.com/widgets");
    }

    #[test]
    fn a_crd_with_the_wrong_name_is_refused() {
        let crd = json!({"metadata": {"name": "gadgets.example.com"},
            "spec": {"group": "example.com", "scope": "Cluster",
                "names": {"plural": "widgets", "kind": "Widget"},
                "versions": [{"name": "v1", "served": true, "storage": true}]}});
        assert!(defs_from_crd(&crd).unwrap_err().contains("metadata.name"));
    }
}
