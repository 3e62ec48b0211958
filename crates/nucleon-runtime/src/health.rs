//! Health as seen from a worker: its own adapters' and the process's, for a readiness
//! endpoint.

use std::cell::RefCell;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::adapter::{HEALTH_TIMEOUT, Health};
use crate::runtime::AdapterHealth;
use crate::worker::WorkerCommand;

/// Where the current loop's health questions go.
pub(crate) struct HealthRoutes {
    pub(crate) worker: Option<(usize, mpsc::UnboundedSender<WorkerCommand>)>,
    pub(crate) process: Option<mpsc::UnboundedSender<WorkerCommand>>,
}

thread_local! {
    static ROUTES: RefCell<Option<HealthRoutes>> = const { RefCell::new(None) };
}

pub(crate) fn set_routes(routes: Option<HealthRoutes>) {
    ROUTES.with(|r| *r.borrow_mut() = routes);
}

/// The health of every adapter the caller's worker relies on: the per-process adapters
/// (`worker: None`) and this worker's own (`worker: Some(id)`), asked at once, each
/// within [`HEALTH_TIMEOUT`]. A loop that does not answer (draining, stuck) is reported
/// unhealthy by name. Empty off the runtime's threads.
///
/// A readiness endpoint answers from it (the HTTP server's `/readyz` does).
pub async fn report() -> Vec<AdapterHealth> {
    let (worker, process) = ROUTES.with(|r| {
        r.borrow().as_ref().map_or((None, None), |routes| {
            (routes.worker.clone(), routes.process.clone())
        })
    });
    let ask = |sender: Option<mpsc::UnboundedSender<WorkerCommand>>, who: Option<usize>| async move {
        let Some(sender) = sender else {
            return Vec::new();
        };
        let (tx, rx) = oneshot::channel();
        let silent = || AdapterHealth {
            adapter: who.map_or_else(|| "process loop".to_owned(), |_| "worker".to_owned()),
            worker: who,
            health: Health::Unhealthy(
                "did not answer its health check (draining or blocked)".into(),
            ),
        };
        if sender.send(WorkerCommand::Health(tx)).is_err() {
            return vec![silent()];
        }
        match tokio::time::timeout(HEALTH_TIMEOUT + Duration::from_millis(250), rx).await {
            Ok(Ok(entries)) => entries
                .into_iter()
                .map(|(adapter, health)| AdapterHealth {
                    adapter,
                    worker: who,
                    health,
                })
                .collect(),
            _ => vec![silent()],
        }
    };
    let (id, worker) = worker.map_or((None, None), |(id, tx)| (Some(id), Some(tx)));
    let (process, own) = futures_util::future::join(ask(process, None), ask(worker, id)).await;
    process.into_iter().chain(own).collect()
}
