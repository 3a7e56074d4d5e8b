//! The accept loop: serves the router on its own connections, so a handler can close one
//! without answering (faults `reset` and `drop_after_commit`).

use super::*;

/// Lets a handler close its connection without answering.
#[derive(Clone)]
pub(crate) struct DropSwitch(Arc<Mutex<Option<oneshot::Sender<()>>>>);

impl DropSwitch {
    pub(crate) fn pull(&self) {
        if let Some(tx) = self.0.lock().expect("poisoned").take() {
            let _ = tx.send(());
        }
    }
}

pub(crate) async fn accept_loop(listener: TcpListener, router: Router, stop: CancellationToken) {
    loop {
        let (stream, _) = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(_) => continue,
            },
        };
        let router = router.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let (tx, rx) = oneshot::channel();
            let switch = DropSwitch(Arc::new(Mutex::new(Some(tx))));
            let service =
                hyper::service::service_fn(move |mut req: Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(switch.clone());
                    router.clone().oneshot(req.map(axum::body::Body::new))
                });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = conn => {}
                _ = rx => {} // dropped: the socket closes with no answer
                _ = stop.cancelled() => {}
            }
        });
    }
}
