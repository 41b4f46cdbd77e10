//! The Python example client, `examples/python/submit.py`, written from
//! `schemas/WIRE.md` alone (nats-py and msgpack, no Rust), against a real
//! nats-server and a real `pagestream worker --stage all` process with the
//! real models: what it submits is analysed, what it prints is the result
//! the workers stored, and a document the pipeline rejects is reported as
//! failed.
//!
//! Needs what `./setup` installs in `.pagestream/`: ONNX Runtime, PDFium,
//! the models, and the client's venv `.pagestream/python`.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use runtime::client::stored_result;
use schemas::DocumentResult;
use sha2::{Digest, Sha256};
use support::{Cluster, TENANT, WorkerProcess, fixture, real_topology_text, sample};

/// How long the client waits for a result (`--timeout`); the whole run of
/// the script is given a little more.
const RESULT_TIMEOUT: Duration = Duration::from_secs(240);

/// The interpreter of the venv `./setup` creates for the client.
fn python() -> PathBuf {
    let python = support::home().join("python/bin/python");
    assert!(
        python.is_file(),
        "{} is missing: run ./setup, which creates the venv of the Python client",
        python.display()
    );
    python
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/python/submit.py")
}

/// What one run of the script did.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `submit.py --server <cluster> --tenant acme <args>`, killed (and the
/// test failed) when it outlives its own timeout. Output goes to files, so a
/// large result cannot fill a pipe.
async fn submit(cluster: &Cluster, args: &[&str]) -> Run {
    let python = python();
    let mut command = Command::new(python);
    command
        .arg(script())
        .args(["--server", &cluster.server.url(), "--tenant", TENANT])
        .args(["--timeout", &RESULT_TIMEOUT.as_secs().to_string()])
        .args(args)
        .env_remove("NATS_URL")
        .env_remove("NATS_USER")
        .env_remove("NATS_PASSWORD");
    tokio::task::spawn_blocking(move || {
        let dir = tempfile::tempdir().unwrap();
        let (out, err) = (dir.path().join("stdout"), dir.path().join("stderr"));
        let mut child = command
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + RESULT_TIMEOUT + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "submit.py did not exit; stderr: {}",
                    std::fs::read_to_string(&err).unwrap()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        Run {
            code: status.code().expect("submit.py exited by a signal"),
            stdout: std::fs::read_to_string(&out).unwrap(),
            stderr: std::fs::read_to_string(&err).unwrap(),
        }
    })
    .await
    .unwrap()
}

fn sha256_hex(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

/// The text of every line of every page, one line each.
fn text(result: &serde_json::Value) -> String {
    let pages = result["pages"].as_array().unwrap();
    let lines = pages.iter().flat_map(|page| page["lines"].as_array().unwrap());
    lines.map(|line| line["text"].as_str().unwrap()).collect::<Vec<_>>().join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_submits_a_pdf_and_prints_the_stored_result() {
    let python = python();
    let cluster = Cluster::start(&real_topology_text("30s")).await;
    let logs = tempfile::tempdir().unwrap();
    let worker = WorkerProcess::spawn(&cluster, "all", logs.path());
    let invoice = sample("invoice.pdf");
    let doc_id = sha256_hex(&invoice);

    let started = Instant::now();
    let run = submit(&cluster, &[invoice.to_str().unwrap()]).await;
    assert_eq!(
        run.code,
        0,
        "{} exit code; stderr: {}\nworker log: {}",
        python.display(),
        run.stderr,
        worker.log_text()
    );
    eprintln!("submit.py: invoice analysed in {:.1} s", started.elapsed().as_secs_f64());
    let printed: serde_json::Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", run.stdout));
    assert_eq!(printed["doc_id"], doc_id.as_str(), "the document id is the sha256 of the file");
    assert_eq!(printed["sha256"], doc_id.as_str());
    assert_eq!(printed["tenant"], TENANT);
    assert_eq!(printed["file_name"], "invoice.pdf");
    assert_eq!(printed["kind"], "pdf");
    assert_eq!(printed["status"], "complete");
    assert_eq!(printed["page_count"], 1);
    assert_eq!(printed["pages"].as_array().unwrap().len(), 1);
    let text = text(&printed);
    for printed_on_the_page in [
        "Nordlicht Office Supplies GmbH",
        "INV-2026-00417",
        "EUR 3,589.99",
        "HAHADEHHXXX",
        "Alpenblick Hotel Betriebs GmbH",
    ] {
        assert!(
            text.contains(printed_on_the_page),
            "{printed_on_the_page:?} not in the text:\n{text}"
        );
    }

    // What Python printed is, value for value, the result stored in the
    // results stream as the Rust side reads it.
    let stored = cluster.results(&doc_id).await;
    assert_eq!(stored.len(), 1, "one result stored");
    let from_python: DocumentResult = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(from_python, stored[0]);

    // The same bytes again, within the duplicate window: the DOCS stream
    // drops the submission, nothing is analysed again, and the client reads
    // the stored result back. `--summary` prints it one line per page.
    let again = submit(&cluster, &["--summary", invoice.to_str().unwrap()]).await;
    assert_eq!(again.code, 0, "stderr: {}", again.stderr);
    assert!(again.stderr.contains("duplicate"), "stderr: {}", again.stderr);
    let summary: Vec<&str> = again.stdout.lines().collect();
    assert_eq!(summary.len(), 2, "document line and one page line: {}", again.stdout);
    assert!(summary[0].starts_with(&format!("{doc_id} complete 1 page(s)")), "{}", summary[0]);
    assert!(
        summary[1].starts_with("  page 1: ok | Nordlicht Office Supplies GmbH"),
        "{}",
        summary[1]
    );
    assert_eq!(cluster.results(&doc_id).await.len(), 1, "the duplicate was not analysed again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_reports_a_rejected_document_as_failed() {
    let python = python();
    let cluster = Cluster::start(&real_topology_text("30s")).await;
    let logs = tempfile::tempdir().unwrap();
    let worker = WorkerProcess::spawn(&cluster, "all", logs.path());
    let text_file = fixture("not-a-document.txt");
    let doc_id = sha256_hex(&text_file);

    let run = submit(&cluster, &[text_file.to_str().unwrap()]).await;
    assert_eq!(
        run.code,
        1,
        "{} exit code; stdout: {}\nstderr: {}\nworker log: {}",
        python.display(),
        run.stdout,
        run.stderr,
        worker.log_text()
    );
    let printed: serde_json::Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", run.stdout));
    assert_eq!(printed["doc_id"], doc_id.as_str());
    assert_eq!(printed["status"], "failed");
    assert_eq!(printed["page_count"], 0);
    assert_eq!(printed["pages"].as_array().unwrap().len(), 0);
    let failures = printed["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0]["stage"], "split");
    assert_eq!(failures[0]["kind"], "unsupported_format");

    let stored = cluster.results(&doc_id).await;
    assert_eq!(stored.len(), 1, "one result stored");
    let from_python: DocumentResult = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(from_python, stored[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_reads_a_result_too_large_for_a_message_from_the_store() {
    let cluster = Cluster::start(&real_topology_text("30s")).await;
    let logs = tempfile::tempdir().unwrap();
    // Every result above 1 KiB travels by claim check.
    let options = ["--result-inline-max-bytes", "1024"];
    let worker = WorkerProcess::spawn_with(&cluster, "all", logs.path(), &options);
    let invoice = sample("invoice.pdf");
    let doc_id = sha256_hex(&invoice);

    let run = submit(&cluster, &[invoice.to_str().unwrap()]).await;
    assert_eq!(run.code, 0, "stderr: {}\nworker log: {}", run.stderr, worker.log_text());
    let stored = cluster.results(&doc_id).await;
    assert_eq!(stored.len(), 1);
    assert!(stored[0].is_claim_check() && stored[0].pages.is_empty());
    let whole = stored_result(&cluster.js, &cluster.store, TENANT, &doc_id).await.unwrap().unwrap();
    let from_python: DocumentResult = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(from_python, whole, "Python printed the whole result");
    assert!(text(&serde_json::from_str(&run.stdout).unwrap()).contains("INV-2026-00417"));

    // A store it cannot read is an error that says where the result is.
    let elsewhere =
        submit(&cluster, &["--store", "s3://bucket/prefix", invoice.to_str().unwrap()]).await;
    assert_eq!(elsewhere.code, 4, "stdout: {}", elsewhere.stdout);
    assert!(
        elsewhere.stderr.contains(&format!("results/{TENANT}/{doc_id}/")),
        "{}",
        elsewhere.stderr
    );
}
