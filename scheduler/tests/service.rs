//! The scheduler's gRPC service, in process and as a process: bootstrap, stores, members, the
//! concurrent region heartbeats of TinyKV's `TestConcurrentHandleRegion3C`, and restarts that
//! keep ids, timestamps and metas (TinyKV's `scheduler/server/cluster_test.go`, testClusterSuite).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use proto::metapb::{Peer, Region, RegionEpoch, Store};
use proto::schedulerpb::*;
use scheduler::schedulerpb::scheduler_client::SchedulerClient;
use scheduler::server::{RunningScheduler, ServerConfig};
use tonic::transport::Channel;

fn logger() -> slog::Logger {
    raft::util::default_logger()
}

/// A scheduler in this process whose GC safe point moves only when asked (UpdateGCSafePoint).
fn start(dir: &std::path::Path) -> RunningScheduler {
    RunningScheduler::start(
        ServerConfig {
            addr: "127.0.0.1:0".into(),
            data_dir: dir.to_path_buf(),
            gc_life_time: Duration::ZERO,
            ..Default::default()
        },
        logger(),
    )
    .expect("start the scheduler")
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

async fn connect(addr: &str) -> SchedulerClient<Channel> {
    for _ in 0..200 {
        if let Ok(c) = SchedulerClient::connect(format!("http://{addr}")).await {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("cannot reach the scheduler at {addr}");
}

fn h(cluster_id: u64) -> Option<RequestHeader> {
    Some(RequestHeader { cluster_id })
}

async fn alloc(c: &mut SchedulerClient<Channel>, id: u64) -> u64 {
    c.alloc_id(AllocIdRequest { header: h(id) })
        .await
        .unwrap()
        .into_inner()
        .id
}

async fn put_store(
    c: &mut SchedulerClient<Channel>,
    id: u64,
    store: &Store,
) -> Result<PutStoreResponse, tonic::Status> {
    c.put_store(PutStoreRequest {
        header: h(id),
        store: Some(store.clone()),
    })
    .await
    .map(|r| r.into_inner())
}

fn err_type(h: &Option<ResponseHeader>) -> Option<ErrorType> {
    h.as_ref()
        .and_then(|h| h.error.as_ref())
        .map(|e| e.r#type())
}

#[test]
fn test_bootstrap_members_and_cluster_id_checks() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path());
    let addr = s.addr().to_string();
    rt().block_on(async {
        let mut c = connect(&addr).await;
        let members = c
            .get_members(GetMembersRequest { header: None })
            .await
            .unwrap()
            .into_inner();
        assert!(!members.members.is_empty());
        let id = members.header.unwrap().cluster_id;
        assert_eq!(id, s.cluster_id());
        // Another cluster's id is refused.
        let e = c
            .is_bootstrapped(IsBootstrappedRequest { header: h(id + 1) })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e}");
        let r = c
            .is_bootstrapped(IsBootstrappedRequest { header: h(id) })
            .await
            .unwrap()
            .into_inner();
        assert!(!r.bootstrapped);
        // Before bootstrap: NOT_BOOTSTRAPPED.
        let store = Store {
            id: alloc(&mut c, id).await,
            address: "127.0.0.1:7".into(),
            ..Default::default()
        };
        let r = put_store(&mut c, id, &store).await.unwrap();
        assert_eq!(err_type(&r.header), Some(ErrorType::NotBootstrapped));
        let r = c
            .bootstrap(BootstrapRequest {
                header: h(id),
                store: Some(store.clone()),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(err_type(&r.header), None);
        let r = c
            .bootstrap(BootstrapRequest {
                header: h(id),
                store: Some(store.clone()),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(err_type(&r.header), Some(ErrorType::AlreadyBootstrapped));
        let r = c
            .is_bootstrapped(IsBootstrappedRequest { header: h(id) })
            .await
            .unwrap()
            .into_inner();
        assert!(r.bootstrapped);
        let got = c
            .get_store(GetStoreRequest {
                header: h(id),
                store_id: store.id,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(got.store.as_ref(), Some(&store));
        // A second store at the same address is refused; a new address is fine.
        let dup = Store {
            id: alloc(&mut c, id).await,
            address: store.address.clone(),
            ..Default::default()
        };
        assert!(put_store(&mut c, id, &dup).await.is_err());
        let other = Store {
            id: dup.id,
            address: "127.0.0.1:8".into(),
            ..Default::default()
        };
        put_store(&mut c, id, &other).await.unwrap();
        let all = c
            .get_all_stores(GetAllStoresRequest {
                header: h(id),
                exclude_tombstone_stores: true,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(all.stores.len(), 2);
        // An unknown store's heartbeat is an error.
        assert!(c
            .store_heartbeat(StoreHeartbeatRequest {
                header: h(id),
                stats: Some(StoreStats {
                    store_id: 9999,
                    ..Default::default()
                }),
            })
            .await
            .is_err());
        // The GC safe point only moves forward.
        let up = |sp| UpdateGcSafePointRequest {
            header: h(id),
            safe_point: sp,
        };
        assert_eq!(
            c.update_gc_safe_point(up(10))
                .await
                .unwrap()
                .into_inner()
                .new_safe_point,
            10
        );
        assert_eq!(
            c.update_gc_safe_point(up(5))
                .await
                .unwrap()
                .into_inner()
                .new_safe_point,
            10
        );
    });
    s.stop().unwrap();
}

/// With a GC life time the scheduler raises the safe point by itself, that far behind its clock,
/// and never back.
#[test]
fn test_gc_safe_point_trails_the_clock_by_the_life_time() {
    let dir = tempfile::tempdir().unwrap();
    let s = RunningScheduler::start(
        ServerConfig {
            addr: "127.0.0.1:0".into(),
            data_dir: dir.path().to_path_buf(),
            gc_life_time: Duration::from_secs(60),
            ..Default::default()
        },
        logger(),
    )
    .unwrap();
    let addr = s.addr().to_string();
    rt().block_on(async {
        let mut c = connect(&addr).await;
        let id = c
            .get_members(GetMembersRequest { header: None })
            .await
            .unwrap()
            .into_inner()
            .header
            .unwrap()
            .cluster_id;
        let now_ms = || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64
        };
        let start = std::time::Instant::now();
        let sp = loop {
            let sp = c
                .get_gc_safe_point(GetGcSafePointRequest { header: h(id) })
                .await
                .unwrap()
                .into_inner()
                .safe_point;
            if sp > 0 {
                break sp;
            }
            assert!(start.elapsed() < Duration::from_secs(10), "never raised");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let behind_ms = now_ms() - (sp >> 18);
        assert!(
            (60_000..65_000).contains(&behind_ms),
            "{behind_ms} ms behind the clock"
        );
        // An explicit update cannot take it back.
        let r = c
            .update_gc_safe_point(UpdateGcSafePointRequest {
                header: h(id),
                safe_point: 10,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(r.new_safe_point >= sp);
    });
    s.stop().unwrap();
}

/// TinyKV's TestConcurrentHandleRegion3C: three stores each bind a heartbeat stream; then 2000
/// region heartbeats for adjacent one-peer regions on store 1 are handled concurrently, all
/// without error, and store 1's stream receives an answer (here: the replica checker's steps
/// for regions that lack replicas).
#[test]
fn test_concurrent_handle_region_3c() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path());
    let addr = s.addr().to_string();
    let svc = s.service();
    let rt = rt();
    rt.block_on(async {
        let mut c = connect(&addr).await;
        let id = s.cluster_id();
        let mut stores = Vec::new();
        for i in 0..3 {
            stores.push(Store {
                id: alloc(&mut c, id).await,
                address: format!("127.0.1.1:{i}"),
                ..Default::default()
            });
        }
        let first = Store {
            id: alloc(&mut c, id).await,
            address: "127.0.0.1:0".into(),
            ..Default::default()
        };
        c.bootstrap(BootstrapRequest {
            header: h(id),
            store: Some(first),
        })
        .await
        .unwrap();
        for st in &stores {
            put_store(&mut c, id, st).await.unwrap();
        }
        let (got_tx, mut got_rx) = tokio::sync::mpsc::unbounded_channel();
        for (i, st) in stores.iter().enumerate() {
            c.store_heartbeat(StoreHeartbeatRequest {
                header: h(id),
                stats: Some(StoreStats {
                    store_id: st.id,
                    capacity: 1000 << 20,
                    available: 1000 << 20,
                    ..Default::default()
                }),
            })
            .await
            .unwrap();
            let peer = Peer {
                id: alloc(&mut c, id).await,
                store_id: st.id,
            };
            let req = RegionHeartbeatRequest {
                header: h(id),
                region: Some(Region {
                    id: alloc(&mut c, id).await,
                    peers: vec![peer],
                    ..Default::default()
                }),
                leader: Some(peer),
                ..Default::default()
            };
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            tx.send(req).unwrap();
            let mut answers = c
                .region_heartbeat(tokio_stream::wrappers::UnboundedReceiverStream::new(rx))
                .await
                .unwrap()
                .into_inner();
            let got_tx = got_tx.clone();
            tokio::spawn(async move {
                let _keep_open = tx;
                while let Ok(Some(a)) = answers.message().await {
                    if i == 0 {
                        let _ = got_tx.send(a);
                    }
                }
            });
        }
        // Every stream is bound once its first heartbeat is handled.
        let mut regions = Vec::new();
        for i in 0..2000u64 {
            let peer = Peer {
                id: alloc(&mut c, id).await,
                store_id: stores[0].id,
            };
            regions.push(Region {
                id: alloc(&mut c, id).await,
                start_key: if i == 0 {
                    vec![]
                } else {
                    format!("{i:5}").into_bytes()
                },
                end_key: if i == 1999 {
                    vec![]
                } else {
                    format!("{:5}", i + 1).into_bytes()
                },
                region_epoch: Some(RegionEpoch {
                    conf_ver: 1,
                    version: 1,
                }),
                peers: vec![peer],
            });
        }
        let mut tasks = Vec::new();
        for r in regions {
            let svc = svc.clone();
            tasks.push(tokio::task::spawn_blocking(move || {
                let leader = r.peers[0];
                svc.handle_region(RegionHeartbeatRequest {
                    header: None,
                    region: Some(r),
                    leader: Some(leader),
                    ..Default::default()
                })
            }));
        }
        for t in tasks {
            t.await
                .unwrap()
                .expect("a concurrent region heartbeat failed");
        }
        let first = tokio::time::timeout(Duration::from_secs(30), got_rx.recv())
            .await
            .expect("store 1's stream received nothing");
        assert!(first.is_some());
    });
    drop(svc);
    s.stop().unwrap();
}

/// A restarted scheduler (in process) keeps its cluster id, stores and regions, and hands out
/// only new ids.
#[test]
fn test_restart_keeps_state_and_never_repeats_ids() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let (id, last_id, store) = {
        let s = start(dir.path());
        let addr = s.addr().to_string();
        let r = rt.block_on(async {
            let mut c = connect(&addr).await;
            let id = s.cluster_id();
            let store = Store {
                id: alloc(&mut c, id).await,
                address: "127.0.0.1:9".into(),
                ..Default::default()
            };
            c.bootstrap(BootstrapRequest {
                header: h(id),
                store: Some(store.clone()),
            })
            .await
            .unwrap();
            let mut last = 0;
            for _ in 0..1500 {
                last = alloc(&mut c, id).await;
            }
            (id, last, store)
        });
        s.stop().unwrap();
        r
    };
    let s = start(dir.path());
    assert_eq!(s.cluster_id(), id, "the cluster id is kept");
    let addr = s.addr().to_string();
    rt.block_on(async {
        let mut c = connect(&addr).await;
        assert!(alloc(&mut c, id).await > last_id);
        let r = c
            .is_bootstrapped(IsBootstrappedRequest { header: h(id) })
            .await
            .unwrap()
            .into_inner();
        assert!(r.bootstrapped);
        let got = c
            .get_store(GetStoreRequest {
                header: h(id),
                store_id: store.id,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(got.store.map(|s| s.address), Some(store.address));
        assert_eq!(got.header.and_then(|h| h.error).map(|e| e.r#type()), None);
    });
    s.stop().unwrap();
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn spawn_process(dir: &std::path::Path, port: u16) -> KillOnDrop {
    KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_tinykv-scheduler"))
            .args(["--addr", &format!("127.0.0.1:{port}"), "--data-dir"])
            .arg(dir)
            .env("TINYKV_LOG", "off")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tinykv-scheduler"),
    )
}

async fn tso_batch(c: &mut SchedulerClient<Channel>, id: u64, count: u32) -> (u64, u64) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tx.send(TsoRequest {
        header: h(id),
        count,
    })
    .unwrap();
    let mut out = c
        .tso(tokio_stream::wrappers::UnboundedReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let r = out.message().await.unwrap().unwrap();
    let ts = r.timestamp.unwrap();
    let last = (ts.physical as u64) << 18 | ts.logical as u64;
    (last - u64::from(count) + 1, last)
}

/// SIGKILL (no clean shutdown) and restart: no id and no timestamp is handed out twice.
#[test]
fn test_process_killed_and_restarted_never_repeats_ids_or_timestamps() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let port = free_port();
    let (id, last_id, last_ts) = {
        let _p = spawn_process(dir.path(), port);
        rt.block_on(async {
            let mut c = connect(&format!("127.0.0.1:{port}")).await;
            let id = c
                .get_members(GetMembersRequest { header: None })
                .await
                .unwrap()
                .into_inner()
                .header
                .unwrap()
                .cluster_id;
            let mut last_id = 0;
            for _ in 0..20 {
                last_id = alloc(&mut c, id).await;
            }
            let mut last_ts = 0;
            for _ in 0..20 {
                let (first, last) = tso_batch(&mut c, id, 100).await;
                assert!(first > last_ts);
                last_ts = last;
            }
            (id, last_id, last_ts)
        })
        // Dropped here: SIGKILL.
    };
    let port = free_port();
    let _p = spawn_process(dir.path(), port);
    rt.block_on(async {
        let mut c = connect(&format!("127.0.0.1:{port}")).await;
        assert!(alloc(&mut c, id).await > last_id);
        let (first, _) = tso_batch(&mut c, id, 1).await;
        assert!(first > last_ts, "{first} after {last_ts}");
    });
}

/// Bad input to the process: a malformed config, an address in use: one line, exit 1.
#[test]
fn test_process_bad_input_is_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "[schedule]\nmax-store-down-time = \"later\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tinykv-scheduler"))
        .args(["--addr", "127.0.0.1:0", "--config"])
        .arg(&cfg)
        .arg("--data-dir")
        .arg(dir.path().join("d"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("max-store-down-time"), "{err}");
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_tinykv-scheduler"))
        .args(["--addr", &addr, "--data-dir"])
        .arg(dir.path().join("d2"))
        .env("TINYKV_LOG", "off")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot listen"), "{err}");
}
