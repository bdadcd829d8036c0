//! `Env`: what the cluster harness needs from a driver — time, timers, stores, the network's
//! filters, engine-level reads — implemented by the simulator (`sim`) and by the threaded
//! runtime (`threaded`). The harness is async code over `Rc<dyn Env>`, so every test runs on both.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use proto::raft_cmdpb::RaftCmdRequest;
use proto::raft_serverpb::RaftApplyState;
use raftstore::{Callback, CmdResponse, Config};

use crate::exec::{Executor, JoinHandle};
use crate::filter::Filter;
use crate::scheduler::MockScheduler;

/// What a driver offers the harness.
pub trait Env {
    /// Time since the cluster started (virtual in the simulator).
    fn now(&self) -> Duration;
    /// Wakes `waker` once `now() >= at`.
    fn register_timer(&self, at: Duration, waker: Waker);
    /// Sends a command to a store; false (and `cb` dropped) when the store is down.
    fn send_command(&self, store_id: u64, req: RaftCmdRequest, cb: Callback) -> bool;
    /// Starts (or restarts, from its engines) a store.
    fn start_store(&self, store_id: u64);
    /// Stops a store. In the simulator this is a crash: writes that were not synced are lost.
    fn stop_store(&self, store_id: u64);
    /// Adds a network filter.
    fn add_filter(&self, f: Box<dyn Filter>);
    /// Removes every network filter.
    fn clear_filters(&self);
    /// The stores of the cluster.
    fn store_ids(&self) -> Vec<u64>;
    /// The scheduler that learns regions and leaders from heartbeats.
    fn scheduler(&self) -> Arc<Mutex<MockScheduler>>;
    /// Reads a key from a store's kv engine directly.
    fn engine_get(&self, store_id: u64, cf: &str, key: &[u8]) -> Option<Vec<u8>>;
    /// A region's apply state in a store's kv engine.
    fn apply_state(&self, store_id: u64, region_id: u64) -> Option<RaftApplyState>;
    /// A random number (seeded in the simulator).
    fn random(&self) -> u64;
    /// The executor running the test.
    fn executor(&self) -> Rc<Executor>;
    /// The stores' configuration.
    fn config(&self) -> Config;
    /// Records in the run's trace (the simulator's, when traced) that a test client began `op`
    /// routed by `key`; the operation's id (0 when untraced).
    fn trace_client_start(&self, _op: &str, _key: &[u8]) -> u64 {
        0
    }
    /// Records the end of the client operation `id` (from [`Env::trace_client_start`]).
    fn trace_client_end(&self, _id: u64, _ok: bool, _detail: String) {}
}

/// Sleeps for `d` of the environment's time.
pub fn sleep(env: &Rc<dyn Env>, d: Duration) -> Sleep {
    Sleep {
        env: env.clone(),
        at: env.now() + d,
        registered: false,
    }
}

/// The future of `sleep`.
pub struct Sleep {
    env: Rc<dyn Env>,
    at: Duration,
    registered: bool,
}

impl Future for Sleep {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.env.now() >= self.at {
            return Poll::Ready(());
        }
        if !self.registered {
            self.registered = true;
            self.env.register_timer(self.at, cx.waker().clone());
        }
        Poll::Pending
    }
}

/// Spawns a task on the environment's executor.
pub fn spawn<T: 'static>(
    env: &Rc<dyn Env>,
    fut: impl Future<Output = T> + 'static,
) -> JoinHandle<T> {
    env.executor().spawn(fut)
}

type Slot = Arc<Mutex<(Option<CmdResponse>, Option<Waker>)>>;

/// Sends a command to a store and waits for its response, at most `timeout`.
pub async fn call_command_on_store(
    env: &Rc<dyn Env>,
    store_id: u64,
    req: RaftCmdRequest,
    timeout: Duration,
) -> Option<CmdResponse> {
    let slot: Slot = Arc::new(Mutex::new((None, None)));
    let s = slot.clone();
    let cb: Callback = Box::new(move |resp| {
        let mut g = s.lock().expect("slot poisoned");
        g.0 = Some(resp);
        if let Some(w) = g.1.take() {
            w.wake();
        }
    });
    if !env.send_command(store_id, req, cb) {
        return None;
    }
    WaitResponse {
        slot,
        deadline: sleep(env, timeout),
    }
    .await
}

struct WaitResponse {
    slot: Slot,
    deadline: Sleep,
}

impl Future for WaitResponse {
    type Output = Option<CmdResponse>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<CmdResponse>> {
        {
            let mut g = self.slot.lock().expect("slot poisoned");
            if let Some(r) = g.0.take() {
                return Poll::Ready(Some(r));
            }
            g.1 = Some(cx.waker().clone());
        }
        match Pin::new(&mut self.deadline).poll(cx) {
            Poll::Ready(()) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// A flag shared between tasks (e.g. "stop now").
#[derive(Clone, Default)]
pub struct Flag(Rc<Cell<bool>>);

impl Flag {
    /// Raises the flag.
    pub fn set(&self) {
        self.0.set(true);
    }

    /// Whether it is raised.
    pub fn get(&self) -> bool {
        self.0.get()
    }
}
