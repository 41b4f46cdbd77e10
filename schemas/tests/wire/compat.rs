//! Compatibility rules of WIRE.md, checked on the bytes: unknown fields are
//! ignored, absent optional fields take their default, newer versions and
//! other kinds are refused precisely, unknown values of open enums decode as
//! `other`, and floats may be sent as float 64.

use std::fmt::Debug;

use rmpv::Value;
use schemas::{
    CodecError, DeadLetter, DiagnosticLevel, DocumentResult, DocumentSubmission, ErrorKind, Event,
    EventBody, FailureRecord, FieldKind, MAX_DEPTH, Message, PageResult, PageTask, RegionKind,
    SCHEMA_VERSION, TableCell, decode, encode,
};

use crate::{EachKind, at, bytes_of, fixtures, value_of};

/// Decodes `value` as `M`, after it was changed.
fn decode_value<M: Message>(value: &Value) -> Result<M, CodecError> {
    decode(&bytes_of(value))
}

/// Adds an unknown field, itself a nested structure, to every map.
fn add_unknown_fields(value: &mut Value) {
    match value {
        Value::Map(entries) => {
            entries.iter_mut().for_each(|(_, value)| add_unknown_fields(value));
            let nested = Value::Map(vec![
                (Value::from("unit"), Value::from("px")),
                (Value::from("samples"), Value::Array(vec![Value::from(1), Value::F64(0.5)])),
            ]);
            entries.insert(0, (Value::from("added_in_a_later_version"), nested));
        }
        Value::Array(items) => items.iter_mut().for_each(add_unknown_fields),
        _ => {}
    }
}

#[test]
fn unknown_fields_are_ignored_at_every_level() {
    struct Unknown;
    impl EachKind for Unknown {
        fn check<M: Message + PartialEq + Debug>(&mut self, value: M) {
            let mut tree = value_of(&value);
            add_unknown_fields(&mut tree);
            assert_eq!(decode_value::<M>(&tree).unwrap(), value, "{}", M::KIND);
        }
    }
    crate::each_kind(&mut Unknown);
}

#[test]
fn newer_schema_version_is_refused() {
    struct Newer;
    impl EachKind for Newer {
        fn check<M: Message + PartialEq + Debug>(&mut self, value: M) {
            let mut tree = value_of(&value);
            *at(&mut tree, "v") = Value::from(SCHEMA_VERSION + 1);
            // Even a body this build could read is refused: a newer writer
            // may have changed what its fields mean.
            let error = decode_value::<M>(&tree).unwrap_err();
            assert!(
                matches!(
                    error,
                    CodecError::UnsupportedVersion { found, supported: SCHEMA_VERSION }
                        if found == SCHEMA_VERSION + 1
                ),
                "{}: {error:?}",
                M::KIND
            );
        }
    }
    crate::each_kind(&mut Newer);
}

#[test]
fn version_zero_is_refused() {
    struct Zero;
    impl EachKind for Zero {
        fn check<M: Message + PartialEq + Debug>(&mut self, value: M) {
            let mut tree = value_of(&value);
            *at(&mut tree, "v") = Value::from(0);
            let error = decode_value::<M>(&tree).unwrap_err();
            assert!(matches!(error, CodecError::NoVersion), "{}: {error:?}", M::KIND);
        }
    }
    crate::each_kind(&mut Zero);
}

#[test]
fn another_kind_is_refused() {
    struct Other;
    impl EachKind for Other {
        fn check<M: Message + PartialEq + Debug>(&mut self, value: M) {
            let mut tree = value_of(&value);
            *at(&mut tree, "kind") = Value::from("page_snapshot");
            let error = decode_value::<M>(&tree).unwrap_err();
            assert!(
                matches!(&error, CodecError::WrongKind { expected, found }
                    if *expected == M::KIND && found == "page_snapshot"),
                "{}: {error:?}",
                M::KIND
            );
        }
    }
    crate::each_kind(&mut Other);

    let task = encode(&fixtures::page_task()).unwrap();
    let error = decode::<DocumentSubmission>(&task).unwrap_err();
    assert!(matches!(error, CodecError::WrongKind { expected: "document_submission", .. }));
}

#[test]
fn unknown_error_kind_decodes_as_other() {
    let mut tree = value_of(&fixtures::failure());
    *at(&mut tree, "body.kind") = Value::from("quota_exceeded");
    let failure: FailureRecord = decode_value(&tree).unwrap();
    assert_eq!(failure, FailureRecord { kind: ErrorKind::Other, ..fixtures::failure() });

    // Nested in a dead letter, a page of a result and an event body (which
    // serde buffers before decoding, a separate code path).
    let mut tree = value_of(&fixtures::dead_letter());
    *at(&mut tree, "body.failure.kind") = Value::from("quota_exceeded");
    assert_eq!(decode_value::<DeadLetter>(&tree).unwrap().failure.kind, ErrorKind::Other);

    let mut tree = value_of(&fixtures::document_result());
    *at(&mut tree, "body.pages.1.failure.kind") = Value::from("quota_exceeded");
    let result: DocumentResult = decode_value(&tree).unwrap();
    assert_eq!(result.pages[1].failure.as_ref().map(|f| f.kind), Some(ErrorKind::Other));

    let failed = fixtures::events().pop().unwrap();
    let mut tree = value_of(&failed);
    *at(&mut tree, "body.body.failure.kind") = Value::from("quota_exceeded");
    let event: Event = decode_value(&tree).unwrap();
    assert!(
        matches!(event.body, EventBody::DocumentFailed { failure } if failure.kind == ErrorKind::Other)
    );
}

#[test]
fn unknown_region_field_and_diagnostic_values_decode_as_fallbacks() {
    let mut tree = value_of(&fixtures::page_result());
    *at(&mut tree, "body.regions.0.kind") = Value::from("handwriting");
    *at(&mut tree, "body.fields.0.kind") = Value::from("purchase_order");
    *at(&mut tree, "body.diagnostics.0.level") = Value::from("critical");
    let page: PageResult = decode_value(&tree).unwrap();
    assert_eq!(page.regions[0].kind, RegionKind::Other);
    assert_eq!(page.fields[0].kind, FieldKind::Other);
    assert_eq!(page.diagnostics[0].level, DiagnosticLevel::Error);
    assert_eq!(page.regions[1..], fixtures::page_result().regions[1..]);
}

#[test]
fn unknown_values_of_closed_enums_are_malformed() {
    let mut tree = value_of(&fixtures::page_task());
    *at(&mut tree, "body.kind") = Value::from("webp");
    assert!(matches!(decode_value::<PageTask>(&tree), Err(CodecError::Malformed(_))));

    let mut tree = value_of(&fixtures::page_task());
    *at(&mut tree, "body.source.type") = Value::from("url");
    assert!(matches!(decode_value::<PageTask>(&tree), Err(CodecError::Malformed(_))));

    let mut tree = value_of(&fixtures::event());
    *at(&mut tree, "body.body.event") = Value::from("page_retried");
    assert!(matches!(decode_value::<Event>(&tree), Err(CodecError::Malformed(_))));
}

/// Removes the entries whose key is one of `keys`, in every map.
fn remove_keys(value: &mut Value, keys: &[&str]) {
    match value {
        Value::Map(entries) => {
            entries.retain(|(key, _)| !key.as_str().is_some_and(|key| keys.contains(&key)));
            entries.iter_mut().for_each(|(_, value)| remove_keys(value, keys));
        }
        Value::Array(items) => items.iter_mut().for_each(|item| remove_keys(item, keys)),
        _ => {}
    }
}

#[test]
fn absent_optional_fields_take_their_default() {
    let mut tree = value_of(&fixtures::page_result());
    let optional = [
        "dpi",
        "rotation_deg",
        "skew_deg",
        "class",
        "language",
        "regions",
        "lines",
        "tables",
        "fields",
        "diagnostics",
        "timings",
        "failure",
    ];
    remove_keys(at(&mut tree, "body"), &optional);
    let page: PageResult = decode_value(&tree).unwrap();
    let expected = fixtures::page_result();
    assert_eq!(
        page,
        PageResult {
            page_index: expected.page_index,
            width: expected.width,
            height: expected.height,
            ..PageResult::default()
        }
    );

    // Nested optional fields: spans default to 1, lists to empty.
    let mut tree = value_of(&fixtures::page_result());
    remove_keys(&mut tree, &["row_span", "col_span", "words", "quad", "reading_order"]);
    let page: PageResult = decode_value(&tree).unwrap();
    let cells = &page.tables[0].cells;
    assert!(cells.iter().all(|cell| (cell.row_span, cell.col_span) == (1, 1)));
    assert_eq!(
        cells[0],
        TableCell { col_span: 1, ..fixtures::page_result().tables[0].cells[0].clone() }
    );
    assert!(page.lines.iter().all(|line| line.words.is_empty() && line.quad.is_none()));
    assert!(page.regions.iter().all(|region| region.reading_order.is_none()));
}

#[test]
fn nil_reads_as_absent_for_optional_fields() {
    let mut tree = value_of(&fixtures::submission());
    *at(&mut tree, "body.file_name") = Value::Nil;
    let submission: DocumentSubmission = decode_value(&tree).unwrap();
    assert_eq!(submission.file_name, None);
}

#[test]
fn missing_required_field_is_malformed() {
    let mut tree = value_of(&fixtures::submission());
    remove_keys(at(&mut tree, "body"), &["doc_id"]);
    assert!(matches!(decode_value::<DocumentSubmission>(&tree), Err(CodecError::Malformed(_))));
}

/// Turns every float 32 into a float 64, as JavaScript and Python encoders do.
fn widen_floats(value: &mut Value) {
    match value {
        Value::F32(x) => *value = Value::F64(f64::from(*x)),
        Value::Map(entries) => entries.iter_mut().for_each(|(_, value)| widen_floats(value)),
        Value::Array(items) => items.iter_mut().for_each(widen_floats),
        _ => {}
    }
}

#[test]
fn floats_may_be_sent_as_float64() {
    struct Wide;
    impl EachKind for Wide {
        fn check<M: Message + PartialEq + Debug>(&mut self, value: M) {
            let mut tree = value_of(&value);
            widen_floats(&mut tree);
            assert_eq!(decode_value::<M>(&tree).unwrap(), value, "{}", M::KIND);
        }
    }
    crate::each_kind(&mut Wide);
}

/// Reverses the order of the entries of every map.
fn reverse_maps(value: &mut Value) {
    match value {
        Value::Map(entries) => {
            entries.reverse();
            entries.iter_mut().for_each(|(_, value)| reverse_maps(value));
        }
        Value::Array(items) => items.iter_mut().for_each(reverse_maps),
        _ => {}
    }
}

#[test]
fn key_order_does_not_matter() {
    // Tags such as `type` and `event` may come after the fields they select.
    struct Reversed;
    impl EachKind for Reversed {
        fn check<M: Message + PartialEq + Debug>(&mut self, value: M) {
            let mut tree = value_of(&value);
            reverse_maps(&mut tree);
            assert_eq!(decode_value::<M>(&tree).unwrap(), value, "{}", M::KIND);
        }
    }
    crate::each_kind(&mut Reversed);
    fixtures::events().into_iter().for_each(|event| Reversed.check(event));
}

/// A submission with an unknown field nested so that the message is `depth`
/// levels deep (the envelope and the body count as two).
fn nested_submission(depth: usize) -> Value {
    let mut tree = value_of(&fixtures::submission());
    let leaf = (2..depth).fold(Value::Nil, |inner, _| Value::Array(vec![inner]));
    let Value::Map(body) = at(&mut tree, "body") else { panic!("body is not a map") };
    body.push((Value::from("added_in_a_later_version"), leaf));
    tree
}

#[test]
fn nesting_is_limited_to_max_depth() {
    let submission: DocumentSubmission = decode_value(&nested_submission(MAX_DEPTH)).unwrap();
    assert_eq!(submission, fixtures::submission());
    let too_deep = decode_value::<DocumentSubmission>(&nested_submission(MAX_DEPTH + 1));
    assert!(matches!(too_deep, Err(CodecError::Malformed(_))), "{too_deep:?}");
}

/// Levels of maps and arrays in `value`.
fn depth(value: &Value) -> usize {
    match value {
        Value::Map(entries) => 1 + entries.iter().map(|(_, value)| depth(value)).max().unwrap_or(0),
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

#[test]
fn messages_nest_well_within_max_depth() {
    // WIRE.md promises 9 levels at most for this schema version.
    struct Depth(usize);
    impl EachKind for Depth {
        fn check<M: Message + PartialEq + Debug>(&mut self, value: M) {
            self.0 = self.0.max(depth(&value_of(&value)));
        }
    }
    let mut deepest = Depth(0);
    crate::each_kind(&mut deepest);
    assert_eq!(deepest.0, 9);
    const { assert!(9 < MAX_DEPTH) };
}
