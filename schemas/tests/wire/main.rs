//! Wire-format tests: round trips, golden bytes, compatibility rules and
//! robustness of the decoder against hostile bytes.

// A test that cannot unwrap its own fixtures has failed.
#![allow(clippy::unwrap_used)]

mod compat;
mod fixtures;
mod golden;
mod robustness;
mod roundtrip;

use std::fmt::Debug;

use rmpv::Value;
use schemas::{Message, encode};

/// A check run on the fixture value of every message kind.
trait EachKind {
    fn check<M: Message + PartialEq + Debug>(&mut self, value: M);
}

/// Runs `check` on the fixture value of every message kind.
fn each_kind(check: &mut impl EachKind) {
    check.check(fixtures::submission());
    check.check(fixtures::page_task());
    check.check(fixtures::page_result());
    check.check(fixtures::page_payload());
    check.check(fixtures::document_result());
    check.check(fixtures::failure());
    check.check(fixtures::dead_letter());
    check.check(fixtures::event());
}

/// The encoding of `message` as a MessagePack value tree.
pub fn value_of<M: Message>(message: &M) -> Value {
    let bytes = encode(message).unwrap();
    rmpv::decode::read_value(&mut bytes.as_slice()).unwrap()
}

/// The bytes of a value tree.
pub fn bytes_of(value: &Value) -> Vec<u8> {
    let mut bytes = Vec::new();
    rmpv::encode::write_value(&mut bytes, value).unwrap();
    bytes
}

/// The node at a dotted `path` of map keys and array indices, e.g.
/// `body.regions.0.kind`.
pub fn at<'a>(value: &'a mut Value, path: &str) -> &'a mut Value {
    path.split('.').fold(value, |node, step| match node {
        Value::Map(entries) => entries
            .iter_mut()
            .find_map(|(key, value)| (key.as_str() == Some(step)).then_some(value))
            .unwrap_or_else(|| panic!("no key `{step}` in `{path}`")),
        Value::Array(items) => &mut items[step.parse::<usize>().unwrap()],
        other => panic!("`{path}` goes through a leaf: {other}"),
    })
}
