//! Money, pricing and the ledger: pure arithmetic, no Kubernetes client.

pub mod ledger;
pub mod money;
pub mod pricing;
pub mod wallet;

pub use money::{CURRENCY_PATTERN, MONEY_PATTERN, Money, MoneyError};
