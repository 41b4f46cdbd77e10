//! `pagestream up`: a whole pipeline on one host. Applies the streams, then
//! supervises one pool of worker processes per stage, scaled on the stage's
//! lag (see `runtime::supervisor`), until SIGTERM or ctrl-c, which drain every
//! worker. With `--start-nats`, starts a local `nats-server -js` when none
//! answers.

use std::ffi::OsString;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, ValueEnum};

use super::GlobalArgs;
use super::worker::{block_on, connect_config, parse_duration, serve_metrics, wait_for_signal};
use pages::home::Home;
use runtime::jetstream::lag::LagReader;
use runtime::jetstream::{self, Route, provision};
use runtime::metrics::{Metrics, Readiness};
use runtime::supervisor::{Options, StageStatus, Supervisor};

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Start a local `nats-server -js` when none answers at --nats-url (a
    /// loopback address); it stops with this command
    #[arg(long)]
    pub start_nats: bool,
    /// With --start-nats: the server's JetStream store [default: <home>/nats]
    #[arg(long, value_name = "DIR", requires = "start_nats")]
    pub nats_store: Option<PathBuf>,
    /// How often the lags are read and the pools resized
    #[arg(long, default_value = "2s", value_parser = parse_duration, value_name = "DURATION")]
    pub interval: Duration,
    /// Address of the supervisor's /metrics (lag, replicas per stage); empty: none
    #[arg(
        long,
        env = "PAGESTREAM_UP_METRICS_ADDR",
        default_value = "127.0.0.1:9460",
        value_name = "ADDR"
    )]
    pub metrics_addr: String,
    /// On stop or scale-down, how long a worker's in-flight pages may finish
    #[arg(long, default_value = "25s", value_parser = parse_duration, value_name = "DURATION")]
    pub shutdown_timeout: Duration,
    /// Folder of the workers' logs [default: <home>/logs]
    #[arg(long, value_name = "DIR")]
    pub log_dir: Option<PathBuf>,
    /// At most this many workers per stage on this host, whatever the
    /// topology's `max_replicas` (sized for a cluster) allows
    #[arg(long, value_name = "N")]
    pub max_replicas: Option<u32>,
    /// Every stage's scale-down cooldown instead of the topology's
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub cooldown: Option<Duration>,
    /// Status output [default: a live table at a terminal, JSON lines otherwise]
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub output: Option<StatusOutput>,
}

/// How the supervisor reports each tick on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StatusOutput {
    Table,
    Json,
}

pub fn run(global: &GlobalArgs, args: UpArgs) -> anyhow::Result<ExitCode> {
    let topology = super::load_topology(global)?;
    let home = Home::locate(global.home.as_deref());
    let output = args.output.unwrap_or(match std::io::stdout().is_terminal() {
        true => StatusOutput::Table,
        false => StatusOutput::Json,
    });
    block_on(async move {
        let mut nats = None;
        let config = connect_config(global, "pagestream-up", false);
        let client = match jetstream::connect(&config).await {
            Ok(client) => client,
            Err(error) if args.start_nats => {
                tracing::info!(%error, "no server answers: starting one");
                let store = args.nats_store.clone().unwrap_or_else(|| home.root().join("nats"));
                nats = Some(LocalNats::start(&global.nats_url, &store)?);
                jetstream::connect(&connect_config(global, "pagestream-up", true)).await?
            }
            Err(error) => return Err(error).context("no NATS server (--start-nats starts one)"),
        };
        let js = jetstream::context(client);
        let route = Route::from_topology(&topology);
        provision::apply(&js, &provision::plan(&topology, &route), false)
            .await
            .context("cannot apply the streams")?;

        let metrics = Arc::new(Metrics::new());
        let ready = Readiness::default();
        serve_metrics(&args.metrics_addr, &metrics, &ready).await?;
        let stages = topology
            .stages()
            .iter()
            .map(|stage| {
                let mut policy = stage.scaling().clone();
                if let Some(most) = args.max_replicas {
                    policy.max_replicas = policy.max_replicas.min(most).max(policy.min_replicas);
                }
                policy.cooldown = args.cooldown.unwrap_or(policy.cooldown);
                (stage.name().to_string(), policy)
            })
            .collect();
        let options = Options {
            program: std::env::current_exe().context("cannot find the pagestream binary")?,
            global_args: worker_global_args(global, home.root()),
            worker_args: vec![
                "--shutdown-timeout".into(),
                humantime_arg(args.shutdown_timeout),
                "--stop-with-parent".into(),
            ],
            env: global.password.iter().map(|p| ("NATS_PASSWORD".into(), p.into())).collect(),
            drain_limit: args.shutdown_timeout + Duration::from_secs(10),
            log_dir: args.log_dir.clone().unwrap_or_else(|| home.root().join("logs")),
        };
        let mut supervisor =
            Supervisor::new(stages, LagReader::new(js, &route), Arc::clone(&metrics), options);
        ready.set(true);

        let stop = wait_for_signal();
        tokio::pin!(stop);
        let mut ticks = tokio::time::interval(args.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let started = Instant::now();
        loop {
            tokio::select! {
                _ = &mut stop => break,
                _ = ticks.tick() => {
                    let statuses = supervisor.tick().await?;
                    report(output, started.elapsed(), &statuses);
                }
            }
        }
        tracing::info!("stopping: every worker drains");
        ready.set(false);
        supervisor.shutdown().await;
        if let Some(nats) = nats {
            nats.stop();
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// The global options a worker needs, the same as this command's (the
/// password goes through the environment: see [`Options::env`]).
fn worker_global_args(global: &GlobalArgs, home: &Path) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec![
        "--nats-url".into(),
        global.nats_url.clone().into(),
        "--store".into(),
        global.store.clone().into(),
        "--home".into(),
        home.into(),
        "--inbox-prefix".into(),
        global.inbox_prefix.clone().into(),
        "--log-format".into(),
        match global.log_format {
            super::LogFormat::Text => "text".into(),
            super::LogFormat::Json => "json".into(),
        },
    ];
    let paths = [
        ("--topology", &global.topology),
        ("--creds", &global.creds),
        ("--tlsca", &global.tlsca),
        ("--tlscert", &global.tlscert),
        ("--tlskey", &global.tlskey),
    ];
    for (flag, path) in paths {
        if let Some(path) = path {
            args.push(flag.into());
            args.push(path.into());
        }
    }
    if let Some(user) = &global.user {
        args.push("--user".into());
        args.push(user.into());
    }
    // Workers log what they do (starts, drains) unless told to be quiet.
    if global.quiet > 0 {
        args.push(format!("-{}", "q".repeat(global.quiet.into())).into());
    } else {
        args.push(format!("-{}", "v".repeat(global.verbose.max(1).into())).into());
    }
    args
}

fn humantime_arg(duration: Duration) -> OsString {
    format!("{}ms", duration.as_millis()).into()
}

/// One tick on stdout: a table redrawn in place, or a JSON line.
fn report(output: StatusOutput, elapsed: Duration, statuses: &[StageStatus]) {
    let mut stdout = std::io::stdout().lock();
    let _ = match output {
        StatusOutput::Json => {
            let line = serde_json::json!({
                "elapsed_seconds": (elapsed.as_secs_f64() * 10.0).round() / 10.0,
                "stages": statuses,
            });
            writeln!(stdout, "{line}")
        }
        StatusOutput::Table => write!(stdout, "\x1b[H\x1b[2J{}", table(elapsed, statuses)),
    };
    let _ = stdout.flush();
}

fn table(elapsed: Duration, statuses: &[StageStatus]) -> String {
    let seconds = |s: Option<f64>| s.map_or("-".to_string(), |s| format!("{:.2}s", s));
    let mut text = format!(
        "pagestream up  {}s  (ctrl-c drains and stops)\n\n{:<12} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8}\n",
        elapsed.as_secs(),
        "stage",
        "replicas",
        "lag",
        "pages/s",
        "p50",
        "p99",
        "restarts"
    );
    for s in statuses {
        let replicas = match s.draining {
            0 => format!("{}/{}", s.replicas, s.desired),
            draining => format!("{}/{}+{draining}", s.replicas, s.desired),
        };
        let lag = s.lag.map_or("?".to_string(), |lag| lag.to_string());
        text += &format!(
            "{:<12} {:>9} {:>8} {:>8.2} {:>8} {:>8} {:>8}\n",
            s.stage,
            replicas,
            lag,
            s.pages_per_second,
            seconds(s.p50_seconds),
            seconds(s.p99_seconds),
            s.restarts
        );
    }
    text
}

/// A `nats-server -js` this command started, stopped with it.
struct LocalNats {
    child: std::process::Child,
}

impl LocalNats {
    fn start(url: &str, store: &Path) -> anyhow::Result<Self> {
        let address = url
            .split(',')
            .next()
            .and_then(|u| u.trim().strip_prefix("nats://"))
            .context("--start-nats needs a nats:// URL")?;
        let (host, port) = address.rsplit_once(':').unwrap_or((address, "4222"));
        let loopback = host == "localhost"
            || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
        anyhow::ensure!(loopback, "--start-nats starts a server on loopback only, not on {host}");
        std::fs::create_dir_all(store)
            .with_context(|| format!("cannot create {}", store.display()))?;
        let child = std::process::Command::new("nats-server")
            .args(["-js", "-a", host, "-p", port, "-sd"])
            .arg(store)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(store.join("nats-server.log"))?)
            .spawn()
            .context("cannot start nats-server (./setup installs it)")?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(address).is_err() {
            anyhow::ensure!(Instant::now() < deadline, "nats-server did not start within 20 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        tracing::info!(url, store = %store.display(), "nats-server started");
        Ok(LocalNats { child })
    }

    /// SIGTERM: the server flushes its store and exits.
    fn stop(mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let _ = self.child.wait();
    }
}
