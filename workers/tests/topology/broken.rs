//! Every file under `tests/topology/broken/` is rejected with the errors its
//! `# expect: Kind[, Kind]` comments announce, on the lines they are on.

use crate::steps;
use std::path::{Path, PathBuf};

use topology::{Pipeline, TopologyError};

fn kind(error: &TopologyError) -> &'static str {
    match error {
        TopologyError::Read { .. } => "Read",
        TopologyError::Syntax { .. } => "Syntax",
        TopologyError::UnknownKey { .. } => "UnknownKey",
        TopologyError::Moved { .. } => "Moved",
        TopologyError::MissingKey { .. } => "MissingKey",
        TopologyError::BadDuration { .. } => "BadDuration",
        TopologyError::InvalidValue { .. } => "InvalidValue",
        TopologyError::UnknownStage { .. } => "UnknownStage",
        TopologyError::UnknownStep { .. } => "UnknownStep",
        TopologyError::UnknownNext { .. } => "UnknownNext",
        TopologyError::MissingStage { .. } => "MissingStage",
        TopologyError::DeadEnd { .. } => "DeadEnd",
        TopologyError::Cycle { .. } => "Cycle",
        TopologyError::Unreachable { .. } => "Unreachable",
        TopologyError::DuplicateSubject { .. } => "DuplicateSubject",
        TopologyError::UndefinedModel { .. } => "UndefinedModel",
        TopologyError::StepNeedsModel { .. } => "StepNeedsModel",
        TopologyError::ModelMissing { .. } => "ModelMissing",
        TopologyError::ModelUnreadable { .. } => "ModelUnreadable",
        TopologyError::ModelChecksum { .. } => "ModelChecksum",
    }
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/topology/broken").join(name)
}

/// `(line, kind)` for every `# expect:` comment of `text`.
fn expected(text: &str) -> Vec<(usize, String)> {
    let mut expected: Vec<(usize, String)> = text
        .lines()
        .enumerate()
        .filter_map(|(i, line)| Some((i + 1, line.split_once("# expect:")?.1)))
        .flat_map(|(line, kinds)| kinds.split(',').map(move |kind| (line, kind.trim().to_owned())))
        .collect();
    expected.sort();
    expected
}

fn load_errors(path: &Path) -> Vec<TopologyError> {
    match Pipeline::load(path, steps()) {
        Ok(_) => panic!("{} loaded without errors", path.display()),
        Err(errors) => errors,
    }
}

#[test]
fn every_broken_file_reports_its_errors_where_announced() {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(fixture(""))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    paths.sort();
    assert!(paths.len() >= 15, "fixtures missing: {paths:?}");
    for path in paths {
        let text = std::fs::read_to_string(&path).unwrap();
        let want = expected(&text);
        assert!(!want.is_empty(), "{} announces no error", path.display());
        let errors = load_errors(&path);
        let mut got: Vec<(usize, String)> = errors
            .iter()
            .map(|error| {
                let at = error.location().unwrap();
                assert_eq!(at.origin, path.display().to_string());
                (at.line, kind(error).to_owned())
            })
            .collect();
        got.sort();
        let report: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(got, want, "{}:\n{}", path.display(), report.join("\n"));
    }
}

#[test]
fn unknown_keys_are_named_by_their_full_path() {
    let errors = load_errors(&fixture("unknown_key_nested.toml"));
    let [TopologyError::UnknownKey { key, at, .. }] = errors.as_slice() else {
        panic!("{errors:?}")
    };
    assert_eq!(key, "stages.split.scaling.cool_down");
    assert_eq!(at.column, 1);
}

#[test]
fn missing_keys_are_named_by_their_full_path() {
    let errors = load_errors(&fixture("missing_key.toml"));
    let [TopologyError::MissingKey { key, .. }] = errors.as_slice() else { panic!("{errors:?}") };
    assert_eq!(key, "models.det.sha256");
}

#[test]
fn bad_durations_name_the_key_and_the_text() {
    let errors = load_errors(&fixture("bad_duration_in_list.toml"));
    let [TopologyError::BadDuration { key, value, at }] = errors.as_slice() else {
        panic!("{errors:?}")
    };
    assert_eq!(key, "stages.split.consumer.backoff[1]");
    assert_eq!(value, "5 s");
    assert_eq!(at.column, 18);
}

#[test]
fn unknown_steps_list_the_stage_s_steps() {
    let errors = load_errors(&fixture("unknown_step.toml"));
    let [TopologyError::UnknownStep { stage, step, known, .. }] = errors.as_slice() else {
        panic!("{errors:?}")
    };
    assert_eq!((stage.as_str(), step.as_str()), ("render", "rasterise"));
    assert_eq!(known, &["rasterize", "extract_text"]);
}

#[test]
fn cycles_are_reported_with_their_path() {
    let errors = load_errors(&fixture("cycle.toml"));
    let [TopologyError::Cycle { path, .. }] = errors.as_slice() else { panic!("{errors:?}") };
    assert_eq!(path, &["render", "preprocess", "render"]);
}

#[test]
fn semantic_errors_are_all_collected_in_file_order() {
    let errors = load_errors(&fixture("invalid_values.toml"));
    assert_eq!(errors.len(), 8);
    let lines: Vec<usize> = errors.iter().map(|e| e.location().unwrap().line).collect();
    assert!(lines.is_sorted(), "{lines:?}");
    let keys: Vec<&str> = errors
        .iter()
        .filter_map(|error| match error {
            TopologyError::InvalidValue { key, .. } => Some(key.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        keys,
        [
            "steps.detect_text.db.thresh",
            "models.det.sha256",
            "stages.split.steps[3]",
            "stages.split.concurrency",
            "stages.split.consumer.backoff",
            "stages.split.scaling.min_replicas",
            "stages.assemble.next",
        ]
    );
}

#[test]
fn the_check_report_names_file_line_and_key() {
    let path = fixture("unknown_key.toml");
    let report = topology::check(Some(&path), None, steps());
    assert!(!report.is_ok());
    assert!(report.pipeline().is_none());
    let [TopologyError::UnknownKey { at, key, .. }] = report.errors() else { panic!("{report}") };
    let printed = report.to_string();
    assert!(printed.starts_with(&format!("{}:{}:{}: ", path.display(), at.line, at.column)));
    assert!(printed.contains(key.as_str()), "{printed}");
}

#[test]
fn a_missing_file_is_a_read_error() {
    let errors = load_errors(&fixture("no_such_file.toml"));
    assert!(matches!(errors.as_slice(), [TopologyError::Read { source, .. }]
        if source.kind() == std::io::ErrorKind::NotFound));
    assert!(errors[0].location().is_none());
}
