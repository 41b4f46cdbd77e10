//! The envelope and the MessagePack codec.

use serde::de::{DeserializeOwned, IgnoredAny};
use serde::{Deserialize, Serialize};

/// The schema version this build writes, and the newest it can read.
///
/// Bumped only for incompatible changes; adding a defaulted field is not one.
pub const SCHEMA_VERSION: u16 = 1;

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
    #[error("message written with schema version {found}, this build reads up to {supported}")]
    UnsupportedVersion { found: u16, supported: u16 },
    #[error("expected a `{expected}` message, got `{found}`")]
    WrongKind { expected: &'static str, found: String },
    #[error("malformed message: {0}")]
    Malformed(#[from] rmp_serde::decode::Error),
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
    let header: Header = rmp_serde::from_slice(bytes)?;
    if header.v > SCHEMA_VERSION {
        return Err(CodecError::UnsupportedVersion { found: header.v, supported: SCHEMA_VERSION });
    }
    if header.kind != M::KIND {
        return Err(CodecError::WrongKind { expected: M::KIND, found: header.kind });
    }
    let envelope: Envelope<M> = rmp_serde::from_slice(bytes)?;
    Ok(envelope.body)
}
