//! Documents of realistic size through JetStream with one `pagestream
//! worker --stage all` and the real models: three real PDFs from the
//! documentation of Debian packages (17, 36 and 196 pages; `./setup` unpacks
//! them into `.pagestream/corpus/`). Each completes, its result (far larger
//! than a message, so a claim check) reads back whole, with the same text on
//! every page as `pagestream analyze` finds in the same files.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use runtime::client::stored_result;
use schemas::{DocumentResult, DocumentStatus};
use support::{Cluster, TENANT, WorkerProcess, home, real_topology_text};

const CORPUS: [(&str, u32); 3] =
    [("shared-mime-info-spec.pdf", 17), ("libtasn1.pdf", 36), ("asymptote.pdf", 196)];

fn corpus(name: &str) -> PathBuf {
    let path = home().join("corpus").join(name);
    assert!(path.exists(), "{} is missing: run ./setup", path.display());
    path
}

/// The text of every page, line by line.
fn page_texts(result: &DocumentResult) -> Vec<String> {
    let mut pages: Vec<_> = result.pages.iter().collect();
    pages.sort_by_key(|p| p.page_index);
    pages
        .iter()
        .map(|p| p.lines.iter().map(|l| l.text.as_str()).collect::<Vec<_>>().join("\n"))
        .collect()
}

/// The JSON `pagestream analyze` wrote for the file `name` in `out`.
fn analyzed(out: &Path, name: &str) -> DocumentResult {
    let stem = name.trim_end_matches(".pdf");
    let file = std::fs::read_dir(out)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            let file_name = p.file_name().unwrap().to_string_lossy().into_owned();
            file_name.starts_with(&format!("{stem}-")) && file_name.ends_with(".json")
        })
        .unwrap_or_else(|| panic!("analyze wrote no result for {name}"));
    serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_documents_complete_through_jetstream_with_the_text_of_analyze() {
    let cluster = Cluster::start(&real_topology_text("60s")).await;
    let logs = tempfile::tempdir().unwrap();
    let _worker = WorkerProcess::spawn(&cluster, "all", logs.path());
    let mut ids = Vec::new();
    for (name, _) in CORPUS {
        ids.push(cluster.submit(name, std::fs::read(corpus(name)).unwrap()).await.doc_id);
    }

    // Meanwhile the embedded transport reads the same files.
    let out = tempfile::tempdir().unwrap();
    let analyze = Command::new(env!("CARGO_BIN_EXE_pagestream"))
        .arg("--home")
        .arg(home())
        .arg("analyze")
        .args(CORPUS.map(|(name, _)| corpus(name)))
        .arg("--out")
        .arg(out.path())
        .args(["--format", "json"])
        .output()
        .unwrap();
    assert!(analyze.status.success(), "{}", String::from_utf8_lossy(&analyze.stderr));

    let states = cluster.wait_finished(&ids, Duration::from_secs(900)).await;
    for ((name, pages), (doc_id, state)) in CORPUS.iter().zip(ids.iter().zip(&states)) {
        assert_eq!(state.pages.len() as u32, *pages, "{name}");
        let published = cluster.results(doc_id).await;
        assert_eq!(published.len(), 1, "one result for {name}");
        assert!(published[0].is_claim_check(), "{name}: the result travels by claim check");

        let result = stored_result(&cluster.js, &cluster.store, TENANT, doc_id).await.unwrap();
        let result = result.unwrap();
        assert_eq!(result.status, DocumentStatus::Complete, "{name}: {:?}", result.failures);
        assert_eq!((result.page_count, result.pages.len() as u32), (*pages, *pages), "{name}");
        let expected = analyzed(out.path(), name);
        assert_eq!(expected.status, DocumentStatus::Complete, "{name} analyzed");
        let (got, want) = (page_texts(&result), page_texts(&expected));
        assert!(
            want.iter().map(String::len).sum::<usize>() > *pages as usize * 100,
            "{name} has text"
        );
        for (index, (got, want)) in got.iter().zip(&want).enumerate() {
            assert_eq!(got, want, "{name}, page {index}");
        }
    }
}
