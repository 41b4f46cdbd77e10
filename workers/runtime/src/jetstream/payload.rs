//! [`Page`] <-> [`PagePayload`]: how a page crosses a process boundary.
//!
//! The page image travels as raw pixels in an LZ4 block: greyscale when
//! every pixel is grey (most document pages), else RGB. That is lossless and
//! costs a few milliseconds each way where PNG costs tens (see `cargo bench
//! -p workers --bench handoff`). An image larger than
//! [`ImagePolicy::inline_max_bytes`] goes through the object store (the
//! message carries a [`schemas::BlobRef`]). A stage that did not change the
//! image sends on the encoded image it received (its fingerprint tells), so
//! each version of a page image is encoded, and stored, once. Image blobs
//! are named by their content under the document's prefix, so a redelivered
//! page never overwrites an image a message already refers to, and they are
//! deleted with the document.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use image::RgbImage;
use schemas::{DocumentKind, DocumentSource, ErrorKind, ImageEncoding, PageImage, PagePayload};

use crate::blobs::{self, BlobError, BlobStore};
use pages::error::StepError;
use pages::images;
use pages::page::{Page, ReceivedImage};
use schemas::now_ms;

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

/// Encodes `image` for a message: its pixels in an LZ4 block, one byte a
/// pixel when the image is grey, else three.
pub fn encode_image(image: &RgbImage) -> (ImageEncoding, Vec<u8>) {
    let rgb = image.as_raw();
    match grey_pixels(rgb) {
        Some(grey) => (ImageEncoding::Gray8Lz4, lz4_flex::block::compress_prepend_size(&grey)),
        None => (ImageEncoding::Rgb8Lz4, lz4_flex::block::compress_prepend_size(rgb)),
    }
}

/// The pixels of an RGB image as greyscale, when every pixel is grey.
fn grey_pixels(rgb: &[u8]) -> Option<Vec<u8>> {
    let grey = rgb.chunks_exact(3).all(|p| p[0] == p[1] && p[1] == p[2]);
    grey.then(|| rgb.chunks_exact(3).map(|p| p[0]).collect())
}

/// Unpacks an LZ4 block that must hold exactly `expected` bytes (checked
/// before anything is allocated, so a hostile length cannot).
fn lz4_unpack(data: &[u8], expected: usize) -> Option<Vec<u8>> {
    let (length, block) = data.split_at_checked(4)?;
    let length = u32::from_le_bytes(length.try_into().ok()?);
    if usize::try_from(length).ok()? != expected {
        return None;
    }
    let mut pixels = vec![0; expected];
    let written = lz4_flex::block::decompress_into(block, &mut pixels).ok()?;
    (written == expected).then_some(pixels)
}

/// A fingerprint of an image's pixels, to tell whether a stage changed them.
pub fn fingerprint(image: &RgbImage) -> u64 {
    let mut hash = (u64::from(image.width()) << 32) | u64::from(image.height());
    let mut words = image.as_raw().chunks_exact(8);
    for word in &mut words {
        let word = u64::from_le_bytes(word.try_into().unwrap_or_default());
        hash = (hash.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
    for &byte in words.remainder() {
        hash = (hash.rotate_left(5) ^ u64::from(byte)).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
    hash
}

/// Decodes the pixels `data` of `image` (inline or fetched from its blob).
pub fn decode_image(
    image: &PageImage,
    data: &[u8],
    max_pixels: u64,
) -> Result<RgbImage, StepError> {
    let (width, height) = (image.width, image.height);
    let pixels = u64::from(width) * u64::from(height);
    if pixels > max_pixels {
        return Err(StepError::reject(
            ErrorKind::TooManyPixels,
            format!("page image is {width}x{height}, more than {max_pixels} pixels"),
        ));
    }
    // At most max_pixels, which the topology keeps far below usize::MAX.
    let pixels = usize::try_from(pixels).unwrap_or(usize::MAX);
    let decoded = match image.encoding {
        ImageEncoding::RawRgb8 => RgbImage::from_raw(width, height, data.to_vec()),
        ImageEncoding::Png => Some(images::decode_page(DocumentKind::Png, data, 0, max_pixels)?),
        ImageEncoding::Gray8Lz4 => lz4_unpack(data, pixels).and_then(|grey| {
            let mut rgb = vec![0; grey.len() * 3];
            for (pixel, &value) in rgb.chunks_exact_mut(3).zip(&grey) {
                pixel.copy_from_slice(&[value; 3]);
            }
            RgbImage::from_raw(width, height, rgb)
        }),
        ImageEncoding::Rgb8Lz4 => lz4_unpack(data, pixels.saturating_mul(3))
            .and_then(|rgb| RgbImage::from_raw(width, height, rgb)),
    };
    match decoded {
        Some(decoded) if decoded.dimensions() == (width, height) => Ok(decoded),
        _ => Err(StepError::reject(
            ErrorKind::MalformedMessage,
            format!("page image data does not hold a {width}x{height} {:?} image", image.encoding),
        )),
    }
}

/// A decoded page image and what it was sent or received as.
pub type DecodedImage = (RgbImage, ReceivedImage);

/// Turns a finished page into the message for stage `to_stage`, storing the
/// image in the object store when it is too large to travel inline.
/// `keep_document` is false once no later stage reads the document bytes:
/// inline bytes are then dropped from the task. With `keep_image`, the
/// decoded image comes back too, with what it was sent as (for
/// [`super::local::LocalImages`]).
pub async fn to_payload(
    page: Page,
    to_stage: &str,
    blobs: &BlobStore,
    policy: &ImagePolicy,
    keep_document: bool,
    keep_image: bool,
) -> Result<(PagePayload, Option<DecodedImage>), StepError> {
    let Page { mut task, image, text_layer, result, received_image, .. } = page;
    if !keep_document && matches!(task.source, DocumentSource::Inline { .. }) {
        task.source = DocumentSource::Inline { bytes: Vec::new() };
    }
    let Some(image) = image else {
        let payload = PagePayload {
            task,
            image: None,
            text_layer,
            result,
            sent_at_ms: now_ms(),
            spilled: None,
        };
        return Ok((payload, None));
    };
    let (width, height) = image.dimensions();
    // Sent on as received when no step changed the pixels.
    // The fingerprint costs a pass over the pixels: only when it is compared
    // (an image was received) or handed on (kept for this process).
    let wants_fingerprint = received_image.is_some() || keep_image;
    let (image, encoded) = blocking(move || {
        let fingerprint = if wants_fingerprint { fingerprint(&image) } else { 0 };
        let encoded = match received_image.filter(|r| r.fingerprint == fingerprint) {
            Some(received) => Sent::AsReceived(received),
            None => Sent::Encoded(encode_image(&image), fingerprint),
        };
        Ok((image, encoded))
    })
    .await?;
    let sent = match encoded {
        Sent::AsReceived(received) => received,
        Sent::Encoded((encoding, data), fingerprint) => {
            let encoded = if data.len() <= policy.inline_max_bytes {
                PageImage { width, height, encoding, data, blob: None }
            } else {
                let dir = format!(
                    "{}/pages/{}",
                    blobs::document_prefix(&task.tenant, &task.doc_id),
                    task.page_index
                );
                let suffix = format!("-{to_stage}.lz4");
                let blob = blobs
                    .put_content(&dir, &suffix, Bytes::from(data))
                    .await
                    .map_err(blob_error)?;
                PageImage { width, height, encoding, data: Vec::new(), blob: Some(blob) }
            };
            ReceivedImage { encoded, fingerprint }
        }
    };
    let payload = PagePayload {
        task,
        image: Some(sent.encoded.clone()),
        text_layer,
        result,
        sent_at_ms: now_ms(),
        spilled: None,
    };
    Ok((payload, keep_image.then_some((image, sent))))
}

/// How a page image is sent on.
enum Sent {
    /// As it was received: no step changed it.
    AsReceived(ReceivedImage),
    /// Encoded anew; the fingerprint of its pixels.
    Encoded((ImageEncoding, Vec<u8>), u64),
}

/// Turns a received message back into a page, fetching the image from the
/// object store if it is there, and the document bytes when `needs_document`.
/// `local` is the decoded image of the payload's own image, when this
/// process has it (see [`super::local::LocalImages`]): nothing to fetch or
/// decode then.
pub async fn to_page(
    payload: PagePayload,
    blobs: &BlobStore,
    policy: &ImagePolicy,
    needs_document: bool,
    local: Option<DecodedImage>,
) -> Result<Page, StepError> {
    let PagePayload { task, image, text_layer, result, .. } = payload;
    let mut page = Page::new(task);
    page.text_layer = text_layer;
    page.result = result;
    let decoded = match (image, local) {
        (None, _) => None,
        (Some(_), Some(local)) => Some(local),
        (Some(image), None) => {
            let fetched = match &image.blob {
                Some(blob) => Some(blobs.get(blob).await.map_err(blob_error)?),
                None => None,
            };
            let max_pixels = policy.max_pixels;
            let decoded = blocking(move || {
                let data = fetched.as_deref().unwrap_or(&image.data);
                let decoded = decode_image(&image, data, max_pixels)?;
                let fingerprint = fingerprint(&decoded);
                Ok((decoded, ReceivedImage { encoded: image, fingerprint }))
            })
            .await?;
            Some(decoded)
        }
    };
    if let Some((image, received)) = decoded {
        page.image = Some(image);
        page.received_image = Some(received);
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
    use image::Rgb;
    use pages::error::Retry;
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

    /// A page-like grey image: white with dark strokes, which compresses well.
    fn page_image(width: u32, height: u32) -> RgbImage {
        RgbImage::from_fn(width, height, |x, y| {
            if y % 24 < 3 && x % 100 < 80 { Rgb([20, 20, 20]) } else { Rgb([250, 250, 250]) }
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
        let (payload, _) =
            to_payload(page.clone(), "layout", blobs, policy, true, false).await.unwrap();
        let bytes = schemas::encode(&payload).unwrap();
        let decoded: PagePayload = schemas::decode(&bytes).unwrap();
        let back = to_page(decoded, blobs, policy, true, None).await.unwrap();
        assert_eq!(back.image, page.image);
        assert_eq!((back.result.clone(), back.text_layer.clone()), (page.result, page.text_layer));
        assert_eq!(back.document.as_deref().map(|d| d.as_slice()), Some(&b"\x89PNG doc"[..]));
        (payload, back)
    }

    #[tokio::test]
    async fn images_travel_as_grey_or_rgb_lz4_and_large_ones_as_blobs() {
        let (_dir, blobs) = store();
        let policy = ImagePolicy { inline_max_bytes: 64 << 10, ..ImagePolicy::default() };

        // A grey page: one byte a pixel, compressed far below the raw size.
        let (payload, _) = round_trip(page_image(600, 800), &policy, &blobs).await;
        let image = payload.image.unwrap();
        assert_eq!((image.encoding, image.blob), (ImageEncoding::Gray8Lz4, None));
        assert!(image.data.len() < 600 * 800 / 10, "{} bytes", image.data.len());

        // One coloured pixel makes it RGB.
        let mut coloured = page_image(600, 800);
        coloured.put_pixel(3, 4, Rgb([200, 10, 10]));
        let (payload, _) = round_trip(coloured, &policy, &blobs).await;
        assert_eq!(payload.image.unwrap().encoding, ImageEncoding::Rgb8Lz4);

        // Noise does not compress: the object store carries it.
        let noisy = RgbImage::from_fn(600, 800, |x, y| {
            Rgb([(x * 7 + y * 13) as u8, (x ^ y) as u8, (x * y) as u8])
        });
        let (payload, _) = round_trip(noisy, &policy, &blobs).await;
        let image = payload.image.unwrap();
        let blob = image.blob.unwrap();
        assert!(image.data.is_empty());
        let prefix = format!("docs/acme/{}/pages/2/", blobs::sha256_hex(b"\x89PNG doc"));
        assert!(blob.key.starts_with(&prefix) && blob.key.ends_with("-layout.lz4"));
    }

    #[tokio::test]
    async fn an_unchanged_image_is_sent_on_as_received_and_a_changed_one_encoded_anew() {
        let (_dir, blobs) = store();
        let policy = ImagePolicy { inline_max_bytes: 1 << 10, ..ImagePolicy::default() };
        let noisy = RgbImage::from_fn(300, 200, |x, y| Rgb([(x * 7) as u8, (y * 3) as u8, 9]));
        let (first, received) = round_trip(noisy, &policy, &blobs).await;
        let first_blob = first.image.clone().unwrap().blob.unwrap();

        // Sent on untouched: the same object, nothing stored again.
        let stored = blobs.list().await.unwrap().len();
        let (again, _) =
            to_payload(received.clone(), "ocr", &blobs, &policy, true, false).await.unwrap();
        assert_eq!(again.image, first.image);
        assert_eq!(blobs.list().await.unwrap().len(), stored);

        // A step changed one pixel: encoded and stored anew.
        let mut changed = received;
        changed.image.as_mut().unwrap().put_pixel(0, 0, Rgb([1, 2, 3]));
        let (next, kept) =
            to_payload(changed.clone(), "ocr", &blobs, &policy, true, true).await.unwrap();
        let next_blob = next.image.clone().unwrap().blob.unwrap();
        assert_ne!(next_blob.key, first_blob.key);
        let back = to_page(next.clone(), &blobs, &policy, false, None).await.unwrap();
        assert_eq!(back.image, changed.image);
        // The image kept for this process's own next stage is the one sent.
        let (kept_image, kept_as) = kept.unwrap();
        assert_eq!(Some(&kept_image), changed.image.as_ref());
        assert_eq!(Some(&kept_as.encoded), next.image.as_ref());
        let local = to_page(next, &blobs, &policy, false, Some((kept_image, kept_as))).await;
        assert_eq!(local.unwrap().image, changed.image);
    }

    #[tokio::test]
    async fn document_bytes_are_dropped_when_no_later_stage_needs_them() {
        let (_dir, blobs) = store();
        let page = Page::new(task(DocumentSource::Inline { bytes: b"doc".to_vec() }));
        let payload = to_payload(page, "enrich", &blobs, &ImagePolicy::default(), false, false)
            .await
            .unwrap()
            .0;
        assert_eq!(payload.task.source, DocumentSource::Inline { bytes: Vec::new() });
        let error =
            to_page(payload, &blobs, &ImagePolicy::default(), true, None).await.unwrap_err();
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
        let png = PageImage {
            encoding: ImageEncoding::Png,
            data: b"not a png".to_vec(),
            ..image.clone()
        };
        assert_eq!(
            decode_image(&png, &png.data, policy.max_pixels).unwrap_err().kind,
            ErrorKind::Corrupt
        );
        // An LZ4 block that claims another size, or does not unpack to it.
        let grey = lz4_flex::block::compress_prepend_size(&[7u8; 100]);
        let lz4 = PageImage { encoding: ImageEncoding::Gray8Lz4, data: grey.clone(), ..image };
        assert!(decode_image(&lz4, &lz4.data, policy.max_pixels).is_ok());
        let wrong_size = PageImage { width: 20, ..lz4.clone() };
        let truncated = &grey[..grey.len() - 2];
        for (image, data) in [(&wrong_size, &grey[..]), (&lz4, truncated), (&lz4, &grey[..3])] {
            let error = decode_image(image, data, policy.max_pixels).unwrap_err();
            assert_eq!(error.kind, ErrorKind::MalformedMessage);
        }

        // A blob that vanished: the page cannot be rebuilt and is not retried.
        let (mut payload, _) = to_payload(
            Page::new(task(DocumentSource::Inline { bytes: vec![1] })),
            "ocr",
            &blobs,
            &policy,
            true,
            false,
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
        let error = to_page(payload, &blobs, &policy, false, None).await.unwrap_err();
        assert_eq!(error.retry, Retry::Never);
    }
}
