//! JetStream transport benchmark against a real nats-server on loopback:
//!
//! 1. the cost of one stage hop (publish with `Nats-Msg-Id` + publish ack +
//!    fetch + double ack) for a page message, one at a time and pipelined;
//! 2. pipeline throughput with every stage a no-op (transport cost only),
//!    JetStream `--stage all` in this process vs the embedded transport;
//! 3. the same with the real models on `samples/` (when `./setup` ran).
//!
//! `cargo bench -p workers --bench jetstream` (`PAGESTREAM_BENCH_HOPS`,
//! `PAGESTREAM_BENCH_PAGES` change the sizes).
#![allow(clippy::unwrap_used)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use futures::StreamExt;
use pages::error::StepError;
use pages::page::{Page, StepMeter};
use pages::pipeline::{Pipeline, Stage};
use pages::steps::{Step, split};
use runtime::embedded::{self, InputDocument};
use runtime::jetstream::publish::{Outgoing, Publisher};
use runtime::jetstream::{Settings, page_msg_id};
use schemas::subjects::STREAM_WORK;
use schemas::{
    BBox, DocumentKind, DocumentSource, Line, PagePayload, PageResult, PageTask, TextSource,
};
use support::{Cluster, ConsumerOptions, letter_tiles, sample, topology_text};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A page message as `enrich` hands it to `assemble`: 40 lines of text.
fn page_payload(page_index: u32) -> PagePayload {
    let task = PageTask {
        doc_id: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
        tenant: support::TENANT.into(),
        page_index,
        page_count: u32::MAX,
        kind: DocumentKind::Pdf,
        source: DocumentSource::Inline { bytes: Vec::new() },
        submitted_at_ms: 1,
    };
    let lines = (0..40)
        .map(|i| Line {
            text: format!(
                "Line {i} of the page with some ordinary words and an amount EUR 1,234.56"
            ),
            bbox: BBox { x0: 100.0, y0: 40.0 * i as f32, x1: 1100.0, y1: 40.0 * i as f32 + 30.0 },
            quad: None,
            confidence: 0.97,
            source: TextSource::Ocr,
            region: Some(0),
            words: Vec::new(),
        })
        .collect();
    let result =
        PageResult { page_index, width: 1240, height: 1754, lines, ..PageResult::default() };
    PagePayload { task, image: None, text_layer: Vec::new(), result, sent_at_ms: 0, spilled: None }
}

/// Stage hop cost: publish + ack + fetch + double ack.
async fn hop_overhead(hops: usize) {
    let cluster =
        Cluster::start(&topology_text(&ConsumerOptions::default(), 1 << 30, 1 << 30)).await;
    let publisher = Publisher::new(cluster.js.clone());
    let stream = cluster.js.get_stream(STREAM_WORK).await.unwrap();
    let consumer = stream
        .get_consumer::<async_nats::jetstream::consumer::pull::Config>("render")
        .await
        .unwrap();
    let message = |i: usize| {
        let payload = page_payload(i as u32);
        let subject = schemas::subjects::stage_input(support::TENANT, "render");
        Outgoing::encode(
            subject,
            page_msg_id(&payload.task, "render", None),
            &payload.task.doc_id,
            &payload,
        )
        .unwrap()
    };
    println!("page message: {} bytes", message(0).payload.len());

    // One at a time: the latency a single page pays per hop.
    let warmup = 100;
    let mut started = Instant::now();
    for i in 0..hops + warmup {
        if i == warmup {
            started = Instant::now();
        }
        publisher.publish(&message(i)).await.unwrap();
        let mut batch = consumer
            .batch()
            .max_messages(1)
            .expires(Duration::from_secs(1))
            .messages()
            .await
            .unwrap();
        let received = batch.next().await.unwrap().unwrap();
        received.double_ack().await.unwrap();
    }
    let sequential = started.elapsed().as_secs_f64() * 1e6 / hops as f64;

    // Pipelined like a worker with 64 pages in flight.
    let window = 64;
    let offset = hops + warmup;
    let started = Instant::now();
    for chunk in 0..hops / window {
        let messages: Vec<_> = (0..window).map(|i| message(offset + chunk * window + i)).collect();
        publisher.publish_all(&messages, window).await.unwrap();
        let mut received = Vec::with_capacity(window);
        while received.len() < window {
            let mut batch = consumer
                .batch()
                .max_messages(window - received.len())
                .expires(Duration::from_secs(1))
                .messages()
                .await
                .unwrap();
            while let Some(message) = batch.next().await {
                received.push(message.unwrap());
            }
        }
        futures::future::join_all(received.iter().map(|m| m.double_ack())).await;
    }
    let pipelined = started.elapsed().as_secs_f64() * 1e6 / (hops / window * window) as f64;
    println!("stage hop (publish + ack + fetch + double ack), {hops} pages:");
    println!("  one page at a time: {sequential:8.0} us per page per hop");
    println!("  64 pages in flight: {pipelined:8.0} us per page per hop");
}

/// A step that does nothing, to measure the transports alone.
struct Nothing;

impl Step for Nothing {
    fn name(&self) -> &str {
        "nothing"
    }
    fn run(&self, _: &mut Page, _: &mut StepMeter) -> Result<(), StepError> {
        Ok(())
    }
}

/// Every page stage of the built-in topology, each a no-op.
fn no_op_pipeline(topology: &topology::Pipeline, concurrency: usize) -> Pipeline {
    let stages = topology
        .stages()
        .iter()
        .map(|s| s.name())
        .filter(|n| *n != "split" && *n != "assemble")
        .enumerate()
        .map(|(i, name)| {
            let mut stage = Stage::new(name, vec![Box::new(Nothing) as Box<dyn Step>]);
            stage.concurrency = concurrency;
            // like `render`, the first stage reads the document
            stage.needs_document = i == 0;
            stage
        })
        .collect();
    Pipeline { splitter: split::Splitter::default(), stages }
}

/// Pages per second through the embedded transport.
fn embedded_rate(pipeline: &Pipeline, documents: &[(String, Vec<u8>)], pages: usize) -> f64 {
    let inputs = documents
        .iter()
        .map(|(name, bytes)| InputDocument { name: name.clone(), bytes: bytes.clone() });
    let started = Instant::now();
    let mut done = 0;
    embedded::run(pipeline, inputs, &embedded::Options::default(), |_| {}, |_| done += 1);
    assert_eq!(done, documents.len());
    pages as f64 / started.elapsed().as_secs_f64()
}

/// Pages per second through JetStream with one in-process `--stage all` worker.
async fn jetstream_rate(
    text: &str,
    pipeline: Pipeline,
    documents: &[(String, Vec<u8>)],
    pages: usize,
) -> f64 {
    let cluster = Cluster::start(text).await;
    let worker = cluster.worker(pipeline, Settings::default()).await;
    let started = Instant::now();
    let mut ids = Vec::new();
    for (name, bytes) in documents {
        ids.push(cluster.submit(name, bytes.clone()).await.doc_id);
    }
    cluster.wait_finished(&ids, Duration::from_secs(3600)).await;
    let rate = pages as f64 / started.elapsed().as_secs_f64();
    worker.stop().await;
    rate
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let hops = env_usize("PAGESTREAM_BENCH_HOPS", 2000);
    runtime.block_on(hop_overhead(hops));

    // No-op stages: what the transports cost per page.
    let pages = env_usize("PAGESTREAM_BENCH_PAGES", 200);
    let tiles: Vec<_> = letter_tiles(pages)
        .into_iter()
        .enumerate()
        .map(|(i, t)| (format!("tile-{i}.png"), t))
        .collect();
    let text = topology::EMBEDDED;
    let topology =
        topology::Pipeline::from_str(text, "pipeline.toml", pages::steps::catalogue()).unwrap();
    let hops_per_page = topology.stages().len() - 1;
    let embedded = embedded_rate(&no_op_pipeline(&topology, 4), &tiles, pages);
    let jetstream =
        runtime.block_on(jetstream_rate(text, no_op_pipeline(&topology, 4), &tiles, pages));
    println!("no-op stages ({hops_per_page} hops per page, {pages} one-page documents):");
    println!("  embedded:             {embedded:8.1} pages/s");
    println!("  jetstream --stage all: {jetstream:7.1} pages/s");
    let overhead = (1.0 / jetstream - 1.0 / embedded) * 1e6 / hops_per_page as f64;
    println!("  difference: {overhead:.0} us per page per hop (wall time, with concurrency)");

    // The real models on the samples.
    let home = support::home();
    if !home.join("models").is_dir() {
        println!("real pipeline skipped: run ./setup first");
        return;
    }
    let documents: Vec<_> = ["invoice.pdf", "report.pdf", "scan-letter.png", "fax.tiff"]
        .iter()
        .map(|name| (name.to_string(), std::fs::read(sample(name)).unwrap()))
        .collect();
    let pages = 7;
    let home = pages::home::Home::new(home);
    let embedded =
        embedded_rate(&pages::registry::build(&topology, &home).unwrap(), &documents, pages);
    let pipeline = pages::registry::build(&topology, &home).unwrap();
    let jetstream = runtime.block_on(jetstream_rate(text, pipeline, &documents, pages));
    println!("real models on samples/ ({pages} pages):");
    println!("  embedded:             {embedded:8.2} pages/s");
    println!("  jetstream --stage all: {jetstream:7.2} pages/s");
}
