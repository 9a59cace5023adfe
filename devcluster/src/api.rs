//! The Kubernetes API: routing a request to a resource and a verb, and each verb's semantics.
//!
//! Every write is a read-modify-write under the store's lock, so optimistic concurrency,
//! finalizers, managed fields and generation are decided against the object as it is.

use crate::At;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use serde_json::{Map, Value, json};

use crate::registry::{CRD_KEY, NAMESPACE_KEY, Registry, ResourceDef, defs_from_crd};
use crate::selector::{FieldSelector, LabelSelector};
use crate::status::{ApiError, Cause, qualified, success};
use crate::store::{Change, ObjectKey, Outcome, Store};
use crate::table::{self, Format};
use crate::watch;
use crate::{patch, ssa, strategic};

/// The finalizer that holds a CustomResourceDefinition until its objects are gone.
pub const CRD_CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";
/// The finalizer that holds a Namespace until its contents are gone.
pub const NAMESPACE_FINALIZER: &str = "kubernetes";
/// The finalizer that holds an owner deleted in the foreground until its blocking
/// dependents are gone.
pub const FOREGROUND_FINALIZER: &str = "foregroundDeletion";
/// The finalizer that holds an owner until its dependents no longer reference it.
pub const ORPHAN_FINALIZER: &str = "orphan";

/// The state every request shares.
pub struct Cluster {
    pub store: Store,
    pub registry: RwLock<Registry>,
    pub token: String,
    pub address: SocketAddr,
    /// Bumped to end every open watch (clients resume or relist).
    pub watch_epoch: tokio::sync::watch::Sender<u64>,
    /// How often a watch that allows bookmarks gets one.
    pub bookmark_interval: std::time::Duration,
    /// Failures to inject.
    pub faults: RwLock<crate::Faults>,
    /// How many faults were injected.
    pub injected: crate::FaultCounts,
    /// How many resource requests of each kind were made.
    pub requests: std::sync::Mutex<std::collections::BTreeMap<crate::RequestKind, u64>>,
}

/// An HTTP request, reduced to what the API reads.
pub struct Request {
    pub method: String,
    pub path: String,
    pub query: HashMap<String, String>,
    pub content_type: String,
    pub accept: String,
    pub user_agent: String,
    pub authorization: Option<String>,
    pub body: Vec<u8>,
}

/// What the API answers.
pub enum Response {
    Json(u16, Value),
    /// JSON already encoded.
    Body(u16, Vec<u8>),
    Text(u16, &'static str),
    /// A watch: JSON lines, one event each.
    Watch(tokio::sync::mpsc::Receiver<Vec<u8>>),
}

impl From<ApiError> for Response {
    fn from(error: ApiError) -> Self {
        Response::Json(error.code, error.to_status())
    }
}

/// The Kubernetes version devcluster reports.
pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": "32",
        "gitVersion": "v1.32.0-devcluster",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.23.0",
        "compiler": "gc",
        "platform": "linux/amd64"
    })
}

impl Cluster {
    pub fn new(store: Store, token: String, address: SocketAddr) -> Self {
        Cluster {
            store,
            registry: RwLock::new(Registry::with_builtins()),
            token,
            address,
            watch_epoch: tokio::sync::watch::Sender::new(0),
            bookmark_interval: std::time::Duration::from_secs(5),
            faults: RwLock::new(crate::Faults::default()),
            injected: crate::FaultCounts::default(),
            requests: std::sync::Mutex::default(),
        }
    }

    /// Serves the resources of the CRDs the store holds (after opening a data directory).
    pub fn restore_resources(&self) {
        let Some(def) = self.def_by_key(CRD_KEY) else {
            return;
        };
        let (crds, _) = self.store.list(CRD_KEY, None);
        for crd in crds {
            self.after_write(&def, &crd);
        }
    }

    /// Creates the namespaces every cluster has.
    pub fn bootstrap(&self) {
        let def = match self.def_by_key(NAMESPACE_KEY) {
            Some(def) => def,
            None => return,
        };
        for name in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let key = ObjectKey::new(NAMESPACE_KEY, "", name);
            let _ = self.store.mutate(&key, |current, _| {
                if current.is_some() {
                    return Ok(Change::Keep);
                }
                let mut namespace = prepare_create(&def, json!({"metadata": {"name": name}}))?;
                ssa::record_update(
                    None,
                    &mut namespace,
                    &ssa::Manager {
                        name: "devcluster",
                        subresource: None,
                        ignore_status: false,
                    },
                    None,
                    &now(),
                );
                Ok::<_, ApiError>(Change::Put(namespace))
            });
        }
    }

    /// Ends every open watch, as an API server restart or a load balancer would.
    pub fn close_watches(&self) {
        self.watch_epoch.send_modify(|epoch| *epoch += 1);
    }

    fn registry(&self) -> std::sync::RwLockReadGuard<'_, Registry> {
        self.registry.read().unwrap_or_else(|e| e.into_inner())
    }

    fn registry_mut(&self) -> std::sync::RwLockWriteGuard<'_, Registry> {
        self.registry.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Answers one request.
    pub fn handle(self: &Arc<Self>, request: Request) -> Response {
        let path = request.path.trim_end_matches('/');
        match path {
            "/healthz" | "/livez" | "/readyz" => return Response::Text(200, "ok"),
            "/version" => return Response::Json(200, version()),
            _ => {}
        }
        let bearer = request
            .authorization
            .as_deref()
            .and_then(|a| a.strip_prefix("Bearer "));
        if bearer != Some(self.token.as_str()) {
            return ApiError::unauthorized().into();
        }
        match self.route(&request) {
            Ok(response) => response,
            Err(error) => error.into(),
        }
    }

    fn route(self: &Arc<Self>, request: &Request) -> Result<Response, ApiError> {
        let path = request.path.trim_end_matches('/');
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        match segments.as_slice() {
            ["openapi", rest @ ..] => crate::openapi::serve(&self.registry, request, rest),
            ["api"] => Ok(Response::Json(
                200,
                json!({"kind": "APIVersions", "versions": ["v1"],
                    "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": self.address.to_string()}]}),
            )),
            ["apis"] => Ok(Response::Json(200, self.registry().api_group_list())),
            ["apis", group] => self
                .registry()
                .api_group(group)
                .map(|g| Response::Json(200, g))
                .ok_or_else(|| ApiError::no_route(path)),
            ["api", "v1"] => self.resource_list("", "v1", path),
            ["apis", group, version] => self.resource_list(group, version, path),
            ["api", "v1", rest @ ..] => self.resource_request(request, "", "v1", rest),
            ["apis", group, version, rest @ ..] => {
                self.resource_request(request, group, version, rest)
            }
            _ => Err(ApiError::no_route(path)),
        }
    }

    fn resource_list(&self, group: &str, version: &str, path: &str) -> Result<Response, ApiError> {
        self.registry()
            .api_resource_list(group, version)
            .map(|list| Response::Json(200, list))
            .ok_or_else(|| ApiError::no_route(path))
    }

    fn resource_request(
        self: &Arc<Self>,
        request: &Request,
        group: &str,
        version: &str,
        rest: &[&str],
    ) -> Result<Response, ApiError> {
        let target = self.target(request, group, version, rest)?;
        let method = request.method.as_str();
        let watch = target.watch_path || flag(&request.query, "watch");
        self.count(request, &target, verb(method, target.name.is_some(), watch));
        self.inject_fault(verb(method, target.name.is_some(), watch))?;
        crate::openapi::check_field_validation(
            &target.def,
            request,
            target.namespace.as_deref(),
            target.name.as_deref(),
        )?;
        let media = request
            .content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim();
        let body_format_known =
            media.is_empty() || media == "application/json" || media == "*/*" || media == PROTOBUF;
        if matches!(method, "POST" | "PUT") && !body_format_known {
            return Err(ApiError::unsupported_media_type(media));
        }
        match (method, &target.name) {
            ("GET", None) if watch => self.watch(&target, request),
            ("GET", None) => self.list(&target, request),
            ("GET", Some(name)) => self.get(&target, name, request),
            ("POST", None) => self.create(&target, request),
            ("PUT", Some(name)) => self.update(&target, name, request),
            ("PATCH", Some(name)) => self.patch(&target, name, request),
            ("DELETE", Some(name)) => self.delete(&target, name, request),
            ("DELETE", None) => self.delete_collection(&target, request),
            _ => Err(ApiError::method_not_allowed(method, &request.path)),
        }
    }

    fn count(&self, request: &Request, target: &Target, verb: &str) {
        let resource = match &target.subresource {
            Some(sub) => format!("{}/{sub}", target.def.plural),
            None => target.def.plural.clone(),
        };
        let kind = crate::RequestKind {
            user_agent: request
                .user_agent
                .split('/')
                .next()
                .unwrap_or_default()
                .to_owned(),
            verb: verb.to_owned(),
            group: target.def.group.clone(),
            resource,
        };
        *self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(kind)
            .or_default() += 1;
    }

    /// Whether handling a request may wait: on injected latency, or on the disk with a data
    /// directory. Otherwise it is CPU work of well under a millisecond.
    pub fn may_wait(&self) -> bool {
        self.store.persistent() || !self.faults().latency.is_zero()
    }

    /// The faults to inject now.
    pub fn faults(&self) -> std::sync::RwLockReadGuard<'_, crate::Faults> {
        self.faults.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Latency, a 500 or a 409, as the configured faults ask.
    fn inject_fault(&self, verb: &str) -> Result<(), ApiError> {
        let faults = self.faults().clone();
        let faults = &faults;
        if !faults.verbs.is_empty() && !faults.verbs.iter().any(|v| v == verb) {
            return Ok(());
        }
        if !faults.latency.is_zero() {
            std::thread::sleep(faults.latency);
        }
        if faults.error_rate > 0.0 && fastrand::f64() < faults.error_rate {
            self.injected
                .errors
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Err(ApiError::internal(format!("injected fault: {verb} failed")));
        }
        let write = matches!(
            verb,
            "create" | "update" | "patch" | "delete" | "deletecollection"
        );
        if write && faults.conflict_rate > 0.0 && fastrand::f64() < faults.conflict_rate {
            self.injected
                .conflicts
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Err(ApiError::new(
                409,
                "Conflict",
                format!("Operation cannot be fulfilled: injected conflict on {verb}; please retry"),
            ));
        }
        Ok(())
    }

    /// Resolves `[watch/][namespaces/{ns}/]{resource}[/{name}[/{subresource}]]`.
    fn target(
        &self,
        request: &Request,
        group: &str,
        version: &str,
        rest: &[&str],
    ) -> Result<Target, ApiError> {
        let (watch_path, rest) = match rest {
            ["watch", rest @ ..] => (true, rest),
            rest => (false, rest),
        };
        let (namespace, plural, tail): (Option<&str>, &str, &[&str]) = match rest {
            ["namespaces", ns, plural, tail @ ..]
                if !(group.is_empty()
                    && matches!(*plural, "status" | "finalize")
                    && tail.is_empty()) =>
            {
                (Some(*ns), *plural, tail)
            }
            [plural, tail @ ..] => (None, *plural, tail),
            [] => return Err(ApiError::no_route(&request.path)),
        };
        let (def, store_def) = {
            let registry = self.registry();
            let def = registry
                .get(group, version, plural)
                .ok_or_else(|| ApiError::no_route(&request.path))?;
            let store_def = match def.shares_storage_of {
                Some(key) => registry.by_key(key).unwrap_or_else(|| def.clone()),
                None => def.clone(),
            };
            (def, store_def)
        };
        let (name, subresource) = match tail {
            [] => (None, None),
            [name] => (Some((*name).to_owned()), None),
            [name, sub] => (Some((*name).to_owned()), Some((*sub).to_owned())),
            _ => return Err(ApiError::no_route(&request.path)),
        };
        if namespace.is_some() && !def.namespaced {
            return Err(ApiError::no_route(&request.path));
        }
        match subresource.as_deref() {
            None => {}
            Some("status") if def.status_subresource => {}
            Some("finalize") if def.has_key(NAMESPACE_KEY) => {}
            Some(_) => return Err(ApiError::no_route(&request.path)),
        }
        Ok(Target {
            def,
            store_def,
            namespace: namespace.map(str::to_owned),
            name,
            subresource,
            watch_path,
        })
    }

    // ---- reads -------------------------------------------------------------------------

    fn get(&self, target: &Target, name: &str, request: &Request) -> Result<Response, ApiError> {
        let key = target.key(name);
        let stored = self.store.get(&key).ok_or_else(|| target.not_found(name))?;
        let format = format(request);
        let include = match format {
            Format::Object => return Ok(target.respond(200, &stored)),
            // Metadata is the same in every version: the object need not be converted (or
            // copied whole) to show it.
            Format::Metadata => return Ok(Response::Json(200, table::partial(&stored))),
            Format::Table(include) => include,
        };
        let object = target.present(&stored);
        let rv = json!({"resourceVersion": resource_version(&object)});
        let body = table::table(&target.def, &[object], rv, include, true);
        Ok(Response::Json(200, body))
    }

    fn list(&self, target: &Target, request: &Request) -> Result<Response, ApiError> {
        let filter = Filter::from_query(&request.query, &target.def)?;
        let limit = match request.query.get("limit").filter(|l| !l.is_empty()) {
            Some(limit) => Some(limit.parse::<usize>().map_err(|_| {
                ApiError::bad_request(format!(
                    "limit: invalid value {limit:?}: must be a non-negative integer"
                ))
            })?),
            None => None,
        }
        .filter(|l| *l > 0);
        let start_after = match request.query.get("continue").filter(|c| !c.is_empty()) {
            Some(token) => Some(decode_continue(token)?),
            None => None,
        };
        let (objects, rv) = self
            .store
            .list(&target.def.key(), target.namespace.as_deref());
        let mut matching = objects.iter().filter(|o| filter.matches(o)).filter(|o| {
            start_after
                .as_ref()
                .is_none_or(|after| position(o) > (after.0.as_str(), after.1.as_str()))
        });
        let mut selected: Vec<&Arc<Value>> = Vec::new();
        let mut last = None;
        for object in matching.by_ref() {
            if limit.is_some_and(|l| selected.len() == l) {
                last = Some(position(selected[selected.len() - 1]));
                break;
            }
            selected.push(object);
        }
        let mut metadata = json!({"resourceVersion": rv.to_string()});
        if let Some((namespace, name)) = last {
            let remaining = 1 + matching.count();
            metadata["continue"] = json!(encode_continue(rv, namespace, name));
            metadata["remainingItemCount"] = json!(remaining);
        }
        let presented = || -> Vec<Value> { selected.iter().map(|o| target.present(o)).collect() };
        let body = match format(request) {
            Format::Object => {
                let api_version = target.def.api_version();
                let items: Vec<Presented<'_>> = selected
                    .iter()
                    .map(|object| Presented {
                        def: &target.def,
                        api_version: &api_version,
                        object,
                    })
                    .collect();
                let list = JsonList {
                    api_version: &api_version,
                    kind: &target.def.list_kind,
                    metadata: &metadata,
                    items: &items,
                };
                let body = serde_json::to_vec(&list)
                    .map_err(|e| ApiError::internal(format!("encoding the list: {e}")))?;
                return Ok(Response::Body(200, body));
            }
            Format::Metadata => table::partial_list(&presented(), metadata),
            Format::Table(include) => {
                table::table(&target.def, &presented(), metadata, include, true)
            }
        };
        Ok(Response::Json(200, body))
    }

    fn watch(self: &Arc<Self>, target: &Target, request: &Request) -> Result<Response, ApiError> {
        let filter = Filter::from_query(&request.query, &target.def)?;
        let send_initial_events = flag(&request.query, "sendInitialEvents");
        if send_initial_events && !flag(&request.query, "allowWatchBookmarks") {
            return Err(ApiError::invalid(
                "",
                "ListOptions",
                "",
                vec![Cause {
                    reason: "FieldValueForbidden",
                    field: "allowWatchBookmarks".into(),
                    message:
                        "Forbidden: allowWatchBookmarks required when sendInitialEvents is true"
                            .into(),
                }],
            ));
        }
        let from = match request.query.get("resourceVersion").map(String::as_str) {
            // A streaming list starts from the current state, which is at least as new as
            // any version the client names.
            _ if send_initial_events => None,
            None | Some("") | Some("0") => None,
            Some(rv) => Some(rv.parse::<u64>().map_err(|_| {
                ApiError::bad_request(format!("resourceVersion: invalid value {rv:?}"))
            })?),
        };
        let timeout = match request
            .query
            .get("timeoutSeconds")
            .filter(|t| !t.is_empty())
        {
            Some(t) => Some(t.parse::<u64>().map_err(|_| {
                ApiError::bad_request(format!("timeoutSeconds: invalid value {t:?}"))
            })?),
            None => None,
        };
        let options = watch::Options {
            close_after: self.faults().watch_close_interval,
            send_initial_events,
            format: format(request),
            bookmarks: flag(&request.query, "allowWatchBookmarks")
                .then_some(self.bookmark_interval),
            timeout: timeout.map(std::time::Duration::from_secs),
        };
        let receiver = watch::start(
            self,
            target.def.clone(),
            target.namespace.clone(),
            from,
            filter,
            options,
        );
        Ok(Response::Watch(receiver))
    }

    // ---- writes ------------------------------------------------------------------------

    fn create(&self, target: &Target, request: &Request) -> Result<Response, ApiError> {
        let object = parse_body(request)?;
        check_type(&target.def, &object)?;
        let mut object = crate::convert::to_storage(&target.def, object);
        let namespace = target.namespace.clone().unwrap_or_default();
        let metadata = metadata_mut(&mut object);
        if target.def.namespaced {
            match metadata.get("namespace").and_then(Value::as_str) {
                Some(ns) if !ns.is_empty() && ns != namespace => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                _ => {}
            }
            if namespace.is_empty() {
                return Err(ApiError::method_not_allowed(
                    "POST",
                    "a namespaced resource without a namespace",
                ));
            }
            metadata.insert("namespace".into(), json!(namespace));
        } else {
            metadata.remove("namespace");
        }
        let name = match metadata.get("name").and_then(Value::as_str) {
            Some(name) if !name.is_empty() => name.to_owned(),
            _ => match metadata.get("generateName").and_then(Value::as_str) {
                Some(prefix) if !prefix.is_empty() => generate_name(prefix),
                _ => {
                    return Err(ApiError::invalid(
                        &target.def.group,
                        &target.def.kind,
                        "",
                        vec![Cause {
                            reason: "FieldValueRequired",
                            field: "metadata.name".into(),
                            message: "Required value: name or generateName is required".into(),
                        }],
                    ));
                }
            },
        };
        metadata.insert("name".into(), json!(name));
        self.check_namespace(&target.store_def, &namespace)?;
        let manager = manager(request, None);
        let dry_run = dry_run(request);
        let key = target.key(&name);
        let def = target.store_def.clone();
        let mut preview = None;
        // Admitted before the store is locked: only whether the name is free is decided there.
        let mut created = prepare_create(&def, object)?;
        ssa::record_update(
            None,
            &mut created,
            &manager.as_ssa(),
            def.merge_schema.as_deref(),
            &now(),
        );
        let outcome = self.store.mutate(&key, |current, _| {
            if current.is_some() {
                return Err(ApiError::already_exists(&def.group, &def.plural, &name));
            }
            if dry_run {
                preview = Some(created);
                return Ok(Change::Keep);
            }
            Ok(Change::Put(created))
        })?;
        match (preview, outcome) {
            (Some(preview), _) => Ok(target.respond(201, &preview)),
            (None, Outcome::Written(object, change)) => {
                self.after_write(&def, &object);
                Ok(target.respond_change(201, &change))
            }
            (None, _) => Err(ApiError::internal("create did not write")),
        }
    }

    fn update(&self, target: &Target, name: &str, request: &Request) -> Result<Response, ApiError> {
        let object = parse_body(request)?;
        check_type(&target.def, &object)?;
        let object = crate::convert::to_storage(&target.def, object);
        match object.at(&["metadata", "name"]).and_then(Value::as_str) {
            Some(body_name) if body_name != name => {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({body_name}) does not match the name on the URL ({name})"
                )));
            }
            _ => {}
        }
        let manager = manager(request, target.subresource.as_deref());
        self.write(target, name, request, &manager, |current| {
            let current = current.ok_or_else(|| target.not_found(name))?;
            if let Some(rv) = object
                .at(&["metadata", "resourceVersion"])
                .and_then(Value::as_str)
                && !rv.is_empty()
                && Some(rv) != resource_version(current)
            {
                return Err(target.conflict(name));
            }
            Ok(Computed::Update(object.clone()))
        })
    }

    fn patch(&self, target: &Target, name: &str, request: &Request) -> Result<Response, ApiError> {
        let content_type = request
            .content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        let is_apply = content_type == "application/apply-patch+yaml"
            || content_type == "application/apply-patch+cbor";
        let manager = manager(request, target.subresource.as_deref());
        if is_apply {
            if crate::convert::converts(&target.def) {
                return Err(ApiError::unsupported_media_type_because(
                    "application/apply-patch+yaml",
                    &format!(
                        "server-side apply of {} is not supported; use the core/v1 resource",
                        qualified(&target.def.group, &target.def.plural)
                    ),
                ));
            }
            if !request.query.contains_key("fieldManager") {
                return Err(ApiError::bad_request(
                    "PATCH requests with apply patch type must include a fieldManager",
                ));
            }
            let applied = parse_yaml_or_json(&request.body)?;
            if !applied.is_object() {
                return Err(ApiError::bad_request(
                    "the apply configuration must be an object",
                ));
            }
            check_type(&target.def, &applied)?;
            if let Some(body_name) = applied.at(&["metadata", "name"]).and_then(Value::as_str)
                && body_name != name
            {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({body_name}) does not match the name on the URL ({name})"
                )));
            }
            let force = flag(&request.query, "force");
            if target.def.namespaced {
                self.check_namespace(&target.store_def, target.namespace.as_deref().unwrap_or(""))?;
            }
            return self.write(target, name, request, &manager, |current| {
                Ok(Computed::Applied {
                    applied: &applied,
                    force,
                    existed: current.is_some(),
                })
            });
        }
        let body = request.body.clone();
        self.write(target, name, request, &manager, |current| {
            let current = current.ok_or_else(|| target.not_found(name))?;
            let mut patched = target.present(current);
            match content_type.as_str() {
                "application/json-patch+json" => patch::json_patch(&mut patched, &body)
                    .map_err(|e| ApiError::new(422, "Invalid", e.to_string()))?,
                "application/merge-patch+json" => {
                    let patch = parse_object(&body)?;
                    patch::merge_patch(&mut patched, &patch)
                        .map_err(|e| ApiError::bad_request(e.to_string()))?;
                }
                "application/strategic-merge-patch+json" if target.store_def.custom => {
                    return Err(ApiError::unsupported_media_type(
                        "application/strategic-merge-patch+json (not supported for custom resources)",
                    ));
                }
                "application/strategic-merge-patch+json" => {
                    let patch = parse_object(&body)?;
                    strategic::patch(&target.def.group, &target.def.kind, &mut patched, &patch)
                        .map_err(|e| ApiError::new(422, "Invalid", e.to_string()))?;
                }
                other => return Err(ApiError::unsupported_media_type(other)),
            }
            if let Some(rv) = patched
                .at(&["metadata", "resourceVersion"])
                .and_then(Value::as_str)
                && Some(rv) != resource_version(current)
            {
                return Err(target.conflict(name));
            }
            Ok(Computed::Update(crate::convert::to_storage(
                &target.def,
                patched,
            )))
        })
    }

    /// The shared path of update, patch and apply: compute the next object from the current
    /// one, keep what clients may not change, record managed fields, validate, and store.
    fn write<'a>(
        &self,
        target: &Target,
        name: &str,
        request: &Request,
        manager: &Manager,
        mut compute: impl FnMut(Option<&Arc<Value>>) -> Result<Computed<'a>, ApiError>,
    ) -> Result<Response, ApiError> {
        let def = target.store_def.clone();
        let key = target.key(name);
        let dry_run = dry_run(request);
        let namespace = target.namespace.clone().unwrap_or_default();
        let mut preview = None;
        let mut created = false;
        let outcome = self.store.update(&key, |current| {
            created = false;
            preview = None;
            let next = match (compute(current)?, current) {
                (Computed::Update(object), Some(current)) => {
                    let mut next =
                        finish_update(&def, current, object, target.subresource.as_deref())?;
                    ssa::record_update(
                        Some(current),
                        &mut next,
                        &manager.as_ssa(),
                        def.merge_schema.as_deref(),
                        &now(),
                    );
                    next
                }
                (Computed::Update(_), None) => return Err(target.not_found(name)),
                (Computed::Applied { applied, force, .. }, Some(current)) => {
                    let merged = ssa::apply(
                        Some(current),
                        applied,
                        &manager.as_ssa(),
                        force,
                        def.merge_schema.as_deref(),
                        &now(),
                    )
                    .map_err(|conflicts| apply_conflict(&conflicts))?;
                    finish_update(&def, current, merged, target.subresource.as_deref())?
                }
                (
                    Computed::Applied {
                        applied,
                        force,
                        existed,
                    },
                    None,
                ) => {
                    debug_assert!(!existed);
                    if target.subresource.is_some() {
                        return Err(target.not_found(name));
                    }
                    let mut seed = applied.clone();
                    let metadata = metadata_mut(&mut seed);
                    metadata.insert("name".into(), json!(name));
                    if def.namespaced {
                        metadata.insert("namespace".into(), json!(namespace));
                    }
                    let merged = ssa::apply(
                        None,
                        &seed,
                        &manager.as_ssa(),
                        force,
                        def.merge_schema.as_deref(),
                        &now(),
                    )
                    .map_err(|conflicts| apply_conflict(&conflicts))?;
                    created = true;
                    prepare_create(&def, merged)?
                }
            };
            let finished = is_deleting(&next) && finalizers(&next).is_empty();
            if dry_run {
                preview = Some(next);
                return Ok(Change::Keep);
            }
            Ok(if finished {
                Change::Remove
            } else {
                Change::Put(next)
            })
        })?;
        let (code, object) = match (preview, outcome) {
            (Some(preview), _) => (200, Arc::new(preview)),
            (None, Outcome::Written(object, change)) => {
                self.after_write(&def, &object);
                return Ok(target.respond_change(if created { 201 } else { 200 }, &change));
            }
            (None, Outcome::Unchanged(Some(object))) => (200, object),
            (None, Outcome::Removed(object)) => {
                self.after_remove(&def, &object);
                (200, object)
            }
            (None, Outcome::Unchanged(None)) => return Err(target.not_found(name)),
        };
        Ok(target.respond(code, &object))
    }

    fn delete(&self, target: &Target, name: &str, request: &Request) -> Result<Response, ApiError> {
        let options = delete_options(request)?;
        let dry_run = dry_run(request) || options.dry_run;
        match self.delete_object(&target.store_def, &target.key(name), &options, dry_run)? {
            Deleted::Pending(object) => Ok(Response::Json(200, target.present(&object))),
            Deleted::Gone(object) => Ok(Response::Json(
                200,
                success(&target.def.group, &target.def.plural, name, uid(&object)),
            )),
        }
    }

    fn delete_collection(&self, target: &Target, request: &Request) -> Result<Response, ApiError> {
        let filter = Filter::from_query(&request.query, &target.def)?;
        let options = delete_options(request)?;
        let dry_run = dry_run(request) || options.dry_run;
        let (objects, _) = self
            .store
            .list(&target.def.key(), target.namespace.as_deref());
        let mut items = Vec::new();
        for object in objects.iter().filter(|o| filter.matches(o)) {
            let (namespace, name) = position(object);
            let key = ObjectKey::new(&target.def.key(), namespace, name);
            match self.delete_object(&target.store_def, &key, &options, dry_run) {
                Ok(Deleted::Pending(object) | Deleted::Gone(object)) => {
                    items.push(target.present(&object))
                }
                Err(error) if error.code == 404 => {}
                Err(error) => return Err(error),
            }
        }
        Ok(Response::Json(
            200,
            json!({"apiVersion": target.def.api_version(), "kind": target.def.list_kind,
                "metadata": {"resourceVersion": self.store.current_rv().to_string()}, "items": items}),
        ))
    }

    /// Deletes an object: at once when nothing holds it, else by marking it deleted and
    /// leaving it to its finalizers.
    pub fn delete_object(
        &self,
        def: &ResourceDef,
        key: &ObjectKey,
        options: &DeleteOptions,
        dry_run: bool,
    ) -> Result<Deleted, ApiError> {
        let mut preview = None;
        let outcome = self.store.update(key, |current| {
            preview = None;
            let current = current.ok_or_else(|| ApiError::not_found(&def.group, &def.plural, &key.name))?;
            if let Some(expected) = &options.uid
                && Some(expected.as_str()) != uid(current)
            {
                return Err(ApiError::conflict(&def.group, &def.plural, &key.name, &format!(
                    "Precondition failed: UID in precondition: {expected}, UID in object meta: {}",
                    uid(current).unwrap_or_default()
                )));
            }
            if let Some(expected) = &options.resource_version
                && Some(expected.as_str()) != resource_version(current)
            {
                return Err(ApiError::conflict(&def.group, &def.plural, &key.name, &format!(
                    "Precondition failed: ResourceVersion in precondition: {expected}, ResourceVersion in object meta: {}",
                    resource_version(current).unwrap_or_default()
                )));
            }
            let mut next = (**current).clone();
            let propagation = match options.propagation_policy.as_deref() {
                Some("Foreground") => Some(FOREGROUND_FINALIZER),
                Some("Orphan") => Some(ORPHAN_FINALIZER),
                _ => None,
            };
            if let Some(finalizer) = propagation
                && !is_deleting(&next)
            {
                add_finalizer(&mut next, finalizer);
            }
            let holds = match def.key().as_str() {
                NAMESPACE_KEY => true,
                CRD_KEY => true,
                _ => !finalizers(&next).is_empty(),
            };
            if !holds {
                if dry_run {
                    preview = Some(next);
                    return Ok(Change::Keep);
                }
                return Ok(Change::Remove);
            }
            if is_deleting(&next) {
                preview = Some(next);
                return Ok(Change::Keep);
            }
            let metadata = metadata_mut(&mut next);
            metadata.insert("deletionTimestamp".into(), json!(now()));
            metadata.insert("deletionGracePeriodSeconds".into(), json!(0));
            if let Some(generation) = metadata.get("generation").and_then(Value::as_i64) {
                metadata.insert("generation".into(), json!(generation + 1));
            }
            match def.key().as_str() {
                NAMESPACE_KEY => {
                    next["status"]["phase"] = json!("Terminating");
                }
                CRD_KEY => {
                    add_finalizer(&mut next, CRD_CLEANUP_FINALIZER);
                    set_condition(&mut next, "Terminating", "True", "InstanceDeletionInProgress", "CustomResource deletion is in progress");
                }
                _ => {}
            }
            if dry_run {
                preview = Some(next);
                return Ok(Change::Keep);
            }
            Ok(Change::Put(next))
        })?;
        match (preview, outcome) {
            (Some(object), _) => Ok(Deleted::Pending(Arc::new(object))),
            (None, Outcome::Written(object, _)) => Ok(Deleted::Pending(object)),
            (None, Outcome::Removed(object)) => {
                self.after_remove(def, &object);
                Ok(Deleted::Gone(object))
            }
            (None, Outcome::Unchanged(Some(object))) => Ok(Deleted::Pending(object)),
            (None, Outcome::Unchanged(None)) => {
                Err(ApiError::not_found(&def.group, &def.plural, &key.name))
            }
        }
    }

    /// Namespaced objects cannot be created in a namespace that does not exist or is going.
    fn check_namespace(&self, def: &ResourceDef, namespace: &str) -> Result<(), ApiError> {
        if !def.namespaced {
            return Ok(());
        }
        let key = ObjectKey::new(NAMESPACE_KEY, "", namespace);
        match self.store.get(&key) {
            None => Err(ApiError::not_found("", "namespaces", namespace)),
            Some(ns) if is_deleting(&ns) => Err(ApiError::forbidden(format!(
                "unable to create new content in namespace {namespace} because it is being terminated"
            ))
            .with_details(json!({"causes": [{"reason": "NamespaceTerminating", "message": format!("namespace {namespace} is being terminated"), "field": "metadata.namespace"}]}))),
            Some(_) => Ok(()),
        }
    }

    /// What follows a stored write: a CRD starts (or keeps) serving its resources.
    fn after_write(&self, def: &ResourceDef, object: &Value) {
        if def.has_key(CRD_KEY)
            && let Ok(defs) = defs_from_crd(object)
            && let Some(first) = defs.first()
        {
            let key = first.key();
            let mut registry = self.registry_mut();
            registry.remove_key(&key);
            for def in defs {
                registry.insert(def);
            }
        }
    }

    /// What follows a removal: a CRD stops serving its resources.
    pub fn after_remove(&self, def: &ResourceDef, object: &Value) {
        if def.has_key(CRD_KEY)
            && let Ok(defs) = defs_from_crd(object)
            && let Some(first) = defs.first()
        {
            self.registry_mut().remove_key(&first.key());
        }
    }

    /// Every served resource that owns its storage.
    pub fn resources(&self) -> Vec<Arc<ResourceDef>> {
        let registry = self.registry();
        let mut seen = std::collections::BTreeSet::new();
        registry
            .all()
            .filter(|d| d.shares_storage_of.is_none() && seen.insert(d.key()))
            .cloned()
            .collect()
    }

    /// The definition of a served resource by storage key.
    pub fn def_by_key(&self, key: &str) -> Option<Arc<ResourceDef>> {
        self.registry().by_key(key)
    }
}

/// The outcome of a delete.
pub enum Deleted {
    /// Marked for deletion; finalizers still hold it.
    Pending(Arc<Value>),
    /// Removed from the store.
    Gone(Arc<Value>),
}

/// What a write computed from the current object.
enum Computed<'a> {
    Update(Value),
    /// An apply of the configuration, borrowed: a write that runs again after a concurrent
    /// change reads the same configuration, and the first run need not copy it.
    Applied {
        applied: &'a Value,
        force: bool,
        existed: bool,
    },
}

/// A request's resource, namespace, name and subresource.
struct Target {
    /// The resource as the request names it (its version and form).
    def: Arc<ResourceDef>,
    /// The resource whose storage holds the objects (the same, but for resources served in
    /// another form, such as events.k8s.io Events).
    store_def: Arc<ResourceDef>,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
    watch_path: bool,
}

impl Target {
    fn key(&self, name: &str) -> ObjectKey {
        ObjectKey::new(
            &self.def.key(),
            self.namespace.as_deref().unwrap_or(""),
            name,
        )
    }

    fn not_found(&self, name: &str) -> ApiError {
        ApiError::not_found(&self.def.group, &self.def.plural, name)
    }

    fn conflict(&self, name: &str) -> ApiError {
        ApiError::conflict(
            &self.def.group,
            &self.def.plural,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// The object as this version of the resource presents it.
    fn present(&self, object: &Value) -> Value {
        present(&self.def, object)
    }

    /// A response of the object `change` wrote, in the bytes the watches of this version send.
    fn respond_change(&self, code: u16, change: &crate::store::Event) -> Response {
        let api_version = self.def.api_version();
        let body = change.presented(&api_version, || {
            crate::watch::presented(&self.def, &change.object)
        });
        Response::Body(code, body.to_vec())
    }

    /// A response of the object as this version presents it, serialised straight from the
    /// store's copy.
    fn respond(&self, code: u16, object: &Value) -> Response {
        let api_version = self.def.api_version();
        let presented = Presented {
            def: &self.def,
            api_version: &api_version,
            object,
        };
        match serde_json::to_vec(&presented) {
            Ok(body) => Response::Body(code, body),
            Err(_) => Response::Json(code, self.present(object)),
        }
    }
}

/// An object as `def`'s version presents it.
pub fn present(def: &ResourceDef, object: &Value) -> Value {
    let mut object = crate::convert::from_storage(def, object);
    if let Some(fields) = object.as_object_mut() {
        fields.insert("apiVersion".into(), json!(def.api_version()));
        fields.insert("kind".into(), json!(def.kind));
    }
    object
}

/// A list's body, its items serialised in place.
#[derive(serde::Serialize)]
struct JsonList<'a> {
    #[serde(rename = "apiVersion")]
    api_version: &'a str,
    kind: &'a str,
    metadata: &'a Value,
    items: &'a [Presented<'a>],
}

/// A stored object as [`present`] shows it, serialised straight from the store without a
/// copy: lists and watches send every object they hold this way.
pub struct Presented<'a> {
    pub def: &'a ResourceDef,
    pub api_version: &'a str,
    pub object: &'a Value,
}

impl serde::Serialize for Presented<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let fields = match self.object {
            Value::Object(fields) if !crate::convert::converts(self.def) => fields,
            _ => return present(self.def, self.object).serialize(serializer),
        };
        let others = fields
            .iter()
            .filter(|(key, _)| *key != "apiVersion" && *key != "kind");
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("apiVersion", self.api_version)?;
        map.serialize_entry("kind", &self.def.kind)?;
        for (key, value) in others {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

/// Who writes: the field manager and the subresource.
struct Manager {
    name: String,
    subresource: Option<String>,
}

impl Manager {
    fn as_ssa(&self) -> ssa::Manager<'_> {
        ssa::Manager {
            name: &self.name,
            subresource: self.subresource.as_deref(),
            ignore_status: self.subresource.is_none(),
        }
    }
}

fn manager(request: &Request, subresource: Option<&str>) -> Manager {
    let name = match request.query.get("fieldManager").filter(|m| !m.is_empty()) {
        Some(name) => name.clone(),
        None => request
            .user_agent
            .split('/')
            .next()
            .filter(|s| !s.is_empty())
            .unwrap_or("unknown")
            .to_owned(),
    };
    Manager {
        name,
        subresource: subresource.filter(|s| *s == "status").map(str::to_owned),
    }
}

/// Label and field selectors of a list, watch or deletecollection.
pub struct Filter {
    labels: LabelSelector,
    fields: FieldSelector,
}

impl Filter {
    fn from_query(query: &HashMap<String, String>, def: &ResourceDef) -> Result<Self, ApiError> {
        let labels = LabelSelector::parse(query.get("labelSelector").map_or("", String::as_str))
            .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?;
        let fields = FieldSelector::parse(query.get("fieldSelector").map_or("", String::as_str))
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        for field in fields.fields() {
            let supported = matches!(field, "metadata.name" | "metadata.namespace")
                || (def.has_key("/events")
                    && (field.starts_with("involvedObject.")
                        || matches!(field, "type" | "reason" | "reportingComponent")))
                || (def.has_key("/secrets") && field == "type")
                || (def.has_key(NAMESPACE_KEY) && field == "status.phase");
            if !supported {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {field}"
                )));
            }
        }
        Ok(Filter { labels, fields })
    }

    /// Whether the object is selected.
    pub fn matches(&self, object: &Value) -> bool {
        self.labels.matches(
            object
                .at(&["metadata", "labels"])
                .and_then(Value::as_object),
        ) && self.fields.matches(object)
    }
}

/// Options of a delete, from its body or its query.
#[derive(Debug, Default, Clone)]
pub struct DeleteOptions {
    pub uid: Option<String>,
    pub resource_version: Option<String>,
    pub propagation_policy: Option<String>,
    /// `dryRun: [All]` in the body, as kube-rs sends it.
    pub dry_run: bool,
}

fn delete_options(request: &Request) -> Result<DeleteOptions, ApiError> {
    let mut options = DeleteOptions {
        propagation_policy: request.query.get("propagationPolicy").cloned(),
        ..Default::default()
    };
    if request.body.iter().any(|b| !b.is_ascii_whitespace()) {
        let body = parse_object(&request.body)?;
        let text = |pointer: &str| {
            body.pointer(pointer)
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        options.uid = text("/preconditions/uid");
        options.resource_version = text("/preconditions/resourceVersion");
        if let Some(policy) = text("/propagationPolicy") {
            options.propagation_policy = Some(policy);
        }
        options.dry_run = body
            .get("dryRun")
            .and_then(Value::as_array)
            .is_some_and(|modes| modes.iter().any(|m| m == "All"));
    }
    match options.propagation_policy.as_deref() {
        None | Some("Orphan" | "Background" | "Foreground") => Ok(options),
        Some(other) => Err(ApiError::bad_request(format!(
            "propagationPolicy: Unsupported value: {other:?}: supported values: \"Foreground\", \"Background\", \"Orphan\""
        ))),
    }
}

/// The new object on create: server-set metadata, and what a create may not set.
fn prepare_create(def: &ResourceDef, mut object: Value) -> Result<Value, ApiError> {
    let metadata = metadata_mut(&mut object);
    for field in [
        "resourceVersion",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "selfLink",
    ] {
        metadata.remove(field);
    }
    metadata.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
    metadata.insert("creationTimestamp".into(), json!(now()));
    if def.generation {
        metadata.insert("generation".into(), json!(1));
    } else {
        metadata.remove("generation");
    }
    if let Some(fields) = object.as_object_mut() {
        fields.insert("apiVersion".into(), json!(def.api_version()));
        fields.insert("kind".into(), json!(def.kind));
        if def.custom && def.status_subresource {
            fields.remove("status");
        }
    }
    match def.key().as_str() {
        NAMESPACE_KEY => {
            object["spec"] = json!({"finalizers": [NAMESPACE_FINALIZER]});
            object["status"] = json!({"phase": "Active"});
        }
        CRD_KEY => crd_status(&mut object)?,
        // The defaults the API server gives built-ins.
        "/secrets" => {
            if object
                .get("type")
                .is_none_or(|t| t.as_str().is_none_or(str::is_empty))
            {
                object["type"] = json!("Opaque");
            }
            fold_string_data(def, &mut object)?;
        }
        _ => {}
    }
    admit(def, &mut object, None)?;
    Ok(object)
}

/// A Secret's `stringData` is write-only: the API server merges it into `data` (base64, over
/// any key of the same name) and never stores it.
fn fold_string_data(def: &ResourceDef, object: &mut Value) -> Result<(), ApiError> {
    use base64::Engine as _;
    let Some(fields) = object.as_object_mut() else {
        return Ok(());
    };
    let Some(string_data) = fields.remove("stringData") else {
        return Ok(());
    };
    let entries = match string_data {
        Value::Null => return Ok(()),
        Value::Object(entries) => entries,
        _ => {
            return Err(ApiError::bad_request(
                "Secret in version \"v1\" cannot be handled as a Secret: stringData must be a map of strings",
            ));
        }
    };
    let name = fields
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let data = fields
        .entry("data")
        .or_insert_with(|| Value::Object(Map::new()));
    if data.is_null() {
        *data = Value::Object(Map::new());
    }
    let Some(data) = data.as_object_mut() else {
        return Err(ApiError::bad_request(
            "Secret in version \"v1\" cannot be handled as a Secret: data must be a map",
        ));
    };
    for (key, value) in entries {
        let Some(text) = value.as_str() else {
            return Err(ApiError::invalid(
                &def.group,
                &def.kind,
                &name,
                vec![Cause {
                    reason: "FieldValueInvalid",
                    field: format!("stringData[{key}]"),
                    message: format!("Invalid value: {value}: must be a string"),
                }],
            ));
        };
        let encoded = base64::engine::general_purpose::STANDARD.encode(text);
        data.insert(key, Value::String(encoded));
    }
    Ok(())
}

/// The next version of an object after an update, patch or apply: what clients may not change
/// is kept from `current`, the status subresource is honoured, generation follows the spec.
fn finish_update(
    def: &ResourceDef,
    current: &Value,
    mut next: Value,
    subresource: Option<&str>,
) -> Result<Value, ApiError> {
    if !next.is_object() {
        return Err(ApiError::bad_request("the object must be a JSON object"));
    }
    let name = current
        .at(&["metadata", "name"])
        .and_then(Value::as_str)
        .unwrap_or_default();
    if def.status_subresource {
        match subresource {
            Some("status") => {
                if let (Value::Object(next), Value::Object(current)) = (&mut next, current) {
                    keep_all_but_status(next, current);
                }
            }
            _ => match current.get("status") {
                Some(status) => next["status"] = status.clone(),
                None => {
                    if let Some(fields) = next.as_object_mut() {
                        fields.remove("status");
                    }
                }
            },
        }
    }
    if def.has_key(NAMESPACE_KEY) && subresource != Some("finalize") {
        next["spec"] = current.get("spec").cloned().unwrap_or(json!({}));
    }
    let kept = [
        "name",
        "namespace",
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
    ];
    let no_metadata = Map::new();
    let current_metadata = current
        .get("metadata")
        .and_then(Value::as_object)
        .unwrap_or(&no_metadata);
    let metadata = metadata_mut(&mut next);
    for field in kept {
        match current_metadata.get(field) {
            Some(value) => metadata.insert(field.into(), value.clone()),
            None => metadata.remove(field),
        };
    }
    metadata.remove("resourceVersion");
    if let Some(fields) = next.as_object_mut() {
        fields.insert("apiVersion".into(), json!(def.api_version()));
        fields.insert("kind".into(), json!(def.kind));
    }
    if is_deleting(current) {
        let before = finalizers(current);
        let added: Vec<_> = finalizers(&next)
            .into_iter()
            .filter(|f| !before.contains(f))
            .collect();
        if !added.is_empty() {
            return Err(ApiError::invalid(
                &def.group,
                &def.kind,
                name,
                vec![Cause {
                    reason: "FieldValueForbidden",
                    field: "metadata.finalizers".into(),
                    message: format!(
                        "Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers {added:?}"
                    ),
                }],
            ));
        }
    }
    if def.has_key("/secrets") && subresource.is_none() {
        fold_string_data(def, &mut next)?;
    }
    // Pruning and defaulting come first: generation compares what will be stored.
    admit(def, &mut next, Some(current))?;
    if current_metadata.contains_key("generation") && spec_changed(def, current, &next) {
        let generation = current_metadata
            .get("generation")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        metadata_mut(&mut next).insert("generation".into(), json!(generation + 1));
    }
    if def.has_key(CRD_KEY) {
        crd_status(&mut next)?;
        if let Some(conditions) = current.at(&["status", "conditions"]).cloned()
            && is_deleting(current)
        {
            next["status"]["conditions"] = conditions;
        }
    }
    Ok(next)
}

/// A status write's object: `current` but for its status, which is `next`'s (none when `next`
/// has none), and its managed fields, which are `next`'s when it has them.
///
/// `next` was made from `current` (patched or applied), so nearly all of it is already equal:
/// equal parts are kept as they are and only the parts that differ are copied, where copying
/// the stored object whole would copy its spec and metadata on every status write.
fn keep_all_but_status(next: &mut Map<String, Value>, current: &Map<String, Value>) {
    next.retain(|field, _| field == "status" || current.contains_key(field));
    for (field, value) in current {
        match (field.as_str(), next.get_mut(field), value) {
            ("status", _, _) => {}
            ("metadata", Some(Value::Object(metadata)), Value::Object(stored)) => {
                let own_managed = metadata.contains_key("managedFields");
                metadata.retain(|key, _| key == "managedFields" || stored.contains_key(key));
                for (key, value) in stored {
                    if !(own_managed && key == "managedFields") {
                        make_equal(metadata, key, value);
                    }
                }
            }
            _ => make_equal(next, field, value),
        }
    }
}

/// Makes `fields[key]` equal to `value`, copying only the parts of `value` that differ.
fn make_equal(fields: &mut Map<String, Value>, key: &str, value: &Value) {
    match (fields.get_mut(key), value) {
        (Some(Value::Object(own)), Value::Object(wanted)) => {
            own.retain(|k, _| wanted.contains_key(k));
            for (k, v) in wanted {
                make_equal(own, k, v);
            }
        }
        (Some(own), _) => {
            if own != value {
                *own = value.clone();
            }
        }
        (None, _) => {
            fields.insert(key.to_owned(), value.clone());
        }
    }
}

/// Whether anything but metadata (and status, where it is a subresource) changed. Compared
/// in place, without a copy of either.
fn spec_changed(def: &ResourceDef, current: &Value, next: &Value) -> bool {
    let (Value::Object(current), Value::Object(next)) = (current, next) else {
        return current != next;
    };
    let counted = |field: &&String| {
        !(matches!(field.as_str(), "metadata" | "apiVersion" | "kind")
            || def.status_subresource && field.as_str() == "status")
    };
    current.keys().filter(counted).count() != next.keys().filter(counted).count()
        || current
            .iter()
            .filter(|(field, _)| counted(field))
            .any(|(field, value)| next.get(field) != Some(value))
}

/// Admits a custom resource as the API server does: unknown fields pruned, defaults applied,
/// the schema and its CEL rules (with `old` for transition rules) enforced.
fn admit(def: &ResourceDef, object: &mut Value, old: Option<&Value>) -> Result<(), ApiError> {
    let Some(schema) = &def.schema else {
        return Ok(());
    };
    match crate::schema::admit_with(&crate::schema::Plan::of(schema), object, old) {
        Ok(_) => Ok(()),
        Err(causes) => {
            let name = object
                .at(&["metadata", "name"])
                .and_then(Value::as_str)
                .unwrap_or_default();
            Err(ApiError::invalid(&def.group, &def.kind, name, causes))
        }
    }
}

/// A CRD's status as the apiextensions controllers set it: names accepted, established.
fn crd_status(crd: &mut Value) -> Result<(), ApiError> {
    let name = crd
        .at(&["metadata", "name"])
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let defs = defs_from_crd(crd).map_err(|message| {
        ApiError::invalid(
            "apiextensions.k8s.io",
            "CustomResourceDefinition",
            &name,
            vec![Cause {
                reason: "FieldValueInvalid",
                field: "spec".into(),
                message,
            }],
        )
    })?;
    let names = crd.at(&["spec", "names"]).cloned().unwrap_or(json!({}));
    let mut accepted = names;
    if let (Some(first), Some(fields)) = (defs.first(), accepted.as_object_mut()) {
        fields.insert("singular".into(), json!(first.singular));
        fields.insert("listKind".into(), json!(first.list_kind));
    }
    let storage: Vec<Value> = crd
        .at(&["spec", "versions"])
        .and_then(Value::as_array)
        .map(|versions| {
            versions
                .iter()
                .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
                .filter_map(|v| v.get("name").cloned())
                .collect()
        })
        .unwrap_or_default();
    crd["status"] = json!({"acceptedNames": accepted, "storedVersions": storage, "conditions": []});
    set_condition(
        crd,
        "NamesAccepted",
        "True",
        "NoConflicts",
        "no conflicts found",
    );
    set_condition(
        crd,
        "Established",
        "True",
        "InitialNamesAccepted",
        "the initial names have been accepted",
    );
    Ok(())
}

fn set_condition(object: &mut Value, kind: &str, status: &str, reason: &str, message: &str) {
    let condition = json!({"type": kind, "status": status, "reason": reason, "message": message, "lastTransitionTime": now()});
    if !object["status"].is_object() {
        object["status"] = json!({});
    }
    let conditions = &mut object["status"]["conditions"];
    if !conditions.is_array() {
        *conditions = json!([]);
    }
    if let Some(list) = conditions.as_array_mut() {
        match list.iter_mut().find(|c| c["type"] == kind) {
            Some(existing) => *existing = condition,
            None => list.push(condition),
        }
    }
}

fn add_finalizer(object: &mut Value, finalizer: &str) {
    let metadata = metadata_mut(object);
    let list = metadata.entry("finalizers").or_insert_with(|| json!([]));
    if let Some(list) = list.as_array_mut()
        && !list.iter().any(|f| f == finalizer)
    {
        list.push(json!(finalizer));
    }
}

/// Removes `finalizer` from the object (from `spec.finalizers` for a namespace).
pub fn remove_finalizer(object: &mut Value, finalizer: &str) {
    for pointer in ["/metadata/finalizers", "/spec/finalizers"] {
        if let Some(list) = object.pointer_mut(pointer).and_then(Value::as_array_mut) {
            list.retain(|f| f != finalizer);
        }
    }
}

/// The finalizers that hold an object: `metadata.finalizers`, and a namespace's
/// `spec.finalizers`.
pub fn finalizers(object: &Value) -> Vec<String> {
    let namespace = object.get("kind").and_then(Value::as_str) == Some("Namespace");
    let spec = namespace
        .then(|| object.at(&["spec", "finalizers"]))
        .flatten();
    [object.at(&["metadata", "finalizers"]), spec]
        .into_iter()
        .flatten()
        .filter_map(Value::as_array)
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect()
}

pub fn is_deleting(object: &Value) -> bool {
    object
        .at(&["metadata", "deletionTimestamp"])
        .is_some_and(|t| !t.is_null())
}

fn uid(object: &Value) -> Option<&str> {
    object.at(&["metadata", "uid"]).and_then(Value::as_str)
}

fn resource_version(object: &Value) -> Option<&str> {
    object
        .at(&["metadata", "resourceVersion"])
        .and_then(Value::as_str)
}

/// An object's (namespace, name), its position in lists.
fn position(object: &Value) -> (&str, &str) {
    (
        object
            .at(&["metadata", "namespace"])
            .and_then(Value::as_str)
            .unwrap_or(""),
        object
            .at(&["metadata", "name"])
            .and_then(Value::as_str)
            .unwrap_or(""),
    )
}

fn metadata_mut(object: &mut Value) -> &mut Map<String, Value> {
    if !object["metadata"].is_object() {
        object["metadata"] = json!({});
    }
    match object.get_mut("metadata").and_then(Value::as_object_mut) {
        Some(metadata) => metadata,
        None => unreachable!("metadata was just made an object"),
    }
}

/// The media type of Kubernetes protobuf bodies, which kubectl sends for built-in kinds.
const PROTOBUF: &str = "application/vnd.kubernetes.protobuf";

/// An object in a create or update body: JSON, or protobuf for the built-ins.
fn parse_body(request: &Request) -> Result<Value, ApiError> {
    if request.content_type.starts_with(PROTOBUF) {
        return crate::protobuf::decode(&request.body)
            .map_err(|e| ApiError::unsupported_media_type_because(PROTOBUF, &e.to_string()));
    }
    parse_object(&request.body)
}

fn parse_object(body: &[u8]) -> Result<Value, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    }
    Ok(value)
}

fn parse_yaml_or_json(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body).or_else(|_| {
        serde_yaml::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!(
                "the apply configuration is not valid YAML or JSON: {e}"
            ))
        })
    })
}

/// An object posted to a resource must be of its kind.
fn check_type(def: &ResourceDef, object: &Value) -> Result<(), ApiError> {
    let kind = object.get("kind").and_then(Value::as_str);
    let api_version = object.get("apiVersion").and_then(Value::as_str);
    let wrong_kind = kind.is_some_and(|k| k != def.kind);
    let wrong_group = api_version.is_some_and(|v| {
        let group = v.rsplit_once('/').map_or("", |(g, _)| g);
        group != def.group
    });
    if wrong_kind || wrong_group {
        return Err(ApiError::bad_request(format!(
            "the object provided is unrecognized: {} {} does not belong to {}",
            api_version.unwrap_or("?"),
            kind.unwrap_or("?"),
            qualified(&def.group, &def.plural)
        )));
    }
    Ok(())
}

fn apply_conflict(conflicts: &[ssa::Conflict]) -> ApiError {
    let causes: Vec<_> = conflicts
        .iter()
        .map(|c| json!({"reason": "FieldManagerConflict", "message": format!("conflict with \"{}\"", c.manager), "field": c.field}))
        .collect();
    ApiError::new(409, "Conflict", ssa::conflict_message(conflicts))
        .with_details(json!({"causes": causes}))
}

/// The Kubernetes verb of a resource request.
fn verb(method: &str, named: bool, watch: bool) -> &'static str {
    match (method, named, watch) {
        ("GET", _, true) => "watch",
        ("GET", true, _) => "get",
        ("GET", false, _) => "list",
        ("POST", _, _) => "create",
        ("PUT", _, _) => "update",
        ("PATCH", _, _) => "patch",
        ("DELETE", true, _) => "delete",
        ("DELETE", false, _) => "deletecollection",
        _ => "unknown",
    }
}

/// The response format the request's Accept header asks for.
fn format(request: &Request) -> Format {
    Format::from_accept(
        &request.accept,
        request.query.get("includeObject").map(String::as_str),
    )
}

fn dry_run(request: &Request) -> bool {
    request.query.get("dryRun").is_some_and(|d| d == "All")
}

fn flag(query: &HashMap<String, String>, name: &str) -> bool {
    query.get(name).is_some_and(|v| v == "true" || v == "1")
}

/// `prefix` plus five characters, as the API server generates names.
fn generate_name(prefix: &str) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let random = uuid::Uuid::new_v4();
    let suffix: String = random
        .as_bytes()
        .iter()
        .take(5)
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect();
    let prefix: String = prefix.chars().take(58).collect();
    format!("{prefix}{suffix}")
}

/// Now, as Kubernetes writes times: RFC 3339, seconds, UTC.
pub fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn encode_continue(rv: u64, namespace: &str, name: &str) -> String {
    use base64::Engine;
    let token = json!({"rv": rv, "start": [namespace, name]});
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token.to_string())
}

fn decode_continue(token: &str) -> Result<(String, String), ApiError> {
    use base64::Engine;
    let invalid = || {
        ApiError::bad_request(format!(
            "continue: invalid value {token:?}: the continue token is not valid"
        ))
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| invalid())?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    let start = value
        .get("start")
        .and_then(Value::as_array)
        .ok_or_else(invalid)?;
    match start.as_slice() {
        [Value::String(namespace), Value::String(name)] => Ok((namespace.clone(), name.clone())),
        _ => Err(invalid()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Requests are handled on the I/O threads unless handling may wait: on injected latency,
    /// or on the disk with a data directory.
    #[test]
    fn handling_may_wait_only_on_injected_latency_or_the_disk() {
        let address: SocketAddr = ([127, 0, 0, 1], 0).into();
        let cluster = Cluster::new(Store::new(10), "token".into(), address);
        assert!(!cluster.may_wait());
        *cluster.faults.write().unwrap() = crate::Faults {
            latency: std::time::Duration::from_millis(5),
            ..crate::Faults::default()
        };
        assert!(cluster.may_wait());

        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(10, dir.path(), false).unwrap();
        assert!(Cluster::new(store, "token".into(), address).may_wait());
    }

    /// A status write keeps everything of the stored object but its status, whatever the
    /// written object changed, added or dropped elsewhere; its own managed fields win.
    #[test]
    fn a_status_write_takes_only_the_status_and_its_managed_fields() {
        let current = json!({
            "apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {"name": "w", "labels": {"a": "1", "b": "2"},
                "annotations": {"keep": "me"}, "finalizers": ["f"],
                "managedFields": [{"manager": "stored"}]},
            "spec": {"size": 1, "nested": {"deep": [1, 2]}},
            "status": {"seen": 1, "old": true},
        });
        let as_object = |value: Value| match value {
            Value::Object(fields) => fields,
            _ => unreachable!("the cases are objects"),
        };
        let stored = as_object(current.clone());
        let written = |next: Value| {
            let mut next = as_object(next);
            keep_all_but_status(&mut next, &stored);
            Value::Object(next)
        };

        let changed_everywhere = json!({
            "apiVersion": "example.com/v1", "kind": "Widget", "extra": "dropped",
            "metadata": {"name": "w", "labels": {"a": "changed", "c": "added"},
                "finalizers": ["f", "g"], "managedFields": [{"manager": "written"}]},
            "spec": {"size": 99, "nested": {"deep": [3], "more": 1}},
            "status": {"seen": 7},
        });
        let mut expected = current.clone();
        expected["status"] = json!({"seen": 7});
        expected["metadata"]["managedFields"] = json!([{"manager": "written"}]);
        assert_eq!(written(changed_everywhere), expected);

        // Without managed fields of its own, the stored ones stay; without a status, none.
        let bare = json!({"metadata": {"name": "w"}, "spec": {}});
        let mut expected = current.clone();
        expected.as_object_mut().unwrap().remove("status");
        assert_eq!(written(bare), expected);

        // A copy of the stored object with a new status is that object with the new status.
        let mut copy = current.clone();
        copy["status"] = json!({"seen": 2});
        let mut expected = current.clone();
        expected["status"] = json!({"seen": 2});
        assert_eq!(written(copy), expected);
    }
}
