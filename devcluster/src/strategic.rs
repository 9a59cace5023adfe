//! Strategic merge patch for the built-in kinds, and the list semantics server-side apply needs
//! for them.
//!
//! `kubectl apply` (client side) and `kubectl patch` send `application/strategic-merge-patch+json`
//! for built-in kinds. Kubernetes merges such a patch with the help of the Go types' tags:
//! a list tagged `patchStrategy:"merge"` with a `patchMergeKey` merges element by element, a list
//! of primitives tagged `patchStrategy:"merge"` is a union, and every other list is replaced.
//! Server-side apply reads the `+listType`/`+listMapKey` markers instead, which do not always
//! agree (container ports merge by `containerPort` in a strategic merge patch but are keyed by
//! `containerPort` and `protocol` in server-side apply).
//!
//! One table per kind (`Ty` trees built from the constants below, after the Kubernetes 1.35
//! OpenAPI) records both. [`patch`] merges with it and [`builtin_schema`] renders it as the
//! OpenAPI v3 extensions server-side apply walks. Fields the tables leave out are scalars,
//! plain structs, or atomic lists, which is what Kubernetes does for them too.
//!
//! The merge follows `k8s.io/apimachinery/pkg/util/strategicpatch` as the API server runs it:
//!
//! * maps merge recursively, and `null` deletes a key;
//! * a list with a merge key merges element by element; elements not in the live list are
//!   added. Without `$setElementOrder` the patch's elements come first, in patch order, and the
//!   live elements the patch does not name keep their relative order, as in Kubernetes;
//! * `$patch: replace` on a map replaces it; as a list element it replaces the whole list;
//! * `$patch: delete` on a map leaves it empty; as a list element it deletes the elements with
//!   its merge key;
//! * `$patch: merge` asks for the default, merging;
//! * `$retainKeys` drops the fields of the live map it does not list;
//! * `$setElementOrder/<list>` orders the merged list;
//! * `$deleteFromPrimitiveList/<list>` removes values from a list of primitives;
//! * a list of primitives with the merge strategy is a union (no duplicates are added);
//! * every other list is replaced whole.
//!
//! Directive keys never end up in the result. A patch that cannot be applied leaves the target
//! unchanged, and errors name the path of the offending field.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

/// Deeper than any patch serde_json parses by default (128 levels); guards the recursive merge,
/// which must fit the 2 MiB stack of a runtime worker thread even in debug builds.
const MAX_DEPTH: usize = 200;

/// The error as the recursive merge returns it: boxed, so that each level's `Result`s stay
/// small on the stack.
type Boxed = Box<StrategicError>;

const PATCH: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ELEMENT_ORDER: &str = "$setElementOrder";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList";

/// Why a strategic merge patch could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum StrategicError {
    /// The patch is not a JSON object.
    #[error("a strategic merge patch must be a JSON object, got {0}")]
    NotAnObject(&'static str),
    /// An element of a list merged by key lacks the key.
    #[error("{path}: element {index} has no merge key {key:?}")]
    MissingMergeKey {
        /// The list, as a dotted path.
        path: String,
        /// The element's position in the patch's list.
        index: usize,
        /// The merge key.
        key: &'static str,
    },
    /// An element of a list merged by key is not an object.
    #[error("{path}: element {index} is {found}, but the list merges objects by {key:?}")]
    ElementNotAnObject {
        /// The list, as a dotted path.
        path: String,
        /// The element's position in the patch's list.
        index: usize,
        /// What the element is.
        found: &'static str,
        /// The merge key.
        key: &'static str,
    },
    /// An element of a merged list of primitives is an object or a list.
    #[error("{path}: element {index} is {found}, but the list is a set of primitive values")]
    ElementNotPrimitive {
        /// The list, as a dotted path.
        path: String,
        /// The element's position in the patch's list.
        index: usize,
        /// What the element is.
        found: &'static str,
    },
    /// `$patch` holds something other than `replace`, `merge` or `delete`.
    #[error(
        "{path}: unknown $patch directive {value}; expected \"replace\", \"merge\" or \"delete\""
    )]
    UnknownPatchDirective {
        /// Where the directive is, as a dotted path.
        path: String,
        /// The directive's value.
        value: String,
    },
    /// A directive key that does not name a field, such as `$setElementOrder` without `/<list>`.
    #[error("{path}: directive {key:?} must name a field, as in \"{prefix}/<field>\"")]
    MalformedDirectiveKey {
        /// The map holding the key, as a dotted path.
        path: String,
        /// The key.
        key: String,
        /// `$setElementOrder` or `$deleteFromPrimitiveList`.
        prefix: &'static str,
    },
    /// A directive whose value has the wrong shape.
    #[error("{path}: {directive} must be {expected}, got {found}")]
    MalformedDirective {
        /// The map holding the directive, as a dotted path.
        path: String,
        /// The directive key.
        directive: String,
        /// What it must be.
        expected: &'static str,
        /// What it is.
        found: &'static str,
    },
    /// A field the patch sets is missing from the map's `$retainKeys`.
    #[error("{path}: the patch sets {field:?}, which $retainKeys does not list")]
    NotRetained {
        /// The map, as a dotted path.
        path: String,
        /// The field.
        field: String,
    },
    /// The patch's list names its elements in another order than its `$setElementOrder`.
    #[error(
        "{path}: the elements of the patch's list are not in the order of $setElementOrder/{field}"
    )]
    OrderMismatch {
        /// The map holding the list, as a dotted path.
        path: String,
        /// The list.
        field: String,
    },
    /// The patch nests deeper than the merge follows.
    #[error("{path}: the patch nests deeper than {MAX_DEPTH} levels")]
    TooDeep {
        /// Where the limit was reached, as a dotted path.
        path: String,
    },
}

/// Applies a strategic merge patch to a built-in object (`group` "" for core). Kinds without a
/// table get JSON-merge-patch semantics for lists (replace) but still honour directives.
///
/// On error `target` is left unchanged.
pub fn patch(
    group: &str,
    kind: &str,
    target: &mut Value,
    patch: &Value,
) -> Result<(), StrategicError> {
    let Value::Object(patch) = patch else {
        return Err(StrategicError::NotAnObject(type_name(patch)));
    };
    let ty = table(group, kind).unwrap_or(&ANY);
    let original = match target {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    let merged = merge_map(original, patch, ty, &Path::Root, 0).map_err(|e| *e)?;
    *target = Value::Object(merged);
    Ok(())
}

/// The list/map semantics of a built-in kind as an OpenAPI v3 schema tree containing only
/// `type`, `properties`, `items`, `additionalProperties`, `x-kubernetes-list-type`
/// (atomic|set|map), `x-kubernetes-list-map-keys`, `x-kubernetes-map-type` and
/// `x-kubernetes-patch-strategy`/`x-kubernetes-patch-merge-key`, so that server-side apply
/// (which walks such a schema) merges lists like Kubernetes. `None` for an unknown kind.
pub fn builtin_schema(group: &str, kind: &str) -> Option<Value> {
    table(group, kind).map(schema_of)
}

// ---------------------------------------------------------------------------------------------
// The type tables

/// How a field merges: the strategic-merge-patch tags and the server-side-apply markers of the
/// Go type it has in Kubernetes.
#[derive(Debug, Clone, Copy)]
enum Ty {
    /// No semantics of its own: scalars, and fields the tables leave out. Objects merge field
    /// by field; lists are replaced (atomic).
    Any,
    /// A string; merges as [`Ty::Any`] and renders its type in the schema.
    Str,
    /// A struct; fields it does not list are [`Ty::Any`].
    Struct {
        fields: &'static [(&'static str, Ty)],
        /// `+structType=atomic`: server-side apply owns it whole.
        atomic: bool,
        /// `patchStrategy:"retainKeys"` on the field holding it.
        retain_keys: bool,
    },
    /// A map from strings to values of one type.
    Map {
        values: &'static Ty,
        /// `+mapType=atomic`: server-side apply owns it whole.
        atomic: bool,
    },
    /// A list.
    List {
        item: &'static Ty,
        smp: Smp,
        ssa: Ssa,
        /// `patchStrategy:"merge,retainKeys"`: clients send `$retainKeys` in its elements.
        retain_keys: bool,
    },
}

/// How a strategic merge patch merges a list (`patchStrategy`, `patchMergeKey`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Smp {
    /// No patch strategy: the patch's list replaces the live one.
    Replace,
    /// `patchStrategy:"merge"` on primitives: a union.
    Union,
    /// `patchStrategy:"merge"` with `patchMergeKey`: merged element by element.
    MergeBy(&'static str),
}

/// How server-side apply merges a list (`+listType`, `+listMapKey`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ssa {
    Atomic,
    Set,
    Map(&'static [&'static str]),
}

static ANY: Ty = Ty::Any;

impl Ty {
    /// The type of a struct field or map value.
    fn field(&self, name: &str) -> &'static Ty {
        match self {
            Ty::Struct { fields, .. } => fields
                .iter()
                .find(|(n, _)| *n == name)
                .map_or(&ANY, |(_, t)| t),
            Ty::Map { values, .. } => values,
            _ => &ANY,
        }
    }

    /// The type of a list element.
    fn item(&self) -> &'static Ty {
        match self {
            Ty::List { item, .. } => item,
            _ => &ANY,
        }
    }

    /// How a strategic merge patch merges the list.
    fn smp(&self) -> Smp {
        match self {
            Ty::List { smp, .. } => *smp,
            _ => Smp::Replace,
        }
    }

    fn merge_key(&self) -> Option<&'static str> {
        match self.smp() {
            Smp::MergeBy(key) => Some(key),
            _ => None,
        }
    }
}

const fn object(fields: &'static [(&'static str, Ty)]) -> Ty {
    Ty::Struct {
        fields,
        atomic: false,
        retain_keys: false,
    }
}

const fn atomic_object(fields: &'static [(&'static str, Ty)]) -> Ty {
    Ty::Struct {
        fields,
        atomic: true,
        retain_keys: false,
    }
}

/// A list with neither a patch strategy nor a list type other than atomic.
const fn atomic_list(item: &'static Ty) -> Ty {
    Ty::List {
        item,
        smp: Smp::Replace,
        ssa: Ssa::Atomic,
        retain_keys: false,
    }
}

/// `patchStrategy:"merge" patchMergeKey:<merge_key>`, `+listType=map` keyed by `keys`.
const fn keyed_list(
    item: &'static Ty,
    merge_key: &'static str,
    keys: &'static [&'static str],
) -> Ty {
    Ty::List {
        item,
        smp: Smp::MergeBy(merge_key),
        ssa: Ssa::Map(keys),
        retain_keys: false,
    }
}

/// `+listType=map` keyed by `keys`, without a patch strategy.
const fn ssa_keyed_list(item: &'static Ty, keys: &'static [&'static str]) -> Ty {
    Ty::List {
        item,
        smp: Smp::Replace,
        ssa: Ssa::Map(keys),
        retain_keys: false,
    }
}

/// Adds `retainKeys` to a field's patch strategy.
const fn retaining(ty: Ty) -> Ty {
    match ty {
        Ty::List { item, smp, ssa, .. } => Ty::List {
            item,
            smp,
            ssa,
            retain_keys: true,
        },
        Ty::Struct { fields, atomic, .. } => Ty::Struct {
            fields,
            atomic,
            retain_keys: true,
        },
        other => other,
    }
}

// Shared pieces.

const STR: Ty = Ty::Str;
const STRING_MAP: Ty = Ty::Map {
    values: &STR,
    atomic: false,
};
const ATOMIC_STRING_MAP: Ty = Ty::Map {
    values: &STR,
    atomic: true,
};
/// `map[ResourceName]resource.Quantity`: quantities are strings or numbers.
const QUANTITY_MAP: Ty = Ty::Map {
    values: &Ty::Any,
    atomic: false,
};
const ATOMIC_LIST: Ty = atomic_list(&Ty::Any);
const ATOMIC_STRINGS: Ty = atomic_list(&STR);
/// An atomic struct whose insides do not matter: references and selectors such as
/// `LocalObjectReference`, `ObjectReference`, `SecretKeySelector`, `NodeSelector`.
const ATOMIC_REF: Ty = atomic_object(&[]);
/// `metav1.OwnerReference` is `+structType=atomic`.
const OWNER_REFERENCE: Ty = atomic_object(&[]);
/// `metav1.Condition` and the typed conditions: merged by `type`.
const CONDITIONS: Ty = keyed_list(&Ty::Any, "type", &["type"]);

/// `patchStrategy:"merge"` on a list of strings, `+listType=set`.
const STRING_SET: Ty = Ty::List {
    item: &STR,
    smp: Smp::Union,
    ssa: Ssa::Set,
    retain_keys: false,
};

const OBJECT_META: Ty = object(&[
    ("annotations", STRING_MAP),
    ("finalizers", STRING_SET),
    ("labels", STRING_MAP),
    ("managedFields", ATOMIC_LIST),
    (
        "ownerReferences",
        keyed_list(&OWNER_REFERENCE, "uid", &["uid"]),
    ),
]);

/// `metav1.LabelSelector` is `+structType=atomic`.
const LABEL_SELECTOR: Ty = atomic_object(&[
    ("matchExpressions", ATOMIC_LIST),
    ("matchLabels", STRING_MAP),
]);

// core/v1 PodTemplateSpec, for apps/v1 Deployment.

const ENV_VAR: Ty = object(&[(
    "valueFrom",
    object(&[
        ("configMapKeyRef", ATOMIC_REF),
        ("fieldRef", ATOMIC_REF),
        ("fileKeyRef", ATOMIC_REF),
        ("resourceFieldRef", ATOMIC_REF),
        ("secretKeyRef", ATOMIC_REF),
    ]),
)]);

/// Probes and lifecycle handlers.
const HANDLER: Ty = object(&[
    ("exec", object(&[("command", ATOMIC_STRINGS)])),
    ("httpGet", object(&[("httpHeaders", ATOMIC_LIST)])),
]);

const RESOURCE_REQUIREMENTS: Ty = object(&[
    ("claims", ssa_keyed_list(&Ty::Any, &["name"])),
    ("limits", QUANTITY_MAP),
    ("requests", QUANTITY_MAP),
]);

const CONTAINER: Ty = object(&[
    ("args", ATOMIC_STRINGS),
    ("command", ATOMIC_STRINGS),
    ("env", keyed_list(&ENV_VAR, "name", &["name"])),
    ("envFrom", ATOMIC_LIST),
    (
        "lifecycle",
        object(&[("postStart", HANDLER), ("preStop", HANDLER)]),
    ),
    ("livenessProbe", HANDLER),
    (
        "ports",
        keyed_list(&Ty::Any, "containerPort", &["containerPort", "protocol"]),
    ),
    ("readinessProbe", HANDLER),
    ("resizePolicy", ATOMIC_LIST),
    ("resources", RESOURCE_REQUIREMENTS),
    ("restartPolicyRules", ATOMIC_LIST),
    (
        "securityContext",
        object(&[(
            "capabilities",
            object(&[("add", ATOMIC_STRINGS), ("drop", ATOMIC_STRINGS)]),
        )]),
    ),
    ("startupProbe", HANDLER),
    (
        "volumeDevices",
        keyed_list(&Ty::Any, "devicePath", &["devicePath"]),
    ),
    (
        "volumeMounts",
        keyed_list(&Ty::Any, "mountPath", &["mountPath"]),
    ),
]);

const CONTAINERS: Ty = keyed_list(&CONTAINER, "name", &["name"]);

const POD_AFFINITY: Ty = object(&[
    (
        "preferredDuringSchedulingIgnoredDuringExecution",
        ATOMIC_LIST,
    ),
    (
        "requiredDuringSchedulingIgnoredDuringExecution",
        ATOMIC_LIST,
    ),
]);

const AFFINITY: Ty = object(&[
    (
        "nodeAffinity",
        object(&[
            (
                "preferredDuringSchedulingIgnoredDuringExecution",
                ATOMIC_LIST,
            ),
            ("requiredDuringSchedulingIgnoredDuringExecution", ATOMIC_REF),
        ]),
    ),
    ("podAffinity", POD_AFFINITY),
    ("podAntiAffinity", POD_AFFINITY),
]);

const SECRET_REF_ONLY: Ty = object(&[("secretRef", ATOMIC_REF)]);
const ITEMS_ONLY: Ty = object(&[("items", ATOMIC_LIST)]);

const VOLUME: Ty = object(&[
    (
        "cephfs",
        object(&[("monitors", ATOMIC_STRINGS), ("secretRef", ATOMIC_REF)]),
    ),
    ("cinder", SECRET_REF_ONLY),
    ("configMap", ITEMS_ONLY),
    (
        "csi",
        object(&[
            ("nodePublishSecretRef", ATOMIC_REF),
            ("volumeAttributes", STRING_MAP),
        ]),
    ),
    ("downwardAPI", ITEMS_ONLY),
    (
        "ephemeral",
        object(&[(
            "volumeClaimTemplate",
            object(&[
                ("metadata", OBJECT_META),
                (
                    "spec",
                    object(&[
                        ("accessModes", ATOMIC_STRINGS),
                        ("dataSource", ATOMIC_REF),
                        (
                            "resources",
                            object(&[("limits", QUANTITY_MAP), ("requests", QUANTITY_MAP)]),
                        ),
                        ("selector", LABEL_SELECTOR),
                    ]),
                ),
            ]),
        )]),
    ),
    (
        "fc",
        object(&[("targetWWNs", ATOMIC_STRINGS), ("wwids", ATOMIC_STRINGS)]),
    ),
    (
        "flexVolume",
        object(&[("options", STRING_MAP), ("secretRef", ATOMIC_REF)]),
    ),
    (
        "iscsi",
        object(&[("portals", ATOMIC_STRINGS), ("secretRef", ATOMIC_REF)]),
    ),
    ("projected", object(&[("sources", ATOMIC_LIST)])),
    (
        "rbd",
        object(&[("monitors", ATOMIC_STRINGS), ("secretRef", ATOMIC_REF)]),
    ),
    ("scaleIO", SECRET_REF_ONLY),
    ("secret", ITEMS_ONLY),
    ("storageos", SECRET_REF_ONLY),
]);

const POD_SPEC: Ty = object(&[
    ("affinity", AFFINITY),
    ("containers", CONTAINERS),
    (
        "dnsConfig",
        object(&[
            ("nameservers", ATOMIC_STRINGS),
            ("options", ATOMIC_LIST),
            ("searches", ATOMIC_STRINGS),
        ]),
    ),
    ("ephemeralContainers", CONTAINERS),
    (
        "hostAliases",
        keyed_list(&object(&[("hostnames", ATOMIC_STRINGS)]), "ip", &["ip"]),
    ),
    (
        "imagePullSecrets",
        keyed_list(&ATOMIC_REF, "name", &["name"]),
    ),
    ("initContainers", CONTAINERS),
    ("nodeSelector", ATOMIC_STRING_MAP),
    ("overhead", QUANTITY_MAP),
    ("readinessGates", ATOMIC_LIST),
    (
        "resourceClaims",
        retaining(keyed_list(&Ty::Any, "name", &["name"])),
    ),
    ("resources", RESOURCE_REQUIREMENTS),
    ("schedulingGates", keyed_list(&Ty::Any, "name", &["name"])),
    (
        "securityContext",
        object(&[
            ("supplementalGroups", ATOMIC_LIST),
            ("sysctls", ATOMIC_LIST),
        ]),
    ),
    ("tolerations", ATOMIC_LIST),
    (
        "topologySpreadConstraints",
        keyed_list(
            &object(&[
                ("labelSelector", LABEL_SELECTOR),
                ("matchLabelKeys", ATOMIC_STRINGS),
            ]),
            "topologyKey",
            &["topologyKey", "whenUnsatisfiable"],
        ),
    ),
    ("volumes", retaining(keyed_list(&VOLUME, "name", &["name"]))),
]);

const POD_TEMPLATE_SPEC: Ty = object(&[("metadata", OBJECT_META), ("spec", POD_SPEC)]);

// The kinds.

const NAMESPACE: Ty = object(&[
    ("metadata", OBJECT_META),
    ("spec", object(&[("finalizers", ATOMIC_STRINGS)])),
    ("status", object(&[("conditions", CONDITIONS)])),
]);

const SECRET: Ty = object(&[
    ("data", STRING_MAP),
    ("metadata", OBJECT_META),
    ("stringData", STRING_MAP),
]);

const CONFIG_MAP: Ty = object(&[
    ("binaryData", STRING_MAP),
    ("data", STRING_MAP),
    ("metadata", OBJECT_META),
]);

const SERVICE_ACCOUNT: Ty = object(&[
    ("imagePullSecrets", atomic_list(&ATOMIC_REF)),
    ("metadata", OBJECT_META),
    ("secrets", keyed_list(&ATOMIC_REF, "name", &["name"])),
]);

const SERVICE: Ty = object(&[
    ("metadata", OBJECT_META),
    (
        "spec",
        object(&[
            ("clusterIPs", ATOMIC_STRINGS),
            ("externalIPs", ATOMIC_STRINGS),
            ("ipFamilies", ATOMIC_STRINGS),
            ("loadBalancerSourceRanges", ATOMIC_STRINGS),
            ("ports", keyed_list(&Ty::Any, "port", &["port", "protocol"])),
            ("selector", ATOMIC_STRING_MAP),
        ]),
    ),
    (
        "status",
        object(&[
            ("conditions", CONDITIONS),
            ("loadBalancer", object(&[("ingress", ATOMIC_LIST)])),
        ]),
    ),
]);

const CORE_EVENT: Ty = object(&[
    ("involvedObject", ATOMIC_REF),
    ("metadata", OBJECT_META),
    ("related", ATOMIC_REF),
]);

const EVENT: Ty = object(&[
    ("metadata", OBJECT_META),
    ("regarding", ATOMIC_REF),
    ("related", ATOMIC_REF),
]);

const LEASE: Ty = object(&[("metadata", OBJECT_META)]);

const POLICY_RULES: Ty = atomic_list(&object(&[
    ("apiGroups", ATOMIC_STRINGS),
    ("nonResourceURLs", ATOMIC_STRINGS),
    ("resourceNames", ATOMIC_STRINGS),
    ("resources", ATOMIC_STRINGS),
    ("verbs", ATOMIC_STRINGS),
]));

const ROLE: Ty = object(&[("metadata", OBJECT_META), ("rules", POLICY_RULES)]);

const CLUSTER_ROLE: Ty = object(&[
    (
        "aggregationRule",
        object(&[("clusterRoleSelectors", atomic_list(&LABEL_SELECTOR))]),
    ),
    ("metadata", OBJECT_META),
    ("rules", POLICY_RULES),
]);

const ROLE_BINDING: Ty = object(&[
    ("metadata", OBJECT_META),
    ("roleRef", ATOMIC_REF),
    ("subjects", atomic_list(&ATOMIC_REF)),
]);

const DEPLOYMENT: Ty = object(&[
    ("metadata", OBJECT_META),
    (
        "spec",
        object(&[
            ("selector", LABEL_SELECTOR),
            ("strategy", retaining(object(&[]))),
            ("template", POD_TEMPLATE_SPEC),
        ]),
    ),
    ("status", object(&[("conditions", CONDITIONS)])),
]);

/// `ValidatingWebhook` and `MutatingWebhook` have the same lists.
const WEBHOOK_CONFIGURATION: Ty = object(&[
    ("metadata", OBJECT_META),
    (
        "webhooks",
        keyed_list(
            &object(&[
                ("admissionReviewVersions", ATOMIC_STRINGS),
                ("matchConditions", keyed_list(&Ty::Any, "name", &["name"])),
                ("namespaceSelector", LABEL_SELECTOR),
                ("objectSelector", LABEL_SELECTOR),
                (
                    "rules",
                    atomic_list(&object(&[
                        ("apiGroups", ATOMIC_STRINGS),
                        ("apiVersions", ATOMIC_STRINGS),
                        ("operations", ATOMIC_STRINGS),
                        ("resources", ATOMIC_STRINGS),
                    ])),
                ),
            ]),
            "name",
            &["name"],
        ),
    ),
]);

/// `spec.versions` is atomic, so the schemas inside it are replaced whole by both kinds of
/// patch. The conditions are keyed by `type` for server-side apply but carry no patch
/// strategy, so a strategic merge patch replaces them.
const CUSTOM_RESOURCE_DEFINITION: Ty = object(&[
    ("metadata", OBJECT_META),
    (
        "spec",
        object(&[
            (
                "conversion",
                object(&[(
                    "webhook",
                    object(&[("conversionReviewVersions", ATOMIC_STRINGS)]),
                )]),
            ),
            (
                "names",
                object(&[
                    ("categories", ATOMIC_STRINGS),
                    ("shortNames", ATOMIC_STRINGS),
                ]),
            ),
            ("versions", ATOMIC_LIST),
        ]),
    ),
    (
        "status",
        object(&[
            (
                "acceptedNames",
                object(&[
                    ("categories", ATOMIC_STRINGS),
                    ("shortNames", ATOMIC_STRINGS),
                ]),
            ),
            ("conditions", ssa_keyed_list(&Ty::Any, &["type"])),
            ("storedVersions", ATOMIC_STRINGS),
        ]),
    ),
]);

/// Every built-in kind with a table: (group, kind, table).
const KINDS: &[(&str, &str, Ty)] = &[
    ("", "Namespace", NAMESPACE),
    ("", "Secret", SECRET),
    ("", "ConfigMap", CONFIG_MAP),
    ("", "ServiceAccount", SERVICE_ACCOUNT),
    ("", "Service", SERVICE),
    ("", "Event", CORE_EVENT),
    ("coordination.k8s.io", "Lease", LEASE),
    ("events.k8s.io", "Event", EVENT),
    ("rbac.authorization.k8s.io", "Role", ROLE),
    ("rbac.authorization.k8s.io", "ClusterRole", CLUSTER_ROLE),
    ("rbac.authorization.k8s.io", "RoleBinding", ROLE_BINDING),
    (
        "rbac.authorization.k8s.io",
        "ClusterRoleBinding",
        ROLE_BINDING,
    ),
    ("apps", "Deployment", DEPLOYMENT),
    (
        "admissionregistration.k8s.io",
        "ValidatingWebhookConfiguration",
        WEBHOOK_CONFIGURATION,
    ),
    (
        "admissionregistration.k8s.io",
        "MutatingWebhookConfiguration",
        WEBHOOK_CONFIGURATION,
    ),
    (
        "apiextensions.k8s.io",
        "CustomResourceDefinition",
        CUSTOM_RESOURCE_DEFINITION,
    ),
];

fn table(group: &str, kind: &str) -> Option<&'static Ty> {
    KINDS
        .iter()
        .find(|(g, k, _)| *g == group && *k == kind)
        .map(|(_, _, ty)| ty)
}

// ---------------------------------------------------------------------------------------------
// The schema

fn schema_of(ty: &Ty) -> Value {
    let mut s = Map::new();
    match ty {
        Ty::Any => {}
        Ty::Str => {
            s.insert("type".into(), "string".into());
        }
        Ty::Struct {
            fields,
            atomic,
            retain_keys,
        } => {
            s.insert("type".into(), "object".into());
            if !fields.is_empty() {
                let properties = fields
                    .iter()
                    .map(|(name, ty)| ((*name).to_owned(), schema_of(ty)))
                    .collect();
                s.insert("properties".into(), Value::Object(properties));
            }
            if *atomic {
                s.insert("x-kubernetes-map-type".into(), "atomic".into());
            }
            if *retain_keys {
                s.insert("x-kubernetes-patch-strategy".into(), "retainKeys".into());
            }
        }
        Ty::Map { values, atomic } => {
            s.insert("type".into(), "object".into());
            s.insert("additionalProperties".into(), schema_of(values));
            if *atomic {
                s.insert("x-kubernetes-map-type".into(), "atomic".into());
            }
        }
        Ty::List {
            item,
            smp,
            ssa,
            retain_keys,
        } => {
            s.insert("type".into(), "array".into());
            if !matches!(item, Ty::Any) {
                s.insert("items".into(), schema_of(item));
            }
            match ssa {
                Ssa::Atomic => {
                    s.insert("x-kubernetes-list-type".into(), "atomic".into());
                }
                Ssa::Set => {
                    s.insert("x-kubernetes-list-type".into(), "set".into());
                }
                Ssa::Map(keys) => {
                    s.insert("x-kubernetes-list-type".into(), "map".into());
                    s.insert(
                        "x-kubernetes-list-map-keys".into(),
                        keys.iter().map(|k| Value::from(*k)).collect(),
                    );
                }
            }
            let strategy = match (smp, retain_keys) {
                (Smp::Replace, false) => None,
                (Smp::Replace, true) => Some("retainKeys"),
                (_, false) => Some("merge"),
                (_, true) => Some("merge,retainKeys"),
            };
            if let Some(strategy) = strategy {
                s.insert("x-kubernetes-patch-strategy".into(), strategy.into());
            }
            if let Smp::MergeBy(key) = smp {
                s.insert("x-kubernetes-patch-merge-key".into(), (*key).into());
            }
        }
    }
    Value::Object(s)
}

// ---------------------------------------------------------------------------------------------
// Paths for error messages

/// Where the merge is, built on the stack as it descends.
#[derive(Clone, Copy)]
enum Path<'a> {
    Root,
    Field(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
}

impl Path<'_> {
    /// `spec.template.spec.containers[1].env`; `(root)` at the top.
    fn render(&self) -> String {
        let mut steps = Vec::new();
        let mut at = self;
        loop {
            match at {
                Path::Root => break,
                Path::Field(parent, name) => {
                    steps.push(Step::Field(name));
                    at = parent;
                }
                Path::Index(parent, index) => {
                    steps.push(Step::Index(*index));
                    at = parent;
                }
            }
        }
        if steps.is_empty() {
            return "(root)".to_owned();
        }
        let mut out = String::new();
        for step in steps.iter().rev() {
            match step {
                Step::Field(name) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(name);
                }
                Step::Index(index) => out.push_str(&format!("[{index}]")),
            }
        }
        out
    }
}

enum Step<'a> {
    Field(&'a str),
    Index(usize),
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

// ---------------------------------------------------------------------------------------------
// Directives

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Directive {
    Replace,
    Merge,
    Delete,
}

fn directive(v: &Value, path: &Path) -> Result<Directive, StrategicError> {
    match v.as_str() {
        Some("replace") => Ok(Directive::Replace),
        Some("merge") => Ok(Directive::Merge),
        Some("delete") => Ok(Directive::Delete),
        Some(other) => Err(StrategicError::UnknownPatchDirective {
            path: path.render(),
            value: format!("{:?}", other.chars().take(64).collect::<String>()),
        }),
        None => Err(StrategicError::UnknownPatchDirective {
            path: path.render(),
            value: type_name(v).to_owned(),
        }),
    }
}

/// What a key of a patch map is.
enum Key<'a> {
    Field,
    Patch,
    RetainKeys,
    SetElementOrder(&'a str),
    DeleteFromPrimitiveList(&'a str),
}

fn classify<'a>(key: &'a str, path: &Path) -> Result<Key<'a>, StrategicError> {
    if key == PATCH {
        return Ok(Key::Patch);
    }
    if key == RETAIN_KEYS {
        return Ok(Key::RetainKeys);
    }
    for prefix in [SET_ELEMENT_ORDER, DELETE_FROM_PRIMITIVE_LIST] {
        if let Some(rest) = key.strip_prefix(prefix) {
            return match rest.strip_prefix('/') {
                Some(field) if !field.is_empty() => Ok(if prefix == SET_ELEMENT_ORDER {
                    Key::SetElementOrder(field)
                } else {
                    Key::DeleteFromPrimitiveList(field)
                }),
                _ => Err(StrategicError::MalformedDirectiveKey {
                    path: path.render(),
                    key: key.to_owned(),
                    prefix,
                }),
            };
        }
    }
    Ok(Key::Field)
}

/// Whether a key is a directive (well-formed or not) rather than a field.
fn is_directive(key: &str) -> bool {
    key == PATCH
        || key == RETAIN_KEYS
        || key.starts_with(SET_ELEMENT_ORDER)
        || key.starts_with(DELETE_FROM_PRIMITIVE_LIST)
}

// ---------------------------------------------------------------------------------------------
// The merge

fn check_depth(depth: usize, path: &Path) -> Result<(), StrategicError> {
    if depth > MAX_DEPTH {
        return Err(StrategicError::TooDeep {
            path: path.render(),
        });
    }
    Ok(())
}

/// Merges a patch map into a live map, honouring a `$patch` directive on the map.
fn merge_map(
    original: Map<String, Value>,
    patch: &Map<String, Value>,
    ty: &Ty,
    path: &Path,
    depth: usize,
) -> Result<Map<String, Value>, Boxed> {
    match patch.get(PATCH).map(|d| directive(d, path)).transpose()? {
        // Kubernetes leaves an empty map where the deleted one was.
        Some(Directive::Delete) => Ok(Map::new()),
        Some(Directive::Replace) => merge_fields(Map::new(), patch, ty, path, depth),
        Some(Directive::Merge) | None => merge_fields(original, patch, ty, path, depth),
    }
}

/// A patch value for a field or element the live object does not have, with its directives
/// carried out. `None` when nothing is left of it (a map with `$patch: delete`).
fn fresh_value(patch: &Value, ty: &Ty, path: &Path, depth: usize) -> Result<Option<Value>, Boxed> {
    match patch {
        Value::Object(m) => match m.get(PATCH).map(|d| directive(d, path)).transpose()? {
            Some(Directive::Delete) => Ok(None),
            _ => Ok(Some(Value::Object(merge_fields(
                Map::new(),
                m,
                ty,
                path,
                depth,
            )?))),
        },
        Value::Array(list) => Ok(Some(Value::Array(merge_list(
            Vec::new(),
            list,
            ty,
            path,
            depth,
        )?))),
        scalar => Ok(Some(scalar.clone())),
    }
}

/// Merges the fields of a patch map (its `$patch` already handled) into a live map.
///
/// This and the functions it calls for each field are the recursion; the work that does not
/// recurse lives in other functions so that each level takes little stack.
fn merge_fields(
    mut original: Map<String, Value>,
    patch: &Map<String, Value>,
    ty: &Ty,
    path: &Path,
    depth: usize,
) -> Result<Map<String, Value>, Boxed> {
    check_depth(depth, path)?;
    let directives = Directives::apply(&mut original, patch, ty, path, depth)?;
    for (key, value) in patch {
        if !directives.covers(key) {
            merge_field(&mut original, key, value, ty, path, depth)?;
        }
    }
    directives.delete_from_primitive_lists(&mut original, path)?;
    Ok(original)
}

fn merge_field(
    original: &mut Map<String, Value>,
    key: &String,
    value: &Value,
    ty: &Ty,
    path: &Path,
    depth: usize,
) -> Result<(), Boxed> {
    if value.is_null() {
        original.remove(key);
        return Ok(());
    }
    let field_ty = ty.field(key);
    let field_path = Path::Field(path, key);
    let merged = match original.get_mut(key) {
        Some(slot) => merge_value(
            std::mem::take(slot),
            value,
            field_ty,
            &field_path,
            depth + 1,
        )?,
        None => fresh_value(value, field_ty, &field_path, depth + 1)?,
    };
    match merged {
        Some(v) => {
            original.insert(key.clone(), v);
        }
        None => {
            original.remove(key);
        }
    }
    Ok(())
}

/// The directives of one patch map, other than `$patch`.
struct Directives<'a> {
    /// Lists already merged and ordered by `$setElementOrder`.
    ordered: Vec<&'a str>,
    /// `$deleteFromPrimitiveList/<field>` and its values.
    deletions: Vec<(&'a str, &'a Value)>,
}

impl<'a> Directives<'a> {
    /// Validates the directive keys, applies `$retainKeys`, and merges and orders the lists
    /// named by `$setElementOrder`.
    fn apply(
        original: &mut Map<String, Value>,
        patch: &'a Map<String, Value>,
        ty: &Ty,
        path: &Path,
        depth: usize,
    ) -> Result<Self, Boxed> {
        if let Some(keys) = patch.get(RETAIN_KEYS) {
            retain_keys(original, patch, keys, path)?;
        }
        let mut directives = Directives {
            ordered: Vec::new(),
            deletions: Vec::new(),
        };
        for (key, value) in patch {
            match classify(key, path)? {
                Key::Field | Key::Patch | Key::RetainKeys => {}
                Key::SetElementOrder(field) => {
                    if set_element_order(original, patch, field, value, ty, path, depth)? {
                        directives.ordered.push(field);
                    }
                }
                Key::DeleteFromPrimitiveList(field) => directives.deletions.push((field, value)),
            }
        }
        Ok(directives)
    }

    /// Whether a key of the patch map is a directive or a list already handled.
    fn covers(&self, key: &str) -> bool {
        is_directive(key) || self.ordered.contains(&key)
    }

    fn delete_from_primitive_lists(
        &self,
        original: &mut Map<String, Value>,
        path: &Path,
    ) -> Result<(), StrategicError> {
        for (field, values) in &self.deletions {
            let Value::Array(values) = values else {
                return Err(StrategicError::MalformedDirective {
                    path: path.render(),
                    directive: format!("{DELETE_FROM_PRIMITIVE_LIST}/{field}"),
                    expected: "a list",
                    found: type_name(values),
                });
            };
            if let Some(Value::Array(list)) = original.get_mut(*field) {
                let doomed: HashSet<String> =
                    values.iter().filter_map(|v| identity(v, None)).collect();
                list.retain(|v| identity(v, None).is_none_or(|id| !doomed.contains(&id)));
            }
        }
        Ok(())
    }
}

fn merge_value(
    live: Value,
    patch: &Value,
    ty: &Ty,
    path: &Path,
    depth: usize,
) -> Result<Option<Value>, Boxed> {
    match (live, patch) {
        (Value::Object(live), Value::Object(patch)) => Ok(Some(Value::Object(merge_map(
            live, patch, ty, path, depth,
        )?))),
        (Value::Array(live), Value::Array(patch)) => Ok(Some(Value::Array(merge_list(
            live, patch, ty, path, depth,
        )?))),
        // Different types: the patch's value wins.
        (_, patch) => fresh_value(patch, ty, path, depth),
    }
}

/// `$retainKeys`: every field the patch sets must be listed, and the live fields not listed
/// are dropped.
fn retain_keys(
    original: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    keys: &Value,
    path: &Path,
) -> Result<(), StrategicError> {
    let malformed = |found| StrategicError::MalformedDirective {
        path: path.render(),
        directive: RETAIN_KEYS.to_owned(),
        expected: "a list of field names",
        found,
    };
    let Value::Array(keys) = keys else {
        return Err(malformed(type_name(keys)));
    };
    let mut retained = HashSet::new();
    for key in keys {
        match key.as_str() {
            Some(name) => {
                retained.insert(name);
            }
            None => return Err(malformed(type_name(key))),
        }
    }
    for (key, value) in patch {
        if value.is_null() || is_directive(key) {
            continue;
        }
        if !retained.contains(key.as_str()) {
            return Err(StrategicError::NotRetained {
                path: path.render(),
                field: key.clone(),
            });
        }
    }
    original.retain(|key, _| retained.contains(key.as_str()));
    Ok(())
}

/// `$setElementOrder/<field>`: merges the list (when the patch has it) and orders the result.
/// Returns whether the field was handled; a patch that sets the list to `null` deletes it
/// instead.
fn set_element_order(
    original: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    field: &str,
    order: &Value,
    ty: &Ty,
    path: &Path,
    depth: usize,
) -> Result<bool, Boxed> {
    let Value::Array(order) = order else {
        return Err(Box::new(StrategicError::MalformedDirective {
            path: path.render(),
            directive: format!("{SET_ELEMENT_ORDER}/{field}"),
            expected: "a list",
            found: type_name(order),
        }));
    };
    let list_ty = ty.field(field);
    let list_path = Path::Field(path, field);
    let key = list_ty.merge_key();
    let patch_list = match patch.get(field) {
        None => None,
        Some(Value::Null) => return Ok(false),
        Some(Value::Array(list)) => Some(list.as_slice()),
        Some(other) => {
            return Err(Box::new(StrategicError::MalformedDirective {
                path: list_path.render(),
                directive: format!("the list named by {SET_ELEMENT_ORDER}/{field}"),
                expected: "a list",
                found: type_name(other),
            }));
        }
    };
    let mut order_ids = Vec::with_capacity(order.len());
    for (index, element) in order.iter().enumerate() {
        let id = identity(element, key);
        if let (Some(key), None) = (key, &id) {
            let order_path = format!("{SET_ELEMENT_ORDER}/{field}");
            return Err(Box::new(StrategicError::MissingMergeKey {
                path: Path::Field(path, &order_path).render(),
                index,
                key,
            }));
        }
        order_ids.push(id);
    }
    if let Some(list) = patch_list {
        check_order(list, &order_ids, key, path, field)?;
    }
    let live = match original.get_mut(field) {
        Some(Value::Array(list)) => Some(std::mem::take(list)),
        _ => None,
    };
    let live_ids: Vec<Option<String>> = live
        .iter()
        .flatten()
        .map(|element| identity(element, key))
        .collect();
    let merged = match (live, patch_list) {
        (None, None) => return Ok(true),
        (Some(live), None) => live,
        (live, Some(list)) => merge_list(
            live.unwrap_or_default(),
            list,
            list_ty,
            &list_path,
            depth + 1,
        )?,
    };
    let ordered = interleave(merged, &order_ids, &live_ids, key);
    original.insert(field.to_owned(), Value::Array(ordered));
    Ok(true)
}

/// The patch's elements must appear in `$setElementOrder` in the same relative order; elements
/// carrying a `$patch` directive are exempt.
fn check_order(
    list: &[Value],
    order: &[Option<String>],
    key: Option<&str>,
    path: &Path,
    field: &str,
) -> Result<(), StrategicError> {
    let mut remaining = order.iter();
    for element in list {
        if element.as_object().is_some_and(|m| m.contains_key(PATCH)) {
            continue;
        }
        // Elements without an identity are reported by the merge.
        let Some(id) = identity(element, key) else {
            continue;
        };
        if !remaining.any(|o| o.as_ref() == Some(&id)) {
            return Err(StrategicError::OrderMismatch {
                path: path.render(),
                field: field.to_owned(),
            });
        }
    }
    Ok(())
}

/// Merges a patch list into a live list as the field's patch strategy says.
fn merge_list(
    live: Vec<Value>,
    patch: &[Value],
    ty: &Ty,
    path: &Path,
    depth: usize,
) -> Result<Vec<Value>, Boxed> {
    check_depth(depth, path)?;
    let item = ty.item();
    match ty.smp() {
        Smp::Replace => {
            let mut out = Vec::with_capacity(patch.len());
            for (index, element) in patch.iter().enumerate() {
                let element_path = Path::Index(path, index);
                // `$patch` elements speak to the list, which is replaced anyway.
                if let Value::Object(m) = element
                    && let Some(d) = m.get(PATCH)
                {
                    directive(d, &element_path)?;
                    continue;
                }
                if let Some(v) = fresh_value(element, item, &element_path, depth + 1)? {
                    out.push(v);
                }
            }
            Ok(out)
        }
        Smp::Union => Ok(union(live, patch, path)?),
        Smp::MergeBy(key) => merge_by_key(live, patch, key, item, path, depth),
    }
}

/// A list of primitives with the merge strategy: the live values, plus the patch's values not
/// already present.
fn union(live: Vec<Value>, patch: &[Value], path: &Path) -> Result<Vec<Value>, StrategicError> {
    for (index, element) in patch.iter().enumerate() {
        if element.is_object() || element.is_array() {
            return Err(StrategicError::ElementNotPrimitive {
                path: path.render(),
                index,
                found: type_name(element),
            });
        }
    }
    let live_ids: Vec<Option<String>> = live.iter().map(|v| identity(v, None)).collect();
    let patch_ids: Vec<Option<String>> = patch.iter().map(|v| identity(v, None)).collect();
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(live.len() + patch.len());
    for v in live.into_iter().chain(patch.iter().cloned()) {
        let new = identity(&v, None).is_none_or(|id| seen.insert(id));
        if new {
            out.push(v);
        }
    }
    Ok(interleave(out, &patch_ids, &live_ids, None))
}

/// A list merged by key: `$patch` elements first (delete by key, replace the list), then each
/// element merges into the live element with its key or is added.
fn merge_by_key(
    mut live: Vec<Value>,
    patch: &[Value],
    key: &'static str,
    item: &Ty,
    path: &Path,
    depth: usize,
) -> Result<Vec<Value>, Boxed> {
    let mut replace = false;
    let mut entries = Vec::with_capacity(patch.len());
    for (index, element) in patch.iter().enumerate() {
        let Value::Object(m) = element else {
            return Err(Box::new(StrategicError::ElementNotAnObject {
                path: path.render(),
                index,
                found: type_name(element),
                key,
            }));
        };
        let missing_key = || StrategicError::MissingMergeKey {
            path: path.render(),
            index,
            key,
        };
        match m.get(PATCH) {
            None => {
                let id = m.get(key).map(canonical).ok_or_else(missing_key)?;
                entries.push((index, m, id));
            }
            Some(d) => match directive(d, &Path::Index(path, index))? {
                Directive::Delete => {
                    let id = m.get(key).map(canonical).ok_or_else(missing_key)?;
                    live.retain(|v| identity(v, Some(key)).as_ref() != Some(&id));
                }
                Directive::Replace => replace = true,
                Directive::Merge => {}
            },
        }
    }
    if replace {
        live.clear();
    }
    let live_ids: Vec<Option<String>> = live.iter().map(|v| identity(v, Some(key))).collect();
    let mut positions: HashMap<String, usize> = HashMap::new();
    for (position, id) in live_ids.iter().enumerate() {
        if let Some(id) = id {
            positions.entry(id.clone()).or_insert(position);
        }
    }
    let mut patch_ids = Vec::with_capacity(entries.len());
    for (index, m, id) in entries {
        let element_path = Path::Index(path, index);
        match positions.get(&id).copied().and_then(|p| live.get_mut(p)) {
            Some(slot) => {
                let base = match std::mem::take(slot) {
                    Value::Object(base) => base,
                    _ => Map::new(),
                };
                *slot = Value::Object(merge_fields(base, m, item, &element_path, depth + 1)?);
            }
            None => {
                positions.insert(id.clone(), live.len());
                live.push(Value::Object(merge_fields(
                    Map::new(),
                    m,
                    item,
                    &element_path,
                    depth + 1,
                )?));
            }
        }
        patch_ids.push(Some(id));
    }
    Ok(interleave(live, &patch_ids, &live_ids, Some(key)))
}

/// Orders a merged list as Kubernetes does: the elements named by `order` (the patch's list or
/// its `$setElementOrder`) in that order, the others in their live order, and each of the
/// others placed before the next named element only when it came before it in the live list.
fn interleave(
    items: Vec<Value>,
    order: &[Option<String>],
    live: &[Option<String>],
    key: Option<&str>,
) -> Vec<Value> {
    let order_pos = first_positions(order);
    let live_pos = first_positions(live);
    let mut named = Vec::new();
    let mut others = Vec::new();
    for v in items {
        let id = identity(&v, key);
        let in_live = id.as_deref().and_then(|id| live_pos.get(id).copied());
        match id.as_deref().and_then(|id| order_pos.get(id).copied()) {
            Some(at) => named.push((at, in_live, v)),
            None => others.push((in_live, v)),
        }
    }
    named.sort_by_key(|(at, _, _)| *at);
    others.sort_by_key(|(in_live, _)| in_live.unwrap_or(usize::MAX));
    let mut out = Vec::with_capacity(named.len() + others.len());
    let mut named = named.into_iter().peekable();
    let mut others = others.into_iter().peekable();
    loop {
        let other_first = match (others.peek(), named.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some((other, _)), Some((_, this, _))) => {
                matches!((other, this), (Some(a), Some(b)) if a < b)
            }
        };
        let next = if other_first {
            others.next().map(|(_, v)| v)
        } else {
            named.next().map(|(_, _, v)| v)
        };
        out.extend(next);
    }
    out
}

fn first_positions(ids: &[Option<String>]) -> HashMap<&str, usize> {
    let mut positions = HashMap::new();
    for (position, id) in ids.iter().enumerate() {
        if let Some(id) = id {
            positions.entry(id.as_str()).or_insert(position);
        }
    }
    positions
}

/// What identifies a list element: its merge key's value, or the value itself.
fn identity(v: &Value, key: Option<&str>) -> Option<String> {
    match key {
        Some(key) => v.as_object()?.get(key).map(canonical),
        None => Some(canonical(v)),
    }
}

/// A string equal for equal JSON values; numbers compare by value, as Go's `float64` does.
fn canonical(v: &Value) -> String {
    match v {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => format!("b{b}"),
        Value::Number(n) => match n.as_f64() {
            Some(f) => format!("n{f}"),
            None => format!("n{n}"),
        },
        Value::String(s) => format!("s{s}"),
        Value::Array(_) | Value::Object(_) => {
            if nests_deeper_than(v, 64) {
                "deep".to_owned()
            } else {
                format!("j{v}")
            }
        }
    }
}

fn nests_deeper_than(v: &Value, limit: usize) -> bool {
    let mut stack = vec![(v, 0usize)];
    while let Some((v, depth)) = stack.pop() {
        if depth > limit {
            return true;
        }
        match v {
            Value::Array(list) => stack.extend(list.iter().map(|x| (x, depth + 1))),
            Value::Object(m) => stack.extend(m.values().map(|x| (x, depth + 1))),
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const APPS: &str = "apps";
    const RBAC: &str = "rbac.authorization.k8s.io";

    fn patched(group: &str, kind: &str, target: Value, p: Value) -> Value {
        let mut target = target;
        match patch(group, kind, &mut target, &p) {
            Ok(()) => target,
            Err(e) => panic!("patch {p} failed: {e}"),
        }
    }

    fn rejected(group: &str, kind: &str, target: Value, p: Value) -> StrategicError {
        let before = target.clone();
        let mut target = target;
        match patch(group, kind, &mut target, &p) {
            Ok(()) => panic!("patch {p} was accepted: {target}"),
            Err(e) => {
                assert_eq!(
                    target, before,
                    "a rejected patch must leave the target unchanged"
                );
                e
            }
        }
    }

    fn at<'a>(v: &'a Value, path: &[&str]) -> &'a Value {
        let mut at = v;
        for step in path {
            at = match at {
                Value::Object(m) => m.get(*step).unwrap_or(&Value::Null),
                Value::Array(list) => step
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| list.get(i))
                    .unwrap_or(&Value::Null),
                _ => &Value::Null,
            };
        }
        at
    }

    fn containers(deployment: &Value) -> &Value {
        at(deployment, &["spec", "template", "spec", "containers"])
    }

    fn names(list: &Value) -> Vec<&str> {
        list.as_array()
            .map(|l| l.iter().filter_map(|e| e.get("name")?.as_str()).collect())
            .unwrap_or_default()
    }

    fn deployment() -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": "web",
                "namespace": "default",
                "uid": "d-1",
                "labels": {"app": "web", "tier": "frontend"},
                "finalizers": ["example.com/a"],
                "ownerReferences": [
                    {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": "o-1"}
                ]
            },
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "strategy": {
                    "type": "RollingUpdate",
                    "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}
                },
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {
                        "containers": [
                            {
                                "name": "web",
                                "image": "nginx:1.26",
                                "imagePullPolicy": "IfNotPresent",
                                "env": [{"name": "A", "value": "1"}],
                                "ports": [{"containerPort": 80, "protocol": "TCP"}],
                                "terminationMessagePath": "/dev/termination-log"
                            },
                            {
                                "name": "sidecar",
                                "image": "busybox:1.36",
                                "command": ["sleep", "infinity"],
                                "imagePullPolicy": "IfNotPresent"
                            }
                        ],
                        "restartPolicy": "Always",
                        "tolerations": [{"key": "dedicated", "operator": "Exists"}],
                        "volumes": [{"name": "config", "configMap": {"name": "web-config"}}]
                    }
                }
            }
        })
    }

    // --- strategic merge patch -----------------------------------------------------------

    #[test]
    fn containers_merge_by_name_and_keep_the_others() {
        let out = patched(
            APPS,
            "Deployment",
            deployment(),
            json!({"spec": {"template": {"spec": {"containers": [
                {"name": "web", "image": "nginx:1.27", "env": [{"name": "B", "value": "2"}]}
            ]}}}}),
        );
        let web = at(containers(&out), &["0"]);
        assert_eq!(names(containers(&out)), ["web", "sidecar"]);
        assert_eq!(web["image"], "nginx:1.27");
        // Fields the patch does not name stay, in the list and in the element.
        assert_eq!(web["imagePullPolicy"], "IfNotPresent");
        assert_eq!(
            web["ports"],
            json!([{"containerPort": 80, "protocol": "TCP"}])
        );
        // env merges by name too; without $setElementOrder the patch's elements come first.
        assert_eq!(
            web["env"],
            json!([{"name": "B", "value": "2"}, {"name": "A", "value": "1"}])
        );
        assert_eq!(at(containers(&out), &["1", "image"]), "busybox:1.36");
    }

    #[test]
    fn a_new_element_without_set_element_order_goes_first_as_in_kubernetes() {
        // The `kubectl patch` documentation example: the added container is listed first.
        let out = patched(
            APPS,
            "Deployment",
            deployment(),
            json!({"spec": {"template": {"spec": {"containers": [
                {"name": "redis", "image": "redis"}
            ]}}}}),
        );
        assert_eq!(names(containers(&out)), ["redis", "web", "sidecar"]);
    }

    #[test]
    fn set_element_order_as_kubectl_sends_it_orders_the_merged_lists() {
        // kubectl apply after adding env B (after A) to "web" and changing its image.
        let out = patched(
            APPS,
            "Deployment",
            deployment(),
            json!({"spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "web"}, {"name": "sidecar"}],
                "containers": [{
                    "$setElementOrder/env": [{"name": "A"}, {"name": "B"}],
                    "env": [{"name": "B", "value": "2"}],
                    "image": "nginx:1.27",
                    "name": "web"
                }]
            }}}}),
        );
        assert_eq!(names(containers(&out)), ["web", "sidecar"]);
        assert_eq!(
            at(containers(&out), &["0", "env"]),
            &json!([{"name": "A", "value": "1"}, {"name": "B", "value": "2"}])
        );
        assert_eq!(at(containers(&out), &["0", "image"]), "nginx:1.27");
        assert!(!out.to_string().contains("$setElementOrder"));

        // The directive alone reorders the live list.
        let out = patched(
            APPS,
            "Deployment",
            deployment(),
            json!({"spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "web"}]
            }}}}),
        );
        assert_eq!(names(containers(&out)), ["sidecar", "web"]);
    }

    #[test]
    fn set_element_order_must_agree_with_the_patch_list() {
        let e = rejected(
            APPS,
            "Deployment",
            deployment(),
            json!({"spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "web"}],
                "containers": [{"name": "sidecar", "image": "busybox:1.37"}]
            }}}}),
        );
        assert_eq!(
            e.to_string(),
            "spec.template.spec: the elements of the patch's list are not in the order of \
             $setElementOrder/containers"
        );
    }

    #[test]
    fn patch_delete_removes_a_container_by_name() {
        let out = patched(
            APPS,
            "Deployment",
            deployment(),
            json!({"spec": {"template": {"spec": {"containers": [
                {"$patch": "delete", "name": "sidecar"}
            ]}}}}),
        );
        assert_eq!(names(containers(&out)), ["web"]);
        assert_eq!(at(containers(&out), &["0", "image"]), "nginx:1.26");
    }

    #[test]
    fn patch_replace_in_a_list_replaces_the_whole_list() {
        let out = patched(
            APPS,
            "Deployment",
            deployment(),
            json!({"spec": {"template": {"spec": {"containers": [
                {"name": "only", "image": "alpine"},
                {"$patch": "replace"}
            ]}}}}),
        );
        assert_eq!(
            containers(&out),
            &json!([{"name": "only", "image": "alpine"}])
        );
    }

    #[test]
    fn patch_directives_on_maps_replace_delete_or_merge_them() {
        let replaced = patched(
            APPS,
            "Deployment",
            deployment(),
            json!({"spec": {"strategy": {"$patch": "replace", "type": "Recreate"}}}),
        );
        assert_eq!(replaced["spec"]["strategy"], json!({"type": "Recreate"}));

        // As in Kubernetes, a deleted map is left empty.
        let deleted = patched(
            APPS,
            "Deployment",
            deployment(),
            json!({"spec": {"template": {"metadata": {"labels": {"$patch": "delete"}}}}}),
        );
        assert_eq!(deleted["spec"]["template"]["metadata"]["labels"], json!({}));

        let merged = patched(
            APPS,
            "Deployment",
            deployment(),
            json!({"metadata": {"labels": {"$patch": "merge", "team": "a"}}}),
        );
        assert_eq!(
            merged["metadata"]["labels"],
            json!({"app": "web", "tier": "frontend", "team": "a"})
        );

        let e = rejected(
            APPS,
            "Deployment",
            deployment(),
            json!({"metadata": {"labels": {"$patch": "erase"}}}),
        );
        assert_eq!(
            e.to_string(),
            "metadata.labels: unknown $patch directive \"erase\"; expected \"replace\", \
             \"merge\" or \"delete\""
        );
    }

    #[test]
    fn retain_keys_drops_the_live_fields_it_does_not_list() {
        // kubectl apply switching the strategy to Recreate.
        let out = patched(
            APPS,
            "Deployment",
            deployment(),
            json!({"spec": {"strategy": {
                "$retainKeys": ["type"], "rollingUpdate": null, "type": "Recreate"
            }}}),
        );
        assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));

        // And switching a volume's source, inside a list merged by name.
        let out = patched(
            APPS,
            "Deployment",
            deployment(),
            json!({"spec": {"template": {"spec": {
                "$setElementOrder/volumes": [{"name": "config"}],
                "volumes": [{
                    "$retainKeys": ["name", "secret"],
                    "name": "config",
                    "secret": {"secretName": "web-secret"}
                }]
            }}}}),
        );
        assert_eq!(
            out["spec"]["template"]["spec"]["volumes"],
            json!([{"name": "config", "secret": {"secretName": "web-secret"}}])
        );

        let e = rejected(
            APPS,
            "Deployment",
            deployment(),
            json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {}}}}),
        );
        assert_eq!(
            e.to_string(),
            "spec.strategy: the patch sets \"rollingUpdate\", which $retainKeys does not list"
        );
    }

    #[test]
    fn delete_from_primitive_list_removes_finalizers() {
        let out = patched(
            APPS,
            "Deployment",
            deployment(),
            json!({"metadata": {
                "$deleteFromPrimitiveList/finalizers": ["example.com/a"],
                "$setElementOrder/finalizers": ["example.com/b"],
                "finalizers": ["example.com/b"]
            }}),
        );
        assert_eq!(out["metadata"]["finalizers"], json!(["example.com/b"]));
        assert_eq!(
            out["metadata"]
                .as_object()
                .map(|m| m.keys().cloned().collect::<Vec<_>>()),
            Some(
                [
                    "finalizers",
                    "labels",
                    "name",
                    "namespace",
                    "ownerReferences",
                    "uid"
                ]
                .map(String::from)
                .to_vec()
            )
        );
    }

    #[test]
    fn finalizers_are_a_union_without_duplicates() {
        let out = patched(
            APPS,
            "Deployment",
            deployment(),
            json!({"metadata": {"finalizers": ["example.com/a", "example.com/b"]}}),
        );
        assert_eq!(
            out["metadata"]["finalizers"],
            json!(["example.com/a", "example.com/b"])
        );
        let again = patched(
            APPS,
            "Deployment",
            out,
            json!({"metadata": {"finalizers": ["example.com/b"]}}),
        );
        assert_eq!(
            again["metadata"]["finalizers"],
            json!(["example.com/a", "example.com/b"])
        );
    }

    #[test]
    fn owner_references_merge_by_uid() {
        let out = patched(
            "",
            "ConfigMap",
            json!({"metadata": {"name": "c", "ownerReferences": [
                {"apiVersion": "v1", "kind": "Secret", "name": "s", "uid": "u-1"}
            ]}}),
            json!({"metadata": {"ownerReferences": [
                {"uid": "u-1", "controller": true},
                {"apiVersion": "apps/v1", "kind": "Deployment", "name": "d", "uid": "u-2"}
            ]}}),
        );
        assert_eq!(
            out["metadata"]["ownerReferences"],
            json!([
                {"apiVersion": "v1", "kind": "Secret", "name": "s", "uid": "u-1", "controller": true},
                {"apiVersion": "apps/v1", "kind": "Deployment", "name": "d", "uid": "u-2"}
            ])
        );
    }

    #[test]
    fn service_ports_merge_by_port() {
        let service = json!({
            "metadata": {"name": "web"},
            "spec": {
                "selector": {"app": "web"},
                "ports": [
                    {"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080},
                    {"name": "https", "port": 443, "protocol": "TCP", "targetPort": 8443}
                ]
            }
        });
        let out = patched(
            "",
            "Service",
            service,
            json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}]}}),
        );
        assert_eq!(
            out["spec"]["ports"],
            json!([
                {"name": "http", "port": 80, "protocol": "TCP", "targetPort": 9090},
                {"name": "https", "port": 443, "protocol": "TCP", "targetPort": 8443}
            ])
        );
    }

    #[test]
    fn null_deletes_a_label_and_other_labels_stay() {
        let out = patched(
            APPS,
            "Deployment",
            deployment(),
            json!({"metadata": {"labels": {"tier": null, "team": "a", "absent": null}}}),
        );
        assert_eq!(
            out["metadata"]["labels"],
            json!({"app": "web", "team": "a"})
        );
    }

    #[test]
    fn rbac_rules_are_replaced_whole() {
        let role = json!({
            "metadata": {"name": "reader"},
            "rules": [
                {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]},
                {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}
            ]
        });
        let out = patched(
            RBAC,
            "Role",
            role,
            json!({"rules": [{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get"]}]}),
        );
        assert_eq!(
            out["rules"],
            json!([{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get"]}])
        );
    }

    #[test]
    fn tolerations_have_no_patch_strategy_and_are_replaced() {
        let out = patched(
            APPS,
            "Deployment",
            deployment(),
            json!({"spec": {"template": {"spec": {"tolerations": [
                {"key": "gpu", "operator": "Exists"}
            ]}}}}),
        );
        assert_eq!(
            out["spec"]["template"]["spec"]["tolerations"],
            json!([{"key": "gpu", "operator": "Exists"}])
        );
    }

    #[test]
    fn an_unknown_kind_replaces_lists_but_honours_directives() {
        let widget = json!({
            "metadata": {"name": "w", "labels": {"a": "1"}},
            "spec": {"items": [{"name": "x"}, {"name": "y"}], "config": {"k": "v", "old": 1}}
        });
        let out = patched(
            "example.com",
            "Widget",
            widget,
            json!({
                "metadata": {"labels": {"a": null, "b": "2"}},
                "spec": {
                    "items": [{"name": "z"}],
                    "config": {"$retainKeys": ["k", "new"], "new": 2}
                }
            }),
        );
        assert_eq!(
            out,
            json!({
                "metadata": {"name": "w", "labels": {"b": "2"}},
                "spec": {"items": [{"name": "z"}], "config": {"k": "v", "new": 2}}
            })
        );
    }

    #[test]
    fn kubectl_apply_dropping_one_of_two_containers() {
        // kubectl 1.32 `apply` computes this three-way patch when the last-applied
        // configuration had containers "web" and "sidecar" and the new manifest only "web".
        let last_applied = concat!(
            r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"annotations":{},"#,
            r#""name":"web","namespace":"default"},"spec":{"replicas":2,"selector":"#,
            r#"{"matchLabels":{"app":"web"}},"template":{"metadata":{"labels":{"app":"web"}},"#,
            r#""spec":{"containers":[{"image":"nginx:1.26","name":"web"}]}}}}"#,
            "\n"
        );
        let kubectl_patch = json!({
            "metadata": {"annotations": {
                "kubectl.kubernetes.io/last-applied-configuration": last_applied
            }},
            "spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "web"}],
                "containers": [{"$patch": "delete", "name": "sidecar"}]
            }}}
        });
        let out = patched(APPS, "Deployment", deployment(), kubectl_patch);
        let mut expected = deployment();
        if let Some(list) = expected["spec"]["template"]["spec"]["containers"].as_array_mut() {
            list.truncate(1);
        }
        expected["metadata"]["annotations"] =
            json!({"kubectl.kubernetes.io/last-applied-configuration": last_applied});
        assert_eq!(out, expected);
    }

    #[test]
    fn directives_in_new_values_never_reach_the_result() {
        let out = patched(
            "",
            "ServiceAccount",
            json!({"metadata": {"name": "sa"}}),
            json!({
                "metadata": {
                    "labels": {"$patch": "replace", "a": "1", "b": null},
                    "annotations": {"$patch": "delete"},
                    "$setElementOrder/finalizers": ["y", "x"],
                    "finalizers": ["x"]
                },
                "secrets": [
                    {"name": "token", "$retainKeys": ["name"]},
                    {"$patch": "delete", "name": "old"},
                    {"$patch": "replace"}
                ],
                "imagePullSecrets": [{"name": "registry"}, {"$patch": "replace"}]
            }),
        );
        assert_eq!(
            out,
            json!({
                "metadata": {"name": "sa", "labels": {"a": "1"}, "finalizers": ["x"]},
                "secrets": [{"name": "token"}],
                "imagePullSecrets": [{"name": "registry"}]
            })
        );
    }

    #[test]
    fn errors_name_the_path() {
        let e = rejected(
            APPS,
            "Deployment",
            deployment(),
            json!({"spec": {"template": {"spec": {"containers": [
                {"name": "web"}, {"name": "sidecar"}, {"image": "nginx"}
            ]}}}}),
        );
        assert_eq!(
            e.to_string(),
            "spec.template.spec.containers: element 2 has no merge key \"name\""
        );

        let e = rejected(
            APPS,
            "Deployment",
            deployment(),
            json!({"spec": {"template": {"spec": {"containers": [
                {"name": "web", "env": ["A=1"]}
            ]}}}}),
        );
        assert_eq!(
            e.to_string(),
            "spec.template.spec.containers[0].env: element 0 is a string, but the list merges \
             objects by \"name\""
        );

        let e = rejected(
            "",
            "Secret",
            json!({}),
            json!({"metadata": {"finalizers": [{"name": "x"}]}}),
        );
        assert_eq!(
            e.to_string(),
            "metadata.finalizers: element 0 is an object, but the list is a set of primitive values"
        );

        let e = rejected("", "Secret", json!({}), json!([1]));
        assert_eq!(
            e.to_string(),
            "a strategic merge patch must be a JSON object, got a list"
        );

        let e = rejected(
            "",
            "Secret",
            json!({}),
            json!({"metadata": {"$setElementOrder": []}}),
        );
        assert_eq!(
            e.to_string(),
            "metadata: directive \"$setElementOrder\" must name a field, as in \
             \"$setElementOrder/<field>\""
        );
    }

    #[test]
    fn garbage_patches_never_panic_and_never_leave_directives() {
        let targets = [
            (
                "",
                "Namespace",
                json!({"metadata": {"name": "n"}, "spec": {"finalizers": ["kubernetes"]}}),
            ),
            (
                "",
                "Secret",
                json!({"metadata": {"name": "s"}, "data": {"a": "YQ=="}}),
            ),
            (
                "",
                "Service",
                json!({"spec": {"ports": [{"port": 80, "protocol": "TCP"}]}}),
            ),
            (RBAC, "ClusterRole", json!({"rules": [{"verbs": ["get"]}]})),
            (
                "admissionregistration.k8s.io",
                "ValidatingWebhookConfiguration",
                json!({"webhooks": [{"name": "w", "rules": []}]}),
            ),
            (
                "apiextensions.k8s.io",
                "CustomResourceDefinition",
                json!({"spec": {"versions": []}}),
            ),
            (APPS, "Deployment", deployment()),
            ("example.com", "Widget", json!({"spec": {"items": [1, 2]}})),
        ];
        let mut rng = Rng(0x5eed_1234_abcd_ef01);
        for _ in 0..400 {
            for (group, kind, target) in &targets {
                let p = Value::Object(random_object(&mut rng, 0));
                let mut out = target.clone();
                match patch(group, kind, &mut out, &p) {
                    Ok(()) => assert!(
                        !has_directive_key(&out),
                        "{kind}: directive left by {p}: {out}"
                    ),
                    Err(_) => assert_eq!(&out, target),
                }
            }
        }
        for p in [
            json!(null),
            json!("x"),
            json!({"$patch": 1}),
            json!({"$retainKeys": "metadata"}),
            json!({"$retainKeys": [1]}),
            json!({"metadata": {"$setElementOrder/finalizers": 5}}),
            json!({"metadata": {"$setElementOrder/finalizers": [], "finalizers": "x"}}),
            json!({"metadata": {"$setElementOrder/ownerReferences": [1]}}),
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": {"a": 1}}}),
            json!({"metadata": {"$deleteFromPrimitiveList/": []}}),
            json!({"metadata": {"ownerReferences": [{"$patch": "delete"}]}}),
            json!({"metadata": {"ownerReferences": [[1]]}}),
            json!({"metadata": {"finalizers": [[1]]}}),
            json!({"spec": {"template": {"spec": {"containers": {"name": "web"}}}}}),
            json!({"spec": {"template": {"spec": {"containers": [{"name": {"deep": [1]}}]}}}}),
        ] {
            let mut out = deployment();
            let _ = patch(APPS, "Deployment", &mut out, &p);
        }
    }

    #[test]
    fn deep_patches_are_merged_or_rejected_within_a_small_stack() {
        // The deepest patch serde_json parses merges; deeper ones built in code are refused.
        // Both fit in half the stack of a runtime worker thread, even in a debug build.
        let run = || {
            let text = format!("{}1{}", "{\"a\":".repeat(127), "}".repeat(127));
            let parsed: Value = match serde_json::from_str(&text) {
                Ok(v) => v,
                Err(e) => panic!("{e}"),
            };
            let mut target = json!({});
            assert!(patch("example.com", "Widget", &mut target, &parsed).is_ok());
            assert_eq!(target, parsed);

            let mut p = json!("leaf");
            for _ in 0..300 {
                p = json!({ "a": p });
            }
            let mut target = json!({});
            assert!(matches!(
                patch("", "Secret", &mut target, &p),
                Err(StrategicError::TooDeep { .. })
            ));
            let mut p = json!("leaf");
            for _ in 0..300 {
                p = json!([p]);
            }
            let p = json!({ "metadata": { "finalizers": p }, "data": p });
            assert!(patch("", "Secret", &mut target, &p).is_err());
            assert_eq!(target, json!({}));
        };
        let thread = std::thread::Builder::new().stack_size(1 << 20).spawn(run);
        match thread.map(|t| t.join()) {
            Ok(Ok(())) => {}
            Ok(Err(panic)) => std::panic::resume_unwind(panic),
            Err(e) => panic!("cannot start the test thread: {e}"),
        }
    }

    /// xorshift64: deterministic noise for the garbage test.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }

        fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
            let i = self.below(from.len() as u64) as usize;
            from.get(i).copied().unwrap_or("x")
        }
    }

    const GARBAGE_KEYS: &[&str] = &[
        "$patch",
        "$retainKeys",
        "$setElementOrder/containers",
        "$setElementOrder/finalizers",
        "$setElementOrder/ports",
        "$deleteFromPrimitiveList/finalizers",
        "$deleteFromPrimitiveList/verbs",
        "metadata",
        "spec",
        "template",
        "containers",
        "name",
        "image",
        "env",
        "ports",
        "containerPort",
        "port",
        "protocol",
        "finalizers",
        "ownerReferences",
        "uid",
        "labels",
        "volumes",
        "rules",
        "verbs",
        "webhooks",
        "data",
        "status",
        "conditions",
        "type",
        "strategy",
        "items",
        "versions",
    ];

    const GARBAGE_STRINGS: &[&str] = &["replace", "merge", "delete", "web", "sidecar", "x", ""];

    fn random_value(rng: &mut Rng, depth: usize) -> Value {
        match rng.below(if depth > 4 { 5 } else { 9 }) {
            0 => Value::Null,
            1 => Value::Bool(rng.below(2) == 0),
            2 => json!(rng.below(100)),
            3 => json!(rng.pick(GARBAGE_STRINGS)),
            4 => json!(rng.pick(GARBAGE_KEYS)),
            5 | 6 => Value::Object(random_object(rng, depth + 1)),
            _ => Value::Array(
                (0..rng.below(4))
                    .map(|_| random_value(rng, depth + 1))
                    .collect(),
            ),
        }
    }

    fn random_object(rng: &mut Rng, depth: usize) -> Map<String, Value> {
        (0..rng.below(5))
            .map(|_| {
                (
                    rng.pick(GARBAGE_KEYS).to_owned(),
                    random_value(rng, depth + 1),
                )
            })
            .collect()
    }

    fn has_directive_key(v: &Value) -> bool {
        match v {
            Value::Object(m) => m.iter().any(|(k, v)| {
                k == PATCH
                    || k == RETAIN_KEYS
                    || k.starts_with(SET_ELEMENT_ORDER)
                    || k.starts_with(DELETE_FROM_PRIMITIVE_LIST)
                    || has_directive_key(v)
            }),
            Value::Array(list) => list.iter().any(has_directive_key),
            _ => false,
        }
    }

    // --- builtin_schema ------------------------------------------------------------------

    fn schema(group: &str, kind: &str) -> Value {
        match builtin_schema(group, kind) {
            Some(s) => s,
            None => panic!("no schema for {group}/{kind}"),
        }
    }

    fn prop<'a>(s: &'a Value, path: &[&str]) -> &'a Value {
        let mut at = s;
        for step in path {
            at = if *step == "[]" {
                &at["items"]
            } else {
                &at["properties"][*step]
            };
        }
        at
    }

    const POD: &[&str] = &["spec", "template", "spec"];

    #[test]
    fn schema_deployment_containers_are_a_map_keyed_by_name() {
        let s = schema(APPS, "Deployment");
        for list in ["containers", "initContainers", "ephemeralContainers"] {
            let containers = prop(&s, &[POD, &[list]].concat());
            assert_eq!(containers["type"], "array");
            assert_eq!(containers["x-kubernetes-list-type"], "map");
            assert_eq!(containers["x-kubernetes-list-map-keys"], json!(["name"]));
            assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
            assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
        }
        let volumes = prop(&s, &[POD, &["volumes"]].concat());
        assert_eq!(volumes["x-kubernetes-patch-strategy"], "merge,retainKeys");
        assert_eq!(
            prop(&s, &["spec", "strategy"])["x-kubernetes-patch-strategy"],
            "retainKeys"
        );
        assert_eq!(
            prop(&s, &["spec", "selector"])["x-kubernetes-map-type"],
            "atomic"
        );
        assert_eq!(
            prop(&s, &[POD, &["tolerations"]].concat())["x-kubernetes-list-type"],
            "atomic"
        );
    }

    #[test]
    fn schema_container_ports_are_keyed_by_port_and_protocol_but_patched_by_port() {
        let s = schema(APPS, "Deployment");
        let ports = prop(&s, &[POD, &["containers", "[]", "ports"]].concat());
        assert_eq!(ports["x-kubernetes-list-type"], "map");
        assert_eq!(
            ports["x-kubernetes-list-map-keys"],
            json!(["containerPort", "protocol"])
        );
        assert_eq!(ports["x-kubernetes-patch-merge-key"], "containerPort");
        let claims = prop(
            &s,
            &[POD, &["containers", "[]", "resources", "claims"]].concat(),
        );
        assert_eq!(claims["x-kubernetes-list-type"], "map");
        assert_eq!(claims.get("x-kubernetes-patch-strategy"), None);
    }

    #[test]
    fn schema_service_ports_are_keyed_by_port_and_protocol() {
        let s = schema("", "Service");
        let ports = prop(&s, &["spec", "ports"]);
        assert_eq!(ports["x-kubernetes-list-type"], "map");
        assert_eq!(
            ports["x-kubernetes-list-map-keys"],
            json!(["port", "protocol"])
        );
        assert_eq!(ports["x-kubernetes-patch-merge-key"], "port");
        assert_eq!(
            prop(&s, &["spec", "selector"])["x-kubernetes-map-type"],
            "atomic"
        );
    }

    #[test]
    fn schema_metadata_has_finalizers_set_and_owner_references_keyed_by_uid() {
        for (group, kind, _) in KINDS {
            let s = schema(group, kind);
            let finalizers = prop(&s, &["metadata", "finalizers"]);
            assert_eq!(finalizers["x-kubernetes-list-type"], "set", "{kind}");
            assert_eq!(finalizers["x-kubernetes-patch-strategy"], "merge", "{kind}");
            let owners = prop(&s, &["metadata", "ownerReferences"]);
            assert_eq!(owners["x-kubernetes-list-type"], "map", "{kind}");
            assert_eq!(
                owners["x-kubernetes-list-map-keys"],
                json!(["uid"]),
                "{kind}"
            );
            assert_eq!(owners["x-kubernetes-patch-merge-key"], "uid", "{kind}");
            assert_eq!(owners["items"]["x-kubernetes-map-type"], "atomic", "{kind}");
        }
    }

    #[test]
    fn schema_role_binding_subjects_and_rules_are_atomic() {
        for kind in ["RoleBinding", "ClusterRoleBinding"] {
            let s = schema(RBAC, kind);
            assert_eq!(prop(&s, &["subjects"])["x-kubernetes-list-type"], "atomic");
            assert_eq!(prop(&s, &["roleRef"])["x-kubernetes-map-type"], "atomic");
        }
        let s = schema(RBAC, "ClusterRole");
        assert_eq!(prop(&s, &["rules"])["x-kubernetes-list-type"], "atomic");
        assert_eq!(
            prop(&s, &["rules", "[]", "verbs"])["x-kubernetes-list-type"],
            "atomic"
        );
    }

    #[test]
    fn schema_secret_data_is_a_granular_map() {
        let s = schema("", "Secret");
        for field in ["data", "stringData"] {
            assert_eq!(
                prop(&s, &[field]),
                &json!({"type": "object", "additionalProperties": {"type": "string"}})
            );
        }
    }

    #[test]
    fn schema_covers_every_served_built_in_and_nothing_else() {
        let served = [
            ("", "Namespace"),
            ("", "Secret"),
            ("", "ConfigMap"),
            ("", "ServiceAccount"),
            ("", "Service"),
            ("", "Event"),
            ("coordination.k8s.io", "Lease"),
            ("events.k8s.io", "Event"),
            (RBAC, "Role"),
            (RBAC, "ClusterRole"),
            (RBAC, "RoleBinding"),
            (RBAC, "ClusterRoleBinding"),
            (APPS, "Deployment"),
            (
                "admissionregistration.k8s.io",
                "ValidatingWebhookConfiguration",
            ),
            (
                "admissionregistration.k8s.io",
                "MutatingWebhookConfiguration",
            ),
            ("apiextensions.k8s.io", "CustomResourceDefinition"),
        ];
        for (group, kind) in served {
            assert!(builtin_schema(group, kind).is_some(), "{group}/{kind}");
        }
        assert_eq!(builtin_schema("example.com", "Widget"), None);
        assert_eq!(builtin_schema("", "Deployment"), None);
    }

    #[test]
    fn schema_uses_only_the_documented_keywords() {
        fn check(s: &Value, path: &str) {
            let Value::Object(m) = s else {
                panic!("{path}: not an object");
            };
            for (k, v) in m {
                match k.as_str() {
                    "type"
                    | "x-kubernetes-list-type"
                    | "x-kubernetes-map-type"
                    | "x-kubernetes-patch-strategy"
                    | "x-kubernetes-patch-merge-key" => {
                        assert!(v.is_string(), "{path}.{k}")
                    }
                    "x-kubernetes-list-map-keys" => assert!(v.is_array(), "{path}.{k}"),
                    "items" | "additionalProperties" => check(v, &format!("{path}.{k}")),
                    "properties" => {
                        for (name, p) in v.as_object().into_iter().flatten() {
                            check(p, &format!("{path}.{name}"));
                        }
                    }
                    other => panic!("{path}: unexpected keyword {other}"),
                }
            }
        }
        for (group, kind, _) in KINDS {
            check(&schema(group, kind), kind);
        }
    }

    #[test]
    fn tables_agree_with_themselves() {
        // A merge key is one of server-side apply's keys; a union is a set; both are lists.
        fn walk(ty: &Ty, path: &str) {
            match ty {
                Ty::Struct { fields, .. } => {
                    for (name, ty) in *fields {
                        walk(ty, &format!("{path}.{name}"));
                    }
                }
                Ty::Map { values, .. } => walk(values, &format!("{path}{{}}")),
                Ty::List { item, smp, ssa, .. } => {
                    match (smp, ssa) {
                        (Smp::MergeBy(key), Ssa::Map(keys)) => {
                            assert!(keys.contains(key), "{path}")
                        }
                        (Smp::MergeBy(_), _) => panic!("{path}: merge key without map keys"),
                        (Smp::Union, ssa) => {
                            assert_eq!(*ssa, Ssa::Set, "{path}");
                            assert!(matches!(item, Ty::Str | Ty::Any), "{path}");
                        }
                        (Smp::Replace, _) => {}
                    }
                    walk(item, &format!("{path}[]"));
                }
                Ty::Any | Ty::Str => {}
            }
        }
        for (_, kind, ty) in KINDS {
            walk(ty, kind);
        }
    }

    #[test]
    fn server_side_apply_walks_the_schema_as_kubernetes_does() {
        let s = schema(APPS, "Deployment");
        let fields = crate::ssa::field_set(&deployment(), Some(&s));
        let spec = &fields["f:spec"]["f:template"]["f:spec"];
        let web = &spec["f:containers"]["k:{\"name\":\"web\"}"];
        assert!(web.is_object(), "{fields}");
        assert!(web["f:env"]["k:{\"name\":\"A\"}"].is_object(), "{fields}");
        assert!(
            web["f:ports"]["k:{\"containerPort\":80,\"protocol\":\"TCP\"}"].is_object(),
            "{fields}"
        );
        // Atomic lists are leaves.
        assert_eq!(spec["f:tolerations"], json!({}));
        assert_eq!(fields["f:spec"]["f:selector"], json!({}));
    }
}
