//! `--spawn`: a local pipeline for the run, stopped after it: a
//! `nats-server -js` on a free loopback port with a store of its own, the
//! streams of the topology, and either `pagestream worker` processes (each
//! `--stage all`, or one per stage) or `pagestream up` scaling a pool per
//! stage, serving metrics on loopback.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use runtime::jetstream::{ConnectConfig, Route, provision};

use crate::drive::MetricsEndpoint;

/// A local pipeline; everything is stopped on drop.
pub struct Spawned {
    server: Child,
    workers: Vec<Child>,
    pub url: String,
    pub store: String,
    pub metrics: Vec<MetricsEndpoint>,
    /// Worker process ids, by metrics name.
    pub pids: Vec<(String, u32)>,
    _dir: tempfile::TempDir,
}

impl std::fmt::Debug for Spawned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spawned").field("url", &self.url).finish_non_exhaustive()
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn wait_until(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    while !ready() {
        anyhow::ensure!(Instant::now() < deadline, "{what} did not come up within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// The workers of a spawned pipeline.
#[derive(Debug, Clone)]
pub enum Workers {
    /// One `pagestream worker` process per entry, its `--stage` (`all` or a stage).
    Fixed(Vec<String>),
    /// `pagestream up` with these extra options (e.g. `--max-replicas 3`).
    Up(Vec<String>),
}

impl Spawned {
    /// Starts the server and `workers` of `pagestream` (the binary), with
    /// `topology_file` (or the built-in topology) and the libraries and
    /// models in `home`.
    pub async fn start(
        pagestream: &Path,
        topology_file: Option<&Path>,
        topology: &topology::Pipeline,
        home: &Path,
        workers: &Workers,
    ) -> anyhow::Result<Spawned> {
        let dir = tempfile::tempdir()?;
        let port = free_port()?;
        let server = Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(dir.path().join("jetstream"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("nats-server.log"))?)
            .spawn()
            .context("cannot start nats-server (./setup installs it)")?;
        let url = format!("nats://127.0.0.1:{port}");
        let store = format!("file://{}", dir.path().join("store").display());
        let mut spawned = Spawned {
            server,
            workers: Vec::new(),
            url: url.clone(),
            store: store.clone(),
            metrics: Vec::new(),
            pids: Vec::new(),
            _dir: dir,
        };
        wait_until("nats-server", Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        })?;
        let config = ConnectConfig {
            url: url.clone(),
            name: "pagestream-loadtest".into(),
            ..Default::default()
        };
        let js = runtime::jetstream::context(runtime::jetstream::connect(&config).await?);
        let plan = provision::plan(topology, &Route::from_topology(topology));
        provision::apply(&js, &plan, false).await?;

        let commands: Vec<(String, Vec<String>)> = match workers {
            Workers::Fixed(pools) => pools
                .iter()
                .enumerate()
                .map(|(i, stages)| {
                    let name = match stages.as_str() {
                        "all" => format!("worker-{i}"),
                        stage => format!("worker-{stage}"),
                    };
                    (name, vec!["worker".into(), "--stage".into(), stages.clone()])
                })
                .collect(),
            Workers::Up(options) => {
                let logs = spawned._dir.path().join("workers").display().to_string();
                let mut args = vec!["-v".into(), "up".into(), "--output".into(), "json".into()];
                args.extend(["--log-dir".into(), logs]);
                args.extend(options.iter().cloned());
                vec![("up".to_string(), args)]
            }
        };
        for (name, args) in commands {
            let metrics_port = free_port()?;
            let log = spawned._dir.path().join(format!("{name}.log"));
            let mut command = Command::new(pagestream);
            command.arg("--nats-url").arg(&url).arg("--store").arg(&store).arg("--home").arg(home);
            if let Some(file) = topology_file {
                command.arg("--topology").arg(file);
            }
            let child = command
                .args(&args)
                .arg("--metrics-addr")
                .arg(format!("127.0.0.1:{metrics_port}"))
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log)?)
                .spawn()
                .with_context(|| format!("cannot start {}", pagestream.display()))?;
            spawned.pids.push((name.clone(), child.id()));
            spawned.workers.push(child);
            spawned
                .metrics
                .push(MetricsEndpoint { name, address: format!("127.0.0.1:{metrics_port}") });
        }
        for endpoint in &spawned.metrics {
            let address = endpoint.address.clone();
            wait_until(&format!("{} (/readyz)", endpoint.name), Duration::from_secs(120), || {
                ready(&address)
            })?;
        }
        Ok(spawned)
    }

    /// Stops the workers (or `pagestream up`, which stops its own) with
    /// SIGTERM, so they drain, then the server.
    pub fn stop(mut self) {
        for worker in &self.workers {
            let _ = Command::new("kill").args(["-TERM", &worker.id().to_string()]).status();
        }
        for worker in &mut self.workers {
            let deadline = Instant::now() + Duration::from_secs(60);
            while worker.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        for worker in &mut self.workers {
            let _ = worker.kill();
            let _ = worker.wait();
        }
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

/// Whether `GET /readyz` answers 200.
fn ready(address: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(address) else { return false };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream.write_all(b"GET /readyz HTTP/1.1\r\nHost: loadtest\r\n\r\n").is_err() {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.starts_with("HTTP/1.1 200")
}

/// The `pagestream` binary next to this one (both are built into the same
/// target directory).
pub fn sibling_binary() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let candidate = exe.parent()?.join("pagestream");
    candidate.is_file().then_some(candidate)
}
