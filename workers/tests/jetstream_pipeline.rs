//! The JetStream transport against a real nats-server, with the real
//! `render` step on real images and test steps that fail or take time:
//! every page lands, each document result is published once, poison pages
//! are dead-lettered and replayed, a server restart loses nothing.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use pages::error::StepError;
use pages::page::{Page, StepMeter};
use pages::steps::Step;
use runtime::jetstream::Settings;
use schemas::{DocumentStatus, ErrorKind, EventBody};
use support::{Cluster, ConsumerOptions, Probe, render_pipeline, sample, topology_text};

const BIG: u64 = 1 << 30;

fn read(path: std::path::PathBuf) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_lands_and_each_document_result_is_published_once() {
    let cluster = Cluster::start(&topology_text(&ConsumerOptions::default(), BIG, BIG)).await;
    let worker = cluster.worker(render_pipeline(Vec::new()), Settings::default()).await;
    let fax = cluster.submit("fax.tiff", read(sample("fax.tiff"))).await;
    let letter = cluster.submit("scan-letter.png", read(sample("scan-letter.png"))).await;
    let garbage =
        cluster.submit("not-a-document.txt", read(support::fixture("not-a-document.txt"))).await;
    // The same bytes again: the submit stream drops the duplicate.
    cluster.submit("fax-again.tiff", read(sample("fax.tiff"))).await;
    let ids = [fax.doc_id.clone(), letter.doc_id.clone(), garbage.doc_id.clone()];
    let states = cluster.wait_finished(&ids, Duration::from_secs(60)).await;
    assert_eq!(states.iter().map(|s| s.pages.len()).collect::<Vec<_>>(), [3, 1, 0]);

    let results = cluster.results(&fax.doc_id).await;
    assert_eq!(results.len(), 1, "one result for the fax");
    let result = &results[0];
    assert_eq!(
        (result.status, result.page_count, result.file_name.as_deref()),
        (DocumentStatus::Complete, 3, Some("fax.tiff"))
    );
    assert_eq!(result.pages.iter().map(|p| p.page_index).collect::<Vec<_>>(), [0, 1, 2]);
    for page in &result.pages {
        // 1654 x 2339 scaled to a long side of 2000.
        assert_eq!((page.width, page.height), (1414, 2000), "page {}", page.page_index);
        let steps: Vec<_> =
            page.timings.iter().map(|t| (t.stage.as_str(), t.step.as_str())).collect();
        assert!(steps.contains(&("render", "rasterize")), "{steps:?}");
    }
    assert!(result.pages[0].timings.iter().any(|t| t.step == "sniff"), "split timings on page 0");

    let letter_result = cluster.results(&letter.doc_id).await;
    assert_eq!(letter_result.len(), 1);
    assert_eq!(letter_result[0].status, DocumentStatus::Complete);

    let rejected = cluster.results(&garbage.doc_id).await;
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].status, DocumentStatus::Failed);
    assert_eq!(rejected[0].failures[0].kind, ErrorKind::UnsupportedFormat);

    let events = cluster.events(&fax.doc_id).await;
    let done = events.iter().filter(|e| matches!(e.body, EventBody::DocumentDone { .. })).count();
    let pages_done =
        events.iter().filter(|e| matches!(e.body, EventBody::PageDone { ok: true, .. })).count();
    assert_eq!((done, pages_done), (1, 3));
    let failed = cluster.events(&garbage.doc_id).await;
    assert!(
        matches!(&failed[..], [event] if matches!(event.body, EventBody::DocumentFailed { .. }))
    );

    // Blobs of finished documents are gone; the exports stay.
    assert_eq!(cluster.stored_files("docs"), Vec::<std::path::PathBuf>::new());
    assert_eq!(cluster.stored_files("results").len(), 6);
    assert_eq!(worker.metric("pagestream_documents_finished_total", ""), 3.0);
    worker.stop().await;
}

/// Fails page `page` of every document with a retryable error while
/// `broken`, and rejects page `reject` for good.
struct Poison {
    page: u32,
    reject: u32,
    broken: Arc<AtomicBool>,
}

impl Step for Poison {
    fn name(&self) -> &'static str {
        "poison"
    }
    fn run(&self, page: &mut Page, _: &mut StepMeter) -> Result<(), StepError> {
        let index = page.task.page_index;
        if index == self.reject {
            return Err(StepError::reject(ErrorKind::Corrupt, "page cannot be read"));
        }
        if index == self.page && self.broken.load(Ordering::SeqCst) {
            return Err(StepError::retry_after(
                ErrorKind::Model,
                Duration::from_millis(50),
                "model crashed",
            ));
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_pages_are_dead_lettered_and_replayed() {
    let options = ConsumerOptions { max_deliver: 3, ..ConsumerOptions::default() };
    let cluster = Cluster::start(&topology_text(&options, BIG, BIG)).await;
    let broken = Arc::new(AtomicBool::new(true));
    let poison = Poison { page: 1, reject: 2, broken: Arc::clone(&broken) };
    let worker = cluster.worker(render_pipeline(vec![Box::new(poison)]), Settings::default()).await;
    let fax = cluster.submit("fax.tiff", read(sample("fax.tiff"))).await;
    cluster.wait_finished(std::slice::from_ref(&fax.doc_id), Duration::from_secs(60)).await;

    let result = &cluster.results(&fax.doc_id).await[0];
    assert_eq!(result.status, DocumentStatus::Partial);
    let failures: Vec<_> = result
        .pages
        .iter()
        .map(|p| p.failure.as_ref().map(|f| (f.kind, f.step.as_str(), f.attempts)))
        .collect();
    assert_eq!(
        failures,
        [None, Some((ErrorKind::Model, "poison", 3)), Some((ErrorKind::Corrupt, "poison", 1))]
    );

    let letters = cluster.dead_letters().await;
    let mut dead: Vec<_> = letters
        .iter()
        .map(|l| (l.failure.page_index, l.failure.attempts, l.subject.as_str()))
        .collect();
    dead.sort();
    assert_eq!(
        dead,
        [
            (Some(1), 3, "pagestream.acme.pages.render"),
            (Some(2), 1, "pagestream.acme.pages.render")
        ]
    );
    let original: schemas::PagePayload = schemas::decode(&letters[0].payload).unwrap();
    assert_eq!(original.task.doc_id, fax.doc_id);
    assert_eq!(worker.metric("pagestream_pages_dead_lettered_total", r#"stage="render""#), 2.0);
    assert_eq!(worker.metric("pagestream_pages_failed_total", r#"outcome="retry""#), 2.0);

    // The model is fixed: replaying the retried page completes that page;
    // the document result is published again with it.
    broken.store(false, Ordering::SeqCst);
    let listed = runtime::jetstream::dlq::list(&cluster.js, 0, 10).await.unwrap();
    let sequence = listed
        .iter()
        .find(|e| e.letter.as_ref().unwrap().failure.page_index == Some(1))
        .unwrap()
        .sequence;
    runtime::jetstream::dlq::replay(&cluster.js, &cluster.store, &[sequence]).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while cluster.results(&fax.doc_id).await.len() < 2 {
        assert!(std::time::Instant::now() < deadline, "no result after the replay");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let results = cluster.results(&fax.doc_id).await;
    assert_eq!(results.len(), 2);
    let replayed = &results[1];
    assert_eq!(replayed.status, DocumentStatus::Partial);
    assert!(replayed.pages[1].failure.is_none() && replayed.pages[2].failure.is_some());
    assert_eq!(cluster.dead_letters().await.len(), 1, "the replayed letter is removed");
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_restart_mid_run_loses_nothing() {
    let cluster = Cluster::start(&topology_text(&ConsumerOptions::default(), BIG, BIG)).await;
    let probe = Probe { pause: Duration::from_millis(150), ..Probe::default() };
    let worker =
        cluster.worker(render_pipeline(vec![Box::new(probe.clone())]), Settings::default()).await;
    let mut ids = Vec::new();
    for (i, tile) in support::letter_tiles(8).into_iter().enumerate() {
        ids.push(cluster.submit(&format!("tile-{i}.png"), tile).await.doc_id);
    }
    ids.push(cluster.submit("fax.tiff", read(sample("fax.tiff"))).await.doc_id);
    // Restart once some pages went through and others are still queued.
    while probe.runs.load(Ordering::SeqCst) < 3 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut cluster = cluster;
    cluster.server.restart();
    let states = cluster.wait_finished(&ids, Duration::from_secs(90)).await;
    assert!(states.iter().all(|s| s.failed() == 0), "no page failed");
    for id in &ids {
        let results = cluster.results(id).await;
        assert_eq!(results.len(), 1, "exactly one result for {id}");
        assert_eq!(results[0].status, DocumentStatus::Complete);
    }
    let dead = cluster.dead_letters().await;
    assert!(dead.is_empty(), "{:?}", dead.iter().map(|d| &d.failure).collect::<Vec<_>>());
    worker.stop().await;
}
