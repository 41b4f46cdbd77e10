//! What the JetStream transport does at the limits, against a real
//! nats-server: results and pages larger than a message travel by claim
//! check and read back whole; a result the server refuses ends its document
//! failed instead of leaving it open; a stage whose permits are all stuck
//! turns the worker not ready; a worker with no server exits on SIGTERM.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use pages::error::StepError;
use pages::page::{Page, StepMeter};
use pages::steps::Step;
use runtime::client::stored_result;
use runtime::jetstream::Settings;
use runtime::jetstream::publish::{Outgoing, Publisher};
use schemas::subjects::submit;
use schemas::{BBox, DocumentStatus, DocumentSubmission, ErrorKind, EventBody, Line, TextSource};
use support::{
    Cluster, ConsumerOptions, Sleep, TENANT, WorkerProcess, letter_tiles, render_pipeline, sample,
    topology_text,
};

const BIG: u64 = 1 << 30;

/// Adds `lines` lines of text to every page: a page of dense small print.
struct SmallPrint {
    lines: usize,
}

fn small_print_line(page: u32, n: usize) -> String {
    format!("page {page} line {n}: the quick brown fox jumps over the lazy dog, 0123456789 {n:>8}")
}

impl Step for SmallPrint {
    fn name(&self) -> &'static str {
        "small_print"
    }
    fn run(&self, page: &mut Page, _: &mut StepMeter) -> Result<(), StepError> {
        let index = page.task.page_index;
        page.result.lines.extend((0..self.lines).map(|n| Line {
            text: small_print_line(index, n),
            bbox: BBox { x0: 10.0, y0: n as f32, x1: 900.5, y1: n as f32 + 9.5 },
            quad: None,
            confidence: 0.97,
            source: TextSource::Ocr,
            region: Some(0),
            words: Vec::new(),
        }));
        Ok(())
    }
}

fn read(path: std::path::PathBuf) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_and_pages_larger_than_a_message_travel_by_claim_check() {
    let cluster = Cluster::start(&topology_text(&ConsumerOptions::default(), BIG, BIG)).await;
    // 6,000 lines make every page itself larger than the server's 1 MiB
    // max_payload, and the three-page result about 4 MB.
    let step = SmallPrint { lines: 6000 };
    let worker = cluster.worker(render_pipeline(vec![Box::new(step)]), Settings::default()).await;
    let fax = cluster.submit("fax.tiff", read(sample("fax.tiff"))).await;
    cluster.wait_finished(std::slice::from_ref(&fax.doc_id), Duration::from_secs(120)).await;

    // The results stream holds the claim check: no pages, the rest filled in.
    let published = cluster.results(&fax.doc_id).await;
    assert_eq!(published.len(), 1);
    let message = &published[0];
    assert!(message.is_claim_check() && message.pages.is_empty());
    assert_eq!((message.status, message.page_count), (DocumentStatus::Complete, 3));
    let blob = message.full_result.as_ref().unwrap();
    assert!(blob.key.starts_with(&format!("results/{TENANT}/{}/", fax.doc_id)), "{}", blob.key);
    assert!(blob.size > 3 << 20, "{} bytes", blob.size);

    // Readers get the whole result.
    let full =
        stored_result(&cluster.js, &cluster.store, TENANT, &fax.doc_id).await.unwrap().unwrap();
    assert!(!full.is_claim_check());
    assert_eq!(full.pages.len(), 3);
    for page in &full.pages {
        assert_eq!(page.failure, None);
        assert_eq!(page.lines.len(), 6000, "page {}", page.page_index);
        assert_eq!(page.lines[5999].text, small_print_line(page.page_index, 5999));
    }
    let output = cluster.cli().args(["result", &fax.doc_id, "--tenant", TENANT]).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let printed: schemas::DocumentResult = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(printed, full);

    // The spilled pages went with the document; the stored result stays.
    assert_eq!(cluster.stored_files("docs"), Vec::<std::path::PathBuf>::new());
    assert_eq!(cluster.stored_files(&format!("results/{TENANT}/{}", fax.doc_id)).len(), 1);
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_the_server_refuses_ends_its_document_failed_and_a_resubmission_runs_again() {
    let cluster = Cluster::start(&topology_text(&ConsumerOptions::default(), BIG, BIG)).await;
    // Claim checks off: the 4 MB result goes to the server as it is.
    let settings = Settings { result_inline_max_bytes: usize::MAX, ..Settings::default() };
    let step = SmallPrint { lines: 6000 };
    let worker = cluster.worker(render_pipeline(vec![Box::new(step)]), settings).await;
    let bytes = read(sample("fax.tiff"));
    let fax = cluster.submit("fax.tiff", bytes.clone()).await;
    let states =
        cluster.wait_finished(std::slice::from_ref(&fax.doc_id), Duration::from_secs(120)).await;
    assert_eq!(states[0].finished.as_ref().unwrap().status, DocumentStatus::Failed);

    let results = cluster.results(&fax.doc_id).await;
    assert_eq!(results.len(), 1);
    let failure = &results[0].failures[0];
    assert_eq!(results[0].status, DocumentStatus::Failed);
    assert_eq!((failure.stage.as_str(), failure.step.as_str()), ("assemble", "publish_result"));
    assert_eq!(failure.kind, ErrorKind::TooLarge);
    assert!(failure.message.contains("max payload"), "{}", failure.message);
    let events = cluster.events(&fax.doc_id).await;
    assert!(
        events.iter().any(|e| matches!(&e.body, EventBody::DocumentFailed { failure }
            if failure.step == "publish_result")),
        "{events:?}"
    );

    // The document is finished, so the same bytes submitted again (here as
    // after the duplicate window: another message id) run again.
    let again = DocumentSubmission { submitted_at_ms: fax.submitted_at_ms + 1, ..fax.clone() };
    let outgoing = Outgoing::encode(
        submit(TENANT),
        format!("{TENANT}/{}/again", fax.doc_id),
        &fax.doc_id,
        &again,
    )
    .unwrap();
    Publisher::new(cluster.js.clone()).publish(&outgoing).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while cluster.results(&fax.doc_id).await.len() < 2 {
        assert!(Instant::now() < deadline, "the resubmission did not run");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let results = cluster.results(&fax.doc_id).await;
    assert_eq!(results[1].submitted_at_ms, again.submitted_at_ms);
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stage_whose_permits_are_all_stuck_makes_the_worker_not_ready() {
    let options = ConsumerOptions { ack_wait: "60s", concurrency: 2, ..ConsumerOptions::default() };
    // A stage may take one second per step: render (rasterize, sleep) two.
    let text = topology_text(&options, BIG, BIG) + "[limits]\nstep_timeout = \"1s\"\n";
    let cluster = Cluster::start(&text).await;
    let sleep = Sleep(Duration::from_secs(7));
    let worker = cluster.worker(render_pipeline(vec![Box::new(sleep)]), Settings::default()).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !worker.ready.get() {
        assert!(Instant::now() < deadline, "the worker never got ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut ids = Vec::new();
    for (n, tile) in letter_tiles(2).into_iter().enumerate() {
        ids.push(cluster.submit(&format!("tile-{n}.png"), tile).await.doc_id);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while worker.ready.get() {
        assert!(Instant::now() < deadline, "still ready with every render permit stuck");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cluster.wait_finished(&ids, Duration::from_secs(60)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !worker.ready.get() {
        assert!(Instant::now() < deadline, "not ready again once the pages went through");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_server_is_gone_says_so_and_exits_on_sigterm() {
    let mut cluster = Cluster::start(&topology_text(&ConsumerOptions::default(), BIG, BIG)).await;
    let logs = tempfile::tempdir().unwrap();
    let mut worker = WorkerProcess::spawn(&cluster, "all", logs.path());
    let deadline = Instant::now() + Duration::from_secs(60);
    while !worker.get("/readyz").is_some_and(|r| r.starts_with("HTTP/1.1 200")) {
        assert!(Instant::now() < deadline, "worker never ready: {}", worker.log_text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A page in flight when the server goes: it cannot be acked any more.
    let publisher = Publisher::new(cluster.js.clone());
    let tile = letter_tiles(1).remove(0);
    let submitted = runtime::jetstream::submit::submit(
        &publisher,
        &cluster.store,
        TENANT,
        Some("tile.png"),
        tile,
        256 << 10,
    )
    .await
    .unwrap();
    assert!(!submitted.duplicate);
    cluster.server.kill();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !worker.log_text().contains("nats disconnected") {
        assert!(Instant::now() < deadline, "no word of the outage: {}", worker.log_text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The worker was started with a 30 s drain: with no server to finish
    // its page with, it must not wait for it, nor hang on the connection.
    let exited = worker.terminate(Duration::from_secs(10));
    let log = worker.log_text();
    assert!(exited, "exit 0 within 10 s of SIGTERM: {log}");
    assert!(log.contains(&cluster.server.url()), "the log names the servers tried: {log}");
    assert!(!log.contains('\u{1b}'), "no terminal colours in a log file: {log}");
}
