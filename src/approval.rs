//! `certinext approve` and `certinext deny`: record an approver's decision on an Order.
//!
//! The decision goes into `spec.approval` by a JSON patch whose `test` requires the field to
//! be absent, so two approvers racing cannot overwrite each other (and the CRD makes the field
//! final once set).

use std::path::PathBuf;

use anyhow::Context as _;
use kube::api::{Api, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::json;

use crate::api::Order;
use crate::api::order::{Decision, OrderState};

/// The arguments of `certinext approve` and `certinext deny`.
#[derive(clap::Args, Debug, Clone)]
pub struct DecideArgs {
    /// The Order to decide.
    pub order: String,
    /// Namespace of the Order; defaults to the kubeconfig context's namespace, else `default`.
    #[arg(short, long)]
    pub namespace: Option<String>,
    /// The kubeconfig to use; defaults to $KUBECONFIG, else ~/.kube/config.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Why: recorded on the Order with the decision.
    #[arg(long)]
    pub reason: Option<String>,
    /// Who decides, as recorded on the Order; defaults to the kubeconfig context's user.
    #[arg(long = "as", value_name = "USER")]
    pub as_user: Option<String>,
}

/// Records `decision` on the order and returns what to tell the user.
pub async fn decide(args: DecideArgs, decision: Decision) -> anyhow::Result<String> {
    let kubeconfig = match &args.kubeconfig {
        Some(path) => Kubeconfig::read_from(path)
            .with_context(|| format!("loading the kubeconfig {}", path.display()))?,
        None => {
            Kubeconfig::read().context("loading the kubeconfig ($KUBECONFIG, ~/.kube/config)")?
        }
    };
    let context = kubeconfig.current_context.as_ref().and_then(|current| {
        kubeconfig
            .contexts
            .iter()
            .find(|c| &c.name == current)
            .and_then(|c| c.context.clone())
    });
    let decided_by = args
        .as_user
        .clone()
        .or_else(|| context.as_ref().and_then(|c| c.user.clone()))
        .filter(|u| !u.is_empty())
        .context("the kubeconfig's current context names no user; say who decides with --as")?;
    let namespace = args
        .namespace
        .clone()
        .or_else(|| context.as_ref().and_then(|c| c.namespace.clone()))
        .unwrap_or_else(|| "default".to_owned());
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .context("configuring a client from the kubeconfig")?;
    let client = kube::Client::try_from(config).context("creating a client")?;
    let orders: Api<Order> = Api::namespaced(client, &namespace);
    let name = &args.order;
    let verb = match decision {
        Decision::Approved => "approve",
        Decision::Denied => "deny",
    };

    let order = orders
        .get_opt(name)
        .await
        .with_context(|| format!("reading Order {name:?} in namespace {namespace:?}"))?
        .with_context(|| format!("Order {name:?} not found in namespace {namespace:?}"))?;
    refuse_if_decided(&order)?;
    let state = order.status.as_ref().and_then(|s| s.state);
    if let Some(state) = state.filter(|s| *s != OrderState::PendingApproval) {
        anyhow::bail!(
            "Order {name:?} in namespace {namespace:?} is not pending approval: it is {state}; there is nothing to {verb}"
        );
    }

    let approval = json!({
        "decision": decision,
        "decidedBy": decided_by,
        "decidedAt": jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "reason": args.reason,
    });
    let patch: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/spec/approval", "value": null},
        {"op": "add", "path": "/spec/approval", "value": approval},
    ]))
    .context("building the patch")?;
    let patched = orders
        .patch(name, &PatchParams::default(), &Patch::<()>::Json(patch))
        .await;
    match patched {
        Ok(_) => Ok(format!(
            "Order {name:?} in namespace {namespace:?} {} by {decided_by:?}",
            match decision {
                Decision::Approved => "approved",
                Decision::Denied => "denied",
            }
        )),
        Err(error) => {
            // Someone decided in the meantime: say who.
            if let Ok(Some(now)) = orders.get_opt(name).await {
                refuse_if_decided(&now)?;
            }
            Err(error).with_context(|| {
                format!("recording the decision on Order {name:?} in namespace {namespace:?}")
            })
        }
    }
}

fn refuse_if_decided(order: &Order) -> anyhow::Result<()> {
    if let Some(approval) = &order.spec.approval {
        let what = match approval.decision {
            Decision::Approved => "approved",
            Decision::Denied => "denied",
        };
        anyhow::bail!(
            "Order {:?} was already {what} by {:?} at {}; a decision is final",
            order.metadata.name.as_deref().unwrap_or_default(),
            approval.decided_by,
            approval.decided_at.0
        );
    }
    Ok(())
}
