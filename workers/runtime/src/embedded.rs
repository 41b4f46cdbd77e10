//! The embedded transport: every stage in one process, connected by bounded
//! channels, each stage served by `Stage::concurrency` threads.
//!
//! ```text
//! feeder (split) ─▶ stage 1 ─▶ stage 2 ─▶ … ─▶ assembler
//!        │              │ failed pages skip ahead │
//!        └──────────────┴─────────────────────────┘
//! ```
//!
//! Bounded channels give backpressure: when a stage falls behind, the one
//! before it blocks, up to the feeder, which stops reading documents.
//! Retry hints are not acted on here (there is no broker to redeliver): a
//! failed step fails its page at once, recorded in the result.

use std::collections::HashMap;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use topology::catalogue::ENTRY_STAGE;

use schemas::{DocumentResult, DocumentSource, DocumentStatus, DocumentSubmission, FailureRecord};
use sha2::{Digest, Sha256};

use pages::page::Page;
use pages::pipeline::{Pipeline, complete_document};
use schemas::now_ms;

/// A document to analyse.
#[derive(Debug, Clone)]
pub struct InputDocument {
    /// Name shown in results (usually the file path).
    pub name: String,
    pub bytes: Vec<u8>,
}

/// Settings of an embedded run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Tenant written into the results.
    pub tenant: String,
    /// Pages buffered between two stages, per worker thread of the receiving stage.
    pub queue_per_worker: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options { tenant: "local".into(), queue_per_worker: 2 }
    }
}

enum ToAssembler {
    Document { ticket: u64, result: Box<DocumentResult> },
    Page(Box<Page>),
}

type Inbox = Arc<Mutex<Receiver<Box<Page>>>>;

/// Hex sha256 of `bytes`: the document id.
pub fn doc_id(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Analyses `documents`, calling `on_page` for every finished page (with its
/// image, e.g. for overlays) and `on_document` for every finished document,
/// in completion order. Returns when every document is done.
pub fn run(
    pipeline: &Pipeline,
    documents: impl Iterator<Item = InputDocument> + Send,
    options: &Options,
    on_page: impl Fn(&Page) + Sync,
    mut on_document: impl FnMut(DocumentResult) + Send,
) {
    let (to_assembler, assembler_inbox) = sync_channel::<ToAssembler>(64);
    // One inbox per stage; stage i sends to stage i+1, the last to the assembler.
    let mut senders: Vec<SyncSender<Box<Page>>> = Vec::new();
    let mut inboxes: Vec<Inbox> = Vec::new();
    for stage in &pipeline.stages {
        let (tx, rx) = sync_channel(stage.concurrency.max(1) * options.queue_per_worker.max(1));
        senders.push(tx);
        inboxes.push(Arc::new(Mutex::new(rx)));
    }
    let last_document_stage =
        pipeline.stages.iter().rposition(|s| s.needs_document).unwrap_or(usize::MAX);

    std::thread::scope(|scope| {
        for (i, stage) in pipeline.stages.iter().enumerate() {
            for _ in 0..stage.concurrency.max(1) {
                let inbox = Arc::clone(&inboxes[i]);
                let next = senders.get(i + 1).cloned();
                let to_assembler = to_assembler.clone();
                scope.spawn(move || {
                    loop {
                        let received = inbox.lock().map(|rx| rx.recv());
                        let Ok(Ok(mut page)) = received else { break };
                        let queue_wait_us =
                            page.enqueued_at.map_or(0, |t| t.elapsed().as_micros() as u64);
                        if let Err(failure) = stage.run(&mut page, queue_wait_us) {
                            let record = failure.record(&page, 1);
                            page.result.failure = Some(record);
                        }
                        if i >= last_document_stage {
                            page.document = None;
                        }
                        page.enqueued_at = Some(Instant::now());
                        let forwarded = match (&next, page.result.failure.is_some()) {
                            (Some(next), false) => next.send(page).is_ok(),
                            _ => to_assembler.send(ToAssembler::Page(page)).is_ok(),
                        };
                        if !forwarded {
                            break;
                        }
                    }
                });
            }
        }
        drop(inboxes);
        let first_stage = senders.first().cloned();
        drop(senders);

        // Feeder: split each document and send its pages into the first stage.
        let feeder_to_assembler = to_assembler.clone();
        drop(to_assembler);
        scope.spawn(move || {
            for (ticket, document) in (0u64..).zip(documents) {
                let (result, pages) = split(pipeline, document, options, ticket);
                if feeder_to_assembler
                    .send(ToAssembler::Document { ticket, result: Box::new(result) })
                    .is_err()
                {
                    return;
                }
                for page in pages {
                    let mut page = Box::new(page);
                    page.enqueued_at = Some(Instant::now());
                    let sent = match &first_stage {
                        Some(stage) => stage.send(page).is_ok(),
                        None => feeder_to_assembler.send(ToAssembler::Page(page)).is_ok(),
                    };
                    if !sent {
                        return;
                    }
                }
            }
        });

        assemble(assembler_inbox, &on_page, &mut on_document);
    });
}

/// Splits one document; a document that cannot be split is finished at once.
fn split(
    pipeline: &Pipeline,
    document: InputDocument,
    options: &Options,
    ticket: u64,
) -> (DocumentResult, Vec<Page>) {
    let submitted_at_ms = now_ms();
    let doc_id = doc_id(&document.bytes);
    let size = document.bytes.len() as u64;
    let bytes = Arc::new(document.bytes);
    let submission = DocumentSubmission {
        doc_id: doc_id.clone(),
        tenant: options.tenant.clone(),
        file_name: Some(document.name.clone()),
        // The pages share the bytes in memory; the wire source stays empty.
        source: DocumentSource::Inline { bytes: Vec::new() },
        submitted_at_ms,
    };
    let mut result = DocumentResult {
        file_name: Some(document.name),
        sha256: doc_id.clone(),
        size,
        ..DocumentResult::new(&doc_id, &options.tenant, submitted_at_ms)
    };
    match pipeline.splitter.split(&submission, &bytes, &submission.source) {
        Ok(split) => {
            result.kind = Some(split.kind);
            result.page_count = split.tasks.len() as u32;
            let mut timings = Some(split.timings);
            let pages = split
                .tasks
                .into_iter()
                .map(|task| {
                    let mut page = Page::new(task);
                    page.document = Some(Arc::clone(&bytes));
                    page.ticket = ticket;
                    // Document-level split timings are kept on the first page.
                    if let Some(timings) = timings.take() {
                        page.result.timings = timings;
                    }
                    page
                })
                .collect();
            (result, pages)
        }
        Err(failed) => {
            result.kind = failed.kind;
            result.status = DocumentStatus::Failed;
            let (kind, message) = (failed.error.kind, failed.error.message);
            result.failures.push(FailureRecord::new(
                doc_id,
                ENTRY_STAGE,
                failed.step,
                kind,
                message,
            ));
            (result, Vec::new())
        }
    }
}

/// Collects pages per document and finishes each document when its last
/// page arrives.
fn assemble(
    inbox: Receiver<ToAssembler>,
    on_page: &(impl Fn(&Page) + Sync),
    on_document: &mut impl FnMut(DocumentResult),
) {
    let mut open: HashMap<u64, DocumentResult> = HashMap::new();
    let mut finish = |mut result: DocumentResult| {
        complete_document(&mut result);
        on_document(result);
    };
    for message in inbox {
        match message {
            ToAssembler::Document { ticket, result } => {
                if result.page_count == 0 || result.status == DocumentStatus::Failed {
                    finish(*result);
                } else {
                    open.insert(ticket, *result);
                }
            }
            ToAssembler::Page(page) => {
                on_page(&page);
                let ticket = page.ticket;
                let Some(result) = open.get_mut(&ticket) else { continue };
                result.pages.push(page.result);
                if result.pages.len() as u32 >= result.page_count
                    && let Some(result) = open.remove(&ticket)
                {
                    finish(result);
                }
            }
        }
    }
}
