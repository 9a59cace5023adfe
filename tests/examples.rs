//! Every object in `examples/` is valid against its CRD, as a user would apply it.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use certinext::api::{
    Account, Certificate, Group, Order, PriceList, PrivateCA, Product, SubAccount,
};
use serde::de::DeserializeOwned;
use serde_json::Value;
use support::schema::problems;

fn example_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("examples/ exists")
        .map(|entry| entry.expect("readable entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    files
}

fn documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).expect("example is readable");
    serde_yaml::Deserializer::from_str(&text)
        .map(|document| {
            serde::Deserialize::deserialize(document)
                .unwrap_or_else(|e| panic!("{}: not YAML: {e}", path.display()))
        })
        .filter(|document: &Value| !document.is_null())
        .collect()
}

fn typed<K: DeserializeOwned>(object: &Value) -> Result<(), String> {
    serde_json::from_value::<K>(object.clone())
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[test]
fn the_scenarios_exist() {
    let names: BTreeSet<_> = example_files()
        .iter()
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    for expected in [
        "quickstart.yaml",
        "reseller.yaml",
        "enterprise.yaml",
        "retail.yaml",
    ] {
        assert!(names.contains(expected), "examples/{expected} is missing");
    }
}

#[test]
fn every_example_object_is_valid_against_its_crd() {
    let mut checked = 0;
    for path in example_files() {
        for object in documents(&path) {
            let kind = object["kind"].as_str().unwrap_or_default().to_owned();
            let name = object["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let here = format!("{}: {kind} {name:?}", path.display());
            match object["apiVersion"].as_str() {
                Some("v1") if kind == "Namespace" => continue,
                Some("certinext.io/v1alpha1") => {}
                other => panic!("{here}: unexpected apiVersion {other:?}"),
            }
            let found = problems(&kind, &object, None);
            assert!(found.is_empty(), "{here} is invalid:\n{}", found.join("\n"));
            let parsed = match kind.as_str() {
                "Account" => typed::<Account>(&object),
                "Group" => typed::<Group>(&object),
                "SubAccount" => typed::<SubAccount>(&object),
                "PriceList" => typed::<PriceList>(&object),
                "Product" => typed::<Product>(&object),
                "PrivateCA" => typed::<PrivateCA>(&object),
                "Certificate" => typed::<Certificate>(&object),
                "Order" => typed::<Order>(&object),
                other => panic!("{here}: unknown kind {other}"),
            };
            if let Err(error) = parsed {
                panic!("{here} does not parse as the Rust type: {error}");
            }
            checked += 1;
        }
    }
    assert!(checked >= 30, "only {checked} objects checked");
}

/// Each scenario stands alone: its namespaced objects live in namespaces it creates and that
/// one of its accounts (or sub-accounts) claims.
#[test]
fn every_example_is_self_contained() {
    for path in example_files() {
        let objects = documents(&path);
        let of_kind = |kind: &'static str| objects.iter().filter(move |o| o["kind"] == kind);
        let created: BTreeSet<_> = of_kind("Namespace")
            .filter_map(|o| o["metadata"]["name"].as_str())
            .collect();
        let claimed: BTreeSet<_> = of_kind("Account")
            .chain(of_kind("SubAccount"))
            .flat_map(|o| {
                o["spec"]["namespaces"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .filter_map(|n| n.as_str().map(str::to_owned))
            .collect();
        for object in &objects {
            let Some(namespace) = object["metadata"]["namespace"].as_str() else {
                continue;
            };
            let here = format!(
                "{}: {} {}",
                path.display(),
                object["kind"],
                object["metadata"]["name"]
            );
            assert!(
                created.contains(namespace),
                "{here}: namespace {namespace} is not created"
            );
            assert!(
                claimed.contains(namespace),
                "{here}: namespace {namespace} has no account"
            );
        }
    }
}

#[test]
fn quickstart_is_an_enterprise_with_a_ca_a_product_and_two_certificates() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart.yaml");
    let objects = documents(&path);
    let count = |kind: &str| objects.iter().filter(|o| o["kind"] == kind).count();
    assert_eq!(count("Account"), 1);
    assert_eq!(count("PrivateCA"), 1);
    assert_eq!(count("Product"), 1);
    assert_eq!(count("Certificate"), 2);
    let account = objects
        .iter()
        .find(|o| o["kind"] == "Account")
        .expect("an account");
    assert_eq!(account["spec"]["type"], "Enterprise");
}
