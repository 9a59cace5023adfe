//! certinext: a Kubernetes operator for a multi-tenant certificate platform.
//!
//! Accounts of three types (Reseller, Enterprise, Retail), their groups, sub-accounts, price
//! lists, products, private CAs and certificates are custom resources; the operator enforces
//! what each account type may do, charges every issuance to a wallet, and issues and renews
//! certificates into Secrets.

pub mod api;
pub mod approval;
pub mod bench;
pub mod billing;
pub mod capabilities;
pub mod controllers;
pub mod crd;
pub mod dev;
pub mod endpoints;
pub mod leader;
pub mod manifests;
pub mod metrics;
pub mod pki;
pub mod run;
pub mod tenancy;
