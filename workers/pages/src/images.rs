//! Decoding of page images (PNG, JPEG, single- and multi-page TIFF) with
//! limits checked before any pixel buffer is allocated.

use std::io::Cursor;

use image::{ImageReader, RgbImage};
use schemas::{DocumentKind, ErrorKind};
use tiff::ColorType;
use tiff::decoder::{Decoder as TiffDecoder, DecodingResult};

use crate::error::StepError;

/// Upper bound of pages read from a TIFF, whatever the configured limit, so
/// that a looping IFD chain cannot keep the decoder busy.
const MAX_TIFF_IFDS: u32 = 100_000;

/// Number of pages of an image document.
pub fn page_count(kind: DocumentKind, bytes: &[u8]) -> Result<u32, StepError> {
    match kind {
        DocumentKind::Png | DocumentKind::Jpeg => Ok(1),
        DocumentKind::Tiff => {
            let mut decoder = tiff_decoder(bytes)?;
            let mut pages = 1;
            while decoder.more_images() && pages < MAX_TIFF_IFDS {
                decoder.next_image().map_err(corrupt)?;
                pages += 1;
            }
            Ok(pages)
        }
        DocumentKind::Pdf => {
            Err(StepError::internal("page_count of a pdf asked of the image decoder"))
        }
    }
}

/// Decodes page `page_index` of an image document into RGB, refusing images
/// of more than `max_pixels` pixels before decoding them.
pub fn decode_page(
    kind: DocumentKind,
    bytes: &[u8],
    page_index: u32,
    max_pixels: u64,
) -> Result<RgbImage, StepError> {
    match kind {
        DocumentKind::Png | DocumentKind::Jpeg => {
            if page_index != 0 {
                return Err(StepError::reject(
                    ErrorKind::MalformedMessage,
                    format!("page {page_index} asked of a single-page image"),
                ));
            }
            let reader =
                ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(corrupt)?;
            let (width, height) = reader.into_dimensions().map_err(corrupt)?;
            check_pixels(width, height, max_pixels)?;
            let mut reader =
                ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(corrupt)?;
            let mut limits = image::Limits::default();
            limits.max_alloc = Some(max_pixels.saturating_mul(8));
            reader.limits(limits);
            Ok(reader.decode().map_err(corrupt)?.to_rgb8())
        }
        DocumentKind::Tiff => decode_tiff_page(bytes, page_index, max_pixels),
        DocumentKind::Pdf => {
            Err(StepError::internal("decode_page of a pdf asked of the image decoder"))
        }
    }
}

fn tiff_decoder(bytes: &[u8]) -> Result<TiffDecoder<Cursor<&[u8]>>, StepError> {
    TiffDecoder::new(Cursor::new(bytes)).map_err(corrupt)
}

fn decode_tiff_page(bytes: &[u8], page_index: u32, max_pixels: u64) -> Result<RgbImage, StepError> {
    let mut decoder = tiff_decoder(bytes)?;
    decoder.seek_to_image(page_index as usize).map_err(corrupt)?;
    let (width, height) = decoder.dimensions().map_err(corrupt)?;
    check_pixels(width, height, max_pixels)?;
    let color = decoder.colortype().map_err(corrupt)?;
    let pixels = match decoder.read_image().map_err(corrupt)? {
        DecodingResult::U8(buf) => buf,
        // 16-bit samples: keep the high byte.
        DecodingResult::U16(buf) => buf.into_iter().map(|v| (v >> 8) as u8).collect(),
        _ => return Err(unsupported(color)),
    };
    let n = (width as usize) * (height as usize);
    let rgb: Vec<u8> = match color {
        ColorType::Gray(8 | 16) => pixels.iter().take(n).flat_map(|&v| [v, v, v]).collect(),
        ColorType::GrayA(8 | 16) => {
            pixels.chunks_exact(2).take(n).flat_map(|p| [p[0]; 3]).collect()
        }
        ColorType::RGB(8 | 16) => pixels,
        ColorType::RGBA(8 | 16) => {
            pixels.chunks_exact(4).take(n).flat_map(|p| [p[0], p[1], p[2]]).collect()
        }
        other => return Err(unsupported(other)),
    };
    RgbImage::from_raw(width, height, rgb).ok_or_else(|| {
        StepError::reject(ErrorKind::Corrupt, "tiff pixel data is shorter than its size")
    })
}

fn check_pixels(width: u32, height: u32, max_pixels: u64) -> Result<(), StepError> {
    let pixels = u64::from(width) * u64::from(height);
    if pixels > max_pixels {
        return Err(StepError::reject(
            ErrorKind::TooManyPixels,
            format!("page is {width}x{height} = {pixels} pixels, the limit is {max_pixels}"),
        ));
    }
    Ok(())
}

fn unsupported(color: ColorType) -> StepError {
    StepError::reject(
        ErrorKind::UnsupportedFormat,
        format!("unsupported tiff colour type {color:?}"),
    )
}

fn corrupt(error: impl std::fmt::Display) -> StepError {
    StepError::reject(ErrorKind::Corrupt, format!("cannot decode image: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32) -> Vec<u8> {
        let image = RgbImage::from_pixel(width, height, image::Rgb([200, 10, 10]));
        let mut out = Cursor::new(Vec::new());
        image.write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    }

    #[test]
    fn decodes_png() {
        let image = decode_page(DocumentKind::Png, &png(30, 20), 0, 1_000_000).unwrap();
        assert_eq!(image.dimensions(), (30, 20));
        assert_eq!(image.get_pixel(3, 3).0, [200, 10, 10]);
    }

    #[test]
    fn refuses_too_many_pixels_before_decoding() {
        let error = decode_page(DocumentKind::Png, &png(100, 100), 0, 9_999).unwrap_err();
        assert_eq!(error.kind, ErrorKind::TooManyPixels);
    }

    #[test]
    fn garbage_is_corrupt() {
        let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
        bytes.extend((0..200u8).map(|i| i.wrapping_mul(37)));
        let error = decode_page(DocumentKind::Png, &bytes, 0, 1_000_000).unwrap_err();
        assert_eq!(error.kind, ErrorKind::Corrupt);
        let error = page_count(DocumentKind::Tiff, b"II*\0garbage").unwrap_err();
        assert_eq!(error.kind, ErrorKind::Corrupt);
    }

    #[test]
    fn multi_page_tiff() {
        let mut bytes = Cursor::new(Vec::new());
        {
            let mut encoder = tiff::encoder::TiffEncoder::new(&mut bytes).unwrap();
            for shade in [0u8, 128, 255] {
                let data = vec![shade; 8 * 6];
                encoder.write_image::<tiff::encoder::colortype::Gray8>(8, 6, &data).unwrap();
            }
        }
        let bytes = bytes.into_inner();
        assert_eq!(page_count(DocumentKind::Tiff, &bytes).unwrap(), 3);
        let page = decode_page(DocumentKind::Tiff, &bytes, 1, 1_000).unwrap();
        assert_eq!(page.dimensions(), (8, 6));
        assert_eq!(page.get_pixel(0, 0).0, [128, 128, 128]);
        let error = decode_page(DocumentKind::Tiff, &bytes, 5, 1_000).unwrap_err();
        assert_eq!(error.kind, ErrorKind::Corrupt);
    }
}
