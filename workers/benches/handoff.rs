//! The hand-off of one A4 page image between two stages, per candidate
//! format: encode, publish through JetStream (inline, or the object store
//! plus a reference above 256 KiB, as the workers do), fetch, decode.
//! Pages: `samples/report.pdf` page 1 rendered at 150 dpi (digital) and
//! `samples/scan-letter.png` (scanned), both 1241 x 1754 or so.
//!
//! `cargo bench -p workers --bench handoff` (`PAGESTREAM_BENCH_ROUNDS`
//! changes the rounds per format; needs `./setup` for PDFium).
#![allow(clippy::unwrap_used)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use image::RgbImage;
use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use pages::page::{Page, StepMeter};
use pages::steps::{Step, render};
use runtime::jetstream::payload;
use schemas::{DocumentKind, DocumentSource, PageTask};
use support::{Cluster, ConsumerOptions, sample, topology_text};

const INLINE_MAX: usize = 256 << 10;

/// A page image format under test.
#[derive(Clone, Copy)]
enum Format {
    PngAdaptive,
    PngNoFilter,
    Qoi,
    Lz4,
}

impl Format {
    fn name(self) -> &'static str {
        match self {
            Format::PngAdaptive => "png (fast, adaptive filter; before)",
            Format::PngNoFilter => "png (fast, no filter)",
            Format::Qoi => "qoi",
            Format::Lz4 => "grey/rgb + lz4 (now)",
        }
    }

    fn encode(self, image: &RgbImage) -> Vec<u8> {
        let png = |filter| {
            let mut out = Vec::new();
            let encoder = PngEncoder::new_with_quality(&mut out, CompressionType::Fast, filter);
            image::ImageEncoder::write_image(
                encoder,
                image.as_raw(),
                image.width(),
                image.height(),
                image::ExtendedColorType::Rgb8,
            )
            .unwrap();
            out
        };
        match self {
            Format::PngAdaptive => png(FilterType::Adaptive),
            Format::PngNoFilter => png(FilterType::NoFilter),
            Format::Qoi => {
                qoi::encode_to_vec(image.as_raw(), image.width(), image.height()).unwrap()
            }
            Format::Lz4 => payload::encode_image(image).1,
        }
    }

    /// Decodes `data`, an encoding of an image of the size of `image`;
    /// `grey` tells which of the LZ4 encodings it is.
    fn decode(self, image: &RgbImage, grey: bool, data: &[u8]) -> RgbImage {
        match self {
            Format::PngAdaptive | Format::PngNoFilter => {
                image::load_from_memory_with_format(data, image::ImageFormat::Png)
                    .unwrap()
                    .to_rgb8()
            }
            Format::Qoi => {
                let (header, pixels) = qoi::decode_to_vec(data).unwrap();
                RgbImage::from_raw(header.width, header.height, pixels).unwrap()
            }
            Format::Lz4 => {
                let encoding = match grey {
                    true => schemas::ImageEncoding::Gray8Lz4,
                    false => schemas::ImageEncoding::Rgb8Lz4,
                };
                let page = schemas::PageImage {
                    width: image.width(),
                    height: image.height(),
                    encoding,
                    data: Vec::new(),
                    blob: None,
                };
                payload::decode_image(&page, data, u64::MAX).unwrap()
            }
        }
    }
}

/// Report page 1 rendered as the render stage does.
fn digital_page() -> RgbImage {
    pages::pdf::init(&pages::home::Home::locate(Some(&support::home())).pdfium_lib())
        .expect("run ./setup");
    let bytes = std::fs::read(sample("report.pdf")).unwrap();
    let task = PageTask {
        doc_id: runtime::blobs::sha256_hex(&bytes),
        tenant: "bench".into(),
        page_index: 0,
        page_count: 2,
        kind: DocumentKind::Pdf,
        source: DocumentSource::Inline { bytes: Vec::new() },
        submitted_at_ms: 1,
    };
    let mut page = Page::new(task);
    page.document = Some(Arc::new(bytes));
    render::Rasterize::default().run(&mut page, &mut StepMeter::default()).unwrap();
    page.image.unwrap()
}

/// Milliseconds of the median of `samples`.
fn median_ms(samples: &mut [Duration]) -> f64 {
    samples.sort();
    samples[samples.len() / 2].as_secs_f64() * 1e3
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rounds: usize =
        std::env::var("PAGESTREAM_BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(7);
    let cluster =
        Cluster::start(&topology_text(&ConsumerOptions::default(), 1 << 30, 1 << 30)).await;
    let stream = cluster.js.get_stream(schemas::subjects::STREAM_WORK).await.unwrap();
    let consumer: async_nats::jetstream::consumer::PullConsumer =
        stream.get_consumer("render").await.unwrap();
    let subject = schemas::subjects::stage_input(support::TENANT, "render");
    let scanned = image::open(sample("scan-letter.png")).unwrap().to_rgb8();
    let pages = [("digital", digital_page()), ("scanned", scanned)];

    println!("hand-off of one page image, median of {rounds} rounds (ms), 2 cores");
    for (kind, image) in &pages {
        let (encoding, _) = payload::encode_image(image);
        println!("{kind}: {}x{} pixels, {encoding:?} with lz4", image.width(), image.height());
    }
    println!("| page | format | bytes | encode | publish | fetch | decode | total | vs before |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for (kind, image) in &pages {
        let grey = payload::encode_image(image).0 == schemas::ImageEncoding::Gray8Lz4;
        let mut before = 0.0;
        let formats = [Format::PngAdaptive, Format::PngNoFilter, Format::Qoi, Format::Lz4];
        for format in formats {
            let mut times = [Vec::new(), Vec::new(), Vec::new(), Vec::new()];
            let mut size = 0;
            for round in 0..rounds {
                let started = Instant::now();
                let data = format.encode(image);
                size = data.len();
                times[0].push(started.elapsed());

                let started = Instant::now();
                let message = if data.len() <= INLINE_MAX {
                    Bytes::from(data)
                } else {
                    let key = format!("docs/bench/{kind}-{round}");
                    let blob = cluster.store.put(&key, Bytes::from(data)).await.unwrap();
                    Bytes::from(serde_json::to_vec(&blob).unwrap())
                };
                let inline = size <= INLINE_MAX;
                cluster.js.publish(subject.clone(), message).await.unwrap().await.unwrap();
                times[1].push(started.elapsed());

                let started = Instant::now();
                let mut batch = consumer.fetch().max_messages(1).messages().await.unwrap();
                let received = batch.next().await.unwrap().unwrap();
                received.double_ack().await.unwrap();
                let data = if inline {
                    received.payload.clone()
                } else {
                    let blob: schemas::BlobRef = serde_json::from_slice(&received.payload).unwrap();
                    cluster.store.get(&blob).await.unwrap()
                };
                times[2].push(started.elapsed());

                let started = Instant::now();
                let decoded = format.decode(image, grey, &data);
                times[3].push(started.elapsed());
                assert!(decoded == *image, "{} is lossless", format.name());
            }
            let [encode, publish, fetch, decode] = times.map(|mut t| median_ms(&mut t));
            let total = encode + publish + fetch + decode;
            if matches!(format, Format::PngAdaptive) {
                before = total;
            }
            println!(
                "| {kind} | {} | {size} | {encode:.1} | {publish:.1} | {fetch:.1} | {decode:.1} | {total:.1} | {:.0} % |",
                format.name(),
                total / before * 100.0
            );
        }
    }
}
