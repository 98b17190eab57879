//! Reading a request body that is not yet authenticated (a SigV4 signature covers the body, so
//! it has to be read before it can be checked) without letting anonymous clients pin memory:
//! the whole body must arrive within a time limit, nothing is allocated from `Content-Length`
//! before the bytes are there, and the bytes held beyond a small per-request allowance are
//! charged against one budget shared by all requests, so unauthenticated bodies together never
//! hold more than the budget.

use std::future::Future as _;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Bytes of each body not charged to the budget (most API requests are smaller than this).
pub const UNCHARGED_BODY_BYTES: usize = 16 * 1024;

/// Default size of the [`BodyBudget`]: 64 MiB.
pub const DEFAULT_BODY_BUDGET_BYTES: usize = 64 * 1024 * 1024;

/// Default time a client has to send a whole request body.
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The bytes all not-yet-authenticated request bodies may hold at once.
#[derive(Debug, Clone)]
pub struct BodyBudget {
    bytes: Arc<Semaphore>,
    total: usize,
}

impl BodyBudget {
    /// A budget of `bytes` (at least one byte).
    pub fn new(bytes: usize) -> BodyBudget {
        let total = bytes.clamp(1, Semaphore::MAX_PERMITS);
        BodyBudget {
            bytes: Arc::new(Semaphore::new(total)),
            total,
        }
    }

    /// Bytes not charged to any body now.
    pub fn available(&self) -> usize {
        self.bytes.available_permits()
    }
}

/// Bytes of the budget a body holds; given back when dropped.
#[derive(Debug, Default)]
pub struct BudgetCharge(Option<OwnedSemaphorePermit>);

impl BudgetCharge {
    fn add(&mut self, more: OwnedSemaphorePermit) {
        match &mut self.0 {
            Some(held) => held.merge(more),
            None => self.0 = Some(more),
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.0.as_ref().map_or(0, OwnedSemaphorePermit::num_permits)
    }
}

/// Why a body could not be read.
#[derive(Debug)]
pub enum BodyError {
    /// Longer than the limit (by `Content-Length`, or as it arrived).
    TooLarge,
    /// Not complete within the time limit (this includes waiting for room in the budget).
    TimedOut,
    /// The connection failed or the framing was invalid.
    Read(axum::Error),
}

/// Reads `body`, at most `max` bytes, within `timeout`. `max` should not exceed the budget
/// plus [`UNCHARGED_BODY_BYTES`]: a body that could never fit is refused as too large. Bytes beyond the first
/// [`UNCHARGED_BODY_BYTES`] are charged to `budget` before they are stored (waiting for room if
/// needed); the charge is returned with the bytes and lasts until it is dropped, which callers
/// do once the request is authenticated (or rejected).
pub async fn read_body(
    body: Body,
    max: usize,
    timeout: Duration,
    budget: &BodyBudget,
) -> Result<(Bytes, BudgetCharge), BodyError> {
    if usize::try_from(body.size_hint().lower()).unwrap_or(usize::MAX) > max {
        return Err(BodyError::TooLarge);
    }
    let mut reading = std::pin::pin!(collect(body, max, budget));
    // Most bodies are already complete when the handler starts: no timer for them.
    let first = std::future::poll_fn(|cx| Poll::Ready(reading.as_mut().poll(cx))).await;
    if let Poll::Ready(r) = first {
        return r;
    }
    match tokio::time::timeout(timeout, reading).await {
        Ok(r) => r,
        Err(_) => Err(BodyError::TimedOut),
    }
}

async fn collect(
    mut body: Body,
    max: usize,
    budget: &BodyBudget,
) -> Result<(Bytes, BudgetCharge), BodyError> {
    let mut charge = BudgetCharge::default();
    let mut first: Option<Bytes> = None;
    let mut buf: Vec<u8> = Vec::new();
    while let Some(frame) =
        std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await
    {
        let Ok(data) = frame.map_err(BodyError::Read)?.into_data() else {
            continue; // trailers
        };
        if data.is_empty() {
            continue;
        }
        let held = first.as_ref().map_or(buf.len(), Bytes::len);
        let len = held + data.len();
        if len > max {
            return Err(BodyError::TooLarge);
        }
        // A body that arrives in one piece is kept as it is, without a copy.
        if first.is_none() && buf.is_empty() {
            if data.len() > UNCHARGED_BODY_BYTES {
                charge_for(data.len(), &mut charge, budget).await?;
            }
            first = Some(data);
            continue;
        }
        if let Some(f) = first.take() {
            buf = f.to_vec();
        }
        if len > buf.capacity() {
            // Grow geometrically (bounded by `max`), charging the new capacity before it is allocated.
            let capacity = len.max(buf.capacity().saturating_mul(2)).min(max);
            charge_for(capacity, &mut charge, budget).await?;
            buf.reserve_exact(capacity - buf.len());
        }
        buf.extend_from_slice(&data);
    }
    let bytes = match first {
        Some(f) => f,
        None => Bytes::from(buf),
    };
    Ok((bytes, charge))
}

/// Makes `charge` cover a buffer of `capacity` bytes beyond the uncharged allowance.
async fn charge_for(
    capacity: usize,
    charge: &mut BudgetCharge,
    budget: &BodyBudget,
) -> Result<(), BodyError> {
    let needed = capacity.saturating_sub(UNCHARGED_BODY_BYTES);
    if needed > budget.total {
        // It could never fit, even with every other body gone.
        return Err(BodyError::TooLarge);
    }
    let more = needed.saturating_sub(charge.bytes());
    if more == 0 {
        return Ok(());
    }
    let more = u32::try_from(more).map_err(|_| BodyError::TooLarge)?;
    let permit = budget
        .bytes
        .clone()
        .acquire_many_owned(more)
        .await
        .map_err(|_| BodyError::TimedOut)?;
    charge.add(permit);
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use axum::body::HttpBody;
    use hyper::body::Frame;

    use super::*;

    /// A body whose chunks are sent by the test, as a slow client would.
    struct Chunks(tokio::sync::mpsc::Receiver<Vec<u8>>);

    impl HttpBody for Chunks {
        type Data = Bytes;
        type Error = std::io::Error;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
            self.0
                .poll_recv(cx)
                .map(|c| c.map(|c| Ok(Frame::data(Bytes::from(c)))))
        }
    }

    fn chunked() -> (Body, tokio::sync::mpsc::Sender<Vec<u8>>) {
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        (Body::new(Chunks(rx)), tx)
    }

    #[tokio::test]
    async fn a_small_body_needs_no_budget() {
        let budget = BodyBudget::new(1);
        let (b, charge) = read_body(Body::from("{}"), 1024, Duration::from_secs(5), &budget)
            .await
            .unwrap();
        assert_eq!(&b[..], b"{}");
        assert_eq!(charge.bytes(), 0);
    }

    #[tokio::test]
    async fn a_body_in_pieces_is_charged_for_what_it_holds_and_given_back() {
        let budget = BodyBudget::new(1 << 20);
        let (body, tx) = chunked();
        for _ in 0..10 {
            tx.send(vec![7u8; 10_000]).await.unwrap();
        }
        drop(tx);
        let (b, charge) = read_body(body, 1 << 20, Duration::from_secs(5), &budget)
            .await
            .unwrap();
        assert_eq!(b.len(), 100_000);
        assert!(b.iter().all(|&x| x == 7));
        assert!(charge.bytes() >= 100_000 - UNCHARGED_BODY_BYTES);
        assert!(charge.bytes() <= 200_000);
        assert_eq!(budget.available(), (1 << 20) - charge.bytes());
        drop(charge);
        assert_eq!(budget.available(), 1 << 20);
    }

    #[tokio::test]
    async fn a_body_that_stops_arriving_times_out_and_gives_its_budget_back() {
        let budget = BodyBudget::new(1 << 20);
        let (body, tx) = chunked();
        tx.send(vec![1u8; 100_000]).await.unwrap();
        let r = read_body(body, 1 << 20, Duration::from_millis(200), &budget).await;
        assert!(matches!(r, Err(BodyError::TimedOut)), "{r:?}");
        assert_eq!(budget.available(), 1 << 20);
    }

    #[tokio::test]
    async fn a_full_budget_makes_bodies_wait_and_the_wait_is_bounded() {
        let budget = BodyBudget::new(64 * 1024);
        let (holder, _keep) = chunked();
        _keep.send(vec![0u8; 40 * 1024]).await.unwrap();
        _keep.send(vec![0u8; 1]).await.unwrap();
        // The first body holds the whole budget and never finishes.
        let budget2 = budget.clone();
        let stuck = tokio::spawn(async move {
            read_body(holder, 1 << 20, Duration::from_secs(60), &budget2).await
        });
        while budget.available() > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let (body, tx) = chunked();
        tx.send(vec![0u8; 40 * 1024]).await.unwrap();
        drop(tx);
        let r = read_body(body, 1 << 20, Duration::from_millis(200), &budget).await;
        assert!(matches!(r, Err(BodyError::TimedOut)), "{r:?}");
        // A small body still gets through.
        let r = read_body(
            Body::from("{}"),
            1 << 20,
            Duration::from_millis(200),
            &budget,
        )
        .await;
        assert!(r.is_ok());
        stuck.abort();
    }

    #[tokio::test]
    async fn too_large_bodies_are_refused_by_length_or_as_they_arrive() {
        let budget = BodyBudget::new(1 << 20);
        let r = read_body(
            Body::from(vec![0u8; 2000]),
            1000,
            Duration::from_secs(1),
            &budget,
        )
        .await;
        assert!(matches!(r, Err(BodyError::TooLarge)));
        let (body, tx) = chunked();
        tx.send(vec![0u8; 600]).await.unwrap();
        tx.send(vec![0u8; 600]).await.unwrap();
        let r = read_body(body, 1000, Duration::from_secs(1), &budget).await;
        assert!(matches!(r, Err(BodyError::TooLarge)));
    }
}
