//! Decoding of Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`).
//!
//! `kubectl create namespace|configmap|secret|serviceaccount` and client-go's event recorder
//! and leader election send their bodies as protobuf and never fall back to JSON. The server
//! stores objects as JSON, so [`decode`] turns such a body into the JSON object the same client
//! would have sent had it used `application/json`.
//!
//! A body is the 4-byte magic `k8s\0` followed by a `runtime.Unknown` message whose `typeMeta`
//! names the object's `apiVersion` and `kind` and whose `raw` field holds the protobuf encoding
//! of the object itself.
//!
//! The conversion follows Go's JSON encoding of the Kubernetes API types, field by field:
//!
//! * names are the camelCase JSON names of the Kubernetes API;
//! * `omitempty` value fields (strings, integers, booleans) are left out when unset or zero,
//!   while required ones (`ownerReferences[].name`, `servicePort.port`, ...) are always written;
//! * pointer fields (`*bool`, `*int32`, `*string`) are written whenever the message carries
//!   them, zero values included;
//! * lists and maps are left out when empty; `bytes` become standard base64 strings;
//! * nested structs that Go always writes (`spec`, `status`, `metadata`, `involvedObject`, ...)
//!   are always written, as `{}` when empty;
//! * `Time` becomes an RFC 3339 string with second precision (`2026-11-27T10:00:00Z`) and
//!   `MicroTime` one with six fractional digits (`2026-11-27T10:00:00.123456Z`); a zero time
//!   (an empty message, which is how Go encodes `time.Time{}`) is left out, where Go's JSON
//!   would write `null`;
//! * `IntOrString` becomes a number or a string according to its `type`;
//! * `FieldsV1` becomes the JSON value its raw bytes hold.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use k8s_pb::api::coordination::v1 as coordination;
use k8s_pb::api::core::v1 as core;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::Unknown;
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use prost::Message;
use serde_json::{Map, Value};

/// The prefix of every Kubernetes protobuf message.
pub const MAGIC: &[u8; 4] = b"k8s\0";

/// The media type of Kubernetes protobuf bodies.
pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// Why a protobuf body could not be turned into JSON.
#[derive(Debug, thiserror::Error)]
pub enum ProtobufError {
    /// The body does not start with `k8s\0`.
    #[error("not a Kubernetes protobuf message (missing the k8s\\0 prefix)")]
    MissingMagic,
    /// The `runtime.Unknown` envelope after the prefix is not valid protobuf.
    #[error("invalid Kubernetes protobuf envelope: {0}")]
    Envelope(#[source] prost::DecodeError),
    /// The envelope does not say which type the object is.
    #[error(
        "protobuf message does not name its type (typeMeta.apiVersion and typeMeta.kind are required)"
    )]
    MissingType,
    /// The envelope's raw object is compressed or otherwise encoded.
    #[error("unsupported protobuf content encoding {0:?}; send the object unencoded")]
    UnsupportedContentEncoding(String),
    /// The envelope's raw object is not protobuf.
    #[error("unsupported content type {0:?} inside the protobuf envelope")]
    UnsupportedContentType(String),
    /// The object's kind is not one this server decodes from protobuf.
    #[error("unsupported kind {api_version}/{kind} in protobuf; send JSON")]
    UnsupportedKind {
        /// `typeMeta.apiVersion` of the envelope.
        api_version: String,
        /// `typeMeta.kind` of the envelope.
        kind: String,
    },
    /// The object inside the envelope is not a valid protobuf encoding of its kind.
    #[error("invalid protobuf encoding of {api_version}/{kind}: {source}")]
    Decode {
        /// `typeMeta.apiVersion` of the envelope.
        api_version: String,
        /// `typeMeta.kind` of the envelope.
        kind: String,
        /// What prost reported.
        #[source]
        source: prost::DecodeError,
    },
    /// A field decoded but holds a value with no JSON form.
    #[error("invalid value in {field}: {reason}")]
    InvalidField {
        /// The JSON path of the field, such as `metadata.creationTimestamp`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// Decodes a Kubernetes protobuf request body into the object's JSON form (as `kubectl` would
/// have sent it as JSON).
///
/// Supported kinds: `v1` `Namespace`, `ConfigMap`, `Secret`, `ServiceAccount`, `Service` and
/// `Event`, and `coordination.k8s.io/v1` `Lease`. Any other kind is an
/// [`ProtobufError::UnsupportedKind`] error, whose message asks the client to send JSON.
pub fn decode(body: &[u8]) -> Result<Value, ProtobufError> {
    let envelope = body
        .strip_prefix(MAGIC.as_slice())
        .ok_or(ProtobufError::MissingMagic)?;
    let unknown = Unknown::decode(envelope).map_err(ProtobufError::Envelope)?;
    if let Some(encoding) = unknown.content_encoding.filter(|e| !e.is_empty()) {
        return Err(ProtobufError::UnsupportedContentEncoding(encoding));
    }
    if let Some(content_type) = unknown
        .content_type
        .filter(|t| !t.is_empty() && t != CONTENT_TYPE)
    {
        return Err(ProtobufError::UnsupportedContentType(content_type));
    }
    let type_meta = unknown.type_meta.unwrap_or_default();
    let api_version = type_meta.api_version.unwrap_or_default();
    let kind = type_meta.kind.unwrap_or_default();
    if api_version.is_empty() || kind.is_empty() {
        return Err(ProtobufError::MissingType);
    }
    let raw = unknown.raw.unwrap_or_default();

    let mut o = Obj::new("");
    o.put("apiVersion", Value::String(api_version.clone()));
    o.put("kind", Value::String(kind.clone()));
    match (api_version.as_str(), kind.as_str()) {
        ("v1", "Namespace") => namespace(&mut o, parse(&raw, &api_version, &kind)?)?,
        ("v1", "ConfigMap") => config_map(&mut o, parse(&raw, &api_version, &kind)?)?,
        ("v1", "Secret") => secret(&mut o, parse(&raw, &api_version, &kind)?)?,
        ("v1", "ServiceAccount") => service_account(&mut o, parse(&raw, &api_version, &kind)?)?,
        ("v1", "Service") => service(&mut o, parse(&raw, &api_version, &kind)?)?,
        ("v1", "Event") => event(&mut o, parse(&raw, &api_version, &kind)?)?,
        ("coordination.k8s.io/v1", "Lease") => lease(&mut o, parse(&raw, &api_version, &kind)?)?,
        _ => return Err(ProtobufError::UnsupportedKind { api_version, kind }),
    }
    Ok(o.into_value())
}

/// Decodes the raw object of the envelope as a `T`.
fn parse<T: Message + Default>(
    raw: &[u8],
    api_version: &str,
    kind: &str,
) -> Result<T, ProtobufError> {
    T::decode(raw).map_err(|source| ProtobufError::Decode {
        api_version: api_version.to_owned(),
        kind: kind.to_owned(),
        source,
    })
}

type Result<T, E = ProtobufError> = std::result::Result<T, E>;

// ---------------------------------------------------------------------------------------------
// Kinds
// ---------------------------------------------------------------------------------------------

fn namespace(o: &mut Obj, ns: core::Namespace) -> Result<()> {
    o.object("metadata", ns.metadata, object_meta)?;
    o.object("spec", ns.spec, |o, spec: core::NamespaceSpec| {
        o.strings("finalizers", spec.finalizers);
        Ok(())
    })?;
    o.object("status", ns.status, |o, status: core::NamespaceStatus| {
        o.str("phase", status.phase);
        o.list(
            "conditions",
            status.conditions,
            |o, c: core::NamespaceCondition| {
                o.str_required("type", c.r#type);
                o.str_required("status", c.status);
                o.time("lastTransitionTime", c.last_transition_time)?;
                o.str("reason", c.reason);
                o.str("message", c.message);
                Ok(())
            },
        )
    })
}

fn config_map(o: &mut Obj, cm: core::ConfigMap) -> Result<()> {
    o.object("metadata", cm.metadata, object_meta)?;
    o.bool_ptr("immutable", cm.immutable);
    o.string_map("data", cm.data);
    o.bytes_map("binaryData", cm.binary_data);
    Ok(())
}

fn secret(o: &mut Obj, s: core::Secret) -> Result<()> {
    o.object("metadata", s.metadata, object_meta)?;
    o.bool_ptr("immutable", s.immutable);
    o.bytes_map("data", s.data);
    o.string_map("stringData", s.string_data);
    o.str("type", s.r#type);
    Ok(())
}

fn service_account(o: &mut Obj, sa: core::ServiceAccount) -> Result<()> {
    o.object("metadata", sa.metadata, object_meta)?;
    o.list("secrets", sa.secrets, object_reference)?;
    o.list(
        "imagePullSecrets",
        sa.image_pull_secrets,
        |o, r: core::LocalObjectReference| {
            o.str("name", r.name);
            Ok(())
        },
    )?;
    o.bool_ptr(
        "automountServiceAccountToken",
        sa.automount_service_account_token,
    );
    Ok(())
}

fn service(o: &mut Obj, svc: core::Service) -> Result<()> {
    o.object("metadata", svc.metadata, object_meta)?;
    o.object("spec", svc.spec, service_spec)?;
    o.object("status", svc.status, service_status)
}

fn service_spec(o: &mut Obj, spec: core::ServiceSpec) -> Result<()> {
    o.list("ports", spec.ports, |o, p: core::ServicePort| {
        o.str("name", p.name);
        o.str("protocol", p.protocol);
        o.str_ptr("appProtocol", p.app_protocol);
        o.int_required("port", p.port);
        let target_port = int_or_string(p.target_port.unwrap_or_default(), &o.child("targetPort"))?;
        o.put("targetPort", target_port);
        o.int("nodePort", p.node_port);
        Ok(())
    })?;
    o.string_map("selector", spec.selector);
    o.str("clusterIP", spec.cluster_ip);
    o.strings("clusterIPs", spec.cluster_ips);
    o.str("type", spec.r#type);
    o.strings("externalIPs", spec.external_ips);
    o.str("sessionAffinity", spec.session_affinity);
    o.str("loadBalancerIP", spec.load_balancer_ip);
    o.strings("loadBalancerSourceRanges", spec.load_balancer_source_ranges);
    o.str("externalName", spec.external_name);
    o.str("externalTrafficPolicy", spec.external_traffic_policy);
    o.int("healthCheckNodePort", spec.health_check_node_port);
    o.bool("publishNotReadyAddresses", spec.publish_not_ready_addresses);
    o.object_ptr(
        "sessionAffinityConfig",
        spec.session_affinity_config,
        |o, c: core::SessionAffinityConfig| {
            o.object_ptr("clientIP", c.client_ip, |o, c: core::ClientIpConfig| {
                o.int_ptr("timeoutSeconds", c.timeout_seconds);
                Ok(())
            })
        },
    )?;
    o.strings("ipFamilies", spec.ip_families);
    o.str_ptr("ipFamilyPolicy", spec.ip_family_policy);
    o.bool_ptr(
        "allocateLoadBalancerNodePorts",
        spec.allocate_load_balancer_node_ports,
    );
    o.str_ptr("loadBalancerClass", spec.load_balancer_class);
    o.str_ptr("internalTrafficPolicy", spec.internal_traffic_policy);
    o.str_ptr("trafficDistribution", spec.traffic_distribution);
    Ok(())
}

fn service_status(o: &mut Obj, status: core::ServiceStatus) -> Result<()> {
    o.object(
        "loadBalancer",
        status.load_balancer,
        |o, lb: core::LoadBalancerStatus| {
            o.list("ingress", lb.ingress, |o, i: core::LoadBalancerIngress| {
                o.str("ip", i.ip);
                o.str("hostname", i.hostname);
                o.str_ptr("ipMode", i.ip_mode);
                o.list("ports", i.ports, |o, p: core::PortStatus| {
                    o.int_required("port", p.port);
                    o.str_required("protocol", p.protocol);
                    o.str_ptr("error", p.error);
                    Ok(())
                })
            })
        },
    )?;
    o.list("conditions", status.conditions, |o, c: meta::Condition| {
        o.str_required("type", c.r#type);
        o.str_required("status", c.status);
        o.int("observedGeneration", c.observed_generation);
        o.time("lastTransitionTime", c.last_transition_time)?;
        o.str_required("reason", c.reason);
        o.str_required("message", c.message);
        Ok(())
    })
}

fn event(o: &mut Obj, ev: core::Event) -> Result<()> {
    o.object("metadata", ev.metadata, object_meta)?;
    o.object("involvedObject", ev.involved_object, object_reference)?;
    o.str("reason", ev.reason);
    o.str("message", ev.message);
    o.object("source", ev.source, |o, s: core::EventSource| {
        o.str("component", s.component);
        o.str("host", s.host);
        Ok(())
    })?;
    o.time("firstTimestamp", ev.first_timestamp)?;
    o.time("lastTimestamp", ev.last_timestamp)?;
    o.int("count", ev.count);
    o.str("type", ev.r#type);
    o.micro_time("eventTime", ev.event_time)?;
    o.object_ptr("series", ev.series, |o, s: core::EventSeries| {
        o.int("count", s.count);
        o.micro_time("lastObservedTime", s.last_observed_time)
    })?;
    o.str("action", ev.action);
    o.object_ptr("related", ev.related, object_reference)?;
    o.str_required("reportingComponent", ev.reporting_component);
    o.str_required("reportingInstance", ev.reporting_instance);
    Ok(())
}

fn lease(o: &mut Obj, lease: coordination::Lease) -> Result<()> {
    o.object("metadata", lease.metadata, object_meta)?;
    o.object("spec", lease.spec, |o, spec: coordination::LeaseSpec| {
        o.str_ptr("holderIdentity", spec.holder_identity);
        o.int_ptr("leaseDurationSeconds", spec.lease_duration_seconds);
        o.micro_time("acquireTime", spec.acquire_time)?;
        o.micro_time("renewTime", spec.renew_time)?;
        o.int_ptr("leaseTransitions", spec.lease_transitions);
        o.str_ptr("strategy", spec.strategy);
        o.str_ptr("preferredHolder", spec.preferred_holder);
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------------
// Shared types
// ---------------------------------------------------------------------------------------------

fn object_meta(o: &mut Obj, m: meta::ObjectMeta) -> Result<()> {
    o.str("name", m.name);
    o.str("generateName", m.generate_name);
    o.str("namespace", m.namespace);
    o.str("selfLink", m.self_link);
    o.str("uid", m.uid);
    o.str("resourceVersion", m.resource_version);
    o.int("generation", m.generation);
    o.time("creationTimestamp", m.creation_timestamp)?;
    o.time("deletionTimestamp", m.deletion_timestamp)?;
    o.int_ptr(
        "deletionGracePeriodSeconds",
        m.deletion_grace_period_seconds,
    );
    o.string_map("labels", m.labels);
    o.string_map("annotations", m.annotations);
    o.list(
        "ownerReferences",
        m.owner_references,
        |o, r: meta::OwnerReference| {
            o.str_required("apiVersion", r.api_version);
            o.str_required("kind", r.kind);
            o.str_required("name", r.name);
            o.str_required("uid", r.uid);
            o.bool_ptr("controller", r.controller);
            o.bool_ptr("blockOwnerDeletion", r.block_owner_deletion);
            Ok(())
        },
    )?;
    o.strings("finalizers", m.finalizers);
    o.list(
        "managedFields",
        m.managed_fields,
        |o, e: meta::ManagedFieldsEntry| {
            o.str("manager", e.manager);
            o.str("operation", e.operation);
            o.str("apiVersion", e.api_version);
            o.time("time", e.time)?;
            o.str("fieldsType", e.fields_type);
            if let Some(raw) = e.fields_v1.and_then(|f| f.raw).filter(|r| !r.is_empty()) {
                let fields =
                    serde_json::from_slice(&raw).map_err(|err| ProtobufError::InvalidField {
                        field: o.child("fieldsV1"),
                        reason: format!("not JSON: {err}"),
                    })?;
                o.put("fieldsV1", fields);
            }
            o.str("subresource", e.subresource);
            Ok(())
        },
    )
}

fn object_reference(o: &mut Obj, r: core::ObjectReference) -> Result<()> {
    o.str("kind", r.kind);
    o.str("namespace", r.namespace);
    o.str("name", r.name);
    o.str("uid", r.uid);
    o.str("apiVersion", r.api_version);
    o.str("resourceVersion", r.resource_version);
    o.str("fieldPath", r.field_path);
    Ok(())
}

/// `IntOrString` is a number when its type is 0 (`Int`) and a string when it is 1 (`String`),
/// like its Go JSON encoding; other types have no JSON form.
fn int_or_string(v: IntOrString, field: &str) -> Result<Value> {
    match v.r#type.unwrap_or(0) {
        0 => Ok(Value::from(v.int_val.unwrap_or(0))),
        1 => Ok(Value::String(v.str_val.unwrap_or_default())),
        other => Err(ProtobufError::InvalidField {
            field: field.to_owned(),
            reason: format!("IntOrString type {other} is neither 0 (int) nor 1 (string)"),
        }),
    }
}

// ---------------------------------------------------------------------------------------------
// Times
// ---------------------------------------------------------------------------------------------

/// Seconds since the Unix epoch of 0000-01-01T00:00:00Z, the earliest time RFC 3339 can write.
const MIN_SECONDS: i64 = -62_167_219_200;
/// Seconds since the Unix epoch of 9999-12-31T23:59:59Z, the latest time RFC 3339 can write.
const MAX_SECONDS: i64 = 253_402_300_799;

/// Formats a `Time` as Kubernetes does in JSON: UTC, whole seconds (`Time` drops its nanos
/// when decoded from protobuf). `None` for the zero time, which Go encodes as an empty message.
fn format_time(t: meta::Time, field: &str) -> Result<Option<String>> {
    if t.seconds.is_none() && t.nanos.is_none() {
        return Ok(None);
    }
    let seconds = t.seconds.unwrap_or(0);
    let (date, clock) = civil(seconds, field)?;
    Ok(Some(format!("{date}T{clock}Z")))
}

/// Formats a `MicroTime` as Kubernetes does in JSON: UTC with exactly six fractional digits
/// (the nanos are truncated to microseconds). `None` for the zero time.
fn format_micro_time(t: meta::MicroTime, field: &str) -> Result<Option<String>> {
    if t.seconds.is_none() && t.nanos.is_none() {
        return Ok(None);
    }
    // Like Go's `time.Unix`, nanos outside 0..1e9 carry into the seconds.
    let total =
        i128::from(t.seconds.unwrap_or(0)) * 1_000_000_000 + i128::from(t.nanos.unwrap_or(0));
    let seconds =
        i64::try_from(total.div_euclid(1_000_000_000)).map_err(|_| out_of_range(field))?;
    let micros = total.rem_euclid(1_000_000_000) / 1_000;
    let (date, clock) = civil(seconds, field)?;
    Ok(Some(format!("{date}T{clock}.{micros:06}Z")))
}

fn out_of_range(field: &str) -> ProtobufError {
    ProtobufError::InvalidField {
        field: field.to_owned(),
        reason: "time outside the years 0000 to 9999".to_owned(),
    }
}

/// Splits seconds since the Unix epoch into `YYYY-MM-DD` and `hh:mm:ss` (UTC).
fn civil(seconds: i64, field: &str) -> Result<(String, String)> {
    if !(MIN_SECONDS..=MAX_SECONDS).contains(&seconds) {
        return Err(out_of_range(field));
    }
    let timestamp = jiff::Timestamp::from_second(seconds).map_err(|_| out_of_range(field))?;
    Ok((
        timestamp.strftime("%Y-%m-%d").to_string(),
        timestamp.strftime("%H:%M:%S").to_string(),
    ))
}

// ---------------------------------------------------------------------------------------------
// JSON object builder
// ---------------------------------------------------------------------------------------------

/// A JSON object under construction, with the JSON path it sits at (for error messages).
struct Obj {
    path: String,
    map: Map<String, Value>,
}

impl Obj {
    fn new(path: &str) -> Self {
        Obj {
            path: path.to_owned(),
            map: Map::new(),
        }
    }

    fn into_value(self) -> Value {
        Value::Object(self.map)
    }

    /// The JSON path of this object's field `key`.
    fn child(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn put(&mut self, key: &str, value: Value) {
        self.map.insert(key.to_owned(), value);
    }

    /// A `string` field with `omitempty`: left out when unset or empty.
    fn str(&mut self, key: &str, v: Option<String>) {
        if let Some(s) = v.filter(|s| !s.is_empty()) {
            self.put(key, Value::String(s));
        }
    }

    /// A `string` field without `omitempty`: always written, `""` when unset.
    fn str_required(&mut self, key: &str, v: Option<String>) {
        self.put(key, Value::String(v.unwrap_or_default()));
    }

    /// A `*string` field: written whenever set, even when empty.
    fn str_ptr(&mut self, key: &str, v: Option<String>) {
        if let Some(s) = v {
            self.put(key, Value::String(s));
        }
    }

    /// An integer field with `omitempty`: left out when unset or zero.
    fn int<T: Into<i64>>(&mut self, key: &str, v: Option<T>) {
        if let Some(n) = v.map(Into::into).filter(|n| *n != 0) {
            self.put(key, Value::from(n));
        }
    }

    /// An integer field without `omitempty`: always written, `0` when unset.
    fn int_required<T: Into<i64>>(&mut self, key: &str, v: Option<T>) {
        self.put(key, Value::from(v.map_or(0, Into::into)));
    }

    /// A pointer-to-integer field: written whenever set, even when zero.
    fn int_ptr<T: Into<i64>>(&mut self, key: &str, v: Option<T>) {
        if let Some(n) = v {
            self.put(key, Value::from(n.into()));
        }
    }

    /// A `bool` field with `omitempty`: written only when true.
    fn bool(&mut self, key: &str, v: Option<bool>) {
        if v == Some(true) {
            self.put(key, Value::Bool(true));
        }
    }

    /// A `*bool` field: written whenever set.
    fn bool_ptr(&mut self, key: &str, v: Option<bool>) {
        if let Some(b) = v {
            self.put(key, Value::Bool(b));
        }
    }

    /// A `[]string` field: left out when empty.
    fn strings(&mut self, key: &str, v: Vec<String>) {
        if !v.is_empty() {
            self.put(
                key,
                Value::Array(v.into_iter().map(Value::String).collect()),
            );
        }
    }

    /// A `map[string]string` field: left out when empty.
    fn string_map(&mut self, key: &str, v: BTreeMap<String, String>) {
        if !v.is_empty() {
            let map = v.into_iter().map(|(k, s)| (k, Value::String(s))).collect();
            self.put(key, Value::Object(map));
        }
    }

    /// A `map[string][]byte` field: values in standard base64; left out when empty.
    fn bytes_map(&mut self, key: &str, v: BTreeMap<String, Vec<u8>>) {
        if !v.is_empty() {
            let map = v
                .into_iter()
                .map(|(k, b)| (k, Value::String(BASE64.encode(b))))
                .collect();
            self.put(key, Value::Object(map));
        }
    }

    /// A `Time` or `*Time` field: left out when unset or zero.
    fn time(&mut self, key: &str, v: Option<meta::Time>) -> Result<()> {
        if let Some(t) = v
            && let Some(s) = format_time(t, &self.child(key))?
        {
            self.put(key, Value::String(s));
        }
        Ok(())
    }

    /// A `MicroTime` or `*MicroTime` field: left out when unset or zero.
    fn micro_time(&mut self, key: &str, v: Option<meta::MicroTime>) -> Result<()> {
        if let Some(t) = v
            && let Some(s) = format_micro_time(t, &self.child(key))?
        {
            self.put(key, Value::String(s));
        }
        Ok(())
    }

    /// A nested struct held by value in Go: always written (`{}` when unset or empty).
    fn object<T: Default>(
        &mut self,
        key: &str,
        v: Option<T>,
        fill: impl FnOnce(&mut Obj, T) -> Result<()>,
    ) -> Result<()> {
        let mut child = Obj::new(&self.child(key));
        fill(&mut child, v.unwrap_or_default())?;
        self.put(key, child.into_value());
        Ok(())
    }

    /// A nested struct held by pointer in Go: written whenever set.
    fn object_ptr<T>(
        &mut self,
        key: &str,
        v: Option<T>,
        fill: impl FnOnce(&mut Obj, T) -> Result<()>,
    ) -> Result<()> {
        if let Some(v) = v {
            let mut child = Obj::new(&self.child(key));
            fill(&mut child, v)?;
            self.put(key, child.into_value());
        }
        Ok(())
    }

    /// A list of structs: left out when empty.
    fn list<T>(
        &mut self,
        key: &str,
        items: Vec<T>,
        fill: impl Fn(&mut Obj, T) -> Result<()>,
    ) -> Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        let path = self.child(key);
        let mut values = Vec::with_capacity(items.len());
        for (i, item) in items.into_iter().enumerate() {
            let mut child = Obj::new(&format!("{path}[{i}]"));
            fill(&mut child, item)?;
            values.push(child.into_value());
        }
        self.put(key, Value::Array(values));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_pb::apimachinery::pkg::runtime::TypeMeta;
    use serde_json::json;

    /// 2026-11-27T10:00:00Z.
    const T0: i64 = 1_795_773_600;

    /// Wraps an encoded object the way client-go's protobuf serializer does: the magic, then a
    /// `runtime.Unknown` whose string fields are all present (Go always writes them).
    fn wrap(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
        let unknown = Unknown {
            type_meta: Some(TypeMeta {
                api_version: Some(api_version.to_owned()),
                kind: Some(kind.to_owned()),
            }),
            raw: Some(raw),
            content_encoding: Some(String::new()),
            content_type: Some(String::new()),
        };
        let mut body = MAGIC.to_vec();
        body.extend(unknown.encode_to_vec());
        body
    }

    fn body<T: Message>(api_version: &str, kind: &str, object: &T) -> Vec<u8> {
        wrap(api_version, kind, object.encode_to_vec())
    }

    fn decoded<T: Message>(api_version: &str, kind: &str, object: &T) -> Value {
        match decode(&body(api_version, kind, object)) {
            Ok(v) => v,
            Err(e) => panic!("decoding {api_version}/{kind} failed: {e}"),
        }
    }

    fn s(v: &str) -> Option<String> {
        Some(v.to_owned())
    }

    fn time(seconds: i64) -> Option<meta::Time> {
        Some(meta::Time {
            seconds: Some(seconds),
            nanos: Some(0),
        })
    }

    fn micro_time(seconds: i64, nanos: i32) -> Option<meta::MicroTime> {
        Some(meta::MicroTime {
            seconds: Some(seconds),
            nanos: Some(nanos),
        })
    }

    fn string_map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// ObjectMeta as Go encodes a freshly built one: every non-pointer field present with its
    /// zero value, `creationTimestamp` an empty message.
    fn go_meta(name: &str, namespace: &str) -> meta::ObjectMeta {
        meta::ObjectMeta {
            name: s(name),
            generate_name: s(""),
            namespace: s(namespace),
            self_link: s(""),
            uid: s(""),
            resource_version: s(""),
            generation: Some(0),
            creation_timestamp: Some(meta::Time::default()),
            ..Default::default()
        }
    }

    #[test]
    fn namespace_as_kubectl_create_namespace_sends_it() {
        let ns = core::Namespace {
            metadata: Some(go_meta("x", "")),
            spec: Some(core::NamespaceSpec::default()),
            status: Some(core::NamespaceStatus {
                phase: s(""),
                conditions: vec![],
            }),
        };
        assert_eq!(
            decoded("v1", "Namespace", &ns),
            json!({
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": "x"},
                "spec": {},
                "status": {}
            })
        );
    }

    #[test]
    fn namespace_with_finalizers_phase_and_conditions() {
        let ns = core::Namespace {
            metadata: Some(meta::ObjectMeta {
                name: s("team-a"),
                labels: string_map(&[("team", "a")]),
                ..Default::default()
            }),
            spec: Some(core::NamespaceSpec {
                finalizers: vec!["kubernetes".to_owned()],
            }),
            status: Some(core::NamespaceStatus {
                phase: s("Terminating"),
                conditions: vec![core::NamespaceCondition {
                    r#type: s("NamespaceDeletionContentFailure"),
                    status: s("False"),
                    last_transition_time: time(T0),
                    reason: s("ContentDeleted"),
                    message: s("All content successfully deleted"),
                }],
            }),
        };
        assert_eq!(
            decoded("v1", "Namespace", &ns),
            json!({
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": "team-a", "labels": {"team": "a"}},
                "spec": {"finalizers": ["kubernetes"]},
                "status": {
                    "phase": "Terminating",
                    "conditions": [{
                        "type": "NamespaceDeletionContentFailure",
                        "status": "False",
                        "lastTransitionTime": "2026-11-27T10:00:00Z",
                        "reason": "ContentDeleted",
                        "message": "All content successfully deleted"
                    }]
                }
            })
        );
    }

    #[test]
    fn secret_with_binary_data_and_labels_becomes_base64() {
        let secret = core::Secret {
            metadata: Some(meta::ObjectMeta {
                labels: string_map(&[("app", "web"), ("tier", "front")]),
                ..go_meta("creds", "default")
            }),
            immutable: None,
            data: [
                ("password".to_owned(), b"s3cr3t".to_vec()),
                ("tls.key".to_owned(), vec![0, 1, 2, 0xff]),
                ("empty".to_owned(), vec![]),
            ]
            .into_iter()
            .collect(),
            string_data: BTreeMap::new(),
            r#type: s("Opaque"),
        };
        assert_eq!(
            decoded("v1", "Secret", &secret),
            json!({
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {
                    "name": "creds",
                    "namespace": "default",
                    "labels": {"app": "web", "tier": "front"}
                },
                "data": {"empty": "", "password": "czNjcjN0", "tls.key": "AAEC/w=="},
                "type": "Opaque"
            })
        );
    }

    #[test]
    fn secret_with_string_data_and_immutable() {
        let secret = core::Secret {
            metadata: Some(go_meta("token", "ops")),
            immutable: Some(true),
            data: BTreeMap::new(),
            string_data: string_map(&[("token", "abc")]),
            r#type: s("kubernetes.io/service-account-token"),
        };
        assert_eq!(
            decoded("v1", "Secret", &secret),
            json!({
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "token", "namespace": "ops"},
                "immutable": true,
                "stringData": {"token": "abc"},
                "type": "kubernetes.io/service-account-token"
            })
        );
    }

    #[test]
    fn config_map_with_data_and_binary_data() {
        let cm = core::ConfigMap {
            metadata: Some(go_meta("settings", "default")),
            immutable: Some(false),
            data: string_map(&[("mode", "fast"), ("greeting", "hello\nworld")]),
            binary_data: [("logo.png".to_owned(), vec![0x89, b'P', b'N', b'G'])]
                .into_iter()
                .collect(),
        };
        assert_eq!(
            decoded("v1", "ConfigMap", &cm),
            json!({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "settings", "namespace": "default"},
                "immutable": false,
                "data": {"greeting": "hello\nworld", "mode": "fast"},
                "binaryData": {"logo.png": "iVBORw=="}
            })
        );
    }

    #[test]
    fn empty_config_map_has_only_metadata() {
        let cm = core::ConfigMap {
            metadata: Some(go_meta("empty", "default")),
            ..Default::default()
        };
        assert_eq!(
            decoded("v1", "ConfigMap", &cm),
            json!({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "empty", "namespace": "default"}
            })
        );
    }

    #[test]
    fn service_account_with_secrets_and_image_pull_secrets() {
        let sa = core::ServiceAccount {
            metadata: Some(go_meta("builder", "ci")),
            secrets: vec![core::ObjectReference {
                kind: s("Secret"),
                namespace: s("ci"),
                name: s("builder-token"),
                uid: s("0b7c6a3e-1111-4222-8333-444455556666"),
                api_version: s("v1"),
                resource_version: s("42"),
                field_path: s(""),
            }],
            image_pull_secrets: vec![core::LocalObjectReference {
                name: s("registry"),
            }],
            automount_service_account_token: Some(false),
        };
        assert_eq!(
            decoded("v1", "ServiceAccount", &sa),
            json!({
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": "builder", "namespace": "ci"},
                "secrets": [{
                    "kind": "Secret",
                    "namespace": "ci",
                    "name": "builder-token",
                    "uid": "0b7c6a3e-1111-4222-8333-444455556666",
                    "apiVersion": "v1",
                    "resourceVersion": "42"
                }],
                "imagePullSecrets": [{"name": "registry"}],
                "automountServiceAccountToken": false
            })
        );
    }

    #[test]
    fn service_account_as_kubectl_create_serviceaccount_sends_it() {
        let sa = core::ServiceAccount {
            metadata: Some(go_meta("robot", "default")),
            ..Default::default()
        };
        assert_eq!(
            decoded("v1", "ServiceAccount", &sa),
            json!({
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": "robot", "namespace": "default"}
            })
        );
    }

    fn port(name: &str, port: i32, target: IntOrString) -> core::ServicePort {
        core::ServicePort {
            name: s(name),
            protocol: s("TCP"),
            app_protocol: None,
            port: Some(port),
            target_port: Some(target),
            node_port: Some(0),
        }
    }

    fn named(name: &str) -> IntOrString {
        IntOrString {
            r#type: Some(1),
            int_val: Some(0),
            str_val: s(name),
        }
    }

    fn number(n: i32) -> IntOrString {
        IntOrString {
            r#type: Some(0),
            int_val: Some(n),
            str_val: s(""),
        }
    }

    #[test]
    fn service_with_named_target_port() {
        let svc = core::Service {
            metadata: Some(go_meta("web", "default")),
            spec: Some(core::ServiceSpec {
                ports: vec![
                    core::ServicePort {
                        app_protocol: s("http"),
                        node_port: Some(30080),
                        ..port("http", 80, named("http-web"))
                    },
                    port("metrics", 9090, number(9091)),
                ],
                selector: string_map(&[("app", "web")]),
                cluster_ip: s("10.96.0.10"),
                cluster_ips: vec!["10.96.0.10".to_owned()],
                r#type: s("NodePort"),
                session_affinity: s("None"),
                external_name: s(""),
                external_traffic_policy: s("Cluster"),
                health_check_node_port: Some(0),
                publish_not_ready_addresses: Some(false),
                ip_families: vec!["IPv4".to_owned()],
                ip_family_policy: s("SingleStack"),
                internal_traffic_policy: s("Cluster"),
                ..Default::default()
            }),
            status: Some(core::ServiceStatus {
                load_balancer: Some(core::LoadBalancerStatus::default()),
                conditions: vec![],
            }),
        };
        assert_eq!(
            decoded("v1", "Service", &svc),
            json!({
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "web", "namespace": "default"},
                "spec": {
                    "ports": [
                        {
                            "name": "http",
                            "protocol": "TCP",
                            "appProtocol": "http",
                            "port": 80,
                            "targetPort": "http-web",
                            "nodePort": 30080
                        },
                        {"name": "metrics", "protocol": "TCP", "port": 9090, "targetPort": 9091}
                    ],
                    "selector": {"app": "web"},
                    "clusterIP": "10.96.0.10",
                    "clusterIPs": ["10.96.0.10"],
                    "type": "NodePort",
                    "sessionAffinity": "None",
                    "externalTrafficPolicy": "Cluster",
                    "ipFamilies": ["IPv4"],
                    "ipFamilyPolicy": "SingleStack",
                    "internalTrafficPolicy": "Cluster"
                },
                "status": {"loadBalancer": {}}
            })
        );
    }

    #[test]
    fn service_of_type_external_name_and_load_balancer_fields() {
        let svc = core::Service {
            metadata: Some(go_meta("db", "default")),
            spec: Some(core::ServiceSpec {
                r#type: s("LoadBalancer"),
                external_name: s("db.example.com"),
                external_ips: vec!["192.0.2.7".to_owned()],
                load_balancer_ip: s("192.0.2.8"),
                load_balancer_source_ranges: vec!["10.0.0.0/8".to_owned()],
                health_check_node_port: Some(31000),
                publish_not_ready_addresses: Some(true),
                session_affinity: s("ClientIP"),
                session_affinity_config: Some(core::SessionAffinityConfig {
                    client_ip: Some(core::ClientIpConfig {
                        timeout_seconds: Some(600),
                    }),
                }),
                allocate_load_balancer_node_ports: Some(false),
                load_balancer_class: s("example.com/lb"),
                traffic_distribution: s("PreferClose"),
                ..Default::default()
            }),
            status: Some(core::ServiceStatus {
                load_balancer: Some(core::LoadBalancerStatus {
                    ingress: vec![core::LoadBalancerIngress {
                        ip: s("192.0.2.8"),
                        hostname: s(""),
                        ip_mode: s("VIP"),
                        ports: vec![core::PortStatus {
                            port: Some(5432),
                            protocol: s("TCP"),
                            error: None,
                        }],
                    }],
                }),
                conditions: vec![],
            }),
        };
        assert_eq!(
            decoded("v1", "Service", &svc),
            json!({
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "db", "namespace": "default"},
                "spec": {
                    "type": "LoadBalancer",
                    "externalIPs": ["192.0.2.7"],
                    "sessionAffinity": "ClientIP",
                    "loadBalancerIP": "192.0.2.8",
                    "loadBalancerSourceRanges": ["10.0.0.0/8"],
                    "externalName": "db.example.com",
                    "healthCheckNodePort": 31000,
                    "publishNotReadyAddresses": true,
                    "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 600}},
                    "allocateLoadBalancerNodePorts": false,
                    "loadBalancerClass": "example.com/lb",
                    "trafficDistribution": "PreferClose"
                },
                "status": {
                    "loadBalancer": {
                        "ingress": [{
                            "ip": "192.0.2.8",
                            "ipMode": "VIP",
                            "ports": [{"port": 5432, "protocol": "TCP"}]
                        }]
                    }
                }
            })
        );
    }

    #[test]
    fn service_port_without_target_port_writes_zero_like_go() {
        let svc = core::Service {
            metadata: Some(go_meta("plain", "default")),
            spec: Some(core::ServiceSpec {
                ports: vec![core::ServicePort {
                    port: Some(80),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: None,
        };
        assert_eq!(
            decoded("v1", "Service", &svc),
            json!({
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "plain", "namespace": "default"},
                "spec": {"ports": [{"port": 80, "targetPort": 0}]},
                "status": {"loadBalancer": {}}
            })
        );
    }

    fn pod_reference() -> core::ObjectReference {
        core::ObjectReference {
            kind: s("Pod"),
            namespace: s("default"),
            name: s("web-0"),
            uid: s("6f1e2d3c-aaaa-4bbb-8ccc-ddddeeeeffff"),
            api_version: s("v1"),
            resource_version: s("1234"),
            field_path: s("spec.containers{web}"),
        }
    }

    #[test]
    fn event_with_event_time_series_and_related() {
        let ev = core::Event {
            metadata: Some(go_meta("web-0.17a", "default")),
            involved_object: Some(pod_reference()),
            reason: s("BackOff"),
            message: s("Back-off restarting failed container"),
            source: Some(core::EventSource {
                component: s("kubelet"),
                host: s("node-1"),
            }),
            first_timestamp: time(T0 - 60),
            last_timestamp: time(T0 + 5),
            count: Some(3),
            r#type: s("Warning"),
            event_time: micro_time(T0, 123_456_789),
            series: Some(core::EventSeries {
                count: Some(2),
                last_observed_time: micro_time(T0 + 5, 1_000),
            }),
            action: s("Restarting"),
            related: Some(core::ObjectReference {
                kind: s("Node"),
                name: s("node-1"),
                ..Default::default()
            }),
            reporting_component: s("kubelet"),
            reporting_instance: s("node-1"),
        };
        assert_eq!(
            decoded("v1", "Event", &ev),
            json!({
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": "web-0.17a", "namespace": "default"},
                "involvedObject": {
                    "kind": "Pod",
                    "namespace": "default",
                    "name": "web-0",
                    "uid": "6f1e2d3c-aaaa-4bbb-8ccc-ddddeeeeffff",
                    "apiVersion": "v1",
                    "resourceVersion": "1234",
                    "fieldPath": "spec.containers{web}"
                },
                "reason": "BackOff",
                "message": "Back-off restarting failed container",
                "source": {"component": "kubelet", "host": "node-1"},
                "firstTimestamp": "2026-11-27T09:59:00Z",
                "lastTimestamp": "2026-11-27T10:00:05Z",
                "count": 3,
                "type": "Warning",
                "eventTime": "2026-11-27T10:00:00.123456Z",
                "series": {"count": 2, "lastObservedTime": "2026-11-27T10:00:05.000001Z"},
                "action": "Restarting",
                "related": {"kind": "Node", "name": "node-1"},
                "reportingComponent": "kubelet",
                "reportingInstance": "node-1"
            })
        );
    }

    #[test]
    fn event_from_an_old_style_recorder_keeps_required_fields() {
        // client-go's legacy recorder sets no eventTime (a zero MicroTime, encoded as an empty
        // message) and empty reporting fields, which Go's JSON still writes.
        let ev = core::Event {
            metadata: Some(go_meta("cm.1", "default")),
            involved_object: Some(core::ObjectReference {
                kind: s("ConfigMap"),
                name: s("cm"),
                ..Default::default()
            }),
            reason: s("Synced"),
            source: Some(core::EventSource::default()),
            first_timestamp: time(T0),
            last_timestamp: time(T0),
            count: Some(1),
            r#type: s("Normal"),
            event_time: Some(meta::MicroTime::default()),
            reporting_component: s(""),
            ..Default::default()
        };
        assert_eq!(
            decoded("v1", "Event", &ev),
            json!({
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": "cm.1", "namespace": "default"},
                "involvedObject": {"kind": "ConfigMap", "name": "cm"},
                "reason": "Synced",
                "source": {},
                "firstTimestamp": "2026-11-27T10:00:00Z",
                "lastTimestamp": "2026-11-27T10:00:00Z",
                "count": 1,
                "type": "Normal",
                "reportingComponent": "",
                "reportingInstance": ""
            })
        );
    }

    #[test]
    fn lease_with_renew_time() {
        let lease = coordination::Lease {
            metadata: Some(go_meta("controller-leader", "kube-system")),
            spec: Some(coordination::LeaseSpec {
                holder_identity: s("pod-a_4f3e"),
                lease_duration_seconds: Some(15),
                acquire_time: micro_time(T0 - 86_400, 0),
                renew_time: micro_time(T0, 500_000_000),
                lease_transitions: Some(0),
                strategy: None,
                preferred_holder: None,
            }),
        };
        assert_eq!(
            decoded("coordination.k8s.io/v1", "Lease", &lease),
            json!({
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": "controller-leader", "namespace": "kube-system"},
                "spec": {
                    "holderIdentity": "pod-a_4f3e",
                    "leaseDurationSeconds": 15,
                    "acquireTime": "2026-11-26T10:00:00.000000Z",
                    "renewTime": "2026-11-27T10:00:00.500000Z",
                    "leaseTransitions": 0
                }
            })
        );
    }

    #[test]
    fn lease_with_strategy_and_preferred_holder() {
        let lease = coordination::Lease {
            metadata: Some(go_meta("apiserver", "kube-system")),
            spec: Some(coordination::LeaseSpec {
                holder_identity: s(""),
                strategy: s("OldestEmulationVersion"),
                preferred_holder: s("apiserver-b"),
                ..Default::default()
            }),
        };
        assert_eq!(
            decoded("coordination.k8s.io/v1", "Lease", &lease),
            json!({
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": "apiserver", "namespace": "kube-system"},
                "spec": {
                    "holderIdentity": "",
                    "strategy": "OldestEmulationVersion",
                    "preferredHolder": "apiserver-b"
                }
            })
        );
    }

    #[test]
    fn object_meta_in_full_with_owner_references_and_managed_fields() {
        let cm = core::ConfigMap {
            metadata: Some(meta::ObjectMeta {
                name: s("child"),
                generate_name: s("child-"),
                namespace: s("apps"),
                self_link: s("/api/v1/namespaces/apps/configmaps/child"),
                uid: s("11111111-2222-4333-8444-555555555555"),
                resource_version: s("987"),
                generation: Some(4),
                creation_timestamp: time(T0),
                deletion_timestamp: time(T0 + 30 * 86_400),
                deletion_grace_period_seconds: Some(0),
                labels: string_map(&[("app", "child")]),
                annotations: string_map(&[("note", "{\"json\": true}")]),
                owner_references: vec![
                    meta::OwnerReference {
                        api_version: s("apps/v1"),
                        kind: s("Deployment"),
                        name: s("parent"),
                        uid: s("99999999-8888-4777-8666-555555555555"),
                        controller: Some(true),
                        block_owner_deletion: Some(true),
                    },
                    meta::OwnerReference {
                        api_version: s("v1"),
                        kind: s("ConfigMap"),
                        name: s("other"),
                        uid: None,
                        controller: None,
                        block_owner_deletion: Some(false),
                    },
                ],
                finalizers: vec!["example.com/cleanup".to_owned()],
                managed_fields: vec![
                    meta::ManagedFieldsEntry {
                        manager: s("kubectl-create"),
                        operation: s("Update"),
                        api_version: s("v1"),
                        time: time(T0),
                        fields_type: s("FieldsV1"),
                        fields_v1: Some(meta::FieldsV1 {
                            raw: Some(br#"{"f:data":{".":{},"f:mode":{}}}"#.to_vec()),
                        }),
                        subresource: s(""),
                    },
                    meta::ManagedFieldsEntry {
                        manager: s("controller"),
                        operation: s("Apply"),
                        api_version: s("v1"),
                        time: None,
                        fields_type: s("FieldsV1"),
                        fields_v1: None,
                        subresource: s("status"),
                    },
                ],
            }),
            ..Default::default()
        };
        assert_eq!(
            decoded("v1", "ConfigMap", &cm),
            json!({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": "child",
                    "generateName": "child-",
                    "namespace": "apps",
                    "selfLink": "/api/v1/namespaces/apps/configmaps/child",
                    "uid": "11111111-2222-4333-8444-555555555555",
                    "resourceVersion": "987",
                    "generation": 4,
                    "creationTimestamp": "2026-11-27T10:00:00Z",
                    "deletionTimestamp": "2026-12-27T10:00:00Z",
                    "deletionGracePeriodSeconds": 0,
                    "labels": {"app": "child"},
                    "annotations": {"note": "{\"json\": true}"},
                    "ownerReferences": [
                        {
                            "apiVersion": "apps/v1",
                            "kind": "Deployment",
                            "name": "parent",
                            "uid": "99999999-8888-4777-8666-555555555555",
                            "controller": true,
                            "blockOwnerDeletion": true
                        },
                        {
                            "apiVersion": "v1",
                            "kind": "ConfigMap",
                            "name": "other",
                            "uid": "",
                            "blockOwnerDeletion": false
                        }
                    ],
                    "finalizers": ["example.com/cleanup"],
                    "managedFields": [
                        {
                            "manager": "kubectl-create",
                            "operation": "Update",
                            "apiVersion": "v1",
                            "time": "2026-11-27T10:00:00Z",
                            "fieldsType": "FieldsV1",
                            "fieldsV1": {"f:data": {".": {}, "f:mode": {}}}
                        },
                        {
                            "manager": "controller",
                            "operation": "Apply",
                            "apiVersion": "v1",
                            "fieldsType": "FieldsV1",
                            "subresource": "status"
                        }
                    ]
                }
            })
        );
    }

    #[test]
    fn every_field_of_a_decoded_object_is_kept_with_keys_in_sorted_order() {
        let secret = core::Secret {
            metadata: Some(go_meta("s", "default")),
            immutable: Some(true),
            data: [("k".to_owned(), b"v".to_vec())].into_iter().collect(),
            string_data: string_map(&[("x", "y")]),
            r#type: s("Opaque"),
        };
        let Value::Object(map) = decoded("v1", "Secret", &secret) else {
            panic!("not an object");
        };
        let keys: Vec<&str> = map.keys().map(String::as_str).collect();
        // Objects are stored and served with their keys sorted, as Go writes the unstructured
        // objects of custom resources and as kubectl prints every object.
        assert_eq!(
            keys,
            [
                "apiVersion",
                "data",
                "immutable",
                "kind",
                "metadata",
                "stringData",
                "type"
            ]
        );
    }

    #[test]
    fn hand_written_wire_bytes_decode() {
        // Namespace "x" exactly as Go writes it: ObjectMeta with empty strings, generation 0
        // and an empty creationTimestamp, then an empty spec and a status with an empty phase.
        let meta: &[u8] = &[
            0x0a, 0x01, b'x', // name
            0x12, 0x00, // generateName
            0x1a, 0x00, // namespace
            0x22, 0x00, // selfLink
            0x2a, 0x00, // uid
            0x32, 0x00, // resourceVersion
            0x38, 0x00, // generation
            0x42, 0x00, // creationTimestamp
        ];
        let mut raw = vec![0x0a, u8::try_from(meta.len()).unwrap()];
        raw.extend_from_slice(meta);
        raw.extend_from_slice(&[0x12, 0x00, 0x1a, 0x02, 0x0a, 0x00]);
        let type_meta: &[u8] = b"\x0a\x02v1\x12\x09Namespace";
        let mut body = b"k8s\0".to_vec();
        body.push(0x0a);
        body.push(u8::try_from(type_meta.len()).unwrap());
        body.extend_from_slice(type_meta);
        body.push(0x12);
        body.push(u8::try_from(raw.len()).unwrap());
        body.extend_from_slice(&raw);
        body.extend_from_slice(&[0x1a, 0x00, 0x22, 0x00]); // contentEncoding, contentType
        assert_eq!(
            decode(&body).unwrap(),
            json!({
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": "x"},
                "spec": {},
                "status": {}
            })
        );
    }

    #[test]
    fn times_format_as_rfc3339_in_utc() {
        let cases = [
            (T0, "2026-11-27T10:00:00Z"),
            (0, "1970-01-01T00:00:00Z"),
            (-1, "1969-12-31T23:59:59Z"),
            (951_827_696, "2000-02-29T12:34:56Z"),
            (-2_203_891_200, "1900-03-01T00:00:00Z"),
            (253_402_128_000, "9999-12-30T00:00:00Z"),
            (MIN_SECONDS, "0000-01-01T00:00:00Z"),
        ];
        for (seconds, expected) in cases {
            let t = meta::Time {
                seconds: Some(seconds),
                nanos: Some(999_999_999),
            };
            assert_eq!(
                format_time(t, "t").unwrap().as_deref(),
                Some(expected),
                "{seconds}"
            );
        }
        assert_eq!(format_time(meta::Time::default(), "t").unwrap(), None);
    }

    #[test]
    fn micro_times_keep_six_digits_and_normalise_nanos() {
        let cases = [
            (T0, 0, "2026-11-27T10:00:00.000000Z"),
            (T0, 999, "2026-11-27T10:00:00.000000Z"),
            (T0, 999_999_999, "2026-11-27T10:00:00.999999Z"),
            (T0, 1_000_000_000, "2026-11-27T10:00:01.000000Z"),
            (T0, -1_000, "2026-11-27T09:59:59.999999Z"),
            (-1, 500_000, "1969-12-31T23:59:59.000500Z"),
        ];
        for (seconds, nanos, expected) in cases {
            let t = meta::MicroTime {
                seconds: Some(seconds),
                nanos: Some(nanos),
            };
            assert_eq!(
                format_micro_time(t, "t").unwrap().as_deref(),
                Some(expected),
                "{seconds} {nanos}"
            );
        }
        assert_eq!(
            format_micro_time(meta::MicroTime::default(), "t").unwrap(),
            None
        );
    }

    #[test]
    fn missing_magic_is_an_error() {
        let good = body("v1", "Namespace", &core::Namespace::default());
        for bad in [
            &b""[..],
            b"k8s",
            b"k8s\x01",
            b"{\"kind\":\"Namespace\"}",
            &good[1..],
        ] {
            let err = decode(bad).unwrap_err();
            assert!(matches!(err, ProtobufError::MissingMagic), "{err:?}");
        }
        assert_eq!(
            ProtobufError::MissingMagic.to_string(),
            "not a Kubernetes protobuf message (missing the k8s\\0 prefix)"
        );
    }

    #[test]
    fn unsupported_kind_asks_for_json() {
        let err = decode(&wrap("v1", "Pod", vec![])).unwrap_err();
        assert!(
            matches!(err, ProtobufError::UnsupportedKind { .. }),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "unsupported kind v1/Pod in protobuf; send JSON"
        );

        let err = decode(&wrap("apps/v1", "Namespace", vec![])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unsupported kind apps/v1/Namespace in protobuf; send JSON"
        );
    }

    #[test]
    fn missing_type_meta_is_an_error() {
        let mut body = MAGIC.to_vec();
        body.extend(
            Unknown {
                raw: Some(core::Namespace::default().encode_to_vec()),
                ..Default::default()
            }
            .encode_to_vec(),
        );
        assert!(matches!(decode(&body), Err(ProtobufError::MissingType)));
        assert!(matches!(decode(MAGIC), Err(ProtobufError::MissingType)));
        assert!(matches!(
            decode(&wrap("v1", "", vec![])),
            Err(ProtobufError::MissingType)
        ));
    }

    #[test]
    fn encoded_or_foreign_content_is_rejected() {
        let mut unknown = Unknown {
            type_meta: Some(TypeMeta {
                api_version: s("v1"),
                kind: s("Namespace"),
            }),
            raw: Some(vec![0x1f, 0x8b]),
            content_encoding: s("gzip"),
            content_type: None,
        };
        let mut body = MAGIC.to_vec();
        body.extend(unknown.encode_to_vec());
        assert!(matches!(
            decode(&body),
            Err(ProtobufError::UnsupportedContentEncoding(e)) if e == "gzip"
        ));

        unknown.content_encoding = None;
        unknown.content_type = s("application/json");
        let mut body = MAGIC.to_vec();
        body.extend(unknown.encode_to_vec());
        assert!(matches!(
            decode(&body),
            Err(ProtobufError::UnsupportedContentType(t)) if t == "application/json"
        ));

        unknown.content_type = s(CONTENT_TYPE);
        unknown.raw = Some(vec![]);
        let mut body = MAGIC.to_vec();
        body.extend(unknown.encode_to_vec());
        assert!(decode(&body).is_ok());
    }

    #[test]
    fn truncated_bodies_are_errors() {
        let secret = core::Secret {
            metadata: Some(go_meta("creds", "default")),
            data: [("k".to_owned(), vec![1, 2, 3])].into_iter().collect(),
            r#type: s("Opaque"),
            ..Default::default()
        };
        let raw = secret.encode_to_vec();

        // The envelope cut short: the last field's length runs past the end.
        let unknown = Unknown {
            type_meta: Some(TypeMeta {
                api_version: s("v1"),
                kind: s("Secret"),
            }),
            raw: Some(raw.clone()),
            content_encoding: None,
            content_type: None,
        };
        let mut body = MAGIC.to_vec();
        body.extend(unknown.encode_to_vec());
        assert!(decode(&body).is_ok());
        let err = decode(&body[..body.len() - 1]).unwrap_err();
        assert!(matches!(err, ProtobufError::Envelope(_)), "{err:?}");

        // A well-formed envelope around a truncated object.
        let err = decode(&wrap("v1", "Secret", raw[..raw.len() - 1].to_vec())).unwrap_err();
        assert!(matches!(err, ProtobufError::Decode { .. }), "{err:?}");
        assert!(
            err.to_string()
                .starts_with("invalid protobuf encoding of v1/Secret: "),
            "{err}"
        );

        // Every prefix decodes or fails, without panicking.
        for len in 0..body.len() {
            let _ = decode(&body[..len]);
        }
        for len in 0..raw.len() {
            let _ = decode(&wrap("v1", "Secret", raw[..len].to_vec()));
        }
    }

    #[test]
    fn invalid_utf8_in_a_string_is_an_error() {
        // ObjectMeta.name (field 1) holding 0xff inside Namespace.metadata (field 1).
        let raw = vec![0x0a, 0x03, 0x0a, 0x01, 0xff];
        let err = decode(&wrap("v1", "Namespace", raw)).unwrap_err();
        assert!(matches!(err, ProtobufError::Decode { .. }), "{err:?}");
    }

    #[test]
    fn fields_without_a_json_form_are_errors() {
        let cm = core::ConfigMap {
            metadata: Some(meta::ObjectMeta {
                managed_fields: vec![
                    meta::ManagedFieldsEntry::default(),
                    meta::ManagedFieldsEntry {
                        fields_v1: Some(meta::FieldsV1 {
                            raw: Some(b"{not json".to_vec()),
                        }),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }),
            ..Default::default()
        };
        let err = decode(&body("v1", "ConfigMap", &cm)).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("invalid value in metadata.managedFields[1].fieldsV1: not JSON"),
            "{err}"
        );

        let ns = core::Namespace {
            metadata: Some(meta::ObjectMeta {
                creation_timestamp: time(MAX_SECONDS + 1),
                ..Default::default()
            }),
            ..Default::default()
        };
        let err = decode(&body("v1", "Namespace", &ns)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid value in metadata.creationTimestamp: time outside the years 0000 to 9999"
        );

        let lease = coordination::Lease {
            spec: Some(coordination::LeaseSpec {
                renew_time: micro_time(i64::MIN, i32::MIN),
                ..Default::default()
            }),
            ..Default::default()
        };
        let err = decode(&body("coordination.k8s.io/v1", "Lease", &lease)).unwrap_err();
        assert!(err.to_string().contains("spec.renewTime"), "{err}");

        let svc = core::Service {
            spec: Some(core::ServiceSpec {
                ports: vec![core::ServicePort {
                    target_port: Some(IntOrString {
                        r#type: Some(7),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        let err = decode(&body("v1", "Service", &svc)).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("invalid value in spec.ports[0].targetPort: "),
            "{err}"
        );
    }

    /// A small deterministic generator, so the fuzz-style tests are reproducible.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn bytes(&mut self, max_len: u64) -> Vec<u8> {
            let len = self.next() % (max_len + 1);
            (0..len).map(|_| self.next().to_le_bytes()[0]).collect()
        }
    }

    #[test]
    fn garbage_bytes_give_errors_never_panics() {
        let odd: Vec<Vec<u8>> = vec![
            vec![],
            b"k8s\0".to_vec(),
            b"k8s\0\xff".to_vec(),
            b"k8s\0\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff".to_vec(),
            b"k8s\0\x0a\xff\xff\xff\xff\x0f".to_vec(),
            b"k8s\0\x12\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01".to_vec(),
            b"k8s\0\x07".to_vec(),
            b"k8s\0\x0b\x0c".to_vec(),
            [b"k8s\0".as_slice(), &[0x0a; 200]].concat(),
            vec![0; 64],
            b"\x89PNG\r\n\x1a\n".to_vec(),
        ];
        for bytes in &odd {
            let _ = decode(bytes);
        }
        assert!(decode(b"k8s\0\xff").is_err());
        assert!(decode(b"k8s\0\x0a\xff\xff\xff\xff\x0f").is_err());

        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        for _ in 0..2_000 {
            let garbage = rng.bytes(64);
            let _ = decode(&garbage);
            let _ = decode(&[MAGIC.as_slice(), &garbage].concat());
        }

        // Random raw objects behind every supported type, and random bit flips of a valid body.
        let kinds = [
            ("v1", "Namespace"),
            ("v1", "ConfigMap"),
            ("v1", "Secret"),
            ("v1", "ServiceAccount"),
            ("v1", "Service"),
            ("v1", "Event"),
            ("coordination.k8s.io/v1", "Lease"),
        ];
        for _ in 0..500 {
            for (api_version, kind) in kinds {
                let _ = decode(&wrap(api_version, kind, rng.bytes(48)));
            }
        }
        let valid = body(
            "v1",
            "Event",
            &core::Event {
                metadata: Some(go_meta("e", "default")),
                involved_object: Some(pod_reference()),
                event_time: micro_time(T0, 42_000),
                series: Some(core::EventSeries {
                    count: Some(1),
                    last_observed_time: micro_time(T0, 0),
                }),
                ..Default::default()
            },
        );
        for _ in 0..3_000 {
            let mut flipped = valid.clone();
            for _ in 0..=(rng.next() % 3) {
                let i = usize::try_from(rng.next()).unwrap_or(0) % flipped.len();
                flipped[i] ^= 1 << (rng.next() % 8);
            }
            let _ = decode(&flipped);
        }
    }
}
