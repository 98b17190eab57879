//! The open connections of one listener: how many there are (in all and per source address),
//! which of them are idle and since when, and how to ask one to close. When a new connection
//! would exceed a limit, the connection idle the longest (in the same scope) is closed instead;
//! when none is idle, the new one is refused.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// What one connection is doing, shared between its task and the table.
#[derive(Debug)]
pub(crate) struct Activity {
    /// Requests being handled now.
    in_flight: AtomicUsize,
    /// When the last request finished (or the connection opened), in ms since `epoch`.
    idle_since_ms: AtomicU64,
    epoch: Instant,
    /// Fired to ask the connection to close (it is being shed).
    close: Notify,
}

impl Activity {
    fn new(epoch: Instant) -> Activity {
        Activity {
            in_flight: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(millis_since(epoch)),
            epoch,
            close: Notify::new(),
        }
    }

    /// Marks a request as started; it counts as in progress until the guard is dropped.
    pub(crate) fn request_started(self: &Arc<Self>) -> RequestGuard {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        RequestGuard(self.clone())
    }

    /// Whether a request is in progress.
    pub(crate) fn busy(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) > 0
    }

    /// When the connection will have been idle for `idle`; `None` while a request is in progress.
    pub(crate) fn idle_deadline(&self, idle: Duration) -> Option<Instant> {
        if self.busy() {
            return None;
        }
        let since = Duration::from_millis(self.idle_since_ms.load(Ordering::Acquire));
        Some(self.epoch + since + idle)
    }

    /// Resolves once the table asks this connection to close.
    pub(crate) async fn close_requested(&self) {
        self.close.notified().await;
    }

    fn idle_since_ms(&self) -> Option<u64> {
        (!self.busy()).then(|| self.idle_since_ms.load(Ordering::Acquire))
    }
}

fn millis_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// A request in progress on a connection.
pub(crate) struct RequestGuard(Arc<Activity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        // The idle time is stored before the count drops so that whoever sees the connection
        // idle also sees when it became so.
        self.0
            .idle_since_ms
            .store(millis_since(self.0.epoch), Ordering::Release);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The address connections are counted by: IPv4 addresses (also IPv4-mapped IPv6 ones) as
/// they are, IPv6 addresses by their /64 (one host or site usually holds a whole /64).
pub(crate) fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

#[derive(Debug)]
struct Entry {
    source: IpAddr,
    activity: Arc<Activity>,
    /// Asked to close: no longer counted against the limits.
    leaving: bool,
}

#[derive(Debug, Default)]
struct Inner {
    next_id: u64,
    entries: HashMap<u64, Entry>,
    /// Entries not leaving.
    open: usize,
    per_source: HashMap<IpAddr, usize>,
}

impl Inner {
    /// Asks the connection idle the longest (among those `in_scope`) to close; false if none is idle.
    fn shed_longest_idle(&mut self, in_scope: impl Fn(&Entry) -> bool) -> bool {
        let victim = self
            .entries
            .iter()
            .filter(|(_, e)| !e.leaving && in_scope(e))
            .filter_map(|(id, e)| e.activity.idle_since_ms().map(|t| (t, *id)))
            .min();
        let Some((_, id)) = victim else {
            return false;
        };
        if let Some(e) = self.entries.get_mut(&id) {
            e.leaving = true;
            e.activity.close.notify_one();
            let source = e.source;
            self.uncount(source);
        }
        true
    }

    fn uncount(&mut self, source: IpAddr) {
        self.open = self.open.saturating_sub(1);
        if let Some(n) = self.per_source.get_mut(&source) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_source.remove(&source);
            }
        }
    }
}

/// The open connections of one listener.
#[derive(Debug)]
pub(crate) struct ConnTable {
    max_connections: usize,
    max_per_source: usize,
    epoch: Instant,
    inner: Mutex<Inner>,
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// At `max_connections` and none idle.
    Full,
    /// At the per-address limit and none of that address's connections idle.
    SourceFull,
}

impl ConnTable {
    /// A table enforcing `max_connections` (at least 1) and `max_per_source` (0: none).
    pub(crate) fn new(max_connections: usize, max_per_source: usize) -> Arc<ConnTable> {
        Arc::new(ConnTable {
            max_connections: max_connections.max(1),
            max_per_source,
            epoch: Instant::now(),
            inner: Mutex::new(Inner::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admits a connection from `ip`, shedding the longest-idle connection of the same address
    /// or, failing that, of the whole listener if a limit would be exceeded.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Refusal> {
        let source = source_key(ip);
        let mut inner = self.lock();
        let from_source = inner.per_source.get(&source).copied().unwrap_or(0);
        if self.max_per_source > 0
            && from_source >= self.max_per_source
            && !inner.shed_longest_idle(|e| e.source == source)
        {
            return Err(Refusal::SourceFull);
        }
        if inner.open >= self.max_connections && !inner.shed_longest_idle(|_| true) {
            return Err(Refusal::Full);
        }
        let id = inner.next_id;
        inner.next_id += 1;
        let activity = Arc::new(Activity::new(self.epoch));
        inner.entries.insert(
            id,
            Entry {
                source,
                activity: activity.clone(),
                leaving: false,
            },
        );
        inner.open += 1;
        *inner.per_source.entry(source).or_insert(0) += 1;
        Ok(Slot {
            table: self.clone(),
            id,
            activity,
        })
    }

    /// Asks the longest-idle connection to close (to free a file descriptor); false if none is idle.
    pub(crate) fn shed_one(&self) -> bool {
        self.lock().shed_longest_idle(|_| true)
    }

    /// Connections counted against the limits now.
    #[cfg(test)]
    pub(crate) fn open(&self) -> usize {
        self.lock().open
    }

    fn remove(&self, id: u64) {
        let mut inner = self.lock();
        if let Some(e) = inner.entries.remove(&id) {
            if !e.leaving {
                inner.uncount(e.source);
            }
        }
    }
}

/// A connection's place in the table; dropping it frees the place.
#[derive(Debug)]
pub(crate) struct Slot {
    table: Arc<ConnTable>,
    id: u64,
    /// What the connection is doing.
    pub(crate) activity: Arc<Activity>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.table.remove(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn at_the_limit_the_longest_idle_connection_is_shed() {
        let t = ConnTable::new(2, 0);
        let a = t.admit(ip("10.0.0.1")).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        let b = t.admit(ip("10.0.0.2")).unwrap();
        let c = t.admit(ip("10.0.0.3")).unwrap();
        // `a` was idle longest: it is asked to close and no longer counts.
        assert_eq!(t.open(), 2);
        let asked = |s: &Slot| futures_ready(s.activity.close_requested());
        assert!(asked(&a));
        assert!(!asked(&b) && !asked(&c));
        drop(a);
        assert_eq!(t.open(), 2);
        drop((b, c));
        assert_eq!(t.open(), 0);
    }

    #[test]
    fn busy_connections_are_not_shed_and_a_full_table_refuses() {
        let t = ConnTable::new(1, 0);
        let a = t.admit(ip("10.0.0.1")).unwrap();
        let guard = a.activity.request_started();
        assert_eq!(t.admit(ip("10.0.0.2")).unwrap_err(), Refusal::Full);
        drop(guard);
        let _b = t.admit(ip("10.0.0.2")).unwrap();
        assert!(futures_ready(a.activity.close_requested()));
    }

    #[test]
    fn per_address_limit_sheds_that_address_first() {
        let t = ConnTable::new(10, 2);
        let other = t.admit(ip("10.0.0.9")).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        let a1 = t.admit(ip("10.0.0.1")).unwrap();
        let a2 = t.admit(ip("10.0.0.1")).unwrap();
        let _g = a2.activity.request_started();
        let _a3 = t.admit(ip("10.0.0.1")).unwrap();
        assert!(futures_ready(a1.activity.close_requested()));
        assert!(!futures_ready(other.activity.close_requested()));
        // Both of 10.0.0.1's counted connections busy or new: a1 left, a2 busy, a3 idle.
        let _g3 = _a3.activity.request_started();
        assert_eq!(t.admit(ip("10.0.0.1")).unwrap_err(), Refusal::SourceFull);
    }

    #[test]
    fn ipv6_sources_are_counted_per_64() {
        assert_eq!(
            source_key(ip("2001:db8:1:2:aaaa::1")),
            source_key(ip("2001:db8:1:2:bbbb::7"))
        );
        assert_ne!(
            source_key(ip("2001:db8:1:2::1")),
            source_key(ip("2001:db8:1:3::1"))
        );
        assert_eq!(source_key(ip("::ffff:10.1.2.3")), ip("10.1.2.3"));
    }

    #[test]
    fn idle_deadline_counts_from_the_end_of_the_last_request() {
        let t = ConnTable::new(1, 0);
        let a = t.admit(ip("10.0.0.1")).unwrap();
        let g = a.activity.request_started();
        assert_eq!(a.activity.idle_deadline(Duration::from_secs(1)), None);
        std::thread::sleep(Duration::from_millis(20));
        drop(g);
        let d = a.activity.idle_deadline(Duration::from_secs(1)).unwrap();
        assert!(d > Instant::now() + Duration::from_millis(900));
    }

    /// Whether a future is ready on its first poll.
    fn futures_ready<F: std::future::Future>(f: F) -> bool {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        let mut f = std::pin::pin!(f);
        f.as_mut().poll(&mut cx).is_ready()
    }
}
