//! The object store behind claim-check messages: document originals, page
//! images and page results too large to travel inside a message, on the
//! local filesystem by default (`file://DIR`) or in an S3-compatible bucket
//! (`s3://bucket/prefix`, with the `s3` feature).
//!
//! Every object is addressed by a [`BlobRef`] that carries its size and
//! sha256; [`BlobStore::get`] checks both, so a truncated or replaced object
//! is an error rather than a wrong page. Objects of a document live under
//! [`document_prefix`] and are deleted together when the document completes.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use schemas::BlobRef;
use sha2::{Digest, Sha256};

/// Why an object could not be stored or read.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("invalid object store url `{url}`: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("object store url `{0}` needs s3 support: build with the `s3` feature")]
    S3Unsupported(String),
    #[error("blob `{key}` belongs to store `{store}`, this worker uses `{ours}`")]
    ForeignStore { key: String, store: String, ours: String },
    #[error("blob `{0}` not found")]
    NotFound(String),
    #[error(
        "blob `{key}` is corrupt: expected {expected_size} bytes with sha256 {expected}, got {actual_size} bytes with sha256 {actual}"
    )]
    Corrupt { key: String, expected: String, actual: String, expected_size: u64, actual_size: u64 },
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
}

/// An object found by [`BlobStore::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub key: String,
    pub size: u64,
    pub modified_ms: u64,
}

/// A handle on the object store named by a URL.
#[derive(Debug, Clone)]
pub struct BlobStore {
    url: String,
    store: Arc<dyn ObjectStore>,
}

/// Key prefix of every object belonging to one document.
pub fn document_prefix(tenant: &str, doc_id: &str) -> String {
    format!("docs/{tenant}/{doc_id}")
}

/// Key prefix of the objects of every document of a tenant, ending in `/`.
/// A message of `tenant` may refer to objects under it only.
pub fn tenant_prefix(tenant: &str) -> String {
    format!("docs/{tenant}/")
}

/// Key prefix of a tenant's stored results (claim-checked results and
/// exports, kept after the document's own objects are deleted), ending in `/`.
pub fn results_prefix(tenant: &str) -> String {
    format!("results/{tenant}/")
}

/// Whether `key` lies below `prefix` (which ends in `/`) without empty,
/// `.` or `..` segments that could lead out of it.
pub fn key_within(key: &str, prefix: &str) -> bool {
    key.strip_prefix(prefix).is_some_and(|rest| {
        !rest.is_empty() && rest.split('/').all(|part| !matches!(part, "" | "." | ".."))
    })
}

/// Hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl BlobStore {
    /// Opens the store named by `url`: `file://DIR` (relative directories are
    /// taken from the working directory and created), a plain directory path,
    /// or `s3://bucket[/prefix]` (credentials and endpoint from the usual
    /// `AWS_*` environment variables).
    pub fn open(url: &str) -> Result<Self, BlobError> {
        let store: Arc<dyn ObjectStore> = if url.starts_with("s3://") {
            open_s3(url)?
        } else {
            let dir = url.strip_prefix("file://").unwrap_or(url);
            if dir.is_empty() || url.contains("://") && !url.starts_with("file://") {
                return Err(BlobError::InvalidUrl {
                    url: url.to_string(),
                    reason: "expected file://DIR or s3://bucket/prefix".into(),
                });
            }
            let dir = absolute(dir).map_err(|error| invalid(url, error))?;
            std::fs::create_dir_all(&dir).map_err(|error| invalid(url, error))?;
            let local = object_store::local::LocalFileSystem::new_with_prefix(&dir)
                .map_err(|error| invalid(url, error))?;
            Arc::new(local)
        };
        Ok(BlobStore { url: url.to_string(), store })
    }

    /// The URL the store was opened with; written into every [`BlobRef`].
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Stores `bytes` under `key`, replacing what was there.
    pub async fn put(&self, key: &str, bytes: Bytes) -> Result<BlobRef, BlobError> {
        let sha256 = sha256_hex(&bytes);
        self.put_hashed(key.to_string(), bytes, sha256).await
    }

    /// Stores `bytes` under `<dir>/<hash><suffix>`, named by their content so
    /// that an object, once referenced, is never overwritten with other bytes.
    pub async fn put_content(
        &self,
        dir: &str,
        suffix: &str,
        bytes: Bytes,
    ) -> Result<BlobRef, BlobError> {
        let sha256 = sha256_hex(&bytes);
        let key = format!("{dir}/{}{suffix}", &sha256[..16]);
        self.put_hashed(key, bytes, sha256).await
    }

    async fn put_hashed(
        &self,
        key: String,
        bytes: Bytes,
        sha256: String,
    ) -> Result<BlobRef, BlobError> {
        let size = bytes.len() as u64;
        self.store.put(&ObjectPath::from(key.as_str()), PutPayload::from_bytes(bytes)).await?;
        Ok(BlobRef { store: self.url.clone(), key, size, sha256 })
    }

    /// Reads the object `blob` names, checking its size and sha256.
    pub async fn get(&self, blob: &BlobRef) -> Result<Bytes, BlobError> {
        if blob.store != self.url {
            return Err(BlobError::ForeignStore {
                key: blob.key.clone(),
                store: blob.store.clone(),
                ours: self.url.clone(),
            });
        }
        let bytes = self.get_key(&blob.key).await?;
        let actual = sha256_hex(&bytes);
        if actual != blob.sha256 || bytes.len() as u64 != blob.size {
            return Err(BlobError::Corrupt {
                key: blob.key.clone(),
                expected: blob.sha256.clone(),
                actual,
                expected_size: blob.size,
                actual_size: bytes.len() as u64,
            });
        }
        Ok(bytes)
    }

    /// Reads the object at `key`: for objects the runtime wrote itself and
    /// keeps no reference to (their checksum is not known).
    pub async fn get_key(&self, key: &str) -> Result<Bytes, BlobError> {
        match self.store.get(&ObjectPath::from(key)).await {
            Ok(found) => Ok(found.bytes().await?),
            Err(object_store::Error::NotFound { .. }) => Err(BlobError::NotFound(key.to_string())),
            Err(error) => Err(error.into()),
        }
    }

    /// Every object in the store: key, size and modification time
    /// (milliseconds since the Unix epoch), sorted by key.
    pub async fn list(&self) -> Result<Vec<Listed>, BlobError> {
        let mut listed: Vec<Listed> = self
            .store
            .list(None)
            .map_ok(|meta| Listed {
                key: meta.location.to_string(),
                size: meta.size,
                modified_ms: meta.last_modified.timestamp_millis().max(0) as u64,
            })
            .try_collect()
            .await?;
        listed.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(listed)
    }

    /// Deletes every object whose key starts with `prefix` (a whole path
    /// segment, e.g. [`document_prefix`]); returns how many were deleted.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<usize, BlobError> {
        let prefix = ObjectPath::from(prefix);
        let locations = self.store.list(Some(&prefix)).map_ok(|meta| meta.location).boxed();
        let deleted = self.store.delete_stream(locations).try_collect::<Vec<_>>().await;
        match deleted {
            Ok(deleted) => Ok(deleted.len()),
            Err(object_store::Error::NotFound { .. }) => Ok(0),
            Err(error) => Err(error.into()),
        }
    }
}

fn invalid(url: &str, error: impl std::fmt::Display) -> BlobError {
    BlobError::InvalidUrl { url: url.to_string(), reason: error.to_string() }
}

fn absolute(dir: &str) -> std::io::Result<PathBuf> {
    let path = PathBuf::from(dir);
    if path.is_absolute() { Ok(path) } else { Ok(std::env::current_dir()?.join(path)) }
}

#[cfg(feature = "s3")]
fn open_s3(url: &str) -> Result<Arc<dyn ObjectStore>, BlobError> {
    let rest = url.trim_start_matches("s3://");
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let s3 = object_store::aws::AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .build()
        .map_err(|error| invalid(url, error))?;
    let prefix = prefix.trim_matches('/');
    if prefix.is_empty() {
        Ok(Arc::new(s3))
    } else {
        Ok(Arc::new(object_store::prefix::PrefixStore::new(s3, prefix)))
    }
}

#[cfg(not(feature = "s3"))]
fn open_s3(url: &str) -> Result<Arc<dyn ObjectStore>, BlobError> {
    Err(BlobError::S3Unsupported(url.to_string()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, BlobStore) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().join("store").display());
        (dir, BlobStore::open(&url).unwrap())
    }

    #[tokio::test]
    async fn put_get_round_trip_checks_sha256() {
        let (_dir, store) = store();
        let blob =
            store.put("docs/t/d/original", Bytes::from_static(b"%PDF-1.7 body")).await.unwrap();
        assert_eq!(blob.size, 13);
        assert_eq!(blob.sha256, sha256_hex(b"%PDF-1.7 body"));
        assert_eq!(store.get(&blob).await.unwrap(), Bytes::from_static(b"%PDF-1.7 body"));

        // Replace the object behind the reference: the reader notices.
        store.put("docs/t/d/original", Bytes::from_static(b"something else")).await.unwrap();
        assert!(matches!(store.get(&blob).await, Err(BlobError::Corrupt { .. })));
    }

    #[tokio::test]
    async fn missing_and_foreign_blobs_are_errors() {
        let (_dir, store) = store();
        let mut blob = store.put("a/b", Bytes::from_static(b"x")).await.unwrap();
        store.delete_prefix("a").await.unwrap();
        let missing = store.get(&blob).await.unwrap_err();
        assert!(matches!(missing, BlobError::NotFound(_)));
        blob.store = "file:///elsewhere".into();
        assert!(matches!(store.get(&blob).await, Err(BlobError::ForeignStore { .. })));
    }

    #[tokio::test]
    async fn delete_prefix_removes_one_document_only() {
        let (_dir, store) = store();
        let keep = store
            .put(&format!("{}/p0", document_prefix("t", "d2")), Bytes::from_static(b"k"))
            .await
            .unwrap();
        for key in ["p0", "p1/render-ab.png", "results/0.msgpack"] {
            store
                .put(&format!("{}/{key}", document_prefix("t", "d1")), Bytes::from_static(b"v"))
                .await
                .unwrap();
        }
        assert_eq!(store.delete_prefix(&document_prefix("t", "d1")).await.unwrap(), 3);
        assert_eq!(store.delete_prefix(&document_prefix("t", "d1")).await.unwrap(), 0);
        assert_eq!(store.get(&keep).await.unwrap(), Bytes::from_static(b"k"));
    }

    #[test]
    fn keys_stay_within_their_prefix() {
        let prefix = tenant_prefix("acme");
        assert!(key_within("docs/acme/d1/original", &prefix));
        for key in [
            "docs/acme/",
            "docs/acme",
            "docs/other/d1/original",
            "docs/acme/../other/d1/original",
            "docs/acme/d1//original",
            "docs/acme/./d1",
            "docs/acmex/d1",
            "results/acme/d1.json",
        ] {
            assert!(!key_within(key, &prefix), "{key}");
        }
        assert!(key_within("results/acme/d1/ab.msgpack", &results_prefix("acme")));
    }

    #[test]
    fn urls_are_checked() {
        assert!(matches!(BlobStore::open("gs://bucket"), Err(BlobError::InvalidUrl { .. })));
        assert!(matches!(BlobStore::open("file://"), Err(BlobError::InvalidUrl { .. })));
        #[cfg(not(feature = "s3"))]
        assert!(matches!(BlobStore::open("s3://bucket/prefix"), Err(BlobError::S3Unsupported(_))));
    }
}
