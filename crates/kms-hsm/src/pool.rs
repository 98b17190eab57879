//! A small pool of R/W sessions on one token. PKCS#11 login state is per application and
//! token, so every session opened after `C_Login` is already logged in.

use crate::error::{map_ck, HsmError};
use cryptoki::context::Pkcs11;
use cryptoki::session::Session;
use cryptoki::slot::Slot;
use std::ops::Deref;
use std::sync::{Condvar, Mutex};

pub(crate) struct SessionPool {
    ctx: Pkcs11,
    slot: Slot,
    max: usize,
    state: Mutex<PoolState>,
    freed: Condvar,
}

struct PoolState {
    idle: Vec<Session>,
    /// Sessions currently open (idle + checked out).
    open: usize,
}

impl SessionPool {
    /// A pool holding `first` (the session that logged in) and growing up to `max` sessions.
    pub(crate) fn new(ctx: Pkcs11, slot: Slot, first: Session, max: usize) -> SessionPool {
        SessionPool {
            ctx,
            slot,
            max: max.max(1),
            state: Mutex::new(PoolState {
                idle: vec![first],
                open: 1,
            }),
            freed: Condvar::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Checks a session out, opening a new one if all are busy and the pool is not full,
    /// otherwise waiting for one to be returned.
    pub(crate) fn get(&self) -> Result<PooledSession<'_>, HsmError> {
        let mut st = self.lock();
        loop {
            if let Some(s) = st.idle.pop() {
                return Ok(PooledSession {
                    pool: self,
                    session: Some(s),
                    discard: false,
                });
            }
            if st.open < self.max {
                st.open += 1;
                drop(st);
                return match self.ctx.open_rw_session(self.slot) {
                    Ok(s) => Ok(PooledSession {
                        pool: self,
                        session: Some(s),
                        discard: false,
                    }),
                    Err(e) => {
                        self.lock().open -= 1;
                        self.freed.notify_one();
                        Err(map_ck(e))
                    }
                };
            }
            st = self.freed.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Closes every idle session (checked-out ones close when returned after this).
    pub(crate) fn close_all(&self) {
        let idle: Vec<Session> = {
            let mut st = self.lock();
            let v: Vec<Session> = st.idle.drain(..).collect();
            st.open -= v.len();
            v
        };
        drop(idle);
    }

    /// Number of sessions currently open.
    #[cfg(test)]
    pub(crate) fn open_sessions(&self) -> usize {
        self.lock().open
    }
}

/// A checked-out session, returned to the pool on drop (or closed if marked broken).
pub(crate) struct PooledSession<'a> {
    pool: &'a SessionPool,
    session: Option<Session>,
    discard: bool,
}

impl PooledSession<'_> {
    /// Marks the session as unusable: it is closed instead of being returned to the pool.
    pub(crate) fn discard(&mut self) {
        self.discard = true;
    }

    /// Inspects an operation's result and discards the session on device/session errors.
    pub(crate) fn check<T>(&mut self, r: Result<T, HsmError>) -> Result<T, HsmError> {
        if let Err(e) = &r {
            if e.is_device() {
                self.discard();
            }
        }
        r
    }
}

impl Deref for PooledSession<'_> {
    type Target = Session;
    fn deref(&self) -> &Session {
        // Invariant: `session` is Some until drop.
        match &self.session {
            Some(s) => s,
            None => unreachable!("pooled session used after drop"),
        }
    }
}

impl Drop for PooledSession<'_> {
    fn drop(&mut self) {
        let Some(s) = self.session.take() else {
            return;
        };
        if self.discard {
            drop(s);
            self.pool.lock().open -= 1;
        } else {
            self.pool.lock().idle.push(s);
        }
        self.pool.freed.notify_one();
    }
}
