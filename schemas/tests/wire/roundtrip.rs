//! Every message kind survives `encode` then `decode` unchanged, in map form
//! with byte fields as MessagePack `bin`.

use std::fmt::Debug;

use rmpv::Value;
use schemas::{DocumentSource, DocumentSubmission, Message, decode, encode};

use crate::{EachKind, at, fixtures, value_of};

fn round_trip<M: Message + PartialEq + Debug>(value: &M) {
    let bytes = encode(value).unwrap();
    let decoded: M = decode(&bytes).unwrap();
    assert_eq!(&decoded, value, "{} did not survive a round trip", M::KIND);
}

#[test]
fn every_kind_round_trips() {
    struct RoundTrip;
    impl EachKind for RoundTrip {
        fn check<M: Message + PartialEq + Debug>(&mut self, value: M) {
            round_trip(&value);
        }
    }
    crate::each_kind(&mut RoundTrip);
}

#[test]
fn every_variant_round_trips() {
    fixtures::events().iter().for_each(round_trip);
    round_trip(&DocumentSubmission {
        source: DocumentSource::Blob(fixtures::blob()),
        ..fixtures::submission()
    });
    round_trip(&DocumentSubmission {
        file_name: None,
        source: DocumentSource::Inline { bytes: Vec::new() },
        ..fixtures::submission()
    });
    // Claim checks: messages that stand for one in the object store.
    round_trip(&fixtures::spilled_page_payload());
    let result = fixtures::claim_checked_document_result();
    assert!(result.is_claim_check() && result.pages.is_empty() && result.page_count == 2);
    round_trip(&result);
    let mut letter = fixtures::dead_letter();
    letter.payload = Vec::new();
    letter.payload_blob = Some(fixtures::blob());
    round_trip(&letter);
}

#[test]
fn envelope_is_a_map_of_version_kind_and_body() {
    struct Envelope;
    impl EachKind for Envelope {
        fn check<M: Message + PartialEq + Debug>(&mut self, value: M) {
            let Value::Map(entries) = value_of(&value) else { panic!("{} is not a map", M::KIND) };
            let keys: Vec<_> = entries.iter().map(|(key, _)| key.as_str().unwrap()).collect();
            assert_eq!(keys, ["v", "kind", "body"]);
            assert_eq!(entries[0].1, Value::from(schemas::SCHEMA_VERSION));
            assert_eq!(entries[1].1, Value::from(M::KIND));
            assert!(entries[2].1.is_map(), "{} body is not a map", M::KIND);
        }
    }
    crate::each_kind(&mut Envelope);
}

#[test]
fn byte_fields_are_bin() {
    let png = Value::Binary(fixtures::PNG.to_vec());
    assert_eq!(*at(&mut value_of(&fixtures::submission()), "body.source.bytes"), png);
    assert_eq!(*at(&mut value_of(&fixtures::page_payload()), "body.image.data"), png);
    let payload = encode(&fixtures::page_task()).unwrap();
    assert_eq!(
        *at(&mut value_of(&fixtures::dead_letter()), "body.payload"),
        Value::Binary(payload)
    );
}

#[test]
fn document_result_round_trips_through_json_exports() {
    let result = fixtures::document_result();
    let json = serde_json::to_string(&result).unwrap();
    assert_eq!(serde_json::from_str::<schemas::DocumentResult>(&json).unwrap(), result);
}
