//! The decoder never panics, whatever bytes a peer sends: random bytes,
//! truncated and corrupted encodings, and absurdly deep nesting all give an
//! error (or, by chance, a value), never a crash.

use std::fmt::Debug;

use proptest::prelude::*;
use schemas::{
    CodecError, DeadLetter, DocumentResult, DocumentSubmission, Event, FailureRecord, Message,
    PagePayload, PageResult, PageTask, decode, encode,
};

use crate::{EachKind, fixtures};

/// Decodes `bytes` as every message kind; returning at all is the test.
fn decode_as_every_kind(bytes: &[u8]) {
    let _ = decode::<DocumentSubmission>(bytes);
    let _ = decode::<PageTask>(bytes);
    let _ = decode::<PageResult>(bytes);
    let _ = decode::<PagePayload>(bytes);
    let _ = decode::<DocumentResult>(bytes);
    let _ = decode::<FailureRecord>(bytes);
    let _ = decode::<DeadLetter>(bytes);
    let _ = decode::<Event>(bytes);
}

/// The encodings of every fixture value.
fn encodings() -> Vec<Vec<u8>> {
    struct Collect(Vec<Vec<u8>>);
    impl EachKind for Collect {
        fn check<M: Message + PartialEq + Debug>(&mut self, value: M) {
            self.0.push(encode(&value).unwrap());
        }
    }
    let mut collect = Collect(Vec::new());
    crate::each_kind(&mut collect);
    collect.0
}

#[test]
fn every_truncation_is_malformed() {
    struct Truncate;
    impl EachKind for Truncate {
        fn check<M: Message + PartialEq + Debug>(&mut self, value: M) {
            let bytes = encode(&value).unwrap();
            for len in 0..bytes.len() {
                let result = decode::<M>(&bytes[..len]);
                assert!(
                    matches!(result, Err(CodecError::Malformed(_))),
                    "{} cut at {len} of {} bytes: {result:?}",
                    M::KIND,
                    bytes.len()
                );
            }
        }
    }
    crate::each_kind(&mut Truncate);
}

#[test]
fn deep_nesting_is_refused_without_overflowing_the_stack() {
    // An envelope whose body is a hundred thousand nested one-element arrays, and a
    // submission whose tagged source (buffered by serde) is nested as deep.
    let depth = 100_000;
    let mut deep_body = b"\x83\xa1v\x01\xa4kind\xb3document_submission\xa4body".to_vec();
    deep_body.extend(std::iter::repeat_n(0x91, depth));
    deep_body.push(0xc0);
    let mut deep_source = encode(&fixtures::submission()).unwrap();
    let source_at = deep_source.windows(7).position(|w| w == b"\xa6source").unwrap() + 7;
    deep_source.splice(source_at..source_at, std::iter::repeat_n(0x91, depth));
    for bytes in [deep_body, deep_source] {
        let result = decode::<DocumentSubmission>(&bytes);
        assert!(matches!(result, Err(CodecError::Malformed(_))), "{result:?}");
        decode_as_every_kind(&bytes);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        decode_as_every_kind(&bytes);
    }

    #[test]
    fn random_envelopes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        // A valid envelope header makes the decoder go on into the body.
        for kind in ["document_submission", "page_result", "event"] {
            let mut bytes = vec![0x83, 0xa1, b'v', 0x01, 0xa4];
            bytes.extend_from_slice(b"kind");
            bytes.push(0xa0 | kind.len() as u8);
            bytes.extend_from_slice(kind.as_bytes());
            bytes.extend_from_slice(b"\xa4body");
            bytes.extend_from_slice(&body);
            decode_as_every_kind(&bytes);
        }
    }

    #[test]
    fn corrupted_encodings_never_panic(
        message in 0..8usize,
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let mut bytes = encodings().swap_remove(message);
        for (index, byte) in flips {
            let at = index.index(bytes.len());
            bytes[at] = byte;
        }
        decode_as_every_kind(&bytes);
    }
}
