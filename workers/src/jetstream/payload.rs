//! [`Page`] <-> [`PagePayload`]: how a page crosses a process boundary.
//!
//! The page image travels as raw RGB when it is small, else as a PNG inside
//! the message, and through the object store (the message carries a
//! [`schemas::BlobRef`]) when even the PNG is larger than
//! [`ImagePolicy::inline_max_bytes`]. Image blobs are named by their content
//! under the document's prefix, so a redelivered page never overwrites an
//! image a message already refers to, and they are deleted with the
//! document.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use image::RgbImage;
use schemas::{DocumentKind, DocumentSource, ErrorKind, ImageEncoding, PageImage, PagePayload};

use crate::blobs::{self, BlobError, BlobStore};
use crate::error::StepError;
use crate::images;
use crate::page::Page;
use crate::pipeline::now_ms;

/// How page images and documents travel between stages.
#[derive(Debug, Clone, PartialEq)]
pub struct ImagePolicy {
    /// Largest image (or document) carried inside a message, in bytes; larger
    /// ones go through the object store.
    pub inline_max_bytes: usize,
    /// Most pixels an image received from another stage may have.
    pub max_pixels: u64,
}

impl Default for ImagePolicy {
    fn default() -> Self {
        ImagePolicy { inline_max_bytes: 256 << 10, max_pixels: 40_000_000 }
    }
}

/// Delay before a page whose blob could not be reached is tried again.
const BLOB_RETRY: Duration = Duration::from_secs(2);

/// Encodes `image` for a message: raw RGB when that fits `inline_max`, else PNG.
pub fn encode_image(
    image: &RgbImage,
    inline_max: usize,
) -> Result<(ImageEncoding, Vec<u8>), StepError> {
    if image.as_raw().len() <= inline_max {
        return Ok((ImageEncoding::RawRgb8, image.as_raw().clone()));
    }
    let mut png = Vec::new();
    let encoder = image::codecs::png::PngEncoder::new_with_quality(
        &mut png,
        image::codecs::png::CompressionType::Fast,
        image::codecs::png::FilterType::Adaptive,
    );
    image::ImageEncoder::write_image(
        encoder,
        image.as_raw(),
        image.width(),
        image.height(),
        image::ExtendedColorType::Rgb8,
    )
    .map_err(|error| StepError::internal(format!("cannot encode page image: {error}")))?;
    Ok((ImageEncoding::Png, png))
}

/// Decodes the pixels `data` of `image` (inline or fetched from its blob).
pub fn decode_image(
    image: &PageImage,
    data: &[u8],
    max_pixels: u64,
) -> Result<RgbImage, StepError> {
    let (width, height) = (image.width, image.height);
    if u64::from(width) * u64::from(height) > max_pixels {
        return Err(StepError::reject(
            ErrorKind::TooManyPixels,
            format!("page image is {width}x{height}, more than {max_pixels} pixels"),
        ));
    }
    let decoded = match image.encoding {
        ImageEncoding::RawRgb8 => RgbImage::from_raw(width, height, data.to_vec()),
        ImageEncoding::Png => Some(images::decode_page(DocumentKind::Png, data, 0, max_pixels)?),
    };
    match decoded {
        Some(decoded) if decoded.dimensions() == (width, height) => Ok(decoded),
        _ => Err(StepError::reject(
            ErrorKind::MalformedMessage,
            format!("page image data does not hold a {width}x{height} {:?} image", image.encoding),
        )),
    }
}

/// Turns a finished page into the message for stage `to_stage`, storing the
/// image in the object store when it is too large to travel inline.
/// `keep_document` is false once no later stage reads the document bytes:
/// inline bytes are then dropped from the task.
pub async fn to_payload(
    page: Page,
    to_stage: &str,
    blobs: &BlobStore,
    policy: &ImagePolicy,
    keep_document: bool,
) -> Result<PagePayload, StepError> {
    let Page { mut task, image, text_layer, result, .. } = page;
    if !keep_document && matches!(task.source, DocumentSource::Inline { .. }) {
        task.source = DocumentSource::Inline { bytes: Vec::new() };
    }
    let image = match image {
        None => None,
        Some(image) => {
            let inline_max = policy.inline_max_bytes;
            let (width, height) = image.dimensions();
            let (encoding, data) = blocking(move || encode_image(&image, inline_max)).await?;
            if data.len() <= inline_max {
                Some(PageImage { width, height, encoding, data, blob: None })
            } else {
                let dir = format!(
                    "{}/pages/{}",
                    blobs::document_prefix(&task.tenant, &task.doc_id),
                    task.page_index
                );
                let suffix = format!("-{to_stage}.png");
                let blob = blobs
                    .put_content(&dir, &suffix, Bytes::from(data))
                    .await
                    .map_err(blob_error)?;
                Some(PageImage { width, height, encoding, data: Vec::new(), blob: Some(blob) })
            }
        }
    };
    Ok(PagePayload { task, image, text_layer, result, sent_at_ms: now_ms(), spilled: None })
}

/// Turns a received message back into a page, fetching the image from the
/// object store if it is there, and the document bytes when `needs_document`.
pub async fn to_page(
    payload: PagePayload,
    blobs: &BlobStore,
    policy: &ImagePolicy,
    needs_document: bool,
) -> Result<Page, StepError> {
    let PagePayload { task, image, text_layer, result, .. } = payload;
    let mut page = Page::new(task);
    page.text_layer = text_layer;
    page.result = result;
    if let Some(mut image) = image {
        let data = match image.blob.take() {
            Some(blob) => blobs.get(&blob).await.map_err(blob_error)?.to_vec(),
            None => std::mem::take(&mut image.data),
        };
        let max_pixels = policy.max_pixels;
        page.image = Some(blocking(move || decode_image(&image, &data, max_pixels)).await?);
    }
    if needs_document {
        let bytes = document_bytes(&page.task.doc_id, &page.task.source, blobs).await?;
        page.document = Some(Arc::new(bytes.to_vec()));
    }
    Ok(page)
}

/// The bytes of document `doc_id`, inline or from the object store; the
/// document id must be their sha256.
pub async fn document_bytes(
    doc_id: &str,
    source: &DocumentSource,
    blobs: &BlobStore,
) -> Result<Bytes, StepError> {
    let not_the_document = || {
        StepError::reject(
            ErrorKind::MalformedMessage,
            "the document id is not the sha256 of the document bytes",
        )
    };
    match source {
        DocumentSource::Inline { bytes } if bytes.is_empty() => Err(StepError::reject(
            ErrorKind::MalformedMessage,
            "the page task carries no document bytes",
        )),
        DocumentSource::Inline { bytes } if blobs::sha256_hex(bytes) != doc_id => {
            Err(not_the_document())
        }
        DocumentSource::Inline { bytes } => Ok(Bytes::copy_from_slice(bytes)),
        // The store checks the bytes against the reference's sha256.
        DocumentSource::Blob(blob) if blob.sha256 != doc_id => Err(not_the_document()),
        DocumentSource::Blob(blob) => blobs.get(blob).await.map_err(blob_error),
    }
}

/// The object store could not be reached: the page is tried again later.
pub fn blob_error_retry(message: String) -> StepError {
    StepError::retry_after(ErrorKind::Unavailable, BLOB_RETRY, message)
}

/// What a failed object store operation means for the page.
pub fn blob_error(error: BlobError) -> StepError {
    match &error {
        BlobError::Store(_) => blob_error_retry(format!("object store: {error}")),
        BlobError::Corrupt { .. } => StepError::reject(ErrorKind::Corrupt, error.to_string()),
        _ => StepError::reject(ErrorKind::MalformedMessage, error.to_string()),
    }
}

/// Runs CPU work off the async executor.
pub async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StepError> + Send + 'static,
) -> Result<T, StepError> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|error| Err(StepError::internal(format!("blocking task failed: {error}"))))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::error::Retry;
    use image::Rgb;
    use schemas::{BBox, Line, PageTask, TextSource};

    fn task(source: DocumentSource) -> PageTask {
        PageTask {
            doc_id: "d1".into(),
            tenant: "acme".into(),
            page_index: 2,
            page_count: 3,
            kind: DocumentKind::Png,
            source,
            submitted_at_ms: 5,
        }
    }

    /// A page-like image: white with dark strokes, so PNG compresses it.
    fn page_image(width: u32, height: u32) -> RgbImage {
        RgbImage::from_fn(width, height, |x, y| {
            if y % 24 < 3 && x % 100 < 80 { Rgb([20, 20, 30]) } else { Rgb([250, 250, 248]) }
        })
    }

    fn store() -> (tempfile::TempDir, BlobStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(&format!("file://{}", dir.path().display())).unwrap();
        (dir, store)
    }

    async fn round_trip(
        image: RgbImage,
        policy: &ImagePolicy,
        blobs: &BlobStore,
    ) -> (PagePayload, Page) {
        let mut page = Page::new(task(DocumentSource::Inline { bytes: b"\x89PNG doc".to_vec() }));
        // The document id is the sha256 of the bytes, which the reader checks.
        page.task.doc_id = blobs::sha256_hex(b"\x89PNG doc");
        page.image = Some(image);
        page.result.width = 7;
        page.text_layer.push(Line {
            text: "Total 12.50".into(),
            bbox: BBox { x0: 1.0, y0: 2.0, x1: 3.0, y1: 4.0 },
            quad: None,
            confidence: 1.0,
            source: TextSource::TextLayer,
            region: None,
            words: Vec::new(),
        });
        let payload = to_payload(page.clone(), "layout", blobs, policy, true).await.unwrap();
        let bytes = schemas::encode(&payload).unwrap();
        let decoded: PagePayload = schemas::decode(&bytes).unwrap();
        let back = to_page(decoded, blobs, policy, true).await.unwrap();
        assert_eq!(back.image, page.image);
        assert_eq!((back.result.clone(), back.text_layer.clone()), (page.result, page.text_layer));
        assert_eq!(back.document.as_deref().map(|d| d.as_slice()), Some(&b"\x89PNG doc"[..]));
        (payload, back)
    }

    #[tokio::test]
    async fn small_images_travel_raw_larger_as_png_largest_as_blob() {
        let (_dir, blobs) = store();
        let policy = ImagePolicy { inline_max_bytes: 64 << 10, ..ImagePolicy::default() };

        let (payload, _) = round_trip(page_image(100, 80), &policy, &blobs).await;
        let image = payload.image.unwrap();
        assert_eq!(
            (image.encoding, image.data.len(), image.blob),
            (ImageEncoding::RawRgb8, 100 * 80 * 3, None)
        );

        let (payload, _) = round_trip(page_image(600, 800), &policy, &blobs).await;
        let image = payload.image.unwrap();
        assert_eq!(image.encoding, ImageEncoding::Png);
        assert!(image.blob.is_none() && !image.data.is_empty());

        let noisy = RgbImage::from_fn(600, 800, |x, y| {
            Rgb([(x * 7 + y * 13) as u8, (x ^ y) as u8, (x * y) as u8])
        });
        let (payload, _) = round_trip(noisy, &policy, &blobs).await;
        let image = payload.image.unwrap();
        let blob = image.blob.unwrap();
        assert!(image.data.is_empty());
        let prefix = format!("docs/acme/{}/pages/2/", blobs::sha256_hex(b"\x89PNG doc"));
        assert!(blob.key.starts_with(&prefix) && blob.key.ends_with("-layout.png"));
    }

    #[tokio::test]
    async fn document_bytes_are_dropped_when_no_later_stage_needs_them() {
        let (_dir, blobs) = store();
        let page = Page::new(task(DocumentSource::Inline { bytes: b"doc".to_vec() }));
        let payload =
            to_payload(page, "enrich", &blobs, &ImagePolicy::default(), false).await.unwrap();
        assert_eq!(payload.task.source, DocumentSource::Inline { bytes: Vec::new() });
        let error = to_page(payload, &blobs, &ImagePolicy::default(), true).await.unwrap_err();
        assert_eq!(error.kind, ErrorKind::MalformedMessage);
    }

    #[tokio::test]
    async fn document_bytes_must_hash_to_the_document_id() {
        let (_dir, blobs) = store();
        let bytes = b"%PDF-1.7 body".to_vec();
        let doc_id = blobs::sha256_hex(&bytes);
        let inline = DocumentSource::Inline { bytes: bytes.clone() };
        assert_eq!(document_bytes(&doc_id, &inline, &blobs).await.unwrap(), bytes);
        let error = document_bytes(&"0".repeat(64), &inline, &blobs).await.unwrap_err();
        assert_eq!((error.kind, error.retry), (ErrorKind::MalformedMessage, Retry::Never));

        let blob = blobs.put("docs/acme/x/original", Bytes::from(bytes.clone())).await.unwrap();
        let stored = DocumentSource::Blob(blob);
        assert_eq!(document_bytes(&doc_id, &stored, &blobs).await.unwrap(), bytes);
        let error = document_bytes(&"0".repeat(64), &stored, &blobs).await.unwrap_err();
        assert_eq!(error.kind, ErrorKind::MalformedMessage);
    }

    #[tokio::test]
    async fn damaged_images_are_rejected() {
        let (_dir, blobs) = store();
        let policy = ImagePolicy::default();
        let image = PageImage {
            width: 10,
            height: 10,
            encoding: ImageEncoding::RawRgb8,
            data: vec![0; 299],
            blob: None,
        };
        assert_eq!(
            decode_image(&image, &image.data, policy.max_pixels).unwrap_err().kind,
            ErrorKind::MalformedMessage
        );
        let huge = PageImage { width: 100_000, height: 100_000, ..image.clone() };
        assert_eq!(
            decode_image(&huge, &[], policy.max_pixels).unwrap_err().kind,
            ErrorKind::TooManyPixels
        );
        let png = PageImage { encoding: ImageEncoding::Png, data: b"not a png".to_vec(), ..image };
        assert_eq!(
            decode_image(&png, &png.data, policy.max_pixels).unwrap_err().kind,
            ErrorKind::Corrupt
        );

        // A blob that vanished: the page cannot be rebuilt and is not retried.
        let mut payload = to_payload(
            Page::new(task(DocumentSource::Inline { bytes: vec![1] })),
            "ocr",
            &blobs,
            &policy,
            true,
        )
        .await
        .unwrap();
        let blob = blobs.put("docs/acme/d1/gone", Bytes::from_static(b"x")).await.unwrap();
        blobs.delete_prefix("docs/acme/d1").await.unwrap();
        payload.image = Some(PageImage {
            width: 1,
            height: 1,
            encoding: ImageEncoding::Png,
            data: Vec::new(),
            blob: Some(blob),
        });
        let error = to_page(payload, &blobs, &policy, false).await.unwrap_err();
        assert_eq!(error.retry, Retry::Never);
    }
}
