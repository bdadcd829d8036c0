//! A small single-threaded async executor whose notion of "waiting" is supplied by the driver, so
//! the same async test code runs on the simulator (waiting = processing the next simulated event,
//! in virtual time) and on the threaded runtime (waiting = blocking until a wake or a timer).
//!
//! Tasks are polled in the order they were woken; in the simulator every wake comes from event
//! processing on this thread, so the schedule is a function of the seed.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

type BoxFuture = Pin<Box<dyn Future<Output = ()>>>;

/// The wake queue, shared with wakers (which may fire on other threads).
#[derive(Default)]
pub struct WakeQueue {
    queue: Mutex<VecDeque<u64>>,
    cv: Condvar,
}

impl WakeQueue {
    fn push(&self, id: u64) {
        let mut q = self.queue.lock().expect("wake queue poisoned");
        if !q.contains(&id) {
            q.push_back(id);
        }
        self.cv.notify_one();
    }

    fn pop(&self) -> Option<u64> {
        self.queue.lock().expect("wake queue poisoned").pop_front()
    }

    /// How many tasks are woken.
    pub fn len(&self) -> usize {
        self.queue.lock().expect("wake queue poisoned").len()
    }

    /// Whether some task is woken.
    pub fn is_empty(&self) -> bool {
        self.queue.lock().expect("wake queue poisoned").is_empty()
    }

    /// Blocks until a task is woken or `timeout` passes.
    pub fn wait(&self, timeout: Duration) {
        let q = self.queue.lock().expect("wake queue poisoned");
        if q.is_empty() {
            let _ = self
                .cv
                .wait_timeout(q, timeout)
                .expect("wake queue poisoned");
        }
    }
}

struct TaskWaker {
    id: u64,
    queue: Arc<WakeQueue>,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.queue.push(self.id);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.queue.push(self.id);
    }
}

/// The executor: spawned tasks plus the one being run to completion.
#[derive(Default)]
pub struct Executor {
    next_id: Cell<u64>,
    tasks: RefCell<BTreeMap<u64, BoxFuture>>,
    queue: Arc<WakeQueue>,
}

/// The result of a spawned task, awaitable.
pub struct JoinHandle<T> {
    slot: Rc<RefCell<(Option<T>, Option<Waker>)>>,
}

impl<T> Future for JoinHandle<T> {
    type Output = T;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let mut s = self.slot.borrow_mut();
        match s.0.take() {
            Some(v) => Poll::Ready(v),
            None => {
                s.1 = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl Executor {
    /// A new executor.
    pub fn new() -> Rc<Executor> {
        Rc::new(Executor {
            next_id: Cell::new(1),
            ..Default::default()
        })
    }

    /// Drops every task that has not finished (they may hold the environment, which holds the
    /// executor: clearing breaks that cycle when a run ends).
    pub fn clear(&self) {
        let tasks = std::mem::take(&mut *self.tasks.borrow_mut());
        drop(tasks);
    }

    /// The wake queue (the threaded driver blocks on it).
    pub fn wake_queue(&self) -> Arc<WakeQueue> {
        self.queue.clone()
    }

    /// Starts a task; it runs when the executor next polls.
    pub fn spawn<T: 'static>(&self, fut: impl Future<Output = T> + 'static) -> JoinHandle<T> {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        let slot = Rc::new(RefCell::new((None, None::<Waker>)));
        let out = slot.clone();
        let task = async move {
            let v = fut.await;
            let mut s = out.borrow_mut();
            s.0 = Some(v);
            if let Some(w) = s.1.take() {
                w.wake();
            }
        };
        self.tasks.borrow_mut().insert(id, Box::pin(task));
        self.queue.push(id);
        JoinHandle { slot }
    }

    fn waker(&self, id: u64) -> Waker {
        Waker::from(Arc::new(TaskWaker {
            id,
            queue: self.queue.clone(),
        }))
    }

    /// Runs `main` to completion. Whenever no task is woken, `wait` is called to let time pass
    /// (process a simulated event, or block); it returns false when nothing can ever happen
    /// again, which is a deadlock.
    pub fn block_on<T>(&self, main: impl Future<Output = T>, wait: impl FnMut() -> bool) -> T {
        self.block_on_fair(main, || {}, wait)
    }

    /// As [`Self::block_on`], and after each round of the tasks woken when it began, `between`
    /// is called (the threaded driver fires its due timers there: woken by other threads, tasks
    /// can stay runnable for good, and a timer that fired only when none is would never fire,
    /// which starved a test's `sleep` while its clients ran on). With a `between` that does
    /// nothing the order of polls is the same as draining the queue before each `wait`.
    pub fn block_on_fair<T>(
        &self,
        main: impl Future<Output = T>,
        mut between: impl FnMut(),
        mut wait: impl FnMut() -> bool,
    ) -> T {
        let mut main = std::pin::pin!(main);
        let main_waker = self.waker(0);
        self.queue.push(0);
        loop {
            let mut budget = self.queue.len();
            while budget > 0 {
                budget -= 1;
                let Some(id) = self.queue.pop() else {
                    break;
                };
                if id == 0 {
                    let mut cx = Context::from_waker(&main_waker);
                    if let Poll::Ready(v) = main.as_mut().poll(&mut cx) {
                        return v;
                    }
                    continue;
                }
                let task = self.tasks.borrow_mut().remove(&id);
                if let Some(mut task) = task {
                    let waker = self.waker(id);
                    let mut cx = Context::from_waker(&waker);
                    if task.as_mut().poll(&mut cx).is_pending() {
                        self.tasks.borrow_mut().insert(id, task);
                    }
                }
            }
            if !self.queue.is_empty() {
                between();
                continue;
            }
            assert!(
                wait(),
                "deadlock: no task can make progress and nothing is scheduled"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_spawn_and_join() {
        let ex = Executor::new();
        let ex2 = ex.clone();
        let out = ex.block_on(
            async move {
                let a = ex2.spawn(async { 1 });
                let b = ex2.spawn(async { 2 });
                a.await + b.await
            },
            || false,
        );
        assert_eq!(out, 3);
    }
}
