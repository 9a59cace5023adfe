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
            let stream = watch_chunks(receiver)
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

/// The most a watch chunk gathers of the lines already waiting.
const CHUNK_LIMIT: usize = 1 << 20;
/// A busy watch writes at most once per this interval.
const GATHER: std::time::Duration = std::time::Duration::from_millis(1);

/// A watch's lines as HTTP chunks. A line that arrives within [`GATHER`] of the last write
/// waits out the rest of it and goes out with every line queued meanwhile: under load the
/// lines of many changes share one write (and one read on the other end), while a quiet
/// watch sends each line at once.
fn watch_chunks(
    receiver: tokio::sync::mpsc::Receiver<Vec<u8>>,
) -> impl futures_util::Stream<Item = Vec<u8>> {
    futures_util::stream::unfold(
        (receiver, None::<tokio::time::Instant>),
        |(mut receiver, last)| async move {
            let first = receiver.recv().await?;
            if let Some(next) = last.map(|last| last + GATHER)
                && tokio::time::Instant::now() < next
            {
                tokio::time::sleep_until(next).await;
            }
            // The lines are taken first and copied once into a chunk of their size: appending
            // each to the first grew the chunk, and copied it, again and again.
            let mut size = first.len();
            let mut lines = vec![first];
            while size < CHUNK_LIMIT {
                match receiver.try_recv() {
                    Ok(line) => {
                        size += line.len();
                        lines.push(line);
                    }
                    Err(_) => break,
                }
            }
            let chunk = match <[Vec<u8>; 1]>::try_from(lines) {
                Ok([line]) => line,
                Err(lines) => lines.concat(),
            };
            Some((chunk, (receiver, Some(tokio::time::Instant::now()))))
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::{Duration, Instant};

    #[tokio::test(start_paused = true)]
    async fn a_busy_watch_gathers_its_lines_and_a_quiet_one_sends_at_once() {
        let (sender, receiver) = tokio::sync::mpsc::channel(16);
        let mut chunks = Box::pin(watch_chunks(receiver));

        sender.send(b"a\n".to_vec()).await.unwrap();
        let start = Instant::now();
        assert_eq!(chunks.next().await.unwrap(), b"a\n");
        assert_eq!(
            start.elapsed(),
            Duration::ZERO,
            "the first line waits for nothing"
        );

        // A line within GATHER of that write waits out the rest, and the line that arrives
        // meanwhile shares its chunk.
        sender.send(b"b\n".to_vec()).await.unwrap();
        let later = sender.clone();
        // Sent only once the stream waits (this test runs on one thread).
        tokio::spawn(async move { later.send(b"c\n".to_vec()).await.unwrap() });
        let start = Instant::now();
        assert_eq!(chunks.next().await.unwrap(), b"b\nc\n");
        assert!(start.elapsed() <= GATHER);

        // After a quiet spell a line goes out at once again.
        tokio::time::advance(GATHER * 10).await;
        sender.send(b"d\n".to_vec()).await.unwrap();
        let start = Instant::now();
        assert_eq!(chunks.next().await.unwrap(), b"d\n");
        assert_eq!(start.elapsed(), Duration::ZERO);

        // The lines still queued when the watch ends go out, then the body ends.
        sender.send(b"e\n".to_vec()).await.unwrap();
        drop(sender);
        assert_eq!(chunks.next().await.unwrap(), b"e\n");
        assert!(chunks.next().await.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_chunk_stops_gathering_at_its_limit() {
        let (sender, receiver) = tokio::sync::mpsc::channel(16);
        let mut chunks = Box::pin(watch_chunks(receiver));
        let line = vec![b'x'; CHUNK_LIMIT / 2 + 1];
        for _ in 0..3 {
            sender.send(line.clone()).await.unwrap();
        }
        drop(sender);
        assert_eq!(chunks.next().await.unwrap().len(), 2 * line.len());
        assert_eq!(chunks.next().await.unwrap().len(), line.len());
        assert!(chunks.next().await.is_none());
    }
}
