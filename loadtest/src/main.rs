//! `pagestream-loadtest SCENARIO`: runs a load scenario and writes its
//! report; the exit code says whether the SLO was met.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use clap::Parser;
use loadtest::analysis::{analyse, judge};
use loadtest::corpus::Corpus;
use loadtest::drive::{self, JetStreamTarget, MetricsEndpoint};
use loadtest::report;
use loadtest::scenario::Scenario;
use loadtest::spawn::{Spawned, Workers, sibling_binary};
use pages::home::Home;
use runtime::jetstream::ConnectConfig;

/// Offer a scenario's load to a pagestream pipeline and report latency,
/// throughput, memory and loss.
#[derive(Debug, Parser)]
#[command(name = "pagestream-loadtest", version, max_term_width = 100)]
struct Args {
    /// Scenario file (loadtest/scenarios/*.toml)
    scenario: PathBuf,
    /// Start a local nats-server and workers for the run, stop them after
    #[arg(long, conflicts_with = "embedded")]
    spawn: bool,
    /// With --spawn: worker processes (each runs every stage)
    #[arg(long, default_value_t = 1, conflicts_with = "per_stage")]
    workers: usize,
    /// With --spawn: one worker process per stage instead (`--stage <name>`)
    #[arg(long)]
    per_stage: bool,
    /// With --spawn: `pagestream up` instead, scaling a pool per stage on its lag
    #[arg(long, conflicts_with_all = ["per_stage", "workers"])]
    up: bool,
    /// With --up: at most this many workers per stage (`up --max-replicas`)
    #[arg(long, value_name = "N", requires = "up")]
    up_max_replicas: Option<u32>,
    /// With --up: every stage's scale-down cooldown (`up --cooldown`)
    #[arg(long, value_name = "DURATION", requires = "up")]
    up_cooldown: Option<String>,
    /// Run on the embedded transport in this process (the baseline)
    #[arg(long)]
    embedded: bool,
    /// A running pipeline's NATS server (without --spawn or --embedded)
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    nats_url: String,
    /// The running pipeline's object store
    #[arg(long, env = "PAGESTREAM_STORE", default_value = "file://.pagestream/store")]
    store: String,
    /// `host:port` of a running worker's metrics, for memory samples (repeatable)
    #[arg(long, value_name = "ADDR")]
    metrics: Vec<String>,
    /// Directories of documents to draw from (repeatable) [default: samples/]
    #[arg(long, value_name = "DIR")]
    corpus: Vec<PathBuf>,
    /// Where the report directory is created
    #[arg(long, default_value = "loadtest/results")]
    out: PathBuf,
    /// Pipeline definition [default: the built-in one]
    #[arg(long, env = "PAGESTREAM_TOPOLOGY")]
    topology: Option<PathBuf>,
    /// Libraries and models installed by ./setup
    #[arg(long, env = "PAGESTREAM_HOME", default_value = ".pagestream")]
    home: PathBuf,
    /// The `pagestream` binary for --spawn [default: next to this one]
    #[arg(long)]
    pagestream: Option<PathBuf>,
    /// Tenant of the load's documents
    #[arg(long, default_value = "loadtest")]
    tenant: String,
    /// Cores the pipeline runs on, for pages/s per core [default: this machine's]
    #[arg(long)]
    cores: Option<usize>,
    /// Submissions in flight at once
    #[arg(long, default_value_t = 64)]
    max_in_flight: usize,
}

fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    match run(Args::parse()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn machine(cores: usize) -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
            })
        })
        .unwrap_or_else(|| "unknown cpu".into());
    format!("{cores} cores, {cpu}")
}

fn run(args: Args) -> anyhow::Result<bool> {
    let scenario = Scenario::load(&args.scenario)?;
    let topology = match &args.topology {
        Some(path) => topology::Pipeline::load(path, pages::steps::catalogue()),
        None => topology::Pipeline::embedded(pages::steps::catalogue()),
    }
    .map_err(|errors| anyhow::anyhow!("invalid topology: {errors:?}"))?;
    let home = Home::new(&args.home);
    pages::pdf::init(&home.pdfium_lib())?;
    let dirs =
        if args.corpus.is_empty() { vec![PathBuf::from("samples")] } else { args.corpus.clone() };
    let corpus = Corpus::load(&dirs, &topology.limits().into())?;
    corpus.check(&scenario.mix, &dirs)?;
    let cores =
        args.cores.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let started = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let run_id = format!("{}-{started}", scenario.name);

    let (recording, target) = if args.embedded {
        let pipeline = pages::registry::build(&topology, &home)?;
        (drive::embedded(&scenario, &corpus, &pipeline, &run_id), "embedded transport".to_string())
    } else {
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        runtime.block_on(async {
            let spawned = match args.spawn {
                true => {
                    let binary = args.pagestream.clone().or_else(sibling_binary).context(
                        "no pagestream binary next to this one: build it (cargo build -p workers) or pass --pagestream",
                    )?;
                    let workers = if args.up {
                        let mut options = Vec::new();
                        if let Some(most) = args.up_max_replicas {
                            options.extend(["--max-replicas".to_string(), most.to_string()]);
                        }
                        if let Some(cooldown) = &args.up_cooldown {
                            options.extend(["--cooldown".to_string(), cooldown.clone()]);
                        }
                        Workers::Up(options)
                    } else if args.per_stage {
                        Workers::Fixed(topology.stages().iter().map(|s| s.name().to_string()).collect())
                    } else {
                        Workers::Fixed(vec!["all".to_string(); args.workers.max(1)])
                    };
                    Some(Spawned::start(&binary, args.topology.as_deref(), &topology, &args.home, &workers).await?)
                }
                false => None,
            };
            let (url, store, metrics) = match &spawned {
                Some(s) => (s.url.clone(), s.store.clone(), s.metrics.clone()),
                None => (
                    args.nats_url.clone(),
                    args.store.clone(),
                    args.metrics
                        .iter()
                        .enumerate()
                        .map(|(i, address)| MetricsEndpoint { name: format!("worker-{i}"), address: address.clone() })
                        .collect(),
                ),
            };
            let target = JetStreamTarget {
                connect: ConnectConfig { url: url.clone(), name: "pagestream-loadtest".into(), ..Default::default() },
                store,
                tenant: args.tenant.clone(),
                topology: topology.clone(),
                metrics,
                max_in_flight: args.max_in_flight,
            };
            let recording = drive::jetstream(&scenario, &corpus, &target, &run_id).await?;
            let described = match &spawned {
                Some(_) if args.up => format!(
                    "JetStream, spawned: nats-server + `pagestream up` (a pool per stage scaled on its lag{}{})",
                    args.up_max_replicas.map_or(String::new(), |n| format!(", at most {n} workers per stage")),
                    args.up_cooldown.as_ref().map_or(String::new(), |c| format!(", cooldown {c}")),
                ),
                Some(_) if args.per_stage => {
                    format!("JetStream, spawned: nats-server + one worker process per stage ({})", topology.stages().len())
                }
                Some(_) => format!("JetStream, spawned: nats-server + {} worker process(es), --stage all", args.workers),
                None => format!("JetStream at {url}"),
            };
            if let Some(spawned) = spawned {
                spawned.stop();
            }
            anyhow::Ok((recording, described))
        })?
    };

    let figures = analyse(&recording, cores);
    let verdict = judge(&scenario.name, &figures, &scenario.slo);
    let dir = report::directory(&args.out, &scenario.name, started);
    report::write(&dir, &scenario, &target, &machine(cores), &recording, &figures, &verdict)?;
    println!("{}", verdict.line);
    println!("report: {}", dir.join("report.md").display());
    Ok(verdict.passed)
}
