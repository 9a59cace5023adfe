//! The `certinext.io/v1alpha1` API: one module per kind, plus the types they share.
//!
//! Field doc comments are user documentation: they become the CRD descriptions that
//! `kubectl explain` shows. Intra-object rules live here as schema constraints and CEL
//! (`x-kubernetes-validations`); rules across objects live in the controllers.

// `#[kube(printcolumn(..), printcolumn(..))]` repeats keys by design.
#![allow(clippy::duplicated_attributes)]

pub mod account;
pub mod certificate;
pub mod common;
pub mod group;
pub mod order;
pub mod pricelist;
pub mod privateca;
pub mod product;
pub mod subaccount;

pub use account::{Account, AccountSpec, AccountStatus};
pub use certificate::{Certificate, CertificateSpec, CertificateStatus};
pub use common::{CATEGORY, GROUP, VERSION};
pub use group::{Group, GroupSpec, GroupStatus};
pub use order::{Order, OrderSpec, OrderStatus};
pub use pricelist::{PriceList, PriceListSpec, PriceListStatus};
pub use privateca::{PrivateCA, PrivateCASpec, PrivateCAStatus};
pub use product::{Product, ProductSpec, ProductStatus};
pub use subaccount::{SubAccount, SubAccountSpec, SubAccountStatus};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// Every CRD of the API, in a stable order: (file stem, definition).
pub fn crds() -> Vec<(&'static str, CustomResourceDefinition)> {
    vec![
        ("account", Account::crd()),
        ("group", Group::crd()),
        ("subaccount", SubAccount::crd()),
        ("pricelist", PriceList::crd()),
        ("product", Product::crd()),
        ("privateca", PrivateCA::crd()),
        ("certificate", Certificate::crd()),
        ("order", Order::crd()),
    ]
}
