//! The user-facing commands against a real nats-server: `submit` (waiting,
//! idempotent, clear errors with distinct exit codes), `result`, `watch`,
//! resumable `ingest` of a directory, and the webhook sink posting signed
//! results to a local HTTP server, retrying and dead-lettering.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use runtime::blobs::sha256_hex;
use runtime::jetstream::publish::{Outgoing, Publisher};
use schemas::subjects::{STREAM_DOCS, STREAM_RESULTS};
use schemas::{DocumentResult, DocumentStatus, ErrorKind};
use support::{Cluster, TENANT, WorkerProcess, real_topology_text, sample};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Runs `command` to its end (bounded) and returns its output.
fn run(mut command: Command) -> Output {
    let child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let pid = child.id().to_string();
    // Read the pipes while waiting, or a large output would block the child.
    let (sender, outcome) = std::sync::mpsc::channel();
    std::thread::spawn(move || sender.send(child.wait_with_output()));
    match outcome.recv_timeout(Duration::from_secs(180)) {
        Ok(output) => output.unwrap(),
        Err(_) => {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
            panic!("command did not finish: {command:?}");
        }
    }
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The one `error:` line of a failed command, checking there is only one.
fn error_line(output: &Output) -> String {
    let text = stderr(output);
    let errors: Vec<&str> = text.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 1, "expected one error line: {text}");
    errors[0].to_string()
}

async fn stream_messages(cluster: &Cluster, stream: &str) -> u64 {
    cluster.js.get_stream(stream).await.unwrap().info().await.unwrap().state.messages
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_waits_for_the_result_watch_sees_it_and_a_resubmission_redoes_nothing() {
    let cluster = Cluster::start(&real_topology_text("30s")).await;
    let logs = tempfile::tempdir().unwrap();
    let _worker = WorkerProcess::spawn(&cluster, "all", logs.path());
    let invoice = sample("invoice.pdf");
    let doc_id = sha256_hex(&std::fs::read(&invoice).unwrap());

    let mut watch = cluster.cli();
    watch.args(["watch", "--tenant", TENANT, "--count", "1"]);
    let mut watcher = watch.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    // `watch` says so on stderr once its subscription is in place.
    let mut watch_err = BufReader::new(watcher.stderr.take().unwrap());
    let mut line = String::new();
    watch_err.read_line(&mut line).unwrap();
    assert!(line.starts_with("watching pagestream.acme.results"), "{line}");

    let mut submit = cluster.cli();
    submit.args(["submit", "--tenant", TENANT, "--wait", "--timeout", "150s"]).arg(&invoice);
    let output = run(submit);
    assert!(output.status.success(), "{}", stderr(&output));
    let result: DocumentResult = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(
        (result.doc_id.as_str(), result.status),
        (doc_id.as_str(), DocumentStatus::Complete)
    );
    assert_eq!(result.page_count, 1);
    let text: String = result.pages[0].lines.iter().map(|l| l.text.as_str()).collect();
    assert!(text.contains("INV-2026-00417"), "{text}");
    assert!(stderr(&output).contains(&format!("{doc_id}  invoice.pdf  1 page(s)  submitted")));

    let watched = watcher.wait_with_output().unwrap();
    let watched: DocumentResult = serde_json::from_str(stdout(&watched).trim()).unwrap();
    assert_eq!(watched, result);

    // The same bytes again: same id, the stored result, no second run.
    let mut again = cluster.cli();
    again.args(["submit", "--tenant", TENANT, "--wait", "--timeout", "30s"]).arg(&invoice);
    let output = run(again);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stderr(&output).contains("already submitted"), "{}", stderr(&output));
    let repeated: DocumentResult = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(repeated, result);
    assert_eq!(cluster.results(&doc_id).await.len(), 1);

    let mut fetch = cluster.cli();
    fetch.args(["result", &doc_id, "--tenant", TENANT, "--format", "md"]);
    let output = run(fetch);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains("INV-2026-00417"), "{}", stdout(&output));

    let mut missing = cluster.cli();
    missing.args(["result", &"0".repeat(64), "--tenant", TENANT]);
    let output = run(missing);
    assert_eq!(output.status.code(), Some(8), "{}", stderr(&output));
    assert!(error_line(&output).contains("no result for document"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_use_gets_one_error_line_a_distinct_exit_code_and_submits_nothing() {
    // Documents up to 4 KiB, and only tenant acme.
    let text = real_topology_text("30s")
        .replace("max_document_bytes = 67108864", "max_document_bytes = 4096")
        + "\n[tenants.acme]\n";
    let cluster = Cluster::start(&text).await;
    let invoice = sample("invoice.pdf");
    let submit = |args: &[&str]| {
        let mut command = cluster.cli();
        command.arg("submit").args(args);
        run(command)
    };
    let invoice_arg = invoice.to_str().unwrap();

    let output = submit(&["--tenant", "globex", invoice_arg]);
    assert_eq!(output.status.code(), Some(5));
    assert!(error_line(&output).contains("unknown tenant `globex`"));
    let output = submit(&["--tenant", "Acme.Corp", invoice_arg]);
    assert_eq!(output.status.code(), Some(5));
    assert!(error_line(&output).contains("invalid tenant"));

    let output = submit(&["--tenant", TENANT, invoice_arg, "/no/such/file.pdf"]);
    assert_eq!(output.status.code(), Some(3));
    assert!(error_line(&output).contains("cannot read /no/such/file.pdf"));

    // The valid invoice comes first: it must not be submitted either.
    let too_large = sample("report.pdf");
    let output = submit(&["--tenant", TENANT, invoice_arg, too_large.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(4), "{}", stderr(&output));
    let line = error_line(&output);
    assert!(line.contains("the limit is 4096") && line.contains("nothing was submitted"), "{line}");
    let garbage = support::fixture("not-a-document.txt");
    let output = submit(&["--tenant", TENANT, garbage.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(4));
    assert!(error_line(&output).contains("not a pdf, png, jpeg or tiff"));
    assert_eq!(stream_messages(&cluster, STREAM_DOCS).await, 0);

    let free_port =
        std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("nats://127.0.0.1:{free_port}");
    let mut unreachable = Command::new(env!("CARGO_BIN_EXE_pagestream"));
    unreachable.arg("--topology").arg(&cluster.topology_file).arg("--home").arg(support::home());
    unreachable.args(["--nats-url", &url, "submit", "--tenant", TENANT, invoice_arg]);
    let output = run(unreachable);
    assert_eq!(output.status.code(), Some(6));
    assert!(error_line(&output).contains(&url));

    // No workers: waiting runs out, the document stays submitted.
    let output = submit(&["--tenant", TENANT, "--wait", "--timeout", "1s", invoice_arg]);
    assert_eq!(output.status.code(), Some(7), "{}", stderr(&output));
    let doc_id = sha256_hex(&std::fs::read(&invoice).unwrap());
    assert!(error_line(&output).contains(&format!("pagestream result {doc_id} --tenant acme")));
    assert_eq!(stream_messages(&cluster, STREAM_DOCS).await, 1);
}

/// `count` distinct small PNG pages.
fn generated_pages(count: usize) -> Vec<Vec<u8>> {
    (0..count)
        .map(|i| {
            let image = image::RgbImage::from_fn(48, 32, |x, y| {
                let on = (x + y + i as u32).is_multiple_of(7) || x == i as u32 % 48;
                if on { image::Rgb([0, 0, 0]) } else { image::Rgb([255, 255, (i % 251) as u8]) }
            });
            let mut png = Vec::new();
            image.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png).unwrap();
            png
        })
        .collect()
}

/// The JSON lines of a non-interactive `ingest`, and its summary.
fn ingest_lines(output: &Output) -> (Vec<serde_json::Value>, serde_json::Value) {
    let mut lines: Vec<serde_json::Value> =
        stdout(output).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let summary = lines.pop().unwrap()["summary"].clone();
    (lines, summary)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_accepts_a_directory_once_and_a_rerun_accepts_nothing_twice() {
    let cluster = Cluster::start(&real_topology_text("30s")).await;
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("inbox");
    for (i, png) in generated_pages(200).into_iter().enumerate() {
        let folder = source.join(format!("batch-{}", i % 4));
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join(format!("page-{i:03}.png")), png).unwrap();
    }
    std::fs::write(source.join("notes.txt"), "not a document").unwrap();
    let checkpoint = dir.path().join("checkpoint.jsonl");
    let ingest = |extra: &[&str]| {
        let mut command = cluster.cli();
        command
            .args(["ingest", "--tenant", TENANT, "--concurrency", "8", "--checkpoint"])
            .arg(&checkpoint)
            .arg(&source)
            .args(extra);
        run(command)
    };

    let output = ingest(&["--include", "*.png"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let (lines, summary) = ingest_lines(&output);
    assert_eq!(lines.len(), 200);
    assert!(lines.iter().all(|l| l["outcome"] == "accepted" && l["pages"] == 1), "{lines:?}");
    assert_eq!((summary["accepted"].as_u64(), summary["pages"].as_u64()), (Some(200), Some(200)));
    assert_eq!(stream_messages(&cluster, STREAM_DOCS).await, 200);

    // A rerun: everything is in the checkpoint.
    let (_, summary) = ingest_lines(&ingest(&["--include", "*.png"]));
    assert_eq!((summary["accepted"].as_u64(), summary["skipped"].as_u64()), (Some(0), Some(200)));

    // As after a crash that lost the end of the checkpoint: the stream's
    // duplicate window recognises what was already accepted.
    let kept: Vec<String> =
        std::fs::read_to_string(&checkpoint).unwrap().lines().take(50).map(String::from).collect();
    std::fs::write(&checkpoint, kept.join("\n") + "\n").unwrap();
    let (lines, summary) = ingest_lines(&ingest(&["--include", "*.png"]));
    assert_eq!((summary["accepted"].as_u64(), summary["skipped"].as_u64()), (Some(0), Some(200)));
    let by_window = lines.iter().filter(|l| l["reason"].as_str().unwrap().contains("moments ago"));
    assert_eq!(by_window.count(), 150);
    assert_eq!(stream_messages(&cluster, STREAM_DOCS).await, 200);

    // Without the filter the text file is looked at, and rejected.
    let output = ingest(&[]);
    assert_eq!(output.status.code(), Some(4));
    let (_, summary) = ingest_lines(&output);
    assert_eq!((summary["rejected"].as_u64(), summary["skipped"].as_u64()), (Some(1), Some(200)));
    assert_eq!(summary["rejections"][0][0], "notes.txt");
    assert_eq!(stream_messages(&cluster, STREAM_DOCS).await, 200);

    // An object-store URL as the source: listed through object_store.
    let bucket = dir.path().join("bucket");
    std::fs::create_dir_all(bucket.join("scans")).unwrap();
    for (i, png) in generated_pages(203).into_iter().enumerate().skip(200) {
        std::fs::write(bucket.join(format!("scans/new-{i}.png")), png).unwrap();
    }
    let mut from_store = cluster.cli();
    from_store
        .args(["ingest", "--tenant", TENANT, "--checkpoint"])
        .arg(dir.path().join("bucket.jsonl"))
        .arg(format!("file://{}", bucket.display()));
    let output = run(from_store);
    assert!(output.status.success(), "{}", stderr(&output));
    let (lines, summary) = ingest_lines(&output);
    assert_eq!(summary["accepted"].as_u64(), Some(3));
    let mut keys: Vec<&str> = lines.iter().map(|l| l["key"].as_str().unwrap()).collect();
    keys.sort();
    assert_eq!(keys, ["scans/new-200.png", "scans/new-201.png", "scans/new-202.png"]);
    assert_eq!(stream_messages(&cluster, STREAM_DOCS).await, 203);
}

/// One request the webhook receiver got.
#[derive(Debug, Clone)]
struct Received {
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

/// A minimal HTTP/1.1 receiver on a free loopback port: records each
/// request and answers with the status `answer` picks for it.
async fn receiver(
    answer: impl Fn(&Received, usize) -> u16 + Send + Sync + 'static,
) -> (u16, Arc<Mutex<Vec<Received>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let received = Arc::new(Mutex::new(Vec::new()));
    let (log, answer) = (Arc::clone(&received), Arc::new(answer));
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else { return };
            let (log, answer) = (Arc::clone(&log), Arc::clone(&answer));
            tokio::spawn(async move {
                let mut data = Vec::new();
                let mut buffer = [0u8; 8192];
                let (head_end, length) = loop {
                    let n = socket.read(&mut buffer).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    data.extend_from_slice(&buffer[..n]);
                    if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&data[..end]).to_lowercase();
                        let length = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .map_or(0, |v| v.trim().parse().unwrap());
                        break (end + 4, length);
                    }
                };
                while data.len() < head_end + length {
                    let n = socket.read(&mut buffer).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    data.extend_from_slice(&buffer[..n]);
                }
                let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
                let headers = head
                    .lines()
                    .skip(1)
                    .filter_map(|l| l.split_once(':'))
                    .map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_string()))
                    .collect();
                let request = Received { headers, body: data[head_end..].to_vec() };
                let seen = {
                    let mut log = log.lock().unwrap();
                    log.push(request.clone());
                    log.len()
                };
                let status = answer(&request, seen);
                let reply = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
                let _ = socket.write_all(reply.as_bytes()).await;
            });
        }
    });
    (port, received)
}

/// Checks the `Pagestream-Signature` of `request` as a receiver would.
fn signed_with(request: &Received, secret: &[u8]) -> bool {
    let header = &request.headers["pagestream-signature"];
    let (Some(t), Some(v1)) = (
        header.split(',').find_map(|p| p.strip_prefix("t=")),
        header.split(',').find_map(|p| p.strip_prefix("v1=")),
    ) else {
        return false;
    };
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let message = [t.as_bytes(), b".", &request.body].concat();
    let Ok(tag) = hex::decode(v1) else { return false };
    ring::hmac::verify(&key, &message, &tag).is_ok()
}

fn document_result(doc_id: &str) -> DocumentResult {
    DocumentResult {
        file_name: Some(format!("{doc_id}.pdf")),
        kind: Some(schemas::DocumentKind::Pdf),
        sha256: doc_id.into(),
        size: 1,
        completed_at_ms: 2,
        ..DocumentResult::new(doc_id, TENANT, 1)
    }
}

async fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_post_signed_results_retry_failures_and_dead_letter_refusals() {
    const SECRET: &str = "webhook-test-secret";
    // doc "retry" fails once with 503, doc "refuse" is refused with 400.
    let (port, received) =
        receiver(|request, _| match request.headers.get("pagestream-doc-id").map(String::as_str) {
            Some("refuse") => 400,
            Some("retry") if request.headers["pagestream-attempt"] == "1" => 503,
            _ => 204,
        })
        .await;
    let text = real_topology_text("30s").replace(
        "# [tenants.acme]",
        &format!(
            "[tenants.acme]\nwebhook = {{ url = \"http://127.0.0.1:{port}/hook\", \
             secret_env = \"PAGESTREAM_TEST_WEBHOOK_SECRET\" }}\n"
        ),
    );
    let cluster = Cluster::start(&text).await;
    let mut sink = cluster.cli();
    sink.args(["webhooks", "--metrics-addr", ""])
        .env("PAGESTREAM_TEST_WEBHOOK_SECRET", SECRET)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut sink = sink.spawn().unwrap();

    let publisher = Publisher::new(cluster.js.clone());
    for doc_id in ["retry", "refuse"] {
        let outgoing = Outgoing::encode(
            schemas::subjects::result(TENANT, doc_id),
            format!("test/{doc_id}"),
            doc_id,
            &document_result(doc_id),
        )
        .unwrap();
        publisher.publish(&outgoing).await.unwrap();
    }
    let requests_for = |doc_id: &str| -> Vec<Received> {
        let log = received.lock().unwrap();
        log.iter().filter(|r| r.headers["pagestream-doc-id"] == doc_id).cloned().collect()
    };
    wait_for("the retried delivery", Duration::from_secs(30), || requests_for("retry").len() >= 2)
        .await;
    let retried = requests_for("retry");
    assert_eq!(retried.len(), 2, "delivered after one retry, then no more");
    assert_eq!(
        retried[0].headers["pagestream-delivery"],
        retried[1].headers["pagestream-delivery"]
    );
    assert_eq!(retried[1].headers["pagestream-attempt"], "2");
    for request in &retried {
        assert!(signed_with(request, SECRET.as_bytes()), "{:?}", request.headers);
        assert!(!signed_with(request, b"another secret"));
        assert_eq!(request.headers["content-type"], "application/json");
        let body: DocumentResult = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(body, document_result("retry"));
    }

    // The refused one is dead-lettered at once, with the receiver's answer.
    let deadline = Instant::now() + Duration::from_secs(30);
    let letter = loop {
        let letters = cluster.dead_letters().await;
        if let Some(letter) = letters.into_iter().find(|l| l.failure.doc_id == "refuse") {
            break letter;
        }
        assert!(Instant::now() < deadline, "no dead letter for the refused delivery");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(requests_for("refuse").len(), 1);
    assert_eq!(
        (letter.failure.stage.as_str(), letter.failure.kind),
        ("webhook", ErrorKind::Delivery)
    );
    assert!(letter.failure.message.contains("400"), "{}", letter.failure.message);
    assert_eq!(letter.subject, schemas::subjects::result(TENANT, "refuse"));
    let original: DocumentResult = schemas::decode(&letter.payload).unwrap();
    assert_eq!(original, document_result("refuse"));
    assert_eq!(stream_messages(&cluster, STREAM_RESULTS).await, 2);

    let _ = Command::new("kill").args(["-TERM", &sink.id().to_string()]).status();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = sink.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the webhook sink did not stop on SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success());
}
