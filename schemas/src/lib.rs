//! Wire types of pagestream: every message that crosses a process boundary,
//! and the MessagePack codec that frames them.
//!
//! Messages are encoded with rmp-serde in *named* (map) form, wrapped in an
//! [`Envelope`] that carries the schema version and the message kind. Fields
//! are only ever added (with a default), never renamed or retyped within a
//! schema version, so old readers keep working. `schemas/WIRE.md` documents
//! the format for clients in other languages.
//!
//! ```
//! use schemas::{CodecError, ErrorKind, FailureRecord, PageResult, decode, encode};
//!
//! let failure = FailureRecord::new(
//!     "064b6618",
//!     "ocr",
//!     "recognize_text",
//!     ErrorKind::Timeout,
//!     "recognition took longer than 30 s",
//! )
//! .on_page(2)
//! .after(5);
//! let bytes = encode(&failure)?;
//! assert_eq!(decode::<FailureRecord>(&bytes)?, failure);
//! assert!(matches!(decode::<PageResult>(&bytes), Err(CodecError::WrongKind { .. })));
//! # Ok::<(), CodecError>(())
//! ```

mod codec;
mod document;
mod event;
mod failure;
mod page;
mod state;
pub mod subjects;

pub use codec::{CodecError, Envelope, MAX_DEPTH, Message, SCHEMA_VERSION, decode, encode};
pub use document::{
    BlobRef, DocumentKind, DocumentResult, DocumentSource, DocumentStatus, DocumentSubmission,
    PageTask,
};
pub use event::{Event, EventBody};
pub use failure::{DeadLetter, ErrorKind, FailureRecord};
pub use page::{
    BBox, Diagnostic, DiagnosticLevel, Field, FieldKind, ImageEncoding, Language, Line, PageImage,
    PagePayload, PageResult, Point, Region, RegionKind, StepTiming, Table, TableCell, TextSource,
    Word,
};
pub use state::{DocumentState, Finished, PageState};

/// Milliseconds since the Unix epoch, the clock of every `*_ms` field.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}
