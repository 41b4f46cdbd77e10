//! `pagestream up` against a real nats-server, with real worker processes:
//! under a burst of long PDFs the stage holding the work scales to its
//! maximum while the others stay at their minimum, every page arrives
//! exactly once, the pool returns to its minimum after the cooldown; a
//! killed worker is replaced; SIGTERM drains and stops every worker, and
//! a killed supervisor leaves no worker behind; with
//! `--start-nats` and no server, it starts one and stops it again.
//!
//! Needs what `./setup` installs in `.pagestream/` (PDFium, the corpus).
#![allow(clippy::unwrap_used)]

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use schemas::DocumentStatus;
use serde_json::Value;
use support::{Cluster, ConsumerOptions, home, topology_text};

/// The test pipeline (split, render, assemble) with a render pool that
/// scales between 1 and 3 workers on a lag of 100 pages each, with a
/// cooldown short enough to scale down while pages are still queued, and
/// split and assemble pools that the lag never asks to grow.
fn scaling_topology() -> String {
    let consumer = ConsumerOptions {
        ack_wait: "30s",
        concurrency: 1,
        fetch_batch: 1,
        ..ConsumerOptions::default()
    };
    let mut text = topology_text(&consumer, 256 << 20, 256 << 20);
    let scaling = [("split", 1000, 2), ("render", 100, 3), ("assemble", 1000, 2)];
    for (stage, threshold, max) in scaling {
        text += &format!(
            "[stages.{stage}.scaling]\nlag_threshold = {threshold}\nmin_replicas = 1\n\
             max_replicas = {max}\ncooldown = \"1s\"\n\n"
        );
    }
    text
}

/// A `pagestream up` child with its JSON status lines collected.
struct Up {
    child: Option<Child>,
    lines: Arc<Mutex<Vec<Value>>>,
}

impl Up {
    fn start(cluster: &Cluster, logs: &std::path::Path) -> Self {
        let mut child = cluster
            .cli()
            .args(["-v", "up", "--output", "json", "--interval", "500ms", "--metrics-addr", ""])
            .args(["--shutdown-timeout", "20s", "--log-dir"])
            .arg(logs)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(logs.join("up.log")).unwrap())
            .spawn()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().unwrap();
        let collected = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                collected.lock().unwrap().push(serde_json::from_str(&line).unwrap());
            }
        });
        Up { child: Some(child), lines }
    }

    /// The status of `stage` in every line so far.
    fn history(&self, stage: &str) -> Vec<Value> {
        let lines = self.lines.lock().unwrap();
        lines
            .iter()
            .filter_map(|line| {
                line["stages"].as_array()?.iter().find(|s| s["stage"] == stage).cloned()
            })
            .collect()
    }

    /// How many status lines there are so far.
    fn mark(&self) -> usize {
        self.lines.lock().unwrap().len()
    }

    /// Waits for a status of `stage`, reported after the first `after`
    /// lines, that satisfies `wanted`, and returns it.
    async fn wait_for(
        &self,
        stage: &str,
        after: usize,
        what: &str,
        wanted: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let later = self.history(stage).into_iter().skip(after);
            if let Some(status) = later.into_iter().find(|s| wanted(s)) {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{stage} never had {what}; last: {:?}",
                self.history(stage).last()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The most replicas `stage` ever ran.
    fn most_replicas(&self, stage: &str) -> u64 {
        self.history(stage).iter().filter_map(|s| s["replicas"].as_u64()).max().unwrap_or(0)
    }

    /// SIGTERM, then waits; whether it exited with 0.
    fn terminate(&mut self) -> bool {
        let mut child = self.child.take().unwrap();
        Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.success();
            }
            assert!(Instant::now() < deadline, "pagestream up did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn pids(status: &Value) -> Vec<u64> {
    status["pids"].as_array().unwrap().iter().filter_map(Value::as_u64).collect()
}

fn alive(pid: u64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| stat.split(' ').nth(2).is_none_or(|state| state != "Z"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_scales_the_busy_stage_up_and_back_down_without_loss() {
    let cluster = Cluster::start(&scaling_topology()).await;
    let logs = tempfile::tempdir().unwrap();
    let mut up = Up::start(&cluster, logs.path());
    up.wait_for("render", 0, "one worker", |s| s["replicas"] == 1).await;

    // Two copies of a 196-page manual, made distinct by a trailing comment.
    let corpus = [("asymptote.pdf", 196), ("asymptote-copy.pdf", 196)];
    let mut ids = Vec::new();
    for (copy, (name, _)) in corpus.iter().enumerate() {
        let mut bytes = std::fs::read(home().join("corpus").join("asymptote.pdf")).unwrap();
        bytes.extend(format!("\n% copy {copy}\n").as_bytes());
        ids.push(cluster.submit(name, bytes).await.doc_id);
    }
    up.wait_for("render", 0, "its maximum of 3 workers", |s| s["replicas"] == 3).await;
    let scaled_up = up.mark();
    let states = cluster.wait_finished(&ids, Duration::from_secs(240)).await;

    // Every page exactly once, one result per document, nothing dead-lettered.
    for ((name, pages), (state, id)) in corpus.iter().zip(states.iter().zip(&ids)) {
        assert_eq!(state.pages.len(), *pages, "{name}");
        assert_eq!(state.finished.unwrap().status, DocumentStatus::Complete, "{name}");
        let results = cluster.results(id).await;
        assert_eq!(results.len(), 1, "one result for {name}");
        assert_eq!(results[0].page_count, *pages as u32);
    }
    assert!(cluster.dead_letters().await.is_empty());

    // The pool shrank while pages were still queued: the loss check above
    // covers workers stopped in the middle of the work.
    let render = up.history("render");
    assert!(
        render.windows(2).any(|w| w[1]["replicas"].as_u64() < w[0]["replicas"].as_u64()
            && w[1]["lag"].as_u64().is_some_and(|lag| lag > 0)),
        "no scale-down under load: {:?}",
        render.iter().map(|s| (&s["replicas"], &s["lag"])).collect::<Vec<_>>()
    );

    // After the cooldown the pool is back at its minimum, its other workers
    // drained and gone; the stages without work never grew.
    let low = up.wait_for("render", scaled_up, "one worker again", |s| s["replicas"] == 1).await;
    let stopped: Vec<u64> = up
        .history("render")
        .iter()
        .flat_map(pids)
        .filter(|pid| !pids(&low).contains(pid))
        .collect();
    assert!(!stopped.is_empty());
    let scaled_down = up.mark();
    up.wait_for("render", scaled_down, "no draining worker", |s| {
        s["draining"] == 0 && s["replicas"] == 1
    })
    .await;
    for pid in &stopped {
        assert!(
            !alive(*pid),
            "scaled-down worker {pid} exited: {:?}",
            std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
        );
    }
    assert_eq!(up.most_replicas("split"), 1);
    assert_eq!(up.most_replicas("assemble"), 1);
    for stage in ["split", "render", "assemble"] {
        assert_eq!(up.history(stage).last().unwrap()["restarts"], 0, "{stage}");
    }

    // SIGTERM stops every worker, then the supervisor.
    let last: Vec<u64> = ["split", "render", "assemble"]
        .iter()
        .flat_map(|s| pids(up.history(s).last().unwrap()))
        .collect();
    assert!(up.terminate(), "pagestream up exits cleanly");
    assert!(last.iter().all(|pid| !alive(*pid)), "no worker outlives pagestream up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_is_replaced() {
    let cluster = Cluster::start(&scaling_topology()).await;
    let logs = tempfile::tempdir().unwrap();
    let up = Up::start(&cluster, logs.path());
    let first = up.wait_for("render", 0, "one worker", |s| s["replicas"] == 1).await;
    let victim = pids(&first)[0];
    Command::new("kill").args(["-KILL", &victim.to_string()]).status().unwrap();

    let replaced = up
        .wait_for("render", 0, "a new worker", |s| {
            s["restarts"] == 1 && s["replicas"] == 1 && !pids(s).contains(&victim)
        })
        .await;
    let replacement = pids(&replaced)[0];
    assert!(alive(replacement));
    // The replacement serves: a document goes through.
    let bytes = std::fs::read(home().join("corpus").join("shared-mime-info-spec.pdf")).unwrap();
    let id = cluster.submit("spec.pdf", bytes).await.doc_id;
    let states = cluster.wait_finished(&[id], Duration::from_secs(120)).await;
    assert_eq!(states[0].pages.len(), 17);

    // A supervisor killed outright leaves no worker behind: each notices
    // its parent is gone, drains and exits.
    let workers: Vec<u64> = ["split", "render", "assemble"]
        .iter()
        .flat_map(|s| pids(up.history(s).last().unwrap()))
        .collect();
    assert!(workers.contains(&replacement));
    drop(up);
    let deadline = Instant::now() + Duration::from_secs(30);
    while workers.iter().any(|pid| alive(*pid)) {
        assert!(Instant::now() < deadline, "workers outlived a killed pagestream up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_nats_brings_a_server_up_and_down_with_the_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let topology = dir.path().join("pipeline.toml");
    std::fs::write(&topology, scaling_topology()).unwrap();
    let port = support::free_port();
    let url = format!("nats://127.0.0.1:{port}");
    let store = dir.path().join("nats");
    let mut child = Command::new(env!("CARGO_BIN_EXE_pagestream"))
        .args(["--nats-url", &url, "--home"])
        .arg(home())
        .arg("--topology")
        .arg(&topology)
        .arg("--store")
        .arg(format!("file://{}", dir.path().join("store").display()))
        .args(["up", "--start-nats", "--output", "json", "--interval", "500ms"])
        .args(["--metrics-addr", "", "--nats-store"])
        .arg(&store)
        .arg("--log-dir")
        .arg(dir.path().join("logs"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The first status line comes once the streams are applied and the
    // pools started.
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    let status: Value = serde_json::from_str(&first).unwrap();
    assert_eq!(status["stages"].as_array().unwrap().len(), 3);
    let js = runtime::jetstream::context(support::connect(&url).await);
    for stream in [schemas::subjects::STREAM_DOCS, schemas::subjects::STREAM_WORK] {
        js.get_stream(stream).await.unwrap_or_else(|e| panic!("{stream}: {e}"));
    }
    assert!(store.join("jetstream").is_dir(), "the store is where --nats-store says");
    drop(js);

    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(child.wait().unwrap().success());
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the server stopped with pagestream up"
    );
}
