//! The trace timeline as a person sees it: a simulated run that fails on purpose is traced, its
//! page written by `tinykv_trace::html::page`, and headless Chromium (Debian's `chromium`, which
//! `make setup` installs) loads the page: the DOM it renders must show a lane per store, the
//! clients' lane, the failure banner and the failure marker in view, and its screenshot is kept
//! (`<target>/tinykv-traces/timeline-test.png`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use raftstore::Config;
use test_raftstore::cluster::Cluster;
use test_raftstore::filter::{DropFilter, PartitionFilter};
use test_raftstore::sim::run_seed_traced;

/// Puts, a partition with drops, a crash and a restart, then a deliberate failure.
async fn fails_on_purpose(c: Cluster) {
    for i in 0..30u32 {
        c.must_put(format!("k{i:02}").as_bytes(), b"v").await;
    }
    c.add_filter(PartitionFilter {
        s1: vec![1],
        s2: vec![2, 3],
    });
    c.add_filter(DropFilter::default());
    for i in 30..40u32 {
        c.must_put(format!("k{i:02}").as_bytes(), b"v").await;
    }
    c.clear_filters();
    c.stop_store(2);
    c.must_put(b"k40", b"v").await;
    c.start_store(2);
    c.must_get_equal(2, b"k40", b"v").await;
    panic!("deliberate failure: the timeline test wants a failed run");
}

/// Runs chromium headless with `args` then `url`, at most a minute; its stdout.
fn chromium(profile: &Path, args: &[&str], url: &str) -> String {
    let mut child = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1500,800",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run chromium ({e}): `make setup` (scripts/setup.sh) installs it")
        });
    let start = Instant::now();
    loop {
        if child.try_wait().expect("chromium's status").is_some() {
            break;
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("chromium did not finish within a minute");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("chromium's output");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The target directory (three levels above this test binary).
fn target_dir() -> PathBuf {
    std::env::current_exe()
        .unwrap()
        .ancestors()
        .nth(3)
        .unwrap()
        .to_path_buf()
}

#[test]
fn the_timeline_of_a_failed_run_renders_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let trace_path = dir.path().join("run.trace");
    let result = run_seed_traced(
        "trace_view::fails_on_purpose",
        11,
        3,
        Config::test_config(),
        &fails_on_purpose,
        &trace_path,
    );
    assert!(result.is_err(), "the run fails on purpose");
    let trace = tinykv_trace::read(&trace_path).unwrap();
    let page_path = dir.path().join("run.html");
    std::fs::write(&page_path, tinykv_trace::html::page(&trace)).unwrap();
    let url = format!("file://{}", page_path.display());
    let profile = dir.path().join("profile");

    let dom = chromium(&profile, &["--dump-dom"], &url);
    for store in 1..=3 {
        assert!(
            dom.contains(&format!("<div class=\"lane-label\" data-store=\"{store}\"")),
            "no lane for store {store} in the rendered page:\n{dom:.2000}"
        );
    }
    assert!(dom.contains(">clients</div>"), "no clients' lane");
    assert!(
        dom.contains("data-rendered=\"lanes=3 messages="),
        "the page did not finish drawing:\n{dom:.2000}"
    );
    assert!(
        dom.contains("failure=shown"),
        "the failure is not in view at first"
    );
    assert!(
        dom.contains("deliberate failure: the timeline test wants a failed run"),
        "the failure banner is missing"
    );
    let marker = dom
        .split("id=\"failure-marker\"")
        .nth(1)
        .and_then(|rest| rest.split('>').next())
        .expect("the failure marker");
    assert!(!marker.contains("hidden"), "the failure marker is hidden");
    let drawn: u64 = dom
        .split("messages=")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("a message count");
    assert!(drawn > 0, "no message arrow drawn");

    let shot_dir = target_dir().join("tinykv-traces");
    std::fs::create_dir_all(&shot_dir).unwrap();
    let shot = shot_dir.join("timeline-test.png");
    let _ = std::fs::remove_file(&shot);
    chromium(
        &profile,
        &[&format!("--screenshot={}", shot.display())],
        &url,
    );
    let png = std::fs::read(&shot).expect("chromium wrote the screenshot");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "a PNG");
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(png[20..24].try_into().unwrap());
    assert_eq!((width, height), (1500, 800), "the window's size");
    println!("screenshot: {}", shot.display());
}
