//! Document state in the JetStream key-value bucket: which pages of a
//! document have landed in `assemble`, updated with compare-and-set so that
//! any number of assemble workers agree on when the last page arrived; and
//! the cancellation marks workers consult before working on a page.
//!
//! Keys (spelled in `schemas::subjects`): `doc.<tenant>.<doc_id>` holds a
//! [`DocumentState`] (JSON, so that `nats kv get` shows it as is);
//! `cancel.<tenant>.<doc_id>` exists while a document is cancelled.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_nats::jetstream::kv::{self, Operation};
use bytes::Bytes;
use futures::StreamExt;
use schemas::DocumentState;
use schemas::subjects::{cancel_key, document_key};

/// Why the document state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("document state store: {0}")]
    Store(async_nats::Error),
    #[error("document state `{key}` is unreadable: {source}")]
    Malformed { key: String, source: serde_json::Error },
    #[error("document state `{0}` kept changing under concurrent updates")]
    Contention(String),
}

/// What an update function decided.
#[derive(Debug)]
pub enum Change<T> {
    /// Leave the state as it is and return `T`.
    Keep(T),
    /// Write the new state (if nobody changed it meanwhile) and return `T`.
    Write(DocumentState, T),
}

/// Compare-and-set attempts before giving up on a contended key.
const MAX_ATTEMPTS: usize = 64;

/// The document states and cancellation marks of one bucket.
#[derive(Clone)]
pub struct Documents {
    kv: kv::Store,
}

impl std::fmt::Debug for Documents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Documents").finish_non_exhaustive()
    }
}

impl Documents {
    pub fn new(kv: kv::Store) -> Self {
        Documents { kv }
    }

    /// The state of a document, if it is known.
    pub async fn get(
        &self,
        tenant: &str,
        doc_id: &str,
    ) -> Result<Option<DocumentState>, StateError> {
        Ok(self.read(&document_key(tenant, doc_id)).await?.0)
    }

    async fn read(&self, key: &str) -> Result<(Option<DocumentState>, Option<u64>), StateError> {
        let entry = self.kv.entry(key).await.map_err(|e| StateError::Store(e.into()))?;
        match entry {
            Some(entry) if entry.operation == Operation::Put => {
                let state = serde_json::from_slice(&entry.value)
                    .map_err(|source| StateError::Malformed { key: key.to_string(), source })?;
                Ok((Some(state), Some(entry.revision)))
            }
            Some(entry) => Ok((None, Some(entry.revision))),
            None => Ok((None, None)),
        }
    }

    /// Applies `change` to the current state with compare-and-set, reading
    /// again and reapplying when another worker wrote in between.
    pub async fn update<T>(
        &self,
        tenant: &str,
        doc_id: &str,
        mut change: impl FnMut(Option<&DocumentState>) -> Change<T>,
    ) -> Result<T, StateError> {
        let key = document_key(tenant, doc_id);
        for _ in 0..MAX_ATTEMPTS {
            let (current, revision) = self.read(&key).await?;
            let (state, out) = match change(current.as_ref()) {
                Change::Keep(out) => return Ok(out),
                Change::Write(state, out) => (state, out),
            };
            let value = Bytes::from(
                serde_json::to_vec(&state)
                    .map_err(|source| StateError::Malformed { key: key.clone(), source })?,
            );
            let written = match revision {
                Some(revision) => self.kv.update(&key, value, revision).await.map_err(|e| {
                    (e.kind() == kv::UpdateErrorKind::WrongLastRevision, async_nats::Error::from(e))
                }),
                None => self.kv.create(&key, value).await.map_err(|e| {
                    (e.kind() == kv::CreateErrorKind::AlreadyExists, async_nats::Error::from(e))
                }),
            };
            match written {
                Ok(_) => return Ok(out),
                Err((true, _)) => continue,
                Err((false, error)) => return Err(StateError::Store(error)),
            }
        }
        Err(StateError::Contention(key))
    }

    /// Marks a document cancelled.
    pub async fn cancel(&self, tenant: &str, doc_id: &str) -> Result<(), StateError> {
        let at = schemas::now_ms().to_string();
        self.kv
            .put(cancel_key(tenant, doc_id), Bytes::from(at))
            .await
            .map_err(|e| StateError::Store(e.into()))?;
        Ok(())
    }

    /// Whether a document is marked cancelled (asked of the bucket).
    pub async fn is_cancelled(&self, tenant: &str, doc_id: &str) -> Result<bool, StateError> {
        let entry = self
            .kv
            .entry(cancel_key(tenant, doc_id))
            .await
            .map_err(|e| StateError::Store(e.into()))?;
        Ok(entry.is_some_and(|e| e.operation == Operation::Put))
    }

    /// Removes a document's cancellation mark (once it is finished).
    pub async fn clear_cancel(&self, tenant: &str, doc_id: &str) -> Result<(), StateError> {
        self.kv.purge(cancel_key(tenant, doc_id)).await.map_err(|e| StateError::Store(e.into()))
    }

    /// Follows the cancellation marks in the background, so that workers can
    /// check a page without a round trip.
    pub fn watch_cancellations(&self) -> Cancellations {
        let cancellations = Cancellations::default();
        let set = Arc::clone(&cancellations.keys);
        let kv = self.kv.clone();
        tokio::spawn(async move {
            loop {
                match kv.watch_with_history("cancel.>").await {
                    Ok(mut watch) => {
                        while let Some(entry) = watch.next().await {
                            let Ok(entry) = entry else { break };
                            let key = entry.key.trim_start_matches("cancel.").to_string();
                            if let Ok(mut set) = set.write() {
                                if entry.operation == Operation::Put {
                                    set.insert(key);
                                } else {
                                    set.remove(&key);
                                }
                            }
                        }
                    }
                    Err(error) => tracing::warn!(%error, "cannot watch cancellations, retrying"),
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        cancellations
    }
}

/// The documents currently cancelled, kept up to date by a bucket watch.
#[derive(Debug, Clone, Default)]
pub struct Cancellations {
    keys: Arc<RwLock<HashSet<String>>>,
}

impl Cancellations {
    /// Whether the document is cancelled, as last seen.
    pub fn contains(&self, tenant: &str, doc_id: &str) -> bool {
        let key = format!("{tenant}.{doc_id}");
        self.keys.read().map(|set| set.contains(&key)).unwrap_or(false)
    }
}
