//! HTTPS: TLS, HTTP/1.1 and HTTP/2, request bodies in, JSON and watch streams out.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use futures_util::StreamExt;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::api::{Cluster, Request, Response};
use crate::status::ApiError;

/// The largest request body accepted, as the API server's limit.
const MAX_BODY: usize = 3 * 1024 * 1024;

type Body = BoxBody<Bytes, Infallible>;

/// Accepts connections until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    cluster: Arc<Cluster>,
    mut shutdown: watch::Receiver<bool>,
) {
    // Requests handled at once on the blocking pool (when handling may wait): one per core.
    // More at once only queue for the cores, and a crowd of threads parked on the store's
    // lock costs more in wake-ups than the work itself.
    let cores = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
    let handlers = Arc::new(tokio::sync::Semaphore::new(cores));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => return,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of file descriptors and the like: retrying at once would spin.
                tracing::warn!(%error, "cannot accept a connection");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let acceptor = acceptor.clone();
        let cluster = cluster.clone();
        let handlers = handlers.clone();
        let mut connection_shutdown = shutdown.clone();
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(stream).await else {
                return;
            };
            let service = service_fn(move |request| {
                let (cluster, handlers) = (cluster.clone(), handlers.clone());
                async move { Ok::<_, Infallible>(respond(&cluster, &handlers, request).await) }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                _ = connection_shutdown.changed() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        });
    }
}

async fn respond(
    cluster: &Arc<Cluster>,
    handlers: &tokio::sync::Semaphore,
    request: hyper::Request<Incoming>,
) -> hyper::Response<Body> {
    let (parts, body) = request.into_parts();
    let body = match http_body_util::Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return into_http(
                ApiError::new(
                    413,
                    "RequestEntityTooLarge",
                    "the request body is too large",
                )
                .into(),
            );
        }
    };
    let header = |name: hyper::header::HeaderName| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let query = parts
        .uri
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect::<HashMap<_, _>>()
        })
        .unwrap_or_default();
    let path = percent_encoding::percent_decode_str(parts.uri.path())
        .decode_utf8_lossy()
        .into_owned();
    let request = Request {
        method: parts.method.as_str().to_owned(),
        path,
        query,
        content_type: header(hyper::header::CONTENT_TYPE).unwrap_or_default(),
        accept: header(hyper::header::ACCEPT).unwrap_or_default(),
        user_agent: header(hyper::header::USER_AGENT).unwrap_or_default(),
        authorization: header(hyper::header::AUTHORIZATION),
        body: body.to_vec(),
    };
    if !cluster.may_wait() {
        // Handed to another thread, a request costs more in wake-ups and context switches
        // than its handling takes; the runtime's threads, one per core, bound how many run.
        return into_http(cluster.handle(request));
    }
    // Injected latency sleeps, and a data directory writes to disk: off the I/O threads.
    let Ok(_handling) = handlers.acquire().await else {
        return into_http(ApiError::internal("the server is shutting down").into());
    };
    let cluster = cluster.clone();
    match tokio::task::spawn_blocking(move || cluster.handle(request)).await {
        Ok(response) => into_http(response),
        Err(_) => into_http(ApiError::internal("the request handler failed").into()),
    }
}

fn full(status: u16, content_type: &str, body: Bytes) -> hyper::Response<Body> {
    hyper::Response::builder()
        .status(status)
        .header(hyper::header::CONTENT_TYPE, content_type)
        .header("Cache-Control", "no-cache, private")
        .body(Full::new(body).boxed())
        .unwrap_or_else(|_| hyper::Response::new(Full::new(Bytes::new()).boxed()))
}

/// Turns a response into HTTP; a watch becomes a streamed body.
fn into_http(response: Response) -> hyper::Response<Body> {
    match response {
        Response::Watch(receiver) => {
            let stream = tokio_stream_from(receiver)
                .map(|chunk| Ok::<_, Infallible>(Frame::data(Bytes::from(chunk))));
            hyper::Response::builder()
                .status(200)
                .header(hyper::header::CONTENT_TYPE, "application/json")
                .header("Cache-Control", "no-cache, private")
                .body(BodyExt::boxed(StreamBody::new(stream)))
                .unwrap_or_else(|_| hyper::Response::new(Full::new(Bytes::new()).boxed()))
        }
        Response::Json(code, value) => full(
            code,
            "application/json",
            Bytes::from(serde_json::to_vec(&value).unwrap_or_default()),
        ),
        Response::Body(code, body) => full(code, "application/json", Bytes::from(body)),
        Response::Text(code, text) => full(
            code,
            "text/plain; charset=utf-8",
            Bytes::from_static(text.as_bytes()),
        ),
    }
}

fn tokio_stream_from(
    mut receiver: tokio::sync::mpsc::Receiver<Vec<u8>>,
) -> impl futures_util::Stream<Item = Vec<u8>> {
    futures_util::stream::poll_fn(move |cx| receiver.poll_recv(cx))
}
