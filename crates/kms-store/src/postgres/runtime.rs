//! The store's own tokio runtime, on a thread of its own, so the synchronous `Store` calls
//! never block inside the caller's runtime.

use std::sync::mpsc;

use kms_core::StoreError;

use super::err;

/// Stops the store's runtime thread when dropped.
pub(super) struct RuntimeThread(Option<tokio::sync::oneshot::Sender<()>>);

impl Drop for RuntimeThread {
    fn drop(&mut self) {
        if let Some(stop) = self.0.take() {
            let _ = stop.send(());
        }
    }
}

/// Starts the store's runtime on its own thread.
pub(super) fn start_runtime() -> Result<(tokio::runtime::Handle, RuntimeThread), StoreError> {
    let (tx, rx) = mpsc::sync_channel(1);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::Builder::new()
        .name("kmsd-postgres".into())
        .spawn(move || {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => {
                    let _ = tx.send(Ok(rt.handle().clone()));
                    rt.block_on(async move {
                        let _ = stop_rx.await;
                    });
                    rt.shutdown_background();
                }
                Err(e) => {
                    let _ = tx.send(Err(err(e)));
                }
            }
        })
        .map_err(err)?;
    let handle = rx
        .recv()
        .map_err(|_| StoreError("PostgreSQL runtime did not start".into()))??;
    Ok((handle, RuntimeThread(Some(stop_tx))))
}
