//! An embedded, Kubernetes-compatible API server for development and tests.
//!
//! `devcluster` serves the Kubernetes API surface that real clients (`kubectl`, kube-rs, the
//! Python client) use, from a single process. It knows nothing of certinext.
