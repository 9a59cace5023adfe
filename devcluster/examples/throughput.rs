//! Measures devcluster's write and watch throughput with a real kube-rs client:
//! creates per second, and watch events per second delivered to 10 watchers.
//!
//! `cargo run --release -p devcluster --example throughput -- [objects] [watchers]`

use std::time::Instant;

use futures_util::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ObjectMeta, PostParams, WatchEvent, WatchParams};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let objects: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(5_000);
    let watchers: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(10);
    let cluster = devcluster::DevCluster::start(devcluster::Config {
        history_window: objects * 2,
        ..Default::default()
    })
    .await?;
    let kubeconfig = kube::config::Kubeconfig::from_yaml(cluster.kubeconfig())?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
    let client = kube::Client::try_from(config)?;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");

    let version = cluster.resource_version().to_string();
    let mut tasks = Vec::new();
    for _ in 0..watchers {
        let api = api.clone();
        let version = version.clone();
        tasks.push(tokio::spawn(async move {
            let mut seen = 0;
            let stream = api.watch(&WatchParams::default(), &version).await?;
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.try_next().await? {
                if let WatchEvent::Added(_) = event {
                    seen += 1;
                    if seen == objects {
                        return Ok::<_, kube::Error>(Instant::now());
                    }
                }
            }
            Err(kube::Error::LinesCodecMaxLineLengthExceeded)
        }));
    }

    let start = Instant::now();
    stream::iter(0..objects)
        .map(|i| {
            let api = api.clone();
            async move {
                let configmap = ConfigMap {
                    metadata: ObjectMeta {
                        name: Some(format!("object-{i}")),
                        ..Default::default()
                    },
                    data: Some([("index".to_owned(), i.to_string())].into()),
                    ..Default::default()
                };
                api.create(&PostParams::default(), &configmap).await
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await?;
    let created = start.elapsed();
    let mut last = start;
    for task in tasks {
        last = last.max(task.await??);
    }
    let delivered = last.duration_since(start);
    println!(
        "{{\"objects\":{objects},\"watchers\":{watchers},\"creates_per_second\":{:.0},\"watch_events_per_second\":{:.0},\"create_seconds\":{:.3},\"delivery_seconds\":{:.3}}}",
        objects as f64 / created.as_secs_f64(),
        (objects * watchers) as f64 / delivered.as_secs_f64(),
        created.as_secs_f64(),
        delivered.as_secs_f64(),
    );
    cluster.shutdown().await;
    Ok(())
}
