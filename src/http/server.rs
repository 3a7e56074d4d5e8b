//! Serving the router over HTTP/1.1 with limits on what a client can hold: how many
//! connections, how long the request head may take, how long an idle keep-alive
//! connection stays open, how large the read buffer grows.
//!
//! hyper enforces the head timeout (`header_read_timeout`, which hyper also runs while a
//! kept-alive connection waits for its next request, so it is the idle timeout too) and the
//! buffer size (`max_buf_size`); the body-read deadline is in
//! `read_body` (`http/extract.rs`), where the body is read. Production deployments
//! still belong behind a reverse proxy with per-client limits: these bounds keep one process
//! alive, they do not rate-limit a client.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// Limits on inbound HTTP connections (settings `HANDOFF_HTTP_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Open connections at most; past it the listener stops accepting until one closes
    /// (new clients wait in the kernel's backlog). Default 1024.
    pub max_connections: usize,
    /// Time a client has to send a request head, and the longest a kept-alive connection
    /// may sit idle before its next request. Default 10 s.
    pub header_read_timeout: Duration,
    /// Time a client has to send a whole request body once its head arrived; past it the
    /// answer is `408 request_timeout` and the connection is closed. Default 15 s.
    pub body_read_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(15),
        }
    }
}

/// Largest read buffer of one connection, in bytes: the request head must fit in it (a
/// larger head is answered `431`), and body bytes are buffered up to it. hyper's default is
/// about 400 KiB.
pub const MAX_BUF_SIZE: usize = 256 * 1024;

/// Serves `router` on `listener` until `shutdown` is cancelled, then lets the open
/// connections finish their requests for at most `grace` and closes the rest.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    shutdown: CancellationToken,
    grace: Duration,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(MAX_BUF_SIZE)
        .keep_alive(true);
    loop {
        let slot = tokio::select! {
            _ = shutdown.cancelled() => break,
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
        };
        let stream = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning on the error.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let router = router.clone();
        let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            router.clone().oneshot(req.map(axum::body::Body::new))
        });
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            // A client that hangs up or times out ends its connection; nothing to report.
            let _ = connection.await;
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the shutdown grace period; closing them");
    }
}
