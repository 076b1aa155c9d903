//! A client connection's `backend_response` timer, kept across its
//! requests. Each request moves the deadline later, which costs nothing:
//! the timer is left armed where it is and, when it fires before the
//! deadline, armed again at the deadline (as `listener/io.rs` does for the
//! client's timers). A timer made and dropped per request would insert
//! into and remove from tokio's timer wheel every time.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::time::{Instant, Sleep};

#[derive(Default)]
pub struct Deadline {
    timer: Option<Pin<Box<Sleep>>>,
    at: Option<Instant>,
}

impl Deadline {
    /// The response is due by `at`.
    pub fn set(&mut self, at: Instant) {
        self.at = Some(at);
        match &mut self.timer {
            // It fires early and is armed again then.
            Some(t) if t.deadline() <= at => {}
            Some(t) => t.as_mut().reset(at),
            None => self.timer = Some(Box::pin(tokio::time::sleep_until(at))),
        }
    }

    /// Ready once the deadline has passed.
    pub fn expired(&mut self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(|cx| self.poll_expired(cx))
    }

    fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let (Some(timer), Some(at)) = (&mut self.timer, self.at) else {
            return Poll::Pending;
        };
        loop {
            ready!(timer.as_mut().poll(cx));
            // It fired at its own deadline: the time is past that one.
            if timer.deadline() >= at {
                return Poll::Ready(());
            }
            timer.as_mut().reset(at);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Has `d` not expired within `secs` seconds (of paused time)?
    async fn holds_for(d: &mut Deadline, secs: u64) -> bool {
        tokio::time::timeout(Duration::from_secs(secs), d.expired())
            .await
            .is_err()
    }

    #[tokio::test(start_paused = true)]
    async fn a_deadline_moved_later_fires_at_the_new_time_not_the_old() {
        let start = Instant::now();
        let mut d = Deadline::default();
        d.set(start + Duration::from_secs(1));
        // Before it fires, the next request moves it.
        tokio::time::sleep(Duration::from_millis(500)).await;
        d.set(start + Duration::from_secs(3));
        d.expired().await;
        assert_eq!(Instant::now(), start + Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn a_timer_that_fired_unwatched_does_not_expire_a_later_deadline() {
        let start = Instant::now();
        let mut d = Deadline::default();
        d.set(start + Duration::from_secs(1));
        tokio::time::sleep(Duration::from_secs(5)).await;
        d.set(start + Duration::from_secs(7));
        assert!(holds_for(&mut d, 1).await);
        d.expired().await;
        assert_eq!(Instant::now(), start + Duration::from_secs(7));
    }

    #[tokio::test(start_paused = true)]
    async fn a_deadline_moved_earlier_fires_then() {
        let start = Instant::now();
        let mut d = Deadline::default();
        d.set(start + Duration::from_secs(10));
        d.set(start + Duration::from_secs(2));
        d.expired().await;
        assert_eq!(Instant::now(), start + Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_deadline_nothing_expires() {
        let mut d = Deadline::default();
        assert!(holds_for(&mut d, 3600).await);
    }
}
