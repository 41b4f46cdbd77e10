//! `pagestream worker` processes with the real models against a real
//! nats-server: real documents end to end through `--stage all`, a worker
//! killed with SIGKILL in the middle of a page, and SIGTERM draining.
//!
//! Needs what `./setup` installs in `.pagestream/` (ONNX Runtime, PDFium,
//! models).
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use schemas::subjects::STREAM_WORK;
use schemas::{DocumentStatus, FieldKind};
use support::{Cluster, WorkerProcess, real_topology_text, sample};

fn read(name: &str) -> Vec<u8> {
    std::fs::read(sample(name)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_documents_end_to_end_through_one_worker_process() {
    let cluster = Cluster::start(&real_topology_text("30s")).await;
    let logs = tempfile::tempdir().unwrap();
    let mut worker = WorkerProcess::spawn(&cluster, "all", logs.path());
    let mut ids = Vec::new();
    for name in ["invoice.pdf", "report.pdf", "scan-letter.png", "fax.tiff"] {
        ids.push(cluster.submit(name, read(name)).await.doc_id);
    }
    let states = cluster.wait_finished(&ids, Duration::from_secs(300)).await;
    assert_eq!(states.iter().map(|s| s.pages.len()).collect::<Vec<_>>(), [1, 2, 1, 3]);

    let mut results = Vec::new();
    for id in &ids {
        let mut published = cluster.results(id).await;
        assert_eq!(published.len(), 1, "exactly one result for {id}");
        results.push(published.remove(0));
    }
    for result in &results {
        assert_eq!(result.status, DocumentStatus::Complete, "{:?}", result.file_name);
        assert_eq!(result.pages.len() as u32, result.page_count);
        for page in &result.pages {
            assert!(
                !page.lines.is_empty(),
                "{:?} page {} has text",
                result.file_name,
                page.page_index
            );
            for stage in ["render", "preprocess", "layout", "ocr", "enrich"] {
                assert!(page.timings.iter().any(|t| t.stage == stage), "{stage} ran");
            }
        }
    }
    let invoice = &results[0].pages[0];
    assert!(invoice.lines.len() >= 40, "invoice lines: {}", invoice.lines.len());
    let iban = invoice.fields.iter().find(|f| f.kind == FieldKind::Iban).unwrap();
    assert_eq!(iban.normalized.as_deref(), Some("DE89370400440532013000"));
    let letter = &results[2].pages[0];
    assert!(letter.lines.len() >= 25, "letter lines: {}", letter.lines.len());

    let health = worker.get("/healthz").unwrap();
    assert!(health.starts_with("HTTP/1.1 200"));
    assert!(worker.get("/readyz").unwrap().starts_with("HTTP/1.1 200"));
    let metrics = worker.get("/metrics").unwrap();
    assert_eq!(
        support::metric(&metrics, "pagestream_pages_processed_total", r#"stage="ocr""#),
        7.0
    );
    assert_eq!(support::metric(&metrics, "pagestream_documents_finished_total", ""), 4.0);
    // Results travel inside the messages: nothing was spilled to the store
    // (the message limit is the server's, learnt once connected).
    let to_assemble = r#"to_stage="assemble",via=""#;
    let bytes = |via: &str| {
        support::metric(
            &metrics,
            "pagestream_handoff_bytes_total",
            &format!("{to_assemble}{via}\""),
        )
    };
    assert!(bytes("message") > 10_000.0, "{metrics}");
    assert_eq!(bytes("store"), 0.0);
    assert_eq!(support::metric(&metrics, "pagestream_handoffs_total", r#"to_stage="ocr""#), 7.0);
    assert!(worker.terminate(Duration::from_secs(30)), "idle worker exits 0 on SIGTERM");
}

/// Waits until the worker is in the middle of the OCR of a page.
async fn in_ocr(worker: &WorkerProcess) {
    let in_flight = "pagestream_pages_in_flight";
    worker.wait_metric(in_flight, r#"stage="ocr""#, 1.0, Duration::from_secs(120)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_worker_page_is_redelivered_and_sigterm_drains() {
    let cluster = Cluster::start(&real_topology_text("3s")).await;
    let logs = tempfile::tempdir().unwrap();

    // A worker dies (SIGKILL) in the middle of the OCR of a page.
    let letter = cluster.submit("scan-letter.png", read("scan-letter.png")).await.doc_id;
    let mut first = WorkerProcess::spawn(&cluster, "all", logs.path());
    in_ocr(&first).await;
    first.kill();

    // Another worker gets the page again once its ack_wait ran out.
    let mut second = WorkerProcess::spawn(&cluster, "all", logs.path());
    cluster.wait_finished(std::slice::from_ref(&letter), Duration::from_secs(120)).await;
    let results = cluster.results(&letter).await;
    assert_eq!(results.len(), 1, "one result despite the redelivery");
    assert_eq!(results[0].status, DocumentStatus::Complete);
    assert!(!results[0].pages[0].lines.is_empty());
    let metrics = second.get("/metrics").unwrap();
    assert!(
        support::metric(&metrics, "pagestream_pages_redelivered_total", r#"stage="ocr""#) >= 1.0
    );

    // SIGTERM in the middle of a page: the page finishes and moves on, the
    // worker exits 0, nothing is left unacknowledged. A scanned page (a
    // digital one passes OCR too fast to be caught in it).
    let turned = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rotated-90.png"),
    )
    .unwrap();
    let drained = cluster.submit("rotated-90.png", turned).await.doc_id;
    in_ocr(&second).await;
    assert!(
        second.terminate(Duration::from_secs(60)),
        "exit 0 after draining: {}",
        second.log_text()
    );
    let mut work = cluster.js.get_stream(STREAM_WORK).await.unwrap();
    let ocr = work.consumer_info("ocr").await.unwrap();
    assert_eq!(
        (ocr.num_ack_pending, ocr.num_pending),
        (0, 0),
        "the ocr page was finished and acked"
    );
    let left = work.info().await.unwrap().state.messages;
    assert_eq!(left, 1, "only the page's message to enrich is left");

    let _third = WorkerProcess::spawn(&cluster, "all", logs.path());
    cluster.wait_finished(std::slice::from_ref(&drained), Duration::from_secs(120)).await;
    assert_eq!(cluster.results(&drained).await.len(), 1);
}
