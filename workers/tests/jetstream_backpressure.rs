//! Backpressure against a real nats-server: with small streams and a slow
//! stage, submitting is refused and retried (slowed down), the work stream
//! never grows past its limit, workers never hold more pages than their
//! permits, and every document still finishes exactly once.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use runtime::jetstream::Settings;
use runtime::metrics::Metrics;
use schemas::DocumentStatus;
use schemas::subjects::STREAM_WORK;
use support::{
    Cluster, ConsumerOptions, Probe, TENANT, letter_tiles, render_pipeline, topology_text,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_streams_slow_producers_down_and_nothing_is_dropped() {
    // Room for two documents in the submit stream, a few pages in the work stream.
    let tiles = letter_tiles(12);
    let largest = tiles.iter().map(Vec::len).max().unwrap() as u64;
    assert!(largest < 256 << 10, "tiles travel inline");
    let docs_max = largest * 5 / 2;
    let work_max = largest * 5;
    let options = ConsumerOptions { concurrency: 2, fetch_batch: 8, ..ConsumerOptions::default() };
    let cluster = Cluster::start(&topology_text(&options, docs_max, work_max)).await;

    let probe = Probe { pause: Duration::from_millis(200), ..Probe::default() };
    let worker =
        cluster.worker(render_pipeline(vec![Box::new(probe.clone())]), Settings::default()).await;

    // Submit everything at once from a producer of its own.
    let producer_metrics = Arc::new(Metrics::new());
    let publisher = cluster.publisher(Arc::clone(&producer_metrics)).await;
    let mut submissions = tokio::task::JoinSet::new();
    for (i, tile) in tiles.into_iter().enumerate() {
        let (publisher, store) = (publisher.clone(), cluster.store.clone());
        submissions.spawn(async move {
            let name = format!("tile-{i}.png");
            runtime::jetstream::submit::submit(
                &publisher,
                &store,
                TENANT,
                Some(&name),
                tile,
                256 << 10,
            )
            .await
            .unwrap()
            .submission
            .doc_id
        });
    }
    // Meanwhile the work stream stays within its limit.
    let mut work = cluster.js.get_stream(STREAM_WORK).await.unwrap();
    let mut ids = Vec::new();
    let mut peak = 0;
    while ids.len() < 12 {
        tokio::select! {
            joined = submissions.join_next() => ids.push(joined.unwrap().unwrap()),
            _ = tokio::time::sleep(Duration::from_millis(50)) => {
                peak = peak.max(work.info().await.unwrap().state.bytes);
            }
        }
    }
    let refused = support::metric(
        &producer_metrics.render(),
        "pagestream_publish_retries_total",
        r#"reason="full""#,
    );
    assert!(refused > 0.0, "the full submit stream refused publishes");

    let states = cluster.wait_finished(&ids, Duration::from_secs(120)).await;
    assert!(states.iter().all(|s| s.pages.len() == 1 && s.failed() == 0));
    for id in &ids {
        let results = cluster.results(id).await;
        assert_eq!(results.len(), 1, "exactly one result for {id}");
        assert_eq!(results[0].status, DocumentStatus::Complete);
    }
    assert!(peak <= work_max, "work stream peaked at {peak} bytes");
    let max_in_flight = probe.max.load(Ordering::SeqCst);
    assert!((1..=2).contains(&max_in_flight), "at most 2 pages at once, saw {max_in_flight}");
    assert_eq!(probe.runs.load(Ordering::SeqCst), 12, "each page ran once");
    worker.stop().await;
}
