//! Provisioning and the operator commands against a real nats-server:
//! `streams apply` is idempotent and shows a diff, `status`, `cancel` and
//! `dlq list` answer from the server, and a cancelled document completes
//! with its remaining pages failed.
#![allow(clippy::unwrap_used)]

mod support;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use runtime::jetstream::provision::{self, Action};
use runtime::jetstream::{Route, Settings};
use schemas::{DocumentStatus, ErrorKind};
use support::{Cluster, ConsumerOptions, Probe, TENANT, render_pipeline, sample, topology_text};

const BIG: u64 = 1 << 30;

/// Runs `pagestream <args>` against the cluster; returns exit success and stdout.
fn pagestream(cluster: &Cluster, args: &[&str]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_pagestream"))
        .arg("--nats-url")
        .arg(cluster.server.url())
        .arg("--topology")
        .arg(&cluster.topology_file)
        .args(args)
        .output()
        .unwrap();
    (output.status.success(), String::from_utf8_lossy(&output.stdout).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_apply_is_idempotent_and_shows_what_changes() {
    let text = topology_text(&ConsumerOptions::default(), BIG, BIG);
    let cluster = Cluster::start(&text).await;

    // Everything exists already (the harness applied the plan).
    let (ok, out) = pagestream(&cluster, &["streams", "apply"]);
    assert!(ok, "{out}");
    assert!(out.contains("= stream PAGESTREAM_WORK (unchanged)"), "{out}");
    assert!(out.contains("= consumer PAGESTREAM_WORK/render (unchanged)"), "{out}");
    assert!(out.contains("nothing to change"), "{out}");

    // `--replicas` overrides every stream's copies (a dry run: one server
    // cannot hold three).
    let (ok, out) = pagestream(&cluster, &["streams", "apply", "--dry-run", "--replicas", "3"]);
    assert!(ok, "{out}");
    assert!(out.contains("~ stream PAGESTREAM_WORK\n    replicas: 1 -> 3"), "{out}");
    assert!(out.contains("~ stream PAGESTREAM_DEAD_LETTER\n    replicas: 1 -> 3"), "{out}");
    assert!(out.contains("would be applied (dry run)"), "{out}");

    // A changed limit and a changed consumer show up as a diff; a dry run
    // changes nothing.
    let options = ConsumerOptions { ack_wait: "9s", ..ConsumerOptions::default() };
    let changed = topology::Pipeline::from_str(
        &topology_text(&options, BIG, 1 << 29),
        "t",
        pages::steps::catalogue(),
    )
    .unwrap();
    let plan = provision::plan(&changed, &Route::from_topology(&changed));
    let dry = provision::apply(&cluster.js, &plan, true).await.unwrap();
    let updated: Vec<_> = dry
        .iter()
        .filter(|c| matches!(c.action, Action::Update(_)))
        .map(|c| c.to_string())
        .collect();
    assert_eq!(
        updated,
        [
            "~ stream PAGESTREAM_WORK\n    max_bytes: 1073741824 -> 536870912",
            "~ consumer PAGESTREAM_DOCS/split\n    ack_wait: 5s -> 9s",
            "~ consumer PAGESTREAM_WORK/render\n    ack_wait: 5s -> 9s",
            "~ consumer PAGESTREAM_WORK/assemble\n    ack_wait: 5s -> 9s",
        ]
    );
    assert_eq!(
        provision::apply(&cluster.js, &plan, true).await.unwrap(),
        dry,
        "dry run changed nothing"
    );
    provision::apply(&cluster.js, &plan, false).await.unwrap();
    let again = provision::apply(&cluster.js, &plan, false).await.unwrap();
    assert!(again.iter().all(|c| c.action == Action::Unchanged), "{again:?}");

    // The other commands answer from the server.
    let (ok, _) = pagestream(&cluster, &["status", "--tenant", TENANT, "0123abcd"]);
    assert!(!ok, "an unknown document is an error");
    let (ok, out) = pagestream(&cluster, &["dlq", "list"]);
    assert!(ok && out.contains("no dead letters"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_document_completes_with_its_remaining_pages_failed() {
    let options = ConsumerOptions { concurrency: 1, fetch_batch: 1, ..ConsumerOptions::default() };
    let cluster = Cluster::start(&topology_text(&options, BIG, BIG)).await;
    let probe = Probe { pause: Duration::from_millis(400), ..Probe::default() };
    let settings = Settings { concurrency: Some(1), ..Settings::default() };
    let worker = cluster.worker(render_pipeline(vec![Box::new(probe.clone())]), settings).await;
    let fax = cluster.submit("fax.tiff", std::fs::read(sample("fax.tiff")).unwrap()).await;

    // Cancel while the first page is being rendered.
    while probe.runs.load(Ordering::SeqCst) < 1 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (ok, out) = pagestream(&cluster, &["cancel", "--tenant", TENANT, &fax.doc_id]);
    assert!(ok, "{out}");
    let runtime = Arc::clone(&worker.runtime);
    while !runtime.cancellations.contains(TENANT, &fax.doc_id) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cluster.wait_finished(std::slice::from_ref(&fax.doc_id), Duration::from_secs(30)).await;

    let result = &cluster.results(&fax.doc_id).await[0];
    let kinds: Vec<_> = result.pages.iter().map(|p| p.failure.as_ref().map(|f| f.kind)).collect();
    assert_eq!(kinds, [None, Some(ErrorKind::Cancelled), Some(ErrorKind::Cancelled)]);
    assert_eq!(result.status, DocumentStatus::Partial);
    assert!(probe.runs.load(Ordering::SeqCst) < 3, "cancelled pages are not rendered");
    assert!(cluster.dead_letters().await.is_empty(), "cancelled pages are not dead letters");

    let (ok, out) = pagestream(&cluster, &["status", "--tenant", TENANT, &fax.doc_id]);
    assert!(ok, "{out}");
    assert!(out.contains("3 expected, 1 done, 2 failed, 0 pending"), "{out}");
    assert!(out.contains("finished: partial"), "{out}");
    worker.stop().await;
}
