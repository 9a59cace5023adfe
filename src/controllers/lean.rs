//! Watches that decode objects without their managed fields.
//!
//! The API server sends every object with `metadata.managedFields`: one entry per writer, each
//! a tree of field names. The caches drop them, as no reconcile reads them, but decoding them
//! first into typed entries (their field trees into JSON values) was the largest single cost of
//! a watch event. A [`Lean`] object is decoded as `K` is, except that the decoder skips
//! `metadata.managedFields` without building anything; every other field, at any depth,
//! decodes as before.

use std::borrow::Cow;
use std::fmt::{self, Debug};

use futures_util::{Stream, TryStreamExt};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::Api;
use kube::core::DynamicResourceScope;
use kube::runtime::{WatchStreamExt, watcher};
use serde::de::DeserializeOwned;
use serde::de::{
    self, DeserializeSeed, Deserializer, IgnoredAny, IntoDeserializer, MapAccess, Visitor,
};

/// An object of kind `K`, decoded without its managed fields.
#[derive(Clone, Debug)]
pub struct Lean<K>(pub K);

impl<'de, K: de::Deserialize<'de>> de::Deserialize<'de> for Lean<K> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        K::deserialize(Level {
            inner: deserializer,
            at: At::Object,
        })
        .map(Lean)
    }
}

impl<K: kube::Resource<DynamicType = ()>> kube::Resource for Lean<K> {
    type DynamicType = ();
    // Either scope: a lean Api is built from a typed one, whose constructor checked it.
    type Scope = DynamicResourceScope;

    fn kind(dt: &()) -> Cow<'_, str> {
        K::kind(dt)
    }

    fn group(dt: &()) -> Cow<'_, str> {
        K::group(dt)
    }

    fn version(dt: &()) -> Cow<'_, str> {
        K::version(dt)
    }

    fn plural(dt: &()) -> Cow<'_, str> {
        K::plural(dt)
    }

    fn meta(&self) -> &ObjectMeta {
        self.0.meta()
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        self.0.meta_mut()
    }
}

/// kube-runtime's watcher of `api` with its default backoff, its objects decoded lean.
pub fn watch<K>(
    api: Api<K>,
    config: watcher::Config,
) -> impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static
where
    K: kube::Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + 'static,
{
    watcher::watcher(self::api(&api), config)
        .default_backoff()
        .map_ok(event)
}

/// The same resource and namespace as `api`, decoded lean: for watches, and for writes whose
/// answer is kept.
pub fn api<K: kube::Resource<DynamicType = ()> + Clone>(api: &Api<K>) -> Api<Lean<K>> {
    let client = api.clone().into_client();
    match api.namespace() {
        Some(namespace) => Api::namespaced_with(client, namespace, &()),
        None => Api::all_with(client, &()),
    }
}

/// A watcher event of a lean object, as an event of the object.
fn event<K>(event: watcher::Event<Lean<K>>) -> watcher::Event<K> {
    match event {
        watcher::Event::Apply(Lean(object)) => watcher::Event::Apply(object),
        watcher::Event::Delete(Lean(object)) => watcher::Event::Delete(object),
        watcher::Event::InitApply(Lean(object)) => watcher::Event::InitApply(object),
        watcher::Event::Init => watcher::Event::Init,
        watcher::Event::InitDone => watcher::Event::InitDone,
    }
}

/// Where in the object a map is.
#[derive(Clone, Copy)]
enum At {
    /// The object itself: its `metadata` is decoded at [`At::Metadata`].
    Object,
    /// The object's metadata: its `managedFields` are skipped.
    Metadata,
}

/// A deserializer of a map at `at`, passing everything else through.
struct Level<D> {
    inner: D,
    at: At,
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Level<D> {
    type Error = D::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.inner.deserialize_any(Maps {
            visitor,
            at: self.at,
        })
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.inner.deserialize_map(Maps {
            visitor,
            at: self.at,
        })
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.inner.deserialize_struct(
            name,
            fields,
            Maps {
                visitor,
                at: self.at,
            },
        )
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.inner.deserialize_option(Maps {
            visitor,
            at: self.at,
        })
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        unit unit_struct newtype_struct seq tuple tuple_struct enum identifier
        ignored_any
    }
}

/// The visitor of a map at `at`: it hands the wrapped visitor the map's entries through
/// [`Entries`], and an optional map's content at `at` again; any other value goes to it
/// unchanged.
struct Maps<V> {
    visitor: V,
    at: At,
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Maps<V> {
    type Value = V::Value;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        self.visitor.expecting(formatter)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.visitor.visit_map(Entries {
            map,
            at: self.at,
            metadata_next: false,
        })
    }

    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.visitor.visit_unit()
    }

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.visitor.visit_none()
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<V::Value, D::Error> {
        self.visitor.visit_some(Level {
            inner: deserializer,
            at: self.at,
        })
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        self.visitor.visit_seq(seq)
    }
}

/// A map's entries, less a metadata's `managedFields`.
struct Entries<A> {
    map: A,
    at: At,
    /// Whether the value about to be read is the object's metadata.
    metadata_next: bool,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Entries<A> {
    type Error = A::Error;

    fn next_key_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, A::Error> {
        loop {
            let Some(Key(key)) = self.map.next_key::<Key<'de>>()? else {
                return Ok(None);
            };
            match self.at {
                At::Metadata if key == "managedFields" => {
                    self.map.next_value::<IgnoredAny>()?;
                    continue;
                }
                At::Object => self.metadata_next = key == "metadata",
                At::Metadata => {}
            }
            let key: Result<S::Value, A::Error> = match key {
                Cow::Borrowed(key) => {
                    seed.deserialize(de::value::BorrowedStrDeserializer::new(key))
                }
                Cow::Owned(key) => seed.deserialize(key.into_deserializer()),
            };
            return key.map(Some);
        }
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, A::Error> {
        if std::mem::take(&mut self.metadata_next) {
            self.map.next_value_seed(Metadata(seed))
        } else {
            self.map.next_value_seed(seed)
        }
    }

    fn size_hint(&self) -> Option<usize> {
        self.map.size_hint()
    }
}

/// The seed of an object's metadata: decoded at [`At::Metadata`].
struct Metadata<S>(S);

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Metadata<S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<S::Value, D::Error> {
        self.0.deserialize(Level {
            inner: deserializer,
            at: At::Metadata,
        })
    }
}

/// A map key, borrowed from the input where it can be.
struct Key<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;

            fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
                formatter.write_str("a field name")
            }

            fn visit_borrowed_str<E: de::Error>(self, key: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(key)))
            }

            fn visit_str<E: de::Error>(self, key: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(key.to_owned())))
            }

            fn visit_string<E: de::Error>(self, key: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(key)))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::certificate::Certificate;
    use k8s_openapi::api::core::v1::Secret;
    use kube::core::WatchEvent;
    use serde_json::json;

    fn managed() -> serde_json::Value {
        json!([{"manager": "m", "operation": "Apply", "apiVersion": "v1",
            "time": "2026-11-28T10:00:00Z", "fieldsType": "FieldsV1",
            "fieldsV1": {"f:data": {"f:managedFields": {}}, "f:metadata": {"f:labels": {}}}}])
    }

    #[test]
    fn a_lean_object_is_the_object_without_its_managed_fields_only() {
        // A data key and a label named like the skipped field stay; so does everything else.
        let secret = json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "s", "namespace": "ns", "resourceVersion": "7",
                "labels": {"managedFields": "kept"}, "managedFields": managed(),
                "annotations": {"a\"b": "escaped key"}},
            "data": {"managedFields": "a2VwdA==", "tls.crt": "Y2VydA=="},
            "type": "kubernetes.io/tls",
        });
        let text = serde_json::to_string(&secret).unwrap();
        let Lean(lean): Lean<Secret> = serde_json::from_str(&text).unwrap();
        let mut full: Secret = serde_json::from_str(&text).unwrap();
        assert!(
            !full
                .metadata
                .managed_fields
                .as_deref()
                .unwrap_or_default()
                .is_empty()
        );
        full.metadata.managed_fields = None;
        assert_eq!(lean, full);
        assert_eq!(lean.metadata.labels.unwrap()["managedFields"], "kept");
        assert_eq!(lean.data.unwrap()["managedFields"].0, b"kept");
    }

    #[test]
    fn watch_events_and_lists_decode_lean() {
        let certificate = json!({
            "apiVersion": "certinext.io/v1alpha1", "kind": "Certificate",
            "metadata": {"name": "web", "namespace": "ns", "managedFields": managed()},
            "spec": {"secretName": "web-tls", "commonName": "web.acme.example",
                "productRef": {"name": "tls"}},
        });
        let line = json!({"type": "MODIFIED", "object": certificate}).to_string();
        let event: WatchEvent<Lean<Certificate>> = serde_json::from_str(&line).unwrap();
        let WatchEvent::Modified(Lean(lean)) = event else {
            panic!("not a modification: {event:?}");
        };
        assert_eq!(lean.metadata.name.as_deref(), Some("web"));
        assert!(lean.metadata.managed_fields.is_none());
        assert_eq!(lean.spec.secret_name, "web-tls");

        // The object before its type, as a client may not rely on the order.
        let line = json!({"object": certificate, "type": "ADDED"}).to_string();
        let event: WatchEvent<Lean<Certificate>> = serde_json::from_str(&line).unwrap();
        assert!(matches!(event, WatchEvent::Added(Lean(c)) if c.metadata.managed_fields.is_none()));

        let list = json!({"apiVersion": "certinext.io/v1alpha1", "kind": "CertificateList",
            "metadata": {"resourceVersion": "9"}, "items": [certificate]});
        let list: kube::core::ObjectList<Lean<Certificate>> = serde_json::from_value(list).unwrap();
        assert_eq!(list.items.len(), 1);
        assert!(list.items[0].0.metadata.managed_fields.is_none());
    }

    #[test]
    fn a_malformed_object_fails_as_it_would_without_the_lean_decoding() {
        for text in [
            r#"{"metadata": {"name": 3}}"#,
            r#"{"metadata": "x"}"#,
            r#""x""#,
            r#"{"metadata": {"managedFields": [}]}}"#,
            r#"{"metadata": {"managedFields": 3}, "type": 4}"#,
            r#"{"metadata": {"managedFields": []}, "data": {"k": "not base64!"}}"#,
        ] {
            let full = serde_json::from_str::<Secret>(text).map(|_| ());
            let lean = serde_json::from_str::<Lean<Secret>>(text).map(|_| ());
            assert_eq!(lean.is_err(), full.is_err(), "{text}");
            assert!(lean.is_err(), "{text}");
        }
    }

    #[tokio::test]
    async fn a_lean_api_keeps_the_resource_and_namespace() {
        let client = || {
            let config = kube::Config::new("https://127.0.0.1:1".parse().unwrap());
            kube::Client::try_from(config).unwrap()
        };
        let namespaced: Api<Secret> = Api::namespaced(client(), "ns");
        assert_eq!(api(&namespaced).resource_url(), namespaced.resource_url());
        let all: Api<Certificate> = Api::all(client());
        assert_eq!(api(&all).resource_url(), all.resource_url());
    }
}
