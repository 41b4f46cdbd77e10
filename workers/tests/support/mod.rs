//! Harness of the JetStream tests: a real `nats-server` per test on a free
//! loopback port with its own store directory (killed on drop, restartable
//! on the same port and store), a pipeline file written for the test, an
//! in-process worker, and readers of what the pipeline published.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::context::Context;
use pages::error::StepError;
use pages::page::{Page, StepMeter};
use pages::pipeline::{Pipeline, Stage};
use pages::steps::{Step, render, split};
use runtime::blobs::BlobStore;
use runtime::jetstream::publish::Publisher;
use runtime::jetstream::{self, ConnectConfig, Route, Runtime, Settings, provision};
use runtime::jetstream::{Role, worker};
use runtime::metrics::{Metrics, Readiness};
use runtime::shutdown::{Shutdown, ShutdownTrigger};
use schemas::DocumentState;
use schemas::subjects::{STREAM_DEAD_LETTER, STREAM_EVENTS, STREAM_RESULTS};
use schemas::{DeadLetter, DocumentResult, DocumentSubmission, Event, Message};
use tempfile::TempDir;

/// Tenant of the test documents.
pub const TENANT: &str = "acme";

/// A `nats-server -js` of one test.
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    store: TempDir,
    /// Configuration file (accounts, permissions) given with `-c`.
    config: Option<PathBuf>,
}

impl NatsServer {
    /// Starts a server on a free loopback port and waits until it accepts
    /// connections.
    pub fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let store = tempfile::tempdir().unwrap();
        let mut server = NatsServer { child: None, port, store, config: None };
        server.spawn();
        server
    }

    /// Like [`NatsServer::start`], with the configuration `text` (accounts,
    /// users, permissions; it may use `$VAR`s from the environment). Port,
    /// address, JetStream and store come from the command line.
    pub fn start_with_config(text: &str) -> Self {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let store = tempfile::tempdir().unwrap();
        let config = store.path().join("server.conf");
        std::fs::write(&config, text).unwrap();
        let mut server = NatsServer { child: None, port, store, config: Some(config) };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let mut command = Command::new("nats-server");
        if let Some(config) = &self.config {
            command.arg("-c").arg(config);
        }
        let child = command
            .args(["-js", "-a", "127.0.0.1", "-p", &self.port.to_string(), "-sd"])
            .arg(self.store.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server must be on PATH (./setup installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL: no clean shutdown).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the server and starts it again on the same port and store.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Consumer settings of every stage of a test pipeline file.
#[derive(Debug, Clone)]
pub struct ConsumerOptions {
    pub ack_wait: &'static str,
    pub max_deliver: u32,
    pub backoff: &'static str,
    pub max_ack_pending: u32,
    pub fetch_batch: u32,
    pub concurrency: u32,
}

impl Default for ConsumerOptions {
    fn default() -> Self {
        ConsumerOptions {
            ack_wait: "5s",
            max_deliver: 3,
            backoff: r#"["100ms", "200ms"]"#,
            max_ack_pending: 64,
            fetch_batch: 4,
            concurrency: 2,
        }
    }
}

/// A pipeline file `split -> render -> assemble` (the page stages the test
/// pipelines implement), every stream `max_bytes` large.
pub fn topology_text(
    consumer: &ConsumerOptions,
    docs_max_bytes: u64,
    work_max_bytes: u64,
) -> String {
    let mut text = String::new();
    let stream = |name: &str, retention: &str, max_bytes: u64, discard: &str| {
        format!(
            "[streams.{name}]\nretention = \"{retention}\"\nstorage = \"file\"\nmax_bytes = {max_bytes}\n\
             max_age = \"1h\"\ndiscard = \"{discard}\"\nduplicate_window = \"2m\"\nreplicas = 1\n\n"
        )
    };
    text += &stream("docs", "workqueue", docs_max_bytes, "new");
    text += &stream("work", "workqueue", work_max_bytes, "new");
    text += &stream("results", "limits", 256 << 20, "old");
    text += &stream("events", "limits", 64 << 20, "old");
    text += &stream("dead_letter", "limits", 64 << 20, "new");
    let stages = [
        ("split", r#"["sniff", "validate", "fan_out"]"#, Some("render")),
        ("render", r#"["rasterize", "extract_text"]"#, Some("assemble")),
        ("assemble", r#"["assemble"]"#, None),
    ];
    for (name, steps, next) in stages {
        text += &format!("[stages.{name}]\nsubject = \"{name}\"\nsteps = {steps}\n");
        if let Some(next) = next {
            text += &format!("next = \"{next}\"\n");
        }
        text += &format!(
            "concurrency = {}\n\n[stages.{name}.consumer]\nack_wait = \"{}\"\nmax_deliver = {}\n\
             backoff = {}\nmax_ack_pending = {}\nfetch_batch = {}\n\n",
            consumer.concurrency,
            consumer.ack_wait,
            consumer.max_deliver,
            consumer.backoff,
            consumer.max_ack_pending,
            consumer.fetch_batch
        );
    }
    text
}

/// The real `render` steps for images (no PDF support needed), followed by `extra`.
pub fn render_pipeline(extra: Vec<Box<dyn Step>>) -> Pipeline {
    let mut steps: Vec<Box<dyn Step>> = vec![Box::new(render::Rasterize::default())];
    steps.extend(extra);
    let mut stage = Stage::new("render", steps);
    stage.concurrency = 2;
    Pipeline { splitter: split::Splitter::default(), stages: vec![stage] }
}

/// A server, its streams, an object store, and helpers to submit and read back.
pub struct Cluster {
    pub server: NatsServer,
    pub js: Context,
    pub topology: topology::Pipeline,
    pub topology_file: PathBuf,
    pub store: BlobStore,
    pub store_url: String,
    dir: TempDir,
}

impl Cluster {
    /// Starts a server and applies the streams of the pipeline file `text`.
    pub async fn start(text: &str) -> Self {
        // `RUST_LOG=workers=debug` shows what the workers do.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let server = NatsServer::start();
        let dir = tempfile::tempdir().unwrap();
        let topology_file = dir.path().join("pipeline.toml");
        std::fs::write(&topology_file, text).unwrap();
        let topology =
            topology::Pipeline::from_str(text, "pipeline.toml", pages::steps::catalogue())
                .unwrap_or_else(|errors| panic!("test pipeline file is invalid: {errors:?}"));
        let store_url = format!("file://{}", dir.path().join("store").display());
        let store = BlobStore::open(&store_url).unwrap();
        let js = jetstream::context(connect(&server.url()).await);
        let plan = provision::plan(&topology, &Route::from_topology(&topology));
        provision::apply(&js, &plan, false).await.unwrap();
        Cluster { server, js, topology, topology_file, store, store_url, dir }
    }

    /// A `pagestream` command bound to this cluster: server, pipeline file,
    /// object store and the `./setup` home.
    pub fn cli(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_pagestream"));
        command
            .arg("--nats-url")
            .arg(self.server.url())
            .arg("--topology")
            .arg(&self.topology_file)
            .arg("--store")
            .arg(&self.store_url)
            .arg("--home")
            .arg(home());
        command
    }

    /// Directory of the object store.
    pub fn store_dir(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    /// A worker serving every stage of `pipeline` in this process.
    pub async fn worker(&self, pipeline: Pipeline, settings: Settings) -> InProcessWorker {
        let metrics = Arc::new(Metrics::new());
        let client = connect(&self.server.url()).await;
        let runtime = Runtime::new(
            client,
            pipeline,
            &self.topology,
            BlobStore::open(&self.store_url).unwrap(),
            settings,
            Arc::clone(&metrics),
        )
        .await
        .unwrap();
        let runtime = Arc::new(runtime);
        let roles = Role::parse("all", &runtime).unwrap();
        let (trigger, shutdown) = Shutdown::new();
        let ready = Readiness::default();
        let task = tokio::spawn(worker::run(Arc::clone(&runtime), roles, shutdown, ready.clone()));
        InProcessWorker { trigger, task, metrics, runtime, ready }
    }

    /// A publisher on its own connection, counting retries in `metrics`.
    pub async fn publisher(&self, metrics: Arc<Metrics>) -> Publisher {
        let js = jetstream::context(connect(&self.server.url()).await);
        Publisher::new(js).with_metrics(metrics)
    }

    /// Submits a document of tenant [`TENANT`].
    pub async fn submit(&self, name: &str, bytes: Vec<u8>) -> DocumentSubmission {
        let publisher = Publisher::new(self.js.clone()).retry_for(Duration::from_secs(60));
        jetstream::submit::submit(&publisher, &self.store, TENANT, Some(name), bytes, 256 << 10)
            .await
            .unwrap()
            .submission
    }

    /// Waits until every document is finished; panics after `limit`.
    pub async fn wait_finished(&self, doc_ids: &[String], limit: Duration) -> Vec<DocumentState> {
        let kv = self.js.get_key_value(schemas::subjects::KV_DOCUMENTS).await.unwrap();
        let documents = runtime::jetstream::state::Documents::new(kv);
        let deadline = Instant::now() + limit;
        loop {
            let mut states = Vec::new();
            for doc_id in doc_ids {
                match documents.get(TENANT, doc_id).await {
                    Ok(Some(state)) if state.finished.is_some() => states.push(state),
                    _ => break,
                }
            }
            if states.len() == doc_ids.len() {
                return states;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {} documents finished in time",
                states.len(),
                doc_ids.len()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Every message of `stream` (oldest first) on `subject`, decoded.
    pub async fn messages<M: Message>(&self, stream: &str, subject: &str) -> Vec<M> {
        let mut stream = self.js.get_stream(stream).await.unwrap();
        let state = stream.info().await.unwrap().state.clone();
        let mut found = Vec::new();
        for sequence in state.first_sequence..=state.last_sequence {
            if let Ok(message) = stream.get_raw_message(sequence).await
                && (subject.ends_with('>')
                    && message.subject.starts_with(subject.trim_end_matches('>'))
                    || message.subject.as_str() == subject)
            {
                found.push(schemas::decode(&message.payload).unwrap());
            }
        }
        found
    }

    /// The results published for a document.
    pub async fn results(&self, doc_id: &str) -> Vec<DocumentResult> {
        self.messages(STREAM_RESULTS, &schemas::subjects::result(TENANT, doc_id)).await
    }

    /// The events published for a document.
    pub async fn events(&self, doc_id: &str) -> Vec<Event> {
        let events: Vec<Event> =
            self.messages(STREAM_EVENTS, &format!("pagestream.{TENANT}.events.>")).await;
        events.into_iter().filter(|e| e.doc_id == doc_id).collect()
    }

    /// Every dead letter.
    pub async fn dead_letters(&self) -> Vec<DeadLetter> {
        self.messages(STREAM_DEAD_LETTER, "pagestream.>").await
    }

    /// Files left in the object store under `dir` (relative to the store).
    pub fn stored_files(&self, dir: &str) -> Vec<PathBuf> {
        let mut files = Vec::new();
        walk(&self.store_dir().join(dir), &mut files);
        files
    }
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            walk(&path, files);
        } else {
            files.push(path);
        }
    }
}

/// Connects to a test server.
pub async fn connect(url: &str) -> async_nats::Client {
    let config = ConnectConfig { url: url.to_string(), name: "test".into(), ..Default::default() };
    jetstream::connect(&config).await.unwrap()
}

/// A worker running in this process.
pub struct InProcessWorker {
    trigger: ShutdownTrigger,
    task: tokio::task::JoinHandle<Result<(), jetstream::Error>>,
    pub metrics: Arc<Metrics>,
    pub runtime: Arc<Runtime>,
    pub ready: Readiness,
}

impl InProcessWorker {
    /// Asks the worker to stop and waits until it has drained.
    pub async fn stop(self) {
        self.trigger.trigger();
        self.task.await.unwrap().unwrap();
    }

    /// The value of a counter or gauge of the metrics text, summed over label sets
    /// containing `labels`.
    pub fn metric(&self, name: &str, labels: &str) -> f64 {
        metric(&self.metrics.render(), name, labels)
    }
}

/// Sum of the samples of metric `name` whose label set contains `labels`.
pub fn metric(text: &str, name: &str, labels: &str) -> f64 {
    text.lines()
        .filter(|line| line.starts_with(name) && line[name.len()..].starts_with(['{', ' ']))
        .filter(|line| line.contains(labels))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A step that sleeps, for pages that take a while.
pub struct Sleep(pub Duration);

impl Step for Sleep {
    fn name(&self) -> &'static str {
        "sleep"
    }
    fn run(&self, _: &mut Page, _: &mut StepMeter) -> Result<(), StepError> {
        std::thread::sleep(self.0);
        Ok(())
    }
}

/// A step that records how many pages it works on at once.
#[derive(Default, Clone)]
pub struct Probe {
    pub now: Arc<AtomicUsize>,
    pub max: Arc<AtomicUsize>,
    pub runs: Arc<AtomicUsize>,
    pub pause: Duration,
}

impl Step for Probe {
    fn name(&self) -> &'static str {
        "probe"
    }
    fn run(&self, _: &mut Page, _: &mut StepMeter) -> Result<(), StepError> {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(now, Ordering::SeqCst);
        self.runs.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(self.pause);
        self.now.fetch_sub(1, Ordering::SeqCst);
        Ok(())
    }
}

/// Path of a file in the repository's `samples/`.
pub fn sample(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples").join(name)
}

/// Path of a file in `workers/tests/fixtures/`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// Distinct real page images: tiles of the scanned letter sample, as PNG.
pub fn letter_tiles(count: usize) -> Vec<Vec<u8>> {
    let letter = image::open(sample("scan-letter.png")).unwrap().to_rgb8();
    let (width, height) = (letter.width() / 3, letter.height() / 6);
    (0..count)
        .map(|i| {
            let (x, y) = ((i as u32 % 3) * width, (i as u32 / 3 % 6) * height);
            let mut tile = image::imageops::crop_imm(&letter, x, y, width, height).to_image();
            // Tiles beyond the eighteenth repeat a position: mark them apart.
            tile.put_pixel(0, 0, image::Rgb([i as u8, (i / 256) as u8, 7]));
            let mut png = Vec::new();
            tile.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png).unwrap();
            png
        })
        .collect()
}

/// The directory `./setup` fills with the runtime libraries and models.
pub fn home() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../.pagestream")
}

/// The built-in pipeline file with every consumer's `ack_wait` set to `ack_wait`.
pub fn real_topology_text(ack_wait: &str) -> String {
    let mut text = topology::EMBEDDED.to_string();
    for long in ["\"30s\"", "\"60s\""] {
        text = text.replace(&format!("ack_wait = {long}"), &format!("ack_wait = \"{ack_wait}\""));
    }
    text
}

/// A `pagestream worker` child process, killed on drop.
pub struct WorkerProcess {
    child: Option<Child>,
    pub metrics_port: u16,
    pub log: PathBuf,
}

impl WorkerProcess {
    /// Starts `pagestream worker --stage <stages>` against `cluster`.
    pub fn spawn(cluster: &Cluster, stages: &str, log_dir: &Path) -> Self {
        Self::spawn_with(cluster, stages, log_dir, &[])
    }

    /// Like [`WorkerProcess::spawn`], with more `worker` options.
    pub fn spawn_with(cluster: &Cluster, stages: &str, log_dir: &Path, options: &[&str]) -> Self {
        let metrics_port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = log_dir.join(format!("worker-{metrics_port}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_pagestream"))
            .arg("--nats-url")
            .arg(cluster.server.url())
            .arg("--topology")
            .arg(&cluster.topology_file)
            .arg("--store")
            .arg(&cluster.store_url)
            .arg("--home")
            .arg(home())
            .args(["-v", "worker", "--stage", stages, "--shutdown-timeout", "30s"])
            .args(options)
            .arg("--metrics-addr")
            .arg(format!("127.0.0.1:{metrics_port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        WorkerProcess { child: Some(child), metrics_port, log }
    }

    /// GET `path` of the worker's HTTP endpoint: status line and body, or
    /// none while it does not answer.
    pub fn get(&self, path: &str) -> Option<String> {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.metrics_port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(stream, "GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        Some(response)
    }

    /// Waits until the metric `name{labels}` reaches `at_least`.
    pub async fn wait_metric(&self, name: &str, labels: &str, at_least: f64, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(text) = self.get("/metrics")
                && metric(&text, name, labels) >= at_least
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{name}{{{labels}}} never reached {at_least}; log: {}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The worker's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: the process dies at once, whatever it was doing.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits for the exit; returns whether it exited with 0.
    pub fn terminate(&mut self, limit: Duration) -> bool {
        let Some(mut child) = self.child.take() else { return false };
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status.success();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A free loopback port (bound and released: another process may take it
/// before it is used, which the callers' retries absorb).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// One server of a [`NatsCluster`].
pub struct ClusterNode {
    child: Option<Child>,
    pub name: String,
    pub port: u16,
    cluster_port: u16,
    routes: String,
    store: TempDir,
}

impl ClusterNode {
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let child = Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", &self.port.to_string(), "-n", &self.name])
            .args(["--cluster_name", "pagestream", "--cluster"])
            .arg(format!("nats://127.0.0.1:{}", self.cluster_port))
            .arg("--routes")
            .arg(&self.routes)
            .arg("-sd")
            .arg(self.store.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server must be on PATH (./setup installs it)");
        self.child = Some(child);
    }

    /// SIGKILL: the server is gone at once.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }
}

impl Drop for ClusterNode {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `size` JetStream servers on loopback, routed into one cluster (every
/// server lists the others' cluster ports).
pub struct NatsCluster {
    pub nodes: Vec<ClusterNode>,
}

impl NatsCluster {
    /// Starts the servers and waits until each accepts connections (the
    /// JetStream meta leader is elected a little later: see
    /// [`NatsCluster::apply`]).
    pub fn start(size: usize) -> Self {
        let cluster_ports: Vec<u16> = (0..size).map(|_| free_port()).collect();
        let mut nodes: Vec<ClusterNode> = (0..size)
            .map(|i| {
                let routes: Vec<String> = cluster_ports
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(_, port)| format!("nats://127.0.0.1:{port}"))
                    .collect();
                ClusterNode {
                    child: None,
                    name: format!("n{i}"),
                    port: free_port(),
                    cluster_port: cluster_ports[i],
                    routes: routes.join(","),
                    store: tempfile::tempdir().unwrap(),
                }
            })
            .collect();
        for node in &mut nodes {
            node.spawn();
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        for node in &nodes {
            while std::net::TcpStream::connect(("127.0.0.1", node.port)).is_err() {
                assert!(Instant::now() < deadline, "{} did not start", node.name);
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        NatsCluster { nodes }
    }

    /// The node called `name`.
    pub fn node(&mut self, name: &str) -> &mut ClusterNode {
        self.nodes.iter_mut().find(|n| n.name == name).unwrap()
    }

    /// Applies the streams of `topology` through `js`, retrying while the
    /// cluster elects its JetStream leader.
    pub async fn apply(js: &Context, topology: &topology::Pipeline) {
        let plan = provision::plan(topology, &Route::from_topology(topology));
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match provision::apply(js, &plan, false).await {
                Ok(_) => return,
                Err(error) => {
                    assert!(Instant::now() < deadline, "streams not applied: {error}");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
        }
    }
}
