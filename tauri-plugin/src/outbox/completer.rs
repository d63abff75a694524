//! Completes items in batches: each dispatch task hands its success here and
//! awaits the answer; one task sends what has gathered as one
//! `completeBatch` (one sidecar call, one commit) while the previous call is
//! in flight. With a fast server the sidecar's per-item cost dominates the
//! outbox; this turns N `complete` calls into about one per round trip.
//!
//! A sidecar without `completeBatch` (an older one: `MethodNotFound`) gets
//! one `complete` per item from then on.

use std::{sync::Arc, time::Duration};

use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

use crate::{
    error::{Error, Result, RpcError},
    supervisor::Supervisor,
};

/// The protocol's limit on `completeBatch` members.
const MAX_BATCH: usize = 1000;

struct Job {
    id: String,
    lease_id: Option<String>,
    reply: oneshot::Sender<Result<()>>,
}

pub(crate) struct Completer {
    jobs: mpsc::UnboundedSender<Job>,
}

impl Completer {
    /// The completer and the task that serves it (the caller owns the task).
    pub fn start(
        runtime: &tokio::runtime::Handle,
        supervisor: Arc<Supervisor>,
    ) -> (Completer, tokio::task::JoinHandle<()>) {
        let (jobs, rx) = mpsc::unbounded_channel();
        let task = runtime.spawn(serve(supervisor, rx));
        (Completer { jobs }, task)
    }

    /// Completes one item; resolves when the sidecar has recorded it.
    pub async fn complete(&self, id: &str, lease_id: Option<&str>) -> Result<()> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            id: id.to_owned(),
            lease_id: lease_id.map(str::to_owned),
            reply,
        };
        self.jobs.send(job).map_err(|_| Error::ShuttingDown)?;
        answer.await.map_err(|_| Error::ShuttingDown)?
    }
}

async fn serve(supervisor: Arc<Supervisor>, mut rx: mpsc::UnboundedReceiver<Job>) {
    let mut batches = true;
    while let Some(first) = rx.recv().await {
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        if batches && jobs.len() > 1 {
            match complete_batch(&supervisor, &jobs).await {
                Err(Error::Rpc(e)) if e.code == -32601 => batches = false,
                Err(e) => {
                    for job in jobs {
                        let _ = job.reply.send(Err(e.clone()));
                    }
                    continue;
                }
                Ok(answers) => {
                    for (job, answer) in jobs.into_iter().zip(answers) {
                        let _ = job.reply.send(answer);
                    }
                    continue;
                }
            }
        }
        for job in jobs {
            let mut params = json!({ "id": job.id });
            if let Some(lease) = &job.lease_id {
                params["leaseId"] = json!(lease);
            }
            let answer = supervisor.call("complete", &params, Duration::ZERO).await;
            let _ = job.reply.send(answer.map(|_| ()));
        }
    }
}

/// One `completeBatch`; the answer of each member, in order.
async fn complete_batch(supervisor: &Supervisor, jobs: &[Job]) -> Result<Vec<Result<()>>> {
    let items: Vec<Value> = jobs
        .iter()
        .map(|job| match &job.lease_id {
            Some(lease) => json!({"id": job.id, "leaseId": lease}),
            None => json!({ "id": job.id }),
        })
        .collect();
    let answer = supervisor
        .call("completeBatch", &json!({ "items": items }), Duration::ZERO)
        .await?;
    let mut answers: Vec<Result<()>> = jobs.iter().map(|_| Ok(())).collect();
    for refused in answer["errors"].as_array().into_iter().flatten() {
        let Some(index) = refused["index"].as_u64().map(|i| i as usize) else {
            continue;
        };
        let error: RpcError = serde_json::from_value(refused["error"].clone())
            .map_err(|e| Error::Protocol(format!("completeBatch: {e}")))?;
        if let Some(slot) = answers.get_mut(index) {
            *slot = Err(Error::Rpc(error));
        }
    }
    Ok(answers)
}
