//! The envelope and the MessagePack codec.

use serde::de::{DeserializeOwned, IgnoredAny};
use serde::{Deserialize, Serialize};

/// The schema version this build writes, and the newest it can read.
///
/// Bumped only for incompatible changes; adding a defaulted field is not one.
pub const SCHEMA_VERSION: u16 = 1;

/// The deepest nesting of maps and arrays a message may have; deeper input is
/// refused as malformed before it can exhaust the stack.
///
/// Messages of this schema version nest at most 9 deep (a word box inside a
/// page of a document result); the margin leaves room for additions.
pub const MAX_DEPTH: usize = 32;

/// A message type that can travel on the wire.
pub trait Message: Serialize + DeserializeOwned {
    /// Stable name of the message kind, carried in the envelope.
    const KIND: &'static str;
}

/// The frame around every message: `{"v": 1, "kind": "...", "body": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope<T> {
    /// Schema version of the writer.
    pub v: u16,
    /// Message kind, see [`Message::KIND`].
    pub kind: String,
    /// The message itself.
    pub body: T,
}

/// Why a message could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The writer used a newer schema version than this build understands.
    #[error("message written with schema version {found}, this build reads up to {supported}")]
    UnsupportedVersion {
        /// Version in the envelope.
        found: u16,
        /// Newest version this build reads, [`SCHEMA_VERSION`].
        supported: u16,
    },
    /// The envelope's version is 0; versions start at 1.
    #[error("message has schema version 0; versions start at 1")]
    NoVersion,
    /// The envelope holds another kind of message than the one asked for.
    #[error("expected a `{expected}` message, got `{found}`")]
    WrongKind {
        /// Kind asked for, [`Message::KIND`].
        expected: &'static str,
        /// Kind in the envelope.
        found: String,
    },
    /// The bytes are not a well-formed envelope or message: truncated, not
    /// MessagePack, a required field missing, a value of the wrong type, an
    /// unknown value of a closed enum, or nesting deeper than [`MAX_DEPTH`].
    #[error("malformed message: {0}")]
    Malformed(#[from] rmp_serde::decode::Error),
    /// The message could not be encoded (only a bug can cause this).
    #[error("cannot encode message: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
}

/// Encodes `message` in its envelope, as a MessagePack map.
pub fn encode<M: Message>(message: &M) -> Result<Vec<u8>, CodecError> {
    #[derive(Serialize)]
    struct EnvelopeRef<'a, T> {
        v: u16,
        kind: &'static str,
        body: &'a T,
    }
    let envelope = EnvelopeRef { v: SCHEMA_VERSION, kind: M::KIND, body: message };
    Ok(rmp_serde::to_vec_named(&envelope)?)
}

/// Decodes a message of type `M`, checking version and kind first so that a
/// newer writer or a message of another kind gets a precise error.
pub fn decode<M: Message>(bytes: &[u8]) -> Result<M, CodecError> {
    #[derive(Deserialize)]
    struct Header {
        v: u16,
        kind: String,
        #[allow(dead_code)]
        body: IgnoredAny,
    }
    let header: Header = from_slice(bytes)?;
    if header.v == 0 {
        return Err(CodecError::NoVersion);
    }
    if header.v > SCHEMA_VERSION {
        return Err(CodecError::UnsupportedVersion { found: header.v, supported: SCHEMA_VERSION });
    }
    if header.kind != M::KIND {
        return Err(CodecError::WrongKind { expected: M::KIND, found: header.kind });
    }
    let envelope: Envelope<M> = from_slice(bytes)?;
    Ok(envelope.body)
}

/// Deserializes `bytes` with the nesting limited to [`MAX_DEPTH`].
fn from_slice<'de, T: Deserialize<'de>>(bytes: &'de [u8]) -> Result<T, rmp_serde::decode::Error> {
    let mut deserializer = rmp_serde::Deserializer::from_read_ref(bytes);
    // rmp-serde refuses the level at which its budget reaches zero.
    deserializer.set_max_depth(MAX_DEPTH + 1);
    T::deserialize(&mut deserializer)
}
