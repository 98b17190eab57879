//! Reads of the change log head, coalesced across concurrent callers.

use kms_core::StoreError;

use super::{err, latest_change, PostgresStore};

/// Coalesces reads of the change log head: each caller gets the answer of a query that started
/// after it asked (so it sees every write acknowledged before it asked), and callers arriving
/// while a query runs share the next one.
#[derive(Default)]
pub(super) struct HeadReads {
    state: std::sync::Mutex<HeadState>,
    done: std::sync::Condvar,
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

impl PostgresStore {
    /// The change log head, from a query that started after this call began.
    pub(super) fn read_head(&self) -> Result<u64, StoreError> {
        let poisoned = || StoreError("change log head lock poisoned".into());
        let mut st = self.head.state.lock().map_err(|_| poisoned())?;
        let need = st.started + 1;
        loop {
            if st.finished >= need {
                return match &st.answer {
                    Some(Ok(n)) => Ok(*n),
                    Some(Err(e)) => Err(StoreError(e.clone())),
                    None => Err(poisoned()),
                };
            }
            if st.running {
                st = self.head.done.wait(st).map_err(|_| poisoned())?;
                continue;
            }
            st.running = true;
            st.started += 1;
            let generation = st.started;
            drop(st);
            let answer = self
                .run(|pool| async move {
                    let c = pool.get().await.map_err(err)?;
                    latest_change(&c).await
                })
                .map_err(|e| e.0);
            st = self.head.state.lock().map_err(|_| poisoned())?;
            st.running = false;
            st.finished = generation;
            st.answer = Some(answer);
            self.head.done.notify_all();
        }
    }
}
