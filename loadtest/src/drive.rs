//! Offering a scenario's load to a pipeline and recording what comes back:
//! on JetStream (a running pipeline, or one [`crate::spawn`] started), or
//! on the embedded transport in this process, for the baseline.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::Context;
use futures::StreamExt;
use runtime::blobs::{BlobStore, sha256_hex};
use runtime::jetstream::claim_check::read_result;
use runtime::jetstream::lag::LagReader;
use runtime::jetstream::publish::Publisher;
use runtime::jetstream::submit::submit;
use runtime::jetstream::{Route, context};
use runtime::metrics::{names, scrape, sum};
use schemas::subjects::PREFIX;
use schemas::{DeadLetter, Event, EventBody};
use tokio::sync::Semaphore;

use crate::corpus::{Corpus, Sample};
use crate::record::{Offered, Recorder, Recording, Sample as Probe};
use crate::scenario::{Random, Scenario};

/// The documents of a run: `(due, sample)` in due order.
pub fn plan<'c>(scenario: &Scenario, corpus: &'c Corpus) -> Vec<(Duration, &'c Sample)> {
    let arrivals = scenario.arrivals();
    let mut random = Random::new(scenario.seed ^ 0x5eed);
    let drawn = corpus.draw(&scenario.mix, arrivals.len(), &mut random);
    arrivals.into_iter().zip(drawn).collect()
}

/// The `n`-th document of the run: a unique variant of `sample`, recorded
/// as offered at `due`; returns its id and bytes.
fn offer(
    recorder: &Recorder,
    sample: &Sample,
    run_id: &str,
    n: usize,
    due: Duration,
) -> (String, Vec<u8>) {
    let bytes = Corpus::variant(sample, run_id, n);
    let doc_id = sha256_hex(&bytes);
    let offered = Offered {
        name: sample.name(),
        pages: sample.pages,
        digital: sample.is_digital(),
        due,
        accepted: None,
    };
    recorder.offer(&doc_id, offered);
    (doc_id, bytes)
}

/// Where workers publish their metrics, for memory and redelivery samples.
#[derive(Debug, Clone)]
pub struct MetricsEndpoint {
    pub name: String,
    /// `host:port` serving `/metrics`.
    pub address: String,
}

/// How a JetStream run reaches the pipeline.
#[derive(Debug, Clone)]
pub struct JetStreamTarget {
    pub connect: runtime::jetstream::ConnectConfig,
    pub store: String,
    pub tenant: String,
    pub topology: topology::Pipeline,
    pub metrics: Vec<MetricsEndpoint>,
    /// Submissions in flight at once (bounds the generator's memory, not
    /// the offered load: latency counts from the due time).
    pub max_in_flight: usize,
}

/// Runs `scenario` against the pipeline behind `target`.
pub async fn jetstream(
    scenario: &Scenario,
    corpus: &Corpus,
    target: &JetStreamTarget,
    run_id: &str,
) -> anyhow::Result<Recording> {
    let client = runtime::jetstream::connect(&target.connect).await?;
    let js = context(client.clone());
    let blobs = BlobStore::open(&target.store)?;
    let tenant = target.tenant.as_str();
    let mut results = client.subscribe(format!("{PREFIX}.{tenant}.results.*")).await?;
    let mut events = client.subscribe(format!("{PREFIX}.{tenant}.events.page.done")).await?;
    let mut dead = client.subscribe(format!("{PREFIX}.{tenant}.dead.>")).await?;
    client.flush().await?;

    let recorder = Recorder::new();
    let listeners = {
        let (recorder, blobs, tenant) = (recorder.clone(), blobs.clone(), tenant.to_string());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    Some(message) = results.next() => {
                        // Large results arrive as claim checks: read them whole.
                        match read_result(&blobs, &tenant, &message.payload).await {
                            Ok(result) => recorder.result(result),
                            Err(error) => tracing::warn!(%error, "unreadable result"),
                        }
                    }
                    Some(message) = events.next() => {
                        if let Ok(Event { doc_id, body: EventBody::PageDone { page_index, .. }, .. }) =
                            schemas::decode::<Event>(&message.payload)
                        {
                            recorder.page(&doc_id, page_index);
                        }
                    }
                    Some(message) = dead.next() => {
                        if let Ok(letter) = schemas::decode::<DeadLetter>(&message.payload) {
                            recorder.dead_letter(&letter.failure.doc_id, &letter.failure.stage);
                        }
                    }
                    else => return,
                }
            }
        })
    };
    let sampler = tokio::spawn(sample_jetstream(
        js.clone(),
        Route::from_topology(&target.topology),
        target.metrics.clone(),
        recorder.clone(),
    ));

    let publisher = Publisher::new(js.clone()).retry_for(Duration::from_secs(3600));
    let permits = Arc::new(Semaphore::new(target.max_in_flight.max(1)));
    let mut submissions = tokio::task::JoinSet::new();
    for (n, (due, sample)) in plan(scenario, corpus).into_iter().enumerate() {
        tokio::time::sleep_until((recorder.started() + due).into()).await;
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else { break };
        let (doc_id, bytes) = offer(&recorder, sample, run_id, n, due);
        let (publisher, blobs, recorder, tenant, name) = (
            publisher.clone(),
            blobs.clone(),
            recorder.clone(),
            target.tenant.clone(),
            sample.name(),
        );
        submissions.spawn(async move {
            let _permit = permit;
            match submit(&publisher, &blobs, &tenant, Some(&name), bytes, 256 << 10).await {
                Ok(_) => recorder.accepted(&doc_id),
                Err(error) => tracing::error!(%error, doc_id, "submit failed"),
            }
        });
    }
    while submissions.join_next().await.is_some() {}

    let deadline = tokio::time::Instant::now() + scenario.drain_timeout;
    while !recorder.all_answered() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Still sampled: what the pools do once the load is gone.
    tokio::time::sleep(scenario.quiet_after).await;
    // A last moment for duplicates that would follow the last result.
    tokio::time::sleep(Duration::from_millis(500)).await;
    sampler.abort();
    listeners.abort();
    Ok(recorder.finish())
}

/// Every second: consumer lag per stage, and memory and redeliveries of
/// every worker that serves metrics.
async fn sample_jetstream(
    js: Context,
    route: Route,
    endpoints: Vec<MetricsEndpoint>,
    recorder: Recorder,
) {
    let lags = LagReader::new(js, &route);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let mut sample = Probe::default();
        for (stage, lag) in lags.read().await {
            if let Ok(lag) = lag {
                sample.lag.push((stage, lag.total()));
            }
        }
        for endpoint in &endpoints {
            if let Some(text) = scrape(&endpoint.address).await {
                if let Some(rss) = sum(&text, names::RESIDENT_BYTES, &[]) {
                    sample.rss.push((endpoint.name.clone(), rss as u64));
                }
                if let Some(cpu) = sum(&text, names::CPU_SECONDS, &[]) {
                    sample.cpu_seconds.push((endpoint.name.clone(), cpu));
                }
                sample.redelivered += sum(&text, names::REDELIVERED, &[]).unwrap_or(0.0) as u64;
                for stage in lags.stages() {
                    if let Some(count) = sum(&text, names::STAGE_REPLICAS, &[("stage", stage)]) {
                        sample.replicas.push((stage.to_string(), count as u64));
                    }
                }
            }
        }
        recorder.sample(sample);
    }
}

/// Runs `scenario` on the embedded transport of this process.
pub fn embedded(
    scenario: &Scenario,
    corpus: &Corpus,
    pipeline: &pages::pipeline::Pipeline,
    run_id: &str,
) -> Recording {
    let recorder = Recorder::new();
    let planned = plan(scenario, corpus);
    let documents = planned.into_iter().enumerate().map(|(n, (due, sample))| {
        let wait = (recorder.started() + due).saturating_duration_since(std::time::Instant::now());
        std::thread::sleep(wait);
        let (doc_id, bytes) = offer(&recorder, sample, run_id, n, due);
        recorder.accepted(&doc_id);
        runtime::embedded::InputDocument { name: sample.name(), bytes }
    });
    let sampling = std::sync::atomic::AtomicBool::new(true);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                let rss = runtime::metrics::resident_bytes().unwrap_or(0);
                let cpu = runtime::metrics::cpu_seconds().unwrap_or(0.0);
                recorder.sample(Probe {
                    rss: vec![("embedded".into(), rss)],
                    cpu_seconds: vec![("embedded".into(), cpu)],
                    ..Probe::default()
                });
                std::thread::sleep(Duration::from_secs(1));
            }
        });
        let options =
            runtime::embedded::Options { tenant: "loadtest".into(), ..Default::default() };
        runtime::embedded::run(
            pipeline,
            documents,
            &options,
            |page| recorder.page(&page.task.doc_id, page.task.page_index),
            |result| recorder.result(result),
        );
        sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    });
    recorder.finish()
}
