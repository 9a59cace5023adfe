//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod cluster;
pub mod python;
pub mod schema;
pub mod wait;
