//! Reads of the change log head, coalesced across concurrent callers and awaited without
//! blocking a thread.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool_postgres::Pool;
use kms_core::StoreError;
use tokio::runtime::Handle;
use tokio::sync::watch;

use super::{err, latest_change};

/// Coalesces reads of the change log head: each caller gets the answer of a query that started
/// after it asked (so it sees every write acknowledged before it asked), and callers arriving
/// while a query runs share the next one. The query runs as a task on the store's runtime, so a
/// caller that goes away (a client hanging up) never leaves the others waiting for it.
#[derive(Clone)]
pub(super) struct HeadReads {
    inner: Arc<Shared>,
}

struct Shared {
    state: Mutex<HeadState>,
    /// The generation of the newest finished query, announced to waiters.
    finished: watch::Sender<u64>,
}

#[derive(Default)]
struct HeadState {
    /// Generation of the newest query started.
    started: u64,
    /// Generation of the newest query finished, and its answer.
    finished: u64,
    answer: Option<Result<u64, String>>,
    running: bool,
}

impl Default for HeadReads {
    fn default() -> Self {
        HeadReads {
            inner: Arc::new(Shared {
                state: Mutex::new(HeadState::default()),
                finished: watch::Sender::new(0),
            }),
        }
    }
}

fn poisoned() -> StoreError {
    StoreError("change log head lock poisoned".into())
}

impl HeadReads {
    /// The change log head, from a query that starts after this call: the query runs on
    /// `runtime` over `pool`, and is given up after `timeout`. The future only waits (a watch
    /// channel), so it may be awaited on any runtime.
    pub(super) fn read(
        &self,
        runtime: &Handle,
        pool: &Pool,
        timeout: Duration,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send + 'static {
        let shared = Arc::clone(&self.inner);
        let runtime = runtime.clone();
        let pool = pool.clone();
        // Subscribed before the state is looked at, so a query finishing in between is seen.
        let mut finished = shared.finished.subscribe();
        let need = shared
            .state
            .lock()
            .map(|st| st.started + 1)
            .map_err(|_| poisoned());
        async move {
            let need = need?;
            loop {
                {
                    let mut st = shared.state.lock().map_err(|_| poisoned())?;
                    if st.finished >= need {
                        return match &st.answer {
                            Some(Ok(n)) => Ok(*n),
                            Some(Err(e)) => Err(StoreError(e.clone())),
                            None => Err(poisoned()),
                        };
                    }
                    if !st.running {
                        st.running = true;
                        st.started += 1;
                        let generation = st.started;
                        runtime.spawn(run_query(
                            Arc::clone(&shared),
                            pool.clone(),
                            timeout,
                            generation,
                        ));
                    }
                }
                match tokio::time::timeout(timeout + Duration::from_secs(1), finished.changed())
                    .await
                {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => return Err(StoreError("PostgreSQL store is shut down".into())),
                    Err(_) => return Err(StoreError("PostgreSQL did not answer in time".into())),
                }
            }
        }
    }
}

/// One head query; publishes its answer as generation `generation`.
async fn run_query(shared: Arc<Shared>, pool: Pool, timeout: Duration, generation: u64) {
    let answer = match tokio::time::timeout(timeout, async {
        let c = pool.get().await.map_err(err)?;
        latest_change(&c).await
    })
    .await
    {
        Ok(r) => r.map_err(|e| e.0),
        Err(_) => Err("PostgreSQL did not answer in time".to_owned()),
    };
    if let Ok(mut st) = shared.state.lock() {
        st.running = false;
        st.finished = generation;
        st.answer = Some(answer);
    }
    shared.finished.send_replace(generation);
}
