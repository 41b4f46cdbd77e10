//! Model file verification: existence and sha256, against files made here
//! and against the installed models.

use crate::steps;
use std::path::{Path, PathBuf};

use topology::{DEFAULT_MODEL_DIR, Pipeline, TopologyError};

/// sha256 of the three bytes `abc` (FIPS 180-2 test vector).
const SHA256_ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
/// sha256 of no bytes at all.
const SHA256_EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// The minimal pipeline with one model `a` at `file` expecting `sha256`.
fn model_text(file: &str, sha256: &str) -> String {
    let minimal = include_str!("minimal.toml");
    format!("{minimal}\n[models.a]\npath = \"{file}\"\nsha256 = \"{sha256}\"\n")
}

fn pipeline_with_model(file: &str, sha256: &str) -> Pipeline {
    Pipeline::from_str(&model_text(file, sha256), "models.toml", steps()).unwrap()
}

/// The 1-based line starting with `key =` in the text of [`model_text`].
fn line_of(key: &str) -> usize {
    let text = model_text("a.onnx", SHA256_ABC);
    text.lines().position(|line| line.starts_with(&format!("{key} ="))).unwrap() + 1
}

#[test]
fn a_matching_file_verifies() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.onnx"), b"abc").unwrap();
    let pipeline = pipeline_with_model("a.onnx", SHA256_ABC);
    pipeline.verify_models(dir.path()).unwrap();
    assert_eq!(pipeline.model_path("a", dir.path()), Some(dir.path().join("a.onnx")));
    assert_eq!(pipeline.model_path("b", dir.path()), None);
}

#[test]
fn a_missing_file_is_reported_at_its_path_key() {
    let dir = tempfile::tempdir().unwrap();
    let errors = pipeline_with_model("a.onnx", SHA256_ABC).verify_models(dir.path()).unwrap_err();
    let [TopologyError::ModelMissing { at, model, path }] = errors.as_slice() else {
        panic!("{errors:?}")
    };
    assert_eq!(model, "a");
    assert_eq!(path, &dir.path().join("a.onnx"));
    assert_eq!(at.line, line_of("path"));
}

#[test]
fn a_changed_file_is_a_checksum_mismatch_at_its_sha256_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.onnx"), b"").unwrap();
    let errors = pipeline_with_model("a.onnx", SHA256_ABC).verify_models(dir.path()).unwrap_err();
    let [TopologyError::ModelChecksum { at, expected, actual, .. }] = errors.as_slice() else {
        panic!("{errors:?}")
    };
    assert_eq!((expected.as_str(), actual.as_str()), (SHA256_ABC, SHA256_EMPTY));
    assert_eq!(at.line, line_of("sha256"));
}

#[test]
fn a_directory_in_place_of_the_file_is_unreadable() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("a.onnx")).unwrap();
    let errors = pipeline_with_model("a.onnx", SHA256_ABC).verify_models(dir.path()).unwrap_err();
    assert!(matches!(errors.as_slice(), [TopologyError::ModelUnreadable { .. }]), "{errors:?}");
}

#[test]
fn every_model_is_checked_not_just_the_first() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.onnx"), b"abc").unwrap();
    let minimal = include_str!("minimal.toml");
    let text = format!(
        "{minimal}\n[models.a]\npath = \"a.onnx\"\nsha256 = \"{SHA256_EMPTY}\"\n\
         [models.b]\npath = \"b.onnx\"\nsha256 = \"{SHA256_ABC}\"\n"
    );
    let errors = Pipeline::from_str(&text, "two.toml", steps())
        .unwrap()
        .verify_models(dir.path())
        .unwrap_err();
    assert!(
        matches!(
            errors.as_slice(),
            [TopologyError::ModelChecksum { model: a, .. }, TopologyError::ModelMissing { model: b, .. }]
                if a == "a" && b == "b"
        ),
        "{errors:?}"
    );
}

/// The installed model directory of this checkout.
fn installed_model_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(DEFAULT_MODEL_DIR)
}

/// Against the real model files: where `./setup` has installed them they
/// all match the embedded pipeline; where it has not, each one is reported
/// missing (never a silent pass).
#[test]
fn embedded_models_verify_against_the_installed_model_dir() {
    let pipeline = Pipeline::embedded(steps()).unwrap();
    let dir = installed_model_dir();
    if dir.is_dir() {
        pipeline.verify_models(&dir).unwrap();
        let report = topology::check(None, Some(&dir), steps());
        assert!(report.is_ok(), "{report}");
    } else {
        let errors = pipeline.verify_models(&dir).unwrap_err();
        assert_eq!(errors.len(), pipeline.models().len());
        assert!(errors.iter().all(|e| matches!(e, TopologyError::ModelMissing { .. })));
    }
}
