//! Hostile messages on every subject a worker reads, against a real
//! nats-server and one worker serving every stage: bodies naming malformed
//! or other tenants, references to another tenant's objects, document ids
//! that are not the sha256 of the bytes, random bytes, subjects whose tenant
//! token is no tenant. Each must be dead-lettered exactly once, under the
//! tenant it was sent as, without holding a stage; a good document sent
//! after them completes; nothing lands under another tenant.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use runtime::blobs::sha256_hex;
use runtime::jetstream::Settings;
use runtime::jetstream::claim_check::dead_letter_payload;
use schemas::subjects::{
    STREAM_DEAD_LETTER, STREAM_EVENTS, STREAM_RESULTS, STREAM_WORK, UNROUTED_TENANT, stage_input,
    submit,
};
use schemas::{
    BlobRef, DeadLetter, DocumentKind, DocumentResult, DocumentSource, DocumentStatus,
    DocumentSubmission, ErrorKind, ImageEncoding, PageImage, PagePayload, PageResult, PageTask,
};
use support::{Cluster, ConsumerOptions, letter_tiles, render_pipeline, topology_text};

const BIG: u64 = 1 << 30;
/// The tenant every hostile message is sent as.
const SENDER: &str = "alpha";
/// The tenant the hostile messages try to reach.
const VICTIM: &str = "victim";

/// A counter that makes every message unique.
struct Unique(u64);

impl Unique {
    fn next(&mut self) -> u64 {
        self.0 += 1;
        self.0
    }
}

fn submission(tenant: &str, doc_id: &str, source: DocumentSource, at: u64) -> Vec<u8> {
    let submission = DocumentSubmission {
        doc_id: doc_id.to_string(),
        tenant: tenant.to_string(),
        file_name: Some("hostile.png".into()),
        source,
        submitted_at_ms: at,
    };
    schemas::encode(&submission).unwrap()
}

fn page(
    tenant: &str,
    doc_id: &str,
    source: DocumentSource,
    image: Option<PageImage>,
) -> PagePayload {
    PagePayload {
        task: PageTask {
            doc_id: doc_id.to_string(),
            tenant: tenant.to_string(),
            page_index: 0,
            page_count: 1,
            kind: DocumentKind::Png,
            source,
            submitted_at_ms: 1,
        },
        image,
        text_layer: Vec::new(),
        result: PageResult::default(),
        sent_at_ms: 1,
        spilled: None,
    }
}

/// Deterministic noise, different for every `seed`.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_messages_are_dead_lettered_once_under_their_sender_and_hold_nothing() {
    let options = ConsumerOptions { concurrency: 2, ..ConsumerOptions::default() };
    let cluster = Cluster::start(&topology_text(&options, BIG, BIG)).await;
    let worker = cluster.worker(render_pipeline(Vec::new()), Settings::default()).await;
    let js = &cluster.js;
    let tiles = letter_tiles(3);
    let (png, other_png) = (tiles[0].clone(), tiles[1].clone());
    let png_id = sha256_hex(&png);

    // An object of the victim's, which a hostile reference points at.
    let victim_key = format!("docs/{VICTIM}/{png_id}/original");
    let victim_blob = cluster.store.put(&victim_key, Bytes::from(png.clone())).await.unwrap();
    let inline = |bytes: &[u8]| DocumentSource::Inline { bytes: bytes.to_vec() };
    let foreign_image = PageImage {
        width: 1,
        height: 1,
        encoding: ImageEncoding::Png,
        data: Vec::new(),
        blob: Some(victim_blob.clone()),
    };

    // (subject, body, the tenant its dead letter must be under, why).
    let mut hostile: Vec<(String, Vec<u8>, &str, ErrorKind)> = Vec::new();
    let mut unique = Unique(0);
    let sender_submit = submit(SENDER);
    for round in 0..14 {
        let at = 1_000 + round;
        for tenant in ["../x", "..", "a b", "a.b", "ACME", "*", "", VICTIM] {
            let body = submission(tenant, &png_id, inline(&png), at + unique.next() * 100);
            hostile.push((sender_submit.clone(), body, SENDER, ErrorKind::Forbidden));
        }
        // Another tenant's stored original, directly and through `..`.
        for key in [victim_key.clone(), format!("docs/{SENDER}/../{VICTIM}/{png_id}/original")] {
            let source = DocumentSource::Blob(BlobRef { key, ..victim_blob.clone() });
            let body = submission(SENDER, &png_id, source, at + unique.next() * 100);
            hostile.push((sender_submit.clone(), body, SENDER, ErrorKind::Forbidden));
        }
        // Document ids that are not the sha256 of the bytes.
        for doc_id in [sha256_hex(&other_png), "d".repeat(64)] {
            let body = submission(SENDER, &doc_id, inline(&png), at + unique.next() * 100);
            hostile.push((sender_submit.clone(), body, SENDER, ErrorKind::MalformedMessage));
        }
        // Pages of another tenant, or with another tenant's objects.
        for stage in ["render", "assemble"] {
            let subject = stage_input(SENDER, stage);
            let mut cross = page(VICTIM, &png_id, inline(&png), None);
            cross.task.submitted_at_ms = unique.next();
            hostile.push((
                subject.clone(),
                schemas::encode(&cross).unwrap(),
                SENDER,
                ErrorKind::Forbidden,
            ));
            let mut stolen = page(SENDER, &png_id, inline(&png), Some(foreign_image.clone()));
            stolen.task.submitted_at_ms = unique.next();
            hostile.push((
                subject.clone(),
                schemas::encode(&stolen).unwrap(),
                SENDER,
                ErrorKind::Forbidden,
            ));
            let mut spilled = page(SENDER, &png_id, inline(&[]), None);
            spilled.task.submitted_at_ms = unique.next();
            spilled.spilled = Some(victim_blob.clone());
            hostile.push((
                subject.clone(),
                schemas::encode(&spilled).unwrap(),
                SENDER,
                ErrorKind::Forbidden,
            ));
        }
        // Random bytes on every subject, and on subjects whose tenant token
        // is no tenant.
        let subjects =
            [sender_submit.clone(), stage_input(SENDER, "render"), stage_input(SENDER, "assemble")];
        for subject in subjects {
            let bytes = noise(unique.next(), 64 + round as usize * 37);
            hostile.push((subject, bytes, SENDER, ErrorKind::MalformedMessage));
        }
        for subject in [submit("ACME"), stage_input("Not_A_Tenant", "render")] {
            let bytes = noise(unique.next(), 200);
            hostile.push((subject, bytes, UNROUTED_TENANT, ErrorKind::MalformedMessage));
        }
    }
    // Messages as large as the server takes: a body naming a huge tenant,
    // random bytes. Their dead letters keep them in the object store.
    let huge_tenant = "x".repeat(500 << 10);
    let body = submission(&huge_tenant, &png_id, inline(&png), unique.next());
    hostile.push((sender_submit.clone(), body, SENDER, ErrorKind::Forbidden));
    let bytes = noise(unique.next(), 1000 << 10);
    hostile.push((stage_input(SENDER, "render"), bytes, SENDER, ErrorKind::MalformedMessage));
    assert!(hostile.len() >= 300, "{} hostile messages", hostile.len());
    for (subject, body, _, _) in &hostile {
        js.publish(subject.clone(), Bytes::from(body.clone())).await.unwrap().await.unwrap();
    }

    // A good document sent after all of them completes within 10 s.
    let sent = Instant::now();
    let good = &tiles[2];
    let good_id = sha256_hex(good);
    let body = submission(SENDER, &good_id, inline(good), 5);
    js.publish(sender_submit.clone(), Bytes::from(body)).await.unwrap().await.unwrap();
    let result = loop {
        let results: Vec<DocumentResult> =
            cluster.messages(STREAM_RESULTS, &schemas::subjects::result(SENDER, &good_id)).await;
        if let Some(result) = results.into_iter().next() {
            break result;
        }
        assert!(sent.elapsed() < Duration::from_secs(10), "the good document is held up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(result.status, DocumentStatus::Complete);

    // Every hostile message is in exactly one dead letter, under the tenant
    // it was sent as, with why.
    let deadline = Instant::now() + Duration::from_secs(60);
    let letters = loop {
        let letters: Vec<DeadLetter> = cluster.messages(STREAM_DEAD_LETTER, "pagestream.>").await;
        if letters.len() >= hostile.len() || Instant::now() > deadline {
            break letters;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(letters.len(), hostile.len(), "one dead letter per hostile message");
    let mut expected: HashMap<&[u8], (&str, &str, ErrorKind)> = HashMap::new();
    for (subject, body, tenant, kind) in &hostile {
        let previous = expected.insert(body.as_slice(), (subject.as_str(), *tenant, *kind));
        assert!(previous.is_none(), "hostile messages are distinct");
    }
    for letter in &letters {
        let payload = dead_letter_payload(&cluster.store, letter).await.unwrap();
        assert!(letter.failure.message.len() < 1024, "a bounded reason");
        let (subject, tenant, kind) = expected
            .remove(payload.as_ref())
            .unwrap_or_else(|| panic!("dead letter of no hostile message, or twice: {letter:?}"));
        assert_eq!(
            (letter.subject.as_str(), letter.tenant.as_str(), letter.failure.kind),
            (subject, tenant, kind),
            "{}",
            letter.failure.message
        );
    }
    assert!(expected.is_empty());

    // Nothing reached the victim: no message, no state, no object.
    let victim_subjects = format!("pagestream.{VICTIM}.>");
    for stream in [STREAM_RESULTS, STREAM_EVENTS, STREAM_DEAD_LETTER, STREAM_WORK] {
        let mut handle = js.get_stream(stream).await.unwrap();
        let state = handle.info().await.unwrap().state.clone();
        for sequence in state.first_sequence..=state.last_sequence {
            if let Ok(message) = handle.get_raw_message(sequence).await {
                assert!(
                    !message.subject.starts_with(victim_subjects.trim_end_matches('>')),
                    "{stream} holds {}",
                    message.subject
                );
            }
        }
    }
    let kv = js.get_key_value(schemas::subjects::KV_DOCUMENTS).await.unwrap();
    let mut keys = kv.keys().await.unwrap();
    while let Some(key) = futures::StreamExt::next(&mut keys).await {
        let key = key.unwrap();
        assert!(!key.contains(VICTIM), "document state {key}");
    }
    let victim_files = cluster.stored_files(&format!("docs/{VICTIM}"));
    assert_eq!(victim_files.len(), 1, "only the planted object: {victim_files:?}");
    assert!(cluster.stored_files(&format!("results/{VICTIM}")).is_empty());
    // And the worker is ready: no stage is held.
    assert!(worker.ready.get());
    worker.stop().await;
}
