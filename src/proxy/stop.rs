//! A listener's stop as the connections of one worker see it
//! (`listener/drain.rs`): a flag, and the wakers of the connections that
//! wait on it. A worker's connections all run on its thread, so neither
//! needs a lock: a connection checks the flag on every request and waits
//! on it between requests, and a `CancellationToken` would take a mutex
//! for each check and each wait.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

/// The stop of one listener's connections on one worker: [`stop`] wakes
/// every [`StopWatch`] taken from it.
///
/// [`stop`]: Self::stop
#[derive(Default)]
pub struct StopSignal {
    shared: Rc<Shared>,
}

#[derive(Default)]
struct Shared {
    stopped: Cell<bool>,
    /// The wakers of the connections waiting, by slot; a connection keeps
    /// its slot for its life.
    waiters: RefCell<Waiters>,
}

#[derive(Default)]
struct Waiters {
    slots: Vec<Option<Waker>>,
    free: Vec<usize>,
}

impl StopSignal {
    pub fn new() -> StopSignal {
        StopSignal::default()
    }

    /// What one connection watches.
    pub fn watch(&self) -> StopWatch {
        StopWatch {
            shared: Rc::clone(&self.shared),
            slot: Cell::new(None),
        }
    }

    /// Stops: every watch sees it, and those waiting are woken.
    pub fn stop(&self) {
        self.shared.stopped.set(true);
        let wakers: Vec<Waker> = {
            let mut w = self.shared.waiters.borrow_mut();
            w.slots.iter_mut().filter_map(Option::take).collect()
        };
        // Woken outside the borrow: a waker may run code that watches.
        for w in wakers {
            w.wake();
        }
    }
}

/// One connection's view of a [`StopSignal`]. It is waited on by one task
/// at a time (the connection's).
pub struct StopWatch {
    shared: Rc<Shared>,
    slot: Cell<Option<usize>>,
}

impl StopWatch {
    pub fn is_stopped(&self) -> bool {
        self.shared.stopped.get()
    }

    /// Ready once the signal has stopped. Waiting again costs no
    /// allocation: the connection's task keeps its waker in its slot.
    pub fn stopped(&self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(|cx| self.poll_stopped(cx))
    }

    fn poll_stopped(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.is_stopped() {
            return Poll::Ready(());
        }
        let mut w = self.shared.waiters.borrow_mut();
        let slot = match self.slot.get() {
            Some(i) => i,
            None => {
                let i = match w.free.pop() {
                    Some(i) => i,
                    None => {
                        w.slots.push(None);
                        w.slots.len() - 1
                    }
                };
                self.slot.set(Some(i));
                i
            }
        };
        if let Some(entry) = w.slots.get_mut(slot) {
            match entry {
                Some(waker) if waker.will_wake(cx.waker()) => {}
                _ => *entry = Some(cx.waker().clone()),
            }
        }
        Poll::Pending
    }
}

impl Drop for StopWatch {
    fn drop(&mut self) {
        if let Some(i) = self.slot.get() {
            let mut w = self.shared.waiters.borrow_mut();
            if let Some(entry) = w.slots.get_mut(i) {
                *entry = None;
                w.free.push(i);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::pin::pin;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    use super::*;

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_stop_wakes_every_waiting_watch_once_and_is_seen_after() {
        let signal = StopSignal::new();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&count));
        let mut cx = Context::from_waker(&waker);
        let (a, b) = (signal.watch(), signal.watch());
        for _ in 0..3 {
            // Waiting again, as between requests, keeps one slot each.
            assert!(pin!(a.stopped()).poll(&mut cx).is_pending());
            assert!(pin!(b.stopped()).poll(&mut cx).is_pending());
        }
        assert_eq!(signal.shared.waiters.borrow().slots.len(), 2);
        assert!(!a.is_stopped());
        signal.stop();
        assert_eq!(count.0.load(Ordering::SeqCst), 2);
        assert!(a.is_stopped() && b.is_stopped());
        assert!(pin!(a.stopped()).poll(&mut cx).is_ready());
        assert!(pin!(signal.watch().stopped()).poll(&mut cx).is_ready());
    }

    #[test]
    fn a_closed_connection_gives_its_slot_back() {
        let signal = StopSignal::new();
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        for _ in 0..100 {
            let w = signal.watch();
            assert!(pin!(w.stopped()).poll(&mut cx).is_pending());
        }
        assert_eq!(signal.shared.waiters.borrow().slots.len(), 1);
    }
}
