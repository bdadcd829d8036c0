//! The store's driver (`raftstore::runtime::StoreDriver`) run as a task of the gRPC runtime
//! instead of on a poller thread of its own.
//!
//! A raft message from another store is decoded on the runtime's thread; so is a client's
//! request, and the store's answers and outgoing messages are encoded and written there too.
//! With the store on that same thread, none of them crosses a thread: on a machine of a few cores
//! shared by several processes a thread switch is dear (a woken thread often waits for a core),
//! and a put at one client crossed six. Against the poller thread it lowered the latency of one
//! client's puts and gets and raised the throughput at 64 clients (paired figures in
//! docs/PERFORMANCE.md, "The store on the gRPC runtime").
//!
//! The task handles the mailbox's messages in batches and runs a round after each batch, as the
//! poller thread does. A round's raft write is synced on the store's raft-sync thread while other
//! messages wait; with the mailbox empty it is synced in place, after one yield to the runtime so
//! that the round's messages (a leader's appends) are written to their connections first. The
//! task yields after every round, so the runtime's other tasks (connections, requests) run
//! between rounds. Slow work (snapshots, log GC) stays on the store's worker threads.

use std::time::Duration;

use raftstore::engine::{Engine, Engines};
use raftstore::runtime::{Mailbox, SchedulerClient, StoreDriver, StoreMsg, Transport};
use raftstore::{Config, SnapManager};
use slog::Logger;
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::task::JoinHandle;

/// The sending side of a store's mailbox.
pub type StoreRouter = UnboundedSender<StoreMsg>;

/// The store's mailbox as its worker threads see it.
#[derive(Clone)]
struct TaskMailbox(StoreRouter);

impl Mailbox for TaskMailbox {
    fn deliver(&self, msg: StoreMsg) -> bool {
        self.0.send(msg).is_ok()
    }
}

/// A store running as a task of the current runtime.
pub struct StoreTask {
    router: StoreRouter,
    task: JoinHandle<()>,
    workers: Vec<std::thread::JoinHandle<()>>,
}

impl StoreTask {
    /// Opens the store on bootstrapped `engines` and spawns its task on the current runtime and
    /// its worker threads. `router`/`rx` is its mailbox, made beforehand so that the transport
    /// can hold a sender before the store exists. `scheduler` is the scheduler client its
    /// scheduler worker thread calls (`NoScheduler` in a static cluster).
    #[allow(clippy::too_many_arguments)]
    pub fn spawn<K: Engine, R: Engine, T: Transport, S: SchedulerClient>(
        cfg: Config,
        engines: Engines<K, R>,
        snap_mgr: SnapManager,
        transport: T,
        scheduler: S,
        logger: &Logger,
        router: StoreRouter,
        rx: UnboundedReceiver<StoreMsg>,
    ) -> raftstore::Result<StoreTask> {
        let (driver, workers) = StoreDriver::new(
            cfg,
            engines,
            snap_mgr,
            transport,
            scheduler,
            logger,
            TaskMailbox(router.clone()),
        )?;
        let task = tokio::spawn(run(driver, rx));
        Ok(StoreTask {
            router,
            task,
            workers,
        })
    }

    /// Stops the store and waits for its task and threads. Every acknowledged write is synced
    /// already.
    pub async fn stop(self) {
        let _ = self.router.send(StoreMsg::Stop);
        let _ = self.task.await;
        let workers = self.workers;
        let _ = tokio::task::spawn_blocking(move || {
            for w in workers {
                let _ = w.join();
            }
        })
        .await;
    }
}

async fn run<K: Engine, R: Engine, T: Transport>(
    mut driver: StoreDriver<K, R, T>,
    mut rx: UnboundedReceiver<StoreMsg>,
) {
    loop {
        let step = async {
            let wait = driver.wait();
            let first = if wait == Duration::ZERO {
                match rx.try_recv() {
                    Ok(msg) => Some(msg),
                    Err(TryRecvError::Empty) => None,
                    Err(TryRecvError::Disconnected) => return Ok(true),
                }
            } else {
                tokio::select! {
                    msg = rx.recv() => match msg {
                        Some(msg) => Some(msg),
                        None => return Ok(true),
                    },
                    () = tokio::time::sleep(wait) => None,
                }
            };
            if let Some(msg) = first {
                if driver.handle_batch(msg, std::iter::from_fn(|| rx.try_recv().ok()))? {
                    return Ok(true);
                }
            }
            if let Some(seq) = driver.round(rx.is_empty())? {
                // The round's messages are queued for connection tasks of this runtime: they
                // get written before the fsync holds the thread.
                tokio::task::yield_now().await;
                driver.sync_inline(seq)?;
            }
            Ok::<bool, raftstore::Error>(false)
        }
        .await;
        match step {
            Ok(false) => tokio::task::yield_now().await,
            Ok(true) => break,
            Err(e) => {
                rx.close();
                let mut rest = Vec::new();
                while let Ok(msg) = rx.try_recv() {
                    rest.push(msg);
                }
                driver.fail(e, rest);
                return;
            }
        }
    }
    driver.stop();
}
