//! The ledger: what each payer has spent, read from the charges and refunds Orders record in
//! `status.transactions`. Pure arithmetic over plain values.
//!
//! The Order is the idempotency key: the ledger holds one entry per Order (its payer, charge
//! and refund), so recording an Order again replaces its entry rather than adding to it, and
//! a ledger rebuilt from the Orders equals one kept up to date as they were charged.

use std::collections::BTreeMap;

use kube::ResourceExt;

use super::{Money, MoneyError};
use crate::api::Order;
use crate::api::order::{OrderStatus, Payer, PayerKind, Transaction, TransactionType};

/// A payer as a ledger key: `Account/<name>` or `Group/<namespace>/<name>`.
pub fn payer_key(payer: &Payer) -> String {
    match payer.kind {
        PayerKind::Account => format!("Account/{}", payer.name),
        PayerKind::Group => format!(
            "Group/{}/{}",
            payer.namespace.as_deref().unwrap_or_default(),
            payer.name
        ),
    }
}

/// An Order as a ledger key: `<namespace>/<name>/<uid>`, so a new Order of the same name is
/// a new entry.
pub fn order_key(order: &Order) -> String {
    format!(
        "{}/{}/{}",
        order.namespace().unwrap_or_default(),
        order.name_any(),
        order.uid().unwrap_or_default()
    )
}

/// The charge an order's status records: its PURCHASE or RENEWAL transaction.
pub fn charge(status: &OrderStatus) -> Option<&Transaction> {
    status.transactions.iter().find(|t| {
        matches!(
            t.transaction_type,
            TransactionType::Purchase | TransactionType::Renewal
        )
    })
}

/// The refund an order's status records.
pub fn refund(status: &OrderStatus) -> Option<&Transaction> {
    status
        .transactions
        .iter()
        .find(|t| t.transaction_type == TransactionType::Refund)
}

/// One order's money: who paid, what was charged and what was given back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub payer: String,
    /// The Order's uid: once its charge is archived, the Order no longer counts itself.
    pub uid: String,
    pub charged: Money,
    pub refunded: Money,
}

impl Entry {
    /// The entry an order's status makes, if it records a payer and a charge.
    pub fn of(status: &OrderStatus) -> Option<Entry> {
        let payer = status.payer.as_ref()?;
        let charged = charge(status)?.amount;
        Some(Entry {
            payer: payer_key(payer),
            uid: String::new(),
            charged,
            refunded: refund(status).map_or(Money::ZERO, |t| t.amount),
        })
    }

    /// The entry of an order, with its uid.
    pub fn of_order(order: &Order) -> Option<Entry> {
        Entry::of_order_as(order, order.status.as_ref()?)
    }

    /// The entry `order` makes with `status` in place of its own.
    pub fn of_order_as(order: &Order, status: &OrderStatus) -> Option<Entry> {
        let mut entry = Entry::of(status)?;
        entry.uid = order.uid().unwrap_or_default();
        Some(entry)
    }

    /// What the order cost its payer in the end.
    pub fn net(&self) -> Result<Money, MoneyError> {
        self.charged.checked_sub(self.refunded)
    }
}

/// The annotation on a payer (Group or Account) that keeps the charges of its deleted Orders,
/// so they stay in its totals: `{"spent": "24.00", "orders": ["<uid>", …]}`.
pub const ARCHIVE_ANNOTATION: &str = "certinext.io/ledger-archive";

/// The charges of a payer's deleted Orders: their net total, and the uids of the Orders
/// folded in whose deletion may not have completed (an Order still listed with its uid here
/// is counted once, through the archive).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Archive {
    pub spent: Money,
    #[serde(default, skip_serializing_if = "std::collections::BTreeSet::is_empty")]
    pub orders: std::collections::BTreeSet<String>,
}

impl Archive {
    /// The archive a payer's annotations hold; none is an empty archive.
    pub fn from_annotations(annotations: &BTreeMap<String, String>) -> Result<Archive, String> {
        match annotations.get(ARCHIVE_ANNOTATION) {
            None => Ok(Archive::default()),
            Some(text) => serde_json::from_str(text).map_err(|e| {
                format!("annotation {ARCHIVE_ANNOTATION} is not a ledger archive: {e}")
            }),
        }
    }

    /// Folds an order's net charge in, once: false if it was folded before.
    pub fn fold(&mut self, entry: &Entry) -> Result<bool, MoneyError> {
        self.fold_once(&entry.uid, entry.net()?)
    }

    /// Folds what a deleted Group spent into its account's archive, once, keyed by the
    /// group's uid: false if it was folded before.
    pub fn fold_group(&mut self, uid: &str, spent: Money) -> Result<bool, MoneyError> {
        self.fold_once(uid, spent)
    }

    fn fold_once(&mut self, uid: &str, amount: Money) -> Result<bool, MoneyError> {
        if self.holds(uid) {
            return Ok(false);
        }
        self.spent = self.spent.checked_add(amount)?;
        self.orders.insert(uid.to_owned());
        Ok(true)
    }

    /// Whether the Order or Group of `uid` is folded in.
    pub fn holds(&self, uid: &str) -> bool {
        self.orders.contains(uid)
    }

    pub fn to_annotation(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// What every payer has been charged, one entry per Order, plus the archived charges of
/// deleted Orders.
///
/// Each payer's total is kept as entries come and go, so asking what a payer spent costs
/// the same with ten Orders as with a million (the Order controller asks on every charge).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ledger {
    entries: BTreeMap<String, Entry>,
    /// By payer key; a payer with no entry and an empty archive has none.
    payers: BTreeMap<String, Totals>,
}

/// A payer's archive and the running totals of its entries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Totals {
    archive: Archive,
    /// The net charges, in minor units, of its entries the archive does not hold. Kept as an
    /// exact sum: the order in which entries come and go cannot overflow it.
    live: i128,
    /// Its entries, archived ones included.
    charges: usize,
}

impl Totals {
    fn net(entry: &Entry) -> i128 {
        i128::from(entry.charged.minor_units()) - i128::from(entry.refunded.minor_units())
    }

    fn add(&mut self, entry: &Entry) {
        self.charges += 1;
        if !self.archive.holds(&entry.uid) {
            self.live += Totals::net(entry);
        }
    }

    fn remove(&mut self, entry: &Entry) {
        self.charges -= 1;
        if !self.archive.holds(&entry.uid) {
            self.live -= Totals::net(entry);
        }
    }

    fn is_empty(&self) -> bool {
        self.charges == 0 && self.archive == Archive::default()
    }
}

impl Ledger {
    /// The ledger of `orders`' recorded transactions.
    pub fn from_orders<'a>(orders: impl IntoIterator<Item = &'a Order>) -> Ledger {
        let mut ledger = Ledger::default();
        for order in orders {
            ledger.record(order);
        }
        ledger
    }

    /// Records (or replaces) an order's entry from its status; an order without a charge has
    /// none.
    pub fn record(&mut self, order: &Order) {
        self.record_as(order, order.status.as_ref());
    }

    /// Records `order` as if its status were `status`: a charge decided and not yet written.
    pub fn record_as(&mut self, order: &Order, status: Option<&OrderStatus>) {
        let key = order_key(order);
        self.remove(&key);
        if let Some(entry) = status.and_then(|status| Entry::of_order_as(order, status)) {
            self.payers
                .entry(entry.payer.clone())
                .or_default()
                .add(&entry);
            self.entries.insert(key, entry);
        }
    }

    /// The order's entry, if it was charged.
    pub fn entry(&self, order: &Order) -> Option<&Entry> {
        self.entries.get(&order_key(order))
    }

    /// Forgets an order: its charge now lives in its payer's archive.
    pub fn forget(&mut self, order: &Order) {
        self.remove(&order_key(order));
    }

    fn remove(&mut self, key: &str) {
        let Some(entry) = self.entries.remove(key) else {
            return;
        };
        if let Some(totals) = self.payers.get_mut(&entry.payer) {
            totals.remove(&entry);
            if totals.is_empty() {
                self.payers.remove(&entry.payer);
            }
        }
    }

    /// Sets a payer's archive, as its annotation holds it.
    pub fn archive(&mut self, payer: &Payer, archive: Archive) {
        let key = payer_key(payer);
        let totals = self.payers.entry(key.clone()).or_default();
        if totals.archive == archive {
            return;
        }
        // Which of its entries the archive holds changed: count them again (an archive
        // changes when an Order or Group is deleted, not on a charge).
        totals.archive = archive;
        totals.live = self
            .entries
            .values()
            .filter(|e| e.payer == key && !totals.archive.holds(&e.uid))
            .map(Totals::net)
            .sum();
        if totals.is_empty() {
            self.payers.remove(&key);
        }
    }

    /// What `payer` has spent: its charges less its refunds, archived ones included.
    pub fn spent(&self, payer: &Payer) -> Result<Money, MoneyError> {
        let Some(totals) = self.payers.get(&payer_key(payer)) else {
            return Ok(Money::ZERO);
        };
        let live = i64::try_from(totals.live).map_err(|_| {
            MoneyError::Overflow(format!(
                "the charges of {} sum to {} minor units",
                payer_key(payer),
                totals.live
            ))
        })?;
        totals.archive.spent.checked_add(Money::from_minor(live))
    }

    /// How many orders have been charged to `payer` (refunded ones included).
    pub fn charges(&self, payer: &Payer) -> usize {
        self.payers
            .get(&payer_key(payer))
            .map_or(0, |totals| totals.charges)
    }
}

/// Whether two payers are the same ledger key (an account's namespace does not count).
fn same_payer(a: &Payer, b: &Payer) -> bool {
    a.kind == b.kind
        && a.name == b.name
        && (a.kind == PayerKind::Account || a.namespace == b.namespace)
}

/// What `payer` spent: what `archive` holds, plus the net charges of the `orders` it paid
/// for that the archive does not already count. The same as a [`Ledger`] of `orders` would
/// say, in one pass with no copies: the account and group controllers compute it over every
/// cached Order on each reconcile.
pub fn spent_by<'a>(
    orders: impl IntoIterator<Item = &'a Order>,
    payer: &Payer,
    archive: &Archive,
) -> Result<Money, MoneyError> {
    let mut total = archive.spent;
    for order in orders {
        let Some(status) = &order.status else {
            continue;
        };
        if !status.payer.as_ref().is_some_and(|p| same_payer(p, payer)) {
            continue;
        }
        let Some(charge) = charge(status) else {
            continue;
        };
        if order
            .metadata
            .uid
            .as_ref()
            .is_some_and(|uid| archive.holds(uid))
        {
            continue;
        }
        let refunded = refund(status).map_or(Money::ZERO, |t| t.amount);
        total = total.checked_add(charge.amount)?.checked_sub(refunded)?;
    }
    Ok(total)
}

/// What a payer can still spend: the allocation in force (for an account wallet, its balance
/// before its own charges) less what it has spent.
pub fn available(in_force: Money, spent: Money) -> Result<Money, MoneyError> {
    in_force.checked_sub(spent)
}

/// Why a charge cannot be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shortfall {
    pub price: Money,
    pub available: Money,
}

/// Whether `price` may be charged to a payer with `available` left: only when it leaves the
/// payer at zero or above.
pub fn may_charge(price: Money, available: Money) -> Result<(), Shortfall> {
    if price.is_negative() || price > available {
        Err(Shortfall { price, available })
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::common::{Duration, LocalObjectReference};
    use crate::api::order::{OrderSpec, OrderState, OrderType};

    fn m(text: &str) -> Money {
        Money::parse(text).unwrap()
    }

    fn group(name: &str) -> Payer {
        Payer {
            kind: PayerKind::Group,
            name: name.into(),
            namespace: Some("shop".into()),
        }
    }

    fn transaction(kind: TransactionType, amount: Money) -> Transaction {
        Transaction {
            transaction_type: kind,
            amount,
            at: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::UNIX_EPOCH),
            reason: None,
        }
    }

    fn order(name: &str, payer: Option<Payer>, transactions: Vec<Transaction>) -> Order {
        let mut order = Order::new(
            name,
            OrderSpec {
                certificate_ref: LocalObjectReference { name: "web".into() },
                revision: 1,
                order_type: OrderType::Purchase,
                request: "csr".into(),
                product_ref: None,
                issuer_ref: None,
                group_ref: None,
                duration: "1h".parse::<Duration>().unwrap(),
                usages: vec![],
                approval: None,
                sealed_key: None,
            },
        );
        order.metadata.namespace = Some("shop".into());
        order.metadata.uid = Some(format!("uid-{name}"));
        order.status = Some(OrderStatus {
            state: Some(OrderState::Approved),
            payer,
            transactions,
            ..Default::default()
        });
        order
    }

    #[test]
    fn spent_is_charges_less_refunds_per_payer() {
        use TransactionType::*;
        let orders = [
            order(
                "a",
                Some(group("team")),
                vec![transaction(Purchase, m("20"))],
            ),
            order(
                "b",
                Some(group("team")),
                vec![transaction(Renewal, m("12.50"))],
            ),
            order(
                "c",
                Some(group("team")),
                vec![transaction(Purchase, m("20")), transaction(Refund, m("20"))],
            ),
            order(
                "d",
                Some(group("other")),
                vec![transaction(Purchase, m("5"))],
            ),
            // Priced but never charged: not in the ledger.
            order("e", Some(group("team")), vec![]),
        ];
        let ledger = Ledger::from_orders(&orders);
        // The one-pass sum says the same, with or without an archive.
        let mut archive = Archive::default();
        for payer in ["team", "other", "nobody"] {
            assert_eq!(
                spent_by(&orders, &group(payer), &archive).unwrap(),
                ledger.spent(&group(payer)).unwrap(),
                "{payer}"
            );
        }
        let entry = Entry::of_order(&orders[1]).unwrap();
        archive.fold(&entry).unwrap();
        let mut archived = ledger.clone();
        archived.archive(&group("team"), archive.clone());
        assert_eq!(
            spent_by(&orders, &group("team"), &archive).unwrap(),
            archived.spent(&group("team")).unwrap()
        );
        assert_eq!(archived.spent(&group("team")).unwrap().to_string(), "32.50");
        let cases = [
            ("team", "32.50", 3),
            ("other", "5.00", 1),
            ("nobody", "0.00", 0),
        ];
        for (payer, spent, charges) in cases {
            assert_eq!(
                ledger.spent(&group(payer)).unwrap().to_string(),
                spent,
                "{payer}"
            );
            assert_eq!(ledger.charges(&group(payer)), charges, "{payer}");
        }
        let account = Payer {
            kind: PayerKind::Account,
            name: "team".into(),
            namespace: None,
        };
        assert_eq!(
            ledger.spent(&account).unwrap(),
            Money::ZERO,
            "kinds are apart"
        );
    }

    #[test]
    fn recording_an_order_again_replaces_its_entry() {
        use TransactionType::*;
        let mut ledger = Ledger::default();
        let charged = order(
            "a",
            Some(group("team")),
            vec![transaction(Purchase, m("20"))],
        );
        ledger.record(&charged);
        ledger.record(&charged);
        assert_eq!(ledger.spent(&group("team")).unwrap(), m("20"));
        let refunded = order(
            "a",
            Some(group("team")),
            vec![transaction(Purchase, m("20")), transaction(Refund, m("20"))],
        );
        ledger.record(&refunded);
        assert_eq!(ledger.spent(&group("team")).unwrap(), Money::ZERO);
        assert_eq!(ledger.charges(&group("team")), 1);
        // A new order of the same name (another uid) is another entry.
        let mut again = charged.clone();
        again.metadata.uid = Some("uid-a-2".into());
        ledger.record(&again);
        assert_eq!(ledger.spent(&group("team")).unwrap(), m("20"));
        assert_eq!(ledger.charges(&group("team")), 2);
    }

    #[test]
    fn a_charge_decided_counts_until_the_order_as_written_or_as_it_was_replaces_it() {
        use TransactionType::*;
        let mut ledger = Ledger::default();
        let uncharged = order("a", Some(group("team")), vec![]);
        let charged = order(
            "a",
            Some(group("team")),
            vec![transaction(Purchase, m("20"))],
        );
        ledger.record(&uncharged);
        assert_eq!(ledger.spent(&group("team")).unwrap(), Money::ZERO);
        // Decided: counted before any write.
        ledger.record_as(&uncharged, charged.status.as_ref());
        assert_eq!(ledger.spent(&group("team")).unwrap(), m("20"));
        assert_eq!(
            ledger.entry(&uncharged).map(|e| e.uid.as_str()),
            Some("uid-a")
        );
        // Written: the order as the server holds it, counted once.
        ledger.record(&charged);
        assert_eq!(ledger.spent(&group("team")).unwrap(), m("20"));
        assert_eq!(ledger.charges(&group("team")), 1);
        // Not written: the order as it was, uncharged.
        ledger.record_as(&uncharged, charged.status.as_ref());
        ledger.record(&uncharged);
        assert_eq!(ledger.spent(&group("team")).unwrap(), Money::ZERO);
        assert_eq!(ledger.charges(&group("team")), 0);
    }

    #[test]
    fn a_deleted_orders_charge_stays_in_its_payers_archive_counted_once() {
        let team = group("team");
        let mut first = order(
            "a-1",
            Some(team.clone()),
            vec![transaction(TransactionType::Purchase, m("12.00"))],
        );
        first.metadata.uid = Some("uid-a".into());
        let mut second = order(
            "b-1",
            Some(team.clone()),
            vec![
                transaction(TransactionType::Purchase, m("5.00")),
                transaction(TransactionType::Refund, m("5.00")),
            ],
        );
        second.metadata.uid = Some("uid-b".into());
        let mut ledger = Ledger::from_orders([&first, &second]);
        assert_eq!(ledger.spent(&team).unwrap(), m("12.00"));

        // Folding the first order in: while it is still listed, it counts once.
        let mut archive = Archive::default();
        let entry = Entry::of_order(&first).unwrap();
        assert!(archive.fold(&entry).unwrap());
        assert!(!archive.fold(&entry).unwrap(), "folded once only");
        ledger.archive(&team, archive.clone());
        assert_eq!(ledger.spent(&team).unwrap(), m("12.00"));
        // Once it is gone, the archive alone carries it.
        ledger.forget(&first);
        assert_eq!(ledger.spent(&team).unwrap(), m("12.00"));
        // A ledger rebuilt from what is left and the annotation agrees.
        let annotations =
            BTreeMap::from([(ARCHIVE_ANNOTATION.to_owned(), archive.to_annotation())]);
        let mut rebuilt = Ledger::from_orders([&second]);
        rebuilt.archive(&team, Archive::from_annotations(&annotations).unwrap());
        assert_eq!(rebuilt.spent(&team).unwrap(), m("12.00"));
        assert!(
            Archive::from_annotations(&BTreeMap::from([(
                ARCHIVE_ANNOTATION.to_owned(),
                "nonsense".to_owned()
            )]))
            .is_err()
        );
    }

    #[test]
    fn a_deleted_groups_spending_moves_to_its_account_once() {
        let team = group("team");
        let account = Payer {
            kind: PayerKind::Account,
            name: "shop".into(),
            namespace: None,
        };
        let paid_by_team = order(
            "a-1",
            Some(team.clone()),
            vec![transaction(TransactionType::Purchase, m("20.00"))],
        );
        let paid_by_account = order(
            "b-1",
            Some(account.clone()),
            vec![transaction(TransactionType::Purchase, m("5.00"))],
        );
        let mut ledger = Ledger::from_orders([&paid_by_team, &paid_by_account]);
        let mut archive = Archive {
            spent: m("3.00"),
            ..Default::default()
        };
        let team_spent = ledger.spent(&team).unwrap();
        assert!(archive.fold_group("uid-team", team_spent).unwrap());
        assert!(
            !archive.fold_group("uid-team", team_spent).unwrap(),
            "a retried fold counts once"
        );
        assert!(archive.holds("uid-team"));
        ledger.archive(&account, archive);
        // The account's own charges, its archive, and the group's 20.00 once; the group's
        // Order, still live, is not the account's to count.
        assert_eq!(ledger.spent(&account).unwrap(), m("28.00"));
        ledger.forget(&paid_by_team);
        assert_eq!(ledger.spent(&account).unwrap(), m("28.00"));
    }

    #[test]
    fn a_charge_must_leave_the_payer_at_zero_or_above() {
        let cases = [
            ("10", "10", true),
            ("10", "9.99", false),
            ("0", "0", true),
            ("0", "-1", false),
            ("5", "-1", false),
        ];
        for (price, available, ok) in cases {
            let result = may_charge(m(price), Money::parse_signed(available).unwrap());
            assert_eq!(result.is_ok(), ok, "{price} against {available}");
        }
        assert_eq!(
            may_charge(m("12"), m("7")),
            Err(Shortfall {
                price: m("12"),
                available: m("7")
            })
        );
    }

    /// A small deterministic generator of numbers below a bound: the sequences differ per
    /// seed, the tests that draw from them do not.
    fn numbers(seed: u64) -> impl FnMut(u64) -> u64 {
        let mut state = seed;
        move |bound: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % bound
        }
    }

    /// No sequence of charges and refunds, decided one at a time against the ledger, takes a
    /// payer below zero, and every charge that fitted was made.
    #[test]
    fn no_sequence_of_charges_drives_a_balance_negative() {
        use TransactionType::*;
        let mut next = numbers(0x2545_f491_4f6c_dd1d);
        for round in 0..200 {
            let allocation = Money::from_minor(i64::try_from(next(10_000)).unwrap());
            let mut ledger = Ledger::default();
            let mut orders: Vec<Order> = Vec::new();
            for i in 0..40 {
                let payer = group("team");
                if next(5) == 0 && !orders.is_empty() {
                    // Refund an earlier charge, once.
                    let index = usize::try_from(next(orders.len() as u64)).unwrap();
                    let order = &mut orders[index];
                    let status = order.status.get_or_insert_default();
                    if refund(status).is_none() {
                        let amount = charge(status).unwrap().amount;
                        status.transactions.push(transaction(Refund, amount));
                        ledger.record(order);
                    }
                    continue;
                }
                let price = Money::from_minor(i64::try_from(next(1_500)).unwrap());
                let spent = ledger.spent(&payer).unwrap();
                let left = available(allocation, spent).unwrap();
                let fits = price <= left;
                match may_charge(price, left) {
                    Ok(()) => {
                        let order = order(
                            &format!("o{round}-{i}"),
                            Some(payer.clone()),
                            vec![transaction(Purchase, price)],
                        );
                        ledger.record(&order);
                        orders.push(order);
                    }
                    Err(shortfall) => {
                        assert!(!fits);
                        assert_eq!(shortfall.available, left);
                    }
                }
                let balance = available(allocation, ledger.spent(&payer).unwrap()).unwrap();
                assert!(!balance.is_negative(), "round {round}: balance {balance}");
            }
            // Rebuilding from the orders gives the same ledger.
            assert_eq!(Ledger::from_orders(&orders), ledger);
        }
    }

    /// The running totals say what a sum over every Order says, whatever the order of
    /// charges, refunds, deletions and archive changes.
    #[test]
    fn running_totals_agree_with_a_sum_over_the_orders() {
        use TransactionType::*;
        let mut next = numbers(0x9e37_79b9_7f4a_7c15);
        let account = Payer {
            kind: PayerKind::Account,
            name: "shop".into(),
            namespace: None,
        };
        let payers = [group("team"), group("ops"), account];
        // Folds an order's charge into its payer's archive, as a deletion does.
        let fold = |ledger: &mut Ledger, archives: &mut [Archive], o: &Order| {
            if let Some(entry) = Entry::of_order(o) {
                let at = payers
                    .iter()
                    .position(|p| payer_key(p) == entry.payer)
                    .unwrap();
                archives[at].fold(&entry).unwrap();
                ledger.archive(&payers[at], archives[at].clone());
            }
        };
        for round in 0..100 {
            let mut ledger = Ledger::default();
            let mut live: Vec<Order> = Vec::new();
            let mut archives: Vec<Archive> = vec![Archive::default(); payers.len()];
            for step in 0..60 {
                let pick = |n: usize, r: u64| usize::try_from(r).unwrap() % n.max(1);
                match next(6) {
                    0 | 1 => {
                        let payer = payers[pick(payers.len(), next(64))].clone();
                        let price = Money::from_minor(i64::try_from(next(5_000)).unwrap());
                        let mut o = order(
                            &format!("o{step}"),
                            Some(payer),
                            vec![transaction(Purchase, price)],
                        );
                        o.metadata.uid = Some(format!("uid-{round}-{step}"));
                        ledger.record(&o);
                        live.push(o);
                    }
                    2 if !live.is_empty() => {
                        // A refund, or a payer changed, recorded again.
                        let at = pick(live.len(), next(64));
                        let o = &mut live[at];
                        let status = o.status.get_or_insert_default();
                        if next(2) == 0 {
                            if let Some(amount) = charge(status).map(|t| t.amount)
                                && refund(status).is_none()
                            {
                                status.transactions.push(transaction(Refund, amount));
                            }
                        } else {
                            status.payer = Some(payers[pick(payers.len(), next(64))].clone());
                        }
                        ledger.record(o);
                    }
                    3 if !live.is_empty() => {
                        // An order deleted: folded into its payer's archive, then forgotten.
                        let at = pick(live.len(), next(64));
                        let o = live.remove(at);
                        fold(&mut ledger, &mut archives, &o);
                        ledger.forget(&o);
                    }
                    4 if !live.is_empty() => {
                        // Folded while the order is still there: it counts once.
                        let at = pick(live.len(), next(64));
                        let o = &live[at];
                        fold(&mut ledger, &mut archives, o);
                    }
                    5 => {
                        // A deleted group's spending folded into an archive.
                        let at = pick(payers.len(), next(64));
                        let spent = Money::from_minor(i64::try_from(next(900)).unwrap());
                        archives[at]
                            .fold_group(&format!("group-{round}-{step}"), spent)
                            .unwrap();
                        ledger.archive(&payers[at], archives[at].clone());
                    }
                    _ => {}
                }
                for (payer, archive) in payers.iter().zip(&archives) {
                    assert_eq!(
                        ledger.spent(payer).unwrap(),
                        spent_by(&live, payer, archive).unwrap(),
                        "round {round}, step {step}, {}",
                        payer_key(payer)
                    );
                    let charged = live
                        .iter()
                        .filter_map(Entry::of_order)
                        .filter(|e| e.payer == payer_key(payer))
                        .count();
                    assert_eq!(ledger.charges(payer), charged);
                }
            }
            let mut rebuilt = Ledger::from_orders(&live);
            for (payer, archive) in payers.iter().zip(&archives) {
                rebuilt.archive(payer, archive.clone());
            }
            assert_eq!(rebuilt, ledger, "round {round}");
        }
    }

    #[test]
    fn a_total_beyond_what_money_holds_is_an_error_not_a_wrong_figure() {
        let team = group("team");
        let big = Money::from_minor(i64::MAX);
        let orders: Vec<Order> = (0..2)
            .map(|i| {
                order(
                    &format!("o{i}"),
                    Some(team.clone()),
                    vec![transaction(TransactionType::Purchase, big)],
                )
            })
            .collect();
        let mut ledger = Ledger::from_orders(&orders);
        assert!(matches!(ledger.spent(&team), Err(MoneyError::Overflow(_))));
        // Back within range once one is refunded.
        let mut refunded = orders[1].clone();
        refunded
            .status
            .get_or_insert_default()
            .transactions
            .push(transaction(TransactionType::Refund, big));
        ledger.record(&refunded);
        assert_eq!(ledger.spent(&team).unwrap(), big);
    }
}
