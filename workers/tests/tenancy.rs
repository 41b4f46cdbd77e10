//! Tenancy against a real nats-server running the shipped
//! `deploy/nats/accounts.conf` (included from a main configuration, the
//! passwords taken from the server's environment): a tenant reads, watches
//! and submits its own documents, and neither reads, watches nor submits
//! another tenant's, through the client library and through the
//! `pagestream` binary.
#![allow(clippy::unwrap_used)]

mod support;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::context::Context;
use async_nats::{ConnectOptions, Event, ServerError, StatusCode};
use futures::StreamExt;
use runtime::blobs::{BlobStore, sha256_hex};
use runtime::client::stored_result;
use runtime::jetstream::publish::{Outgoing, Publisher};
use runtime::jetstream::{self, ConnectConfig, Route, provision};
use schemas::subjects::{STREAM_DOCS, STREAM_RESULTS, event, result, submit};
use schemas::{DocumentKind, DocumentResult, DocumentSubmission};
use tempfile::TempDir;

const SERVICE_PASSWORD: &str = "svcTestPassword1";
const ACME_PASSWORD: &str = "acmeTestPassword2";
const GLOBEX_PASSWORD: &str = "globexTestPassword3";

/// How long a tenant's requests wait for an answer: a request the server
/// refuses is dropped, so it ends only when this runs out.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// `nats-server -js` with `main.conf` = `include accounts.conf`, the file
/// being the repository's, and the passwords in its environment.
struct Server {
    child: Child,
    port: u16,
    /// Configuration, store and log; removed on drop.
    _dir: TempDir,
}

impl Server {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/nats/accounts.conf");
        std::fs::copy(&shipped, dir.path().join("accounts.conf")).unwrap();
        let main = dir.path().join("main.conf");
        std::fs::write(&main, "include accounts.conf\n").unwrap();
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = dir.path().join("server.log");
        let mut child = Command::new("nats-server")
            .arg("-c")
            .arg(&main)
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(dir.path().join("store"))
            .env("PAGESTREAM_PASSWORD", SERVICE_PASSWORD)
            .env("ACME_PASSWORD", ACME_PASSWORD)
            .env("GLOBEX_PASSWORD", GLOBEX_PASSWORD)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("nats-server must be on PATH (./setup installs it)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            let log = || std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(status) = child.try_wait().unwrap() {
                panic!("nats-server exited ({status}): {}", log());
            }
            assert!(Instant::now() < deadline, "nats-server did not start: {}", log());
            std::thread::sleep(Duration::from_millis(20));
        }
        Server { child, port, _dir: dir }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A server with the pipeline's streams, and one stored result per tenant.
struct Tenancy {
    server: Server,
    /// JetStream of the service user.
    service: Context,
    acme: DocumentResult,
    globex: DocumentResult,
}

impl Tenancy {
    async fn start() -> Self {
        let server = Server::start();
        let config = ConnectConfig {
            url: server.url(),
            user: Some("pagestream".into()),
            password: Some(SERVICE_PASSWORD.into()),
            name: "service".into(),
            ..Default::default()
        };
        let service = jetstream::context(jetstream::connect(&config).await.unwrap());
        let topology = topology::Pipeline::embedded(pages::steps::catalogue()).unwrap();
        let plan = provision::plan(&topology, &Route::from_topology(&topology));
        provision::apply(&service, &plan, false).await.unwrap();
        let tenancy = Tenancy {
            server,
            service,
            acme: document_result("acme", 1_000),
            globex: document_result("globex", 1_000),
        };
        tenancy.publish(&tenancy.acme).await;
        tenancy.publish(&tenancy.globex).await;
        tenancy
    }

    /// Publishes `document` to its tenant's result subject, as the service.
    async fn publish(&self, document: &DocumentResult) {
        let subject = result(&document.tenant, &document.doc_id);
        let msg_id =
            format!("{}/{}/{}/result", document.tenant, document.submitted_at_ms, document.doc_id);
        let outgoing = Outgoing::encode(subject, msg_id, &document.doc_id, document).unwrap();
        let ack = Publisher::new(self.service.clone()).publish(&outgoing).await.unwrap();
        assert_eq!((ack.stream.as_str(), ack.duplicate), (STREAM_RESULTS, false));
    }
}

/// A complete result of tenant `tenant` submitted at `submitted_at_ms`.
fn document_result(tenant: &str, submitted_at_ms: u64) -> DocumentResult {
    let doc_id = sha256_hex(format!("a document of {tenant}").as_bytes());
    DocumentResult {
        sha256: doc_id.clone(),
        file_name: Some(format!("{tenant}-invoice.png")),
        kind: Some(DocumentKind::Png),
        size: 1234,
        completed_at_ms: submitted_at_ms + 500,
        ..DocumentResult::new(doc_id, tenant, submitted_at_ms)
    }
}

/// A tenant's connection: the client, its JetStream (requests bounded by
/// [`REQUEST_TIMEOUT`]) and the errors the server sent it.
struct TenantClient {
    client: async_nats::Client,
    js: Context,
    errors: Arc<Mutex<Vec<String>>>,
}

impl TenantClient {
    /// Connects as user `tenant` with its inbox prefix `_INBOX_<tenant>`.
    async fn connect(
        url: &str,
        tenant: &str,
        password: &str,
    ) -> Result<Self, async_nats::ConnectError> {
        let errors = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&errors);
        let client = ConnectOptions::new()
            .user_and_password(tenant.into(), password.into())
            .custom_inbox_prefix(format!("_INBOX_{tenant}"))
            .event_callback(move |event| {
                let sink = Arc::clone(&sink);
                async move {
                    if let Event::ServerError(ServerError::Other(error)) = event {
                        sink.lock().unwrap().push(error);
                    }
                }
            })
            .connect(url)
            .await?;
        let js = async_nats::jetstream::ContextBuilder::new()
            .timeout(REQUEST_TIMEOUT)
            .build(client.clone());
        Ok(TenantClient { client, js, errors })
    }

    /// Waits (bounded) until the server reports a permissions violation on
    /// `subject`, e.g. `Permissions Violation for Publish to "x"`.
    async fn wait_violation(&self, what: &str, subject: &str) {
        let wanted = format!("Permissions Violation for {what} to \"{subject}\"");
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let errors = self.errors.lock().unwrap().clone();
            if errors.iter().any(|e| e.contains(&wanted)) {
                return;
            }
            assert!(Instant::now() < deadline, "no `{wanted}` from the server, only {errors:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn next_within(
    subscriber: &mut async_nats::Subscriber,
    limit: Duration,
) -> Option<async_nats::Message> {
    tokio::time::timeout(limit, subscriber.next()).await.ok().flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_reads_and_watches_its_own_results_and_no_one_elses() {
    let tenancy = Tenancy::start().await;
    let url = tenancy.server.url();
    assert!(
        TenantClient::connect(&url, "acme", GLOBEX_PASSWORD).await.is_err(),
        "acme connected with globex's password"
    );
    let acme = TenantClient::connect(&url, "acme", ACME_PASSWORD).await.unwrap();
    let store = tempfile::tempdir().unwrap();
    let blobs = BlobStore::open(&store.path().display().to_string()).unwrap();

    // Its own result, by direct get.
    let own = stored_result(&acme.js, &blobs, "acme", &tenancy.acme.doc_id).await.unwrap();
    assert_eq!(own.as_ref(), Some(&tenancy.acme));

    // Not globex's: the server drops the request and says why; the service
    // reads the same result, so it is there to be read.
    let foreign = stored_result(&acme.js, &blobs, "globex", &tenancy.globex.doc_id).await;
    assert!(foreign.is_err(), "acme read globex's result: {foreign:?}");
    let api =
        format!("$JS.API.DIRECT.GET.{STREAM_RESULTS}.{}", result("globex", &tenancy.globex.doc_id));
    acme.wait_violation("Publish", &api).await;
    let stored =
        stored_result(&tenancy.service, &blobs, "globex", &tenancy.globex.doc_id).await.unwrap();
    assert_eq!(stored.as_ref(), Some(&tenancy.globex));

    // The allowed API subject takes no subject from a body instead: asking
    // there for globex's subject is answered "408 Bad Request", no data.
    let own_api =
        format!("$JS.API.DIRECT.GET.{STREAM_RESULTS}.{}", result("acme", &tenancy.acme.doc_id));
    let body = serde_json::json!({ "last_by_subj": result("globex", &tenancy.globex.doc_id) });
    let request = acme.client.request(own_api, body.to_string().into());
    let answer = tokio::time::timeout(REQUEST_TIMEOUT, request).await.unwrap().unwrap();
    assert_eq!((answer.status, answer.payload.len()), (Some(StatusCode::TIMEOUT), 0), "{answer:?}");

    // Watching: its own results and events arrive, globex's never do.
    let mut own_results = acme.client.subscribe("pagestream.acme.results.*").await.unwrap();
    let mut own_events = acme.client.subscribe("pagestream.acme.events.>").await.unwrap();
    let mut foreign_results = acme.client.subscribe("pagestream.globex.results.>").await.unwrap();
    let mut foreign_events = acme.client.subscribe("pagestream.globex.events.>").await.unwrap();
    acme.client.flush().await.unwrap();
    acme.wait_violation("Subscription", "pagestream.globex.results.>").await;
    acme.wait_violation("Subscription", "pagestream.globex.events.>").await;

    // Globex's first: by the time acme's arrive, globex's would have too.
    let globex_again = document_result("globex", 2_000);
    tenancy.publish(&globex_again).await;
    let service = tenancy.service.client();
    service.publish(event("globex", "document.done"), "globex event".into()).await.unwrap();
    let acme_again = document_result("acme", 2_000);
    tenancy.publish(&acme_again).await;
    service.publish(event("acme", "document.done"), "acme event".into()).await.unwrap();
    service.flush().await.unwrap();

    let limit = Duration::from_secs(5);
    let message = next_within(&mut own_results, limit).await.expect("acme's new result");
    assert_eq!(message.subject.as_str(), result("acme", &acme_again.doc_id));
    assert_eq!(schemas::decode::<DocumentResult>(&message.payload).unwrap(), acme_again);
    let message = next_within(&mut own_events, limit).await.expect("acme's event");
    assert_eq!(&message.payload[..], b"acme event");

    let quiet = Duration::from_secs(1);
    let leaked = next_within(&mut foreign_results, quiet).await;
    assert!(leaked.is_none(), "acme received globex's result: {leaked:?}");
    let leaked = next_within(&mut foreign_events, Duration::from_millis(100)).await;
    assert!(leaked.is_none(), "acme received globex's event: {leaked:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_submits_as_itself_and_not_as_another_tenant() {
    let tenancy = Tenancy::start().await;
    let acme = TenantClient::connect(&tenancy.server.url(), "acme", ACME_PASSWORD).await.unwrap();
    let store = tempfile::tempdir().unwrap();
    let blobs = BlobStore::open(&format!("file://{}", store.path().display())).unwrap();
    let publisher = Publisher::new(acme.js.clone()).retry_for(REQUEST_TIMEOUT);
    let bytes = std::fs::read(support::sample("scan-letter.png")).unwrap();
    let submit_as = |tenant: &'static str| {
        let (publisher, blobs, bytes) = (&publisher, &blobs, bytes.clone());
        async move {
            runtime::jetstream::submit::submit(
                publisher,
                blobs,
                tenant,
                Some("scan-letter.png"),
                bytes,
                1 << 20,
            )
            .await
        }
    };

    // As globex: refused (no PubAck ever comes), and the stream has nothing.
    let refused = submit_as("globex").await.map(|done| done.submission.doc_id);
    assert!(refused.is_err(), "acme submitted as globex: {refused:?}");
    acme.wait_violation("Publish", &submit("globex")).await;

    // Nor may it skip the pipeline: no pages, no results of its own making.
    let forged = format!("pagestream.acme.results.{}", "f".repeat(64));
    for subject in ["pagestream.acme.pages.render", forged.as_str()] {
        acme.client.publish(subject.to_string(), "forged".into()).await.unwrap();
        acme.client.flush().await.unwrap();
        acme.wait_violation("Publish", subject).await;
    }

    // As itself: taken by the DOCS stream, the PubAck on acme's own inbox.
    let submitted = submit_as("acme").await.unwrap();
    assert!(!submitted.duplicate);

    let mut docs = tenancy.service.get_stream(STREAM_DOCS).await.unwrap();
    assert_eq!(docs.info().await.unwrap().state.messages, 1);
    let stored = docs.get_last_raw_message_by_subject(&submit("acme")).await.unwrap();
    let stored: DocumentSubmission = schemas::decode(&stored.payload).unwrap();
    assert_eq!((stored.tenant.as_str(), stored.doc_id), ("acme", submitted.submission.doc_id));
    assert!(docs.get_last_raw_message_by_subject(&submit("globex")).await.is_err());
    let results = tenancy.service.get_stream(STREAM_RESULTS).await.unwrap();
    assert!(results.get_last_raw_message_by_subject(&forged).await.is_err());
}

/// Runs `command` to its end (bounded) on a blocking thread.
async fn run(mut command: Command) -> Output {
    tokio::task::spawn_blocking(move || {
        let mut child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("command did not finish: {command:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_of_a_tenant_prints_its_own_result_and_not_another_tenants() {
    let tenancy = Tenancy::start().await;
    let store = tempfile::tempdir().unwrap();
    let cli = |doc: &DocumentResult| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_pagestream"));
        command
            .arg("--nats-url")
            .arg(tenancy.server.url())
            .args(["--user", "acme", "--password", ACME_PASSWORD, "--inbox-prefix", "_INBOX_acme"])
            .arg("--home")
            .arg(support::home())
            .arg("--store")
            .arg(format!("file://{}", store.path().display()))
            .args(["result", &doc.doc_id, "--tenant", &doc.tenant]);
        command
    };

    let output = run(cli(&tenancy.acme)).await;
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "{stderr}");
    assert_eq!(serde_json::from_str::<DocumentResult>(&stdout).unwrap(), tenancy.acme);

    let started = Instant::now();
    let output = run(cli(&tenancy.globex)).await;
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(!output.status.success(), "acme's CLI printed globex's result: {stdout}");
    assert!(!stdout.contains(&tenancy.globex.doc_id), "{stdout}");
    assert!(!stdout.contains("\"doc_id\""), "{stdout}");
    // The refusal is said, not only the timeout it leads to.
    assert!(stderr.contains("Permissions Violation"), "{stderr}");
    eprintln!(
        "globex's result as acme: {:?} after {:?}: {}",
        output.status,
        started.elapsed(),
        stderr.trim()
    );

    // Submitting as another tenant is refused, said so, and given up.
    let mut submit_as_globex = Command::new(env!("CARGO_BIN_EXE_pagestream"));
    submit_as_globex
        .arg("--nats-url")
        .arg(tenancy.server.url())
        .args(["--user", "acme", "--password", ACME_PASSWORD, "--inbox-prefix", "_INBOX_acme"])
        .arg("--home")
        .arg(support::home())
        .arg("--store")
        .arg(format!("file://{}", store.path().display()))
        .args(["submit", "--tenant", "globex", "--publish-timeout", "2s"])
        .arg(support::sample("invoice.pdf"));
    let output = run(submit_as_globex).await;
    let stderr = text(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("Permissions Violation for Publish to \"pagestream.globex.submit\""),
        "{stderr}"
    );
    assert!(stderr.contains("cannot submit invoice.pdf"), "{stderr}");
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
