//! Subject, stream and header names: the one place they are spelled.
//!
//! Every subject carries the tenant as its second token so that NATS
//! permissions can confine a tenant to its own documents.

/// First token of every pagestream subject.
pub const PREFIX: &str = "pagestream";

/// Header carrying the JetStream de-duplication id.
pub const HEADER_MSG_ID: &str = "Nats-Msg-Id";
/// Header carrying the schema version of the body, for routing without decoding.
pub const HEADER_SCHEMA: &str = "Pagestream-Schema";
/// Header carrying the message kind ([`crate::Message::KIND`]).
pub const HEADER_KIND: &str = "Pagestream-Kind";
/// Header carrying the document id.
pub const HEADER_DOC_ID: &str = "Pagestream-Doc-Id";

/// Stream of submitted documents (work-queue retention).
pub const STREAM_DOCS: &str = "PAGESTREAM_DOCS";
/// Stream of pages between stages (work-queue retention, one consumer per stage).
pub const STREAM_WORK: &str = "PAGESTREAM_WORK";
/// Stream of document results (limits retention).
pub const STREAM_RESULTS: &str = "PAGESTREAM_RESULTS";
/// Stream of events (limits retention).
pub const STREAM_EVENTS: &str = "PAGESTREAM_EVENTS";
/// Stream of dead letters.
pub const STREAM_DEAD_LETTER: &str = "PAGESTREAM_DEAD_LETTER";
/// Key-value bucket of document state.
pub const KV_DOCUMENTS: &str = "pagestream_documents";

/// `pagestream.<tenant>.submit`: where clients publish documents.
pub fn submit(tenant: &str) -> String {
    format!("{PREFIX}.{tenant}.submit")
}

/// `pagestream.<tenant>.pages.<stage>`: pages waiting for `stage`.
pub fn stage_input(tenant: &str, stage: &str) -> String {
    format!("{PREFIX}.{tenant}.pages.{stage}")
}

/// Filter matching the input of `stage` for every tenant.
pub fn stage_input_all_tenants(stage: &str) -> String {
    format!("{PREFIX}.*.pages.{stage}")
}

/// `pagestream.<tenant>.results.<doc_id>`: the document result.
pub fn result(tenant: &str, doc_id: &str) -> String {
    format!("{PREFIX}.{tenant}.results.{doc_id}")
}

/// `pagestream.<tenant>.events.<name>`, e.g. `...events.document.done`.
pub fn event(tenant: &str, name: &str) -> String {
    format!("{PREFIX}.{tenant}.events.{name}")
}

/// `pagestream.<tenant>.dead.<stage>`: dead letters of `stage`.
pub fn dead_letter(tenant: &str, stage: &str) -> String {
    format!("{PREFIX}.{tenant}.dead.{stage}")
}

/// Why a tenant name cannot be used in a subject.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TenantError {
    #[error("tenant name is empty")]
    Empty,
    #[error("tenant name is longer than 64 characters")]
    TooLong,
    #[error("tenant name may only hold a-z, 0-9, '-' and '_', got {0:?}")]
    InvalidChar(char),
}

/// Checks that `tenant` is a single, safe subject token.
pub fn validate_tenant(tenant: &str) -> Result<(), TenantError> {
    if tenant.is_empty() {
        return Err(TenantError::Empty);
    }
    if tenant.len() > 64 {
        return Err(TenantError::TooLong);
    }
    match tenant
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '_'))
    {
        Some(c) => Err(TenantError::InvalidChar(c)),
        None => Ok(()),
    }
}
