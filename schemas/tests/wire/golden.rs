//! Golden bytes: the encoding of every fixture value is checked in under
//! `schemas/tests/golden/<kind>.msgpack`, so that an accidental change of the
//! wire format fails here.
//!
//! After an intended change (which WIRE.md must describe, and which must
//! follow its compatibility rules), regenerate the files with
//!
//! ```text
//! PAGESTREAM_UPDATE_GOLDEN=1 cargo test -p schemas --test wire golden
//! ```
//!
//! and review the diff of the fixtures before committing them.

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::path::{Path, PathBuf};

use schemas::{Message, decode, encode};

use crate::EachKind;

/// Environment variable that makes the test rewrite the golden files.
const UPDATE_VAR: &str = "PAGESTREAM_UPDATE_GOLDEN";

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("golden")
}

fn updating() -> bool {
    std::env::var(UPDATE_VAR).is_ok_and(|value| value == "1")
}

/// Checks one kind against its golden file and returns the file name.
fn check_golden<M: Message + PartialEq + Debug>(value: &M) -> String {
    let file_name = format!("{}.msgpack", M::KIND);
    let path = golden_dir().join(&file_name);
    let encoded = encode(value).unwrap();
    if updating() {
        std::fs::write(&path, &encoded).unwrap();
    }
    let golden = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}; run with {UPDATE_VAR}=1", path.display()));
    assert!(
        encoded == golden,
        "encoding of `{}` differs from {}: the wire format changed; if intended, \
         rerun with {UPDATE_VAR}=1 and review the diff",
        M::KIND,
        path.display()
    );
    let decoded: M = decode(&golden).unwrap();
    assert_eq!(&decoded, value, "{} does not decode to the fixture value", path.display());
    file_name
}

#[test]
fn golden_bytes_match_every_kind() {
    struct Golden(BTreeSet<String>);
    impl EachKind for Golden {
        fn check<M: Message + PartialEq + Debug>(&mut self, value: M) {
            self.0.insert(check_golden(&value));
        }
    }
    let mut golden = Golden(BTreeSet::new());
    crate::each_kind(&mut golden);

    let on_disk: BTreeSet<String> = std::fs::read_dir(golden_dir())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".msgpack"))
        .collect();
    assert_eq!(on_disk, golden.0, "golden files without a message kind, or the reverse");
}

/// The document state is stored as JSON in the key-value bucket; its golden
/// file guards that encoding the same way.
#[test]
fn golden_json_matches_document_state() {
    let path = golden_dir().join("document_state.json");
    let state = crate::fixtures::document_state();
    let encoded = serde_json::to_string_pretty(&state).unwrap() + "\n";
    if updating() {
        std::fs::write(&path, &encoded).unwrap();
    }
    let golden = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}; run with {UPDATE_VAR}=1", path.display()));
    assert!(
        encoded == golden,
        "JSON of the document state differs from {}: if intended, rerun with {UPDATE_VAR}=1",
        path.display()
    );
    let decoded: schemas::DocumentState = serde_json::from_str(&golden).unwrap();
    assert_eq!(decoded, state);
    // Fields added later have defaults: the oldest shape still reads.
    let minimal = r#"{"doc_id":"d","tenant":"t","sha256":"d","size":1,"submitted_at_ms":1,"pages":["pending"]}"#;
    let decoded: schemas::DocumentState = serde_json::from_str(minimal).unwrap();
    assert_eq!((decoded.file_name, decoded.finished, decoded.failures.len()), (None, None, 0));
}
