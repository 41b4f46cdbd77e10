//! The in-memory page that stage steps work on.

use std::sync::Arc;
use std::time::{Duration, Instant};

use image::RgbImage;
use schemas::{Line, PageResult, PageTask, Point};

/// A page on its way through the stages.
///
/// Transports turn it into a [`schemas::PagePayload`] and back at process
/// boundaries; inside a process it moves as is, image decoded.
#[derive(Debug, Clone)]
pub struct Page {
    pub task: PageTask,
    /// The document bytes, fetched by the runtime for the steps that need
    /// them (render).
    pub document: Option<Arc<Vec<u8>>>,
    /// The page image (RGB), once rendered; corrected in place by preprocess.
    pub image: Option<RgbImage>,
    /// Pixels per PDF point of `image`, as `rasterize` rendered a PDF page
    /// (`extract_text` maps the text layer with it).
    pub pixels_per_point: Option<f32>,
    /// Lines of the PDF text layer, in page pixels of `image`.
    pub text_layer: Vec<Line>,
    /// The result so far.
    pub result: PageResult,
    /// The transport's handle for the page's document (the embedded
    /// transport numbers the documents of a run; others leave it 0).
    pub ticket: u64,
    /// When the page was queued for its next stage (for queue-wait timings).
    pub enqueued_at: Option<Instant>,
    /// OCR state between the steps of the `ocr` stage.
    pub ocr: OcrScratch,
    /// The image as it arrived from another process, to be sent on as it
    /// is when no step changed it (set by the transport, not by steps).
    pub received_image: Option<ReceivedImage>,
}

/// An encoded page image as received, and the fingerprint of its pixels.
#[derive(Debug, Clone)]
pub struct ReceivedImage {
    pub encoded: schemas::PageImage,
    pub fingerprint: u64,
}

impl Page {
    pub fn new(task: PageTask) -> Self {
        let result = PageResult { page_index: task.page_index, ..PageResult::default() };
        Page {
            task,
            document: None,
            image: None,
            pixels_per_point: None,
            text_layer: Vec::new(),
            result,
            ticket: 0,
            enqueued_at: None,
            ocr: Default::default(),
            received_image: None,
        }
    }
}

/// What a step reports besides its changes to the page.
#[derive(Debug, Default)]
pub struct StepMeter {
    /// Time spent in model inference during the step.
    pub inference: Duration,
}

/// A quadrilateral in pixels: tl, tr, br, bl.
pub type Quad = [Point; 4];

/// OCR state carried between the steps of the stage (never serialised).
#[derive(Debug, Clone, Default)]
pub struct OcrScratch {
    /// Lines detected and cut out, waiting to be read, in reading order.
    pub lines: Vec<Candidate>,
}

/// A detected text line waiting for recognition.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The line's corners in page pixels.
    pub quad: Quad,
    /// Detection score (mean text probability inside the box).
    pub score: f32,
    /// The line cut out of the page, upright.
    pub crop: RgbImage,
    /// The crop was turned 90 degrees counter-clockwise (vertical text).
    pub vertical: bool,
    /// The crop was turned 180 degrees after classification.
    pub flipped: bool,
}
