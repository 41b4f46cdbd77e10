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
/// Header carrying the dead-letter sequence a message was replayed from. It
/// travels with the page to the end, and every id derived from a replayed
/// message carries it, so the replay is not dropped as a duplicate of the
/// attempt that failed.
pub const HEADER_REPLAY: &str = "Pagestream-Replay";

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

/// `doc.<tenant>.<doc_id>`: key of a [`crate::DocumentState`] in [`KV_DOCUMENTS`].
pub fn document_key(tenant: &str, doc_id: &str) -> String {
    format!("doc.{tenant}.{doc_id}")
}

/// `cancel.<tenant>.<doc_id>`: key in [`KV_DOCUMENTS`] that exists while the
/// document is cancelled.
pub fn cancel_key(tenant: &str, doc_id: &str) -> String {
    format!("cancel.{tenant}.{doc_id}")
}

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

/// Tenant token of the dead letters whose own tenant is unusable (a message
/// that arrived on a subject whose tenant token is not a valid tenant name).
/// No tenant can have this name: tenant names start with a letter or digit.
pub const UNROUTED_TENANT: &str = "_unrouted";

/// The tenant a message belongs to: the second token of the subject it
/// arrived on, when that is a valid tenant name. The subject decides, never
/// the message body.
pub fn tenant_of(subject: &str) -> Option<&str> {
    let mut tokens = subject.split('.');
    let tenant = match (tokens.next(), tokens.next()) {
        (Some(PREFIX), Some(tenant)) => tenant,
        _ => return None,
    };
    validate_tenant(tenant).is_ok().then_some(tenant)
}

/// Why a tenant name cannot be used in a subject.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TenantError {
    /// The name is empty.
    #[error("tenant name is empty")]
    Empty,
    /// The name is longer than [`MAX_TENANT_LEN`].
    #[error("tenant name is longer than 64 characters")]
    TooLong,
    /// The name holds a character other than `a-z`, `0-9`, `-` and `_`.
    #[error("tenant name may only hold a-z, 0-9, '-' and '_', got {0:?}")]
    InvalidChar(char),
    /// The name starts with `-` or `_` (reserved, see [`UNROUTED_TENANT`]).
    #[error("tenant name must start with a letter or a digit")]
    BadStart,
}

/// Longest tenant name, in characters.
pub const MAX_TENANT_LEN: usize = 64;

/// Checks that `tenant` is a single, safe subject token: 1 to 64 characters of
/// `a-z`, `0-9`, `-` and `_` (no `.`, `*`, `>` or whitespace, which NATS gives a
/// meaning), starting with a letter or a digit. The subject builders do not
/// check; names are validated where they enter the system, and workers take
/// the tenant of a message from its subject ([`tenant_of`]).
pub fn validate_tenant(tenant: &str) -> Result<(), TenantError> {
    if tenant.is_empty() {
        return Err(TenantError::Empty);
    }
    if tenant.len() > MAX_TENANT_LEN {
        return Err(TenantError::TooLong);
    }
    match tenant
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '_'))
    {
        Some(c) => Err(TenantError::InvalidChar(c)),
        None if tenant.starts_with(['-', '_']) => Err(TenantError::BadStart),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether the NATS subject `filter` (with `*` and `>` wildcards) matches `subject`.
    fn matches(filter: &str, subject: &str) -> bool {
        let mut subject_tokens = subject.split('.');
        for token in filter.split('.') {
            match (token, subject_tokens.next()) {
                (">", Some(_)) => return true,
                ("*", Some(_)) => {}
                (token, Some(actual)) if token == actual => {}
                _ => return false,
            }
        }
        subject_tokens.next().is_none()
    }

    #[test]
    fn builders_spell_the_documented_subjects() {
        let doc = "064b66188821584121784c30ca28eadbc5f265e025c6dd9eeed64cf1ef8e1f46";
        assert_eq!(submit("acme"), "pagestream.acme.submit");
        assert_eq!(stage_input("acme", "ocr"), "pagestream.acme.pages.ocr");
        assert_eq!(stage_input_all_tenants("ocr"), "pagestream.*.pages.ocr");
        assert_eq!(result("acme", doc), format!("pagestream.acme.results.{doc}"));
        assert_eq!(event("acme", "document.done"), "pagestream.acme.events.document.done");
        assert_eq!(dead_letter("acme", "layout"), "pagestream.acme.dead.layout");
    }

    #[test]
    fn tenant_is_the_second_token_of_every_subject() {
        for tenant in ["acme", "tenant-01", "a_b"] {
            let subjects = [
                submit(tenant),
                stage_input(tenant, "render"),
                result(tenant, "abc"),
                event(tenant, "page.done"),
                dead_letter(tenant, "render"),
            ];
            for subject in subjects {
                let tokens: Vec<_> = subject.split('.').collect();
                assert_eq!(tokens[..2], [PREFIX, tenant], "{subject}");
                // What a tenant's permissions allow covers all its subjects.
                assert!(matches(&format!("{PREFIX}.{tenant}.>"), &subject), "{subject}");
                assert!(!matches("pagestream.other.>", &subject), "{subject}");
            }
        }
    }

    #[test]
    fn stage_filter_matches_only_that_stage_of_every_tenant() {
        let filter = stage_input_all_tenants("ocr");
        assert!(matches(&filter, &stage_input("acme", "ocr")));
        assert!(matches(&filter, &stage_input("globex", "ocr")));
        assert!(!matches(&filter, &stage_input("acme", "layout")));
        assert!(!matches(&filter, &submit("acme")));
        assert!(!matches(&filter, &dead_letter("acme", "ocr")));
    }

    #[test]
    fn the_subject_names_the_tenant() {
        assert_eq!(tenant_of("pagestream.acme.submit"), Some("acme"));
        assert_eq!(tenant_of("pagestream.acme.pages.ocr"), Some("acme"));
        for subject in ["pagestream.ACME.submit", "other.acme.submit", "pagestream", ""] {
            assert_eq!(tenant_of(subject), None, "{subject}");
        }
        assert_eq!(tenant_of(&dead_letter(UNROUTED_TENANT, "split")), None);
        assert_eq!(validate_tenant(UNROUTED_TENANT), Err(TenantError::BadStart));
        assert!(matches("pagestream.*.dead.>", &dead_letter(UNROUTED_TENANT, "split")));
    }

    #[test]
    fn valid_tenants_pass() {
        for tenant in ["acme", "tenant-01", "a_b", "0", &"x".repeat(MAX_TENANT_LEN)] {
            assert_eq!(validate_tenant(tenant), Ok(()), "{tenant}");
        }
    }

    #[test]
    fn invalid_tenants_say_why() {
        assert_eq!(validate_tenant(""), Err(TenantError::Empty));
        assert_eq!(validate_tenant(&"x".repeat(MAX_TENANT_LEN + 1)), Err(TenantError::TooLong));
        let cases = [
            ("Acme", 'A'),
            ("acme.evil", '.'),
            ("acme*", '*'),
            ("acme>", '>'),
            ("ac me", ' '),
            ("acme\n", '\n'),
            ("café", 'é'),
            ("a/b", '/'),
        ];
        for (tenant, bad) in cases {
            assert_eq!(validate_tenant(tenant), Err(TenantError::InvalidChar(bad)), "{tenant:?}");
        }
    }
}
