//! Turning page images into model inputs: resizing the way the reference
//! pipeline (OpenCV) does and writing normalised BGR planes.

use image::RgbImage;
use rayon::prelude::*;

/// Resamples `src` to `width` x `height` with OpenCV's `INTER_LINEAR`
/// semantics: pixel centres aligned, two taps per axis, no anti-aliasing
/// when shrinking (the models were trained on inputs made that way).
pub fn resize_linear(src: &RgbImage, width: u32, height: u32) -> RgbImage {
    resize_separable(src, width, height, &LINEAR)
}

/// Resamples `src` with OpenCV's `INTER_LANCZOS4` semantics (8 taps per
/// axis, not widened when shrinking).
pub fn resize_lanczos4(src: &RgbImage, width: u32, height: u32) -> RgbImage {
    resize_separable(src, width, height, &LANCZOS4)
}

/// An interpolation kernel: taps either side and the weight of a tap at a
/// distance.
struct Kernel {
    /// Taps before the sample position (the kernel spans `2 * radius`).
    radius: i64,
    weight: fn(f64) -> f64,
}

const LINEAR: Kernel = Kernel { radius: 1, weight: |d| (1.0 - d.abs()).max(0.0) };

const LANCZOS4: Kernel = Kernel {
    radius: 4,
    weight: |d| {
        if d.abs() < 1e-9 {
            return 1.0;
        }
        let pi_d = std::f64::consts::PI * d;
        4.0 * pi_d.sin() * (pi_d / 4.0).sin() / (pi_d * pi_d)
    },
};

/// Source taps and normalised weights of every destination coordinate.
struct Taps {
    len: usize,
    index: Vec<usize>,
    weight: Vec<f32>,
}

impl Taps {
    fn new(src_len: u32, dst_len: u32, kernel: &Kernel) -> Taps {
        let scale = f64::from(src_len) / f64::from(dst_len);
        let len = 2 * kernel.radius as usize;
        let last = i64::from(src_len) - 1;
        let mut index = Vec::with_capacity(len * dst_len as usize);
        let mut weight = Vec::with_capacity(len * dst_len as usize);
        for d in 0..dst_len {
            let pos = (f64::from(d) + 0.5) * scale - 0.5;
            let (base, frac) = if kernel.radius == 1 && pos < 0.0 {
                (0, 0.0) // OpenCV clamps the linear position, not the taps
            } else {
                (pos.floor() as i64, pos - pos.floor())
            };
            let first = base - kernel.radius + 1;
            let ws: Vec<f64> = (0..len as i64)
                .map(|k| (kernel.weight)(frac + (base - first) as f64 - k as f64))
                .collect();
            let sum: f64 = ws.iter().sum();
            for (k, w) in ws.iter().enumerate() {
                index.push((first + k as i64).clamp(0, last.max(0)) as usize);
                weight.push((w / sum) as f32);
            }
        }
        Taps { len, index, weight }
    }

    fn of(&self, d: usize) -> impl Iterator<Item = (usize, f32)> + '_ {
        let range = d * self.len..(d + 1) * self.len;
        self.index[range.clone()].iter().copied().zip(self.weight[range].iter().copied())
    }
}

fn resize_separable(src: &RgbImage, width: u32, height: u32, kernel: &Kernel) -> RgbImage {
    let (width, height) = (width.max(1), height.max(1));
    if src.width() == 0 || src.height() == 0 {
        return RgbImage::new(width, height);
    }
    let xs = Taps::new(src.width(), width, kernel);
    let ys = Taps::new(src.height(), height, kernel);
    let src_row = src.width() as usize * 3;
    let raw = src.as_raw();
    let dst_row = width as usize * 3;
    let mut out = vec![0u8; dst_row * height as usize];
    out.par_chunks_mut(dst_row).enumerate().for_each_init(
        || vec![0f32; src_row],
        |column, (y, dst)| {
            // vertical pass into one float row, then horizontal pass
            column.fill(0.0);
            for (sy, wy) in ys.of(y) {
                let row = &raw[sy * src_row..(sy + 1) * src_row];
                for (acc, &v) in column.iter_mut().zip(row) {
                    *acc += wy * f32::from(v);
                }
            }
            for (x, px) in dst.chunks_exact_mut(3).enumerate() {
                let mut acc = [0f32; 3];
                for (sx, wx) in xs.of(x) {
                    let s = &column[sx * 3..sx * 3 + 3];
                    acc[0] += wx * s[0];
                    acc[1] += wx * s[1];
                    acc[2] += wx * s[2];
                }
                for (p, a) in px.iter_mut().zip(acc) {
                    *p = (a.clamp(0.0, 255.0) + 0.5) as u8; // round half up, without a libm call
                }
            }
        },
    );
    RgbImage::from_raw(width, height, out).unwrap_or_else(|| RgbImage::new(width, height))
}

/// Per-channel normalisation `value / 255 * scale + offset`, in the BGR
/// order the models take.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Normalize {
    scale: [f32; 3],
    offset: [f32; 3],
}

impl Normalize {
    /// `(value / 255 - mean) / std` per BGR channel.
    pub fn mean_std(mean: [f32; 3], std: [f32; 3]) -> Normalize {
        Normalize {
            scale: std::array::from_fn(|c| 1.0 / (255.0 * std[c])),
            offset: std::array::from_fn(|c| -mean[c] / std[c]),
        }
    }

    /// `(value / 255 - 0.5) / 0.5`, the OCR models' input range [-1, 1].
    pub fn symmetric() -> Normalize {
        Normalize::mean_std([0.5; 3], [0.5; 3])
    }

    /// ImageNet statistics, applied to BGR planes as the reference does.
    pub fn imagenet() -> Normalize {
        Normalize::mean_std([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    }

    /// Writes `img` into `out`, three planes (B, G, R) of `img.height()` rows
    /// of `stride` values; columns past the image width are left as they are
    /// (zero padding when `out` starts zeroed).
    pub fn write_planes(&self, img: &RgbImage, stride: usize, out: &mut [f32]) {
        let (w, h) = (img.width() as usize, img.height() as usize);
        let plane = stride * h;
        if w == 0 || h == 0 || w > stride || out.len() < 3 * plane {
            return;
        }
        let raw = img.as_raw();
        let (b, rest) = out.split_at_mut(plane);
        let (g, r) = rest.split_at_mut(plane);
        let planes = [b, g, &mut r[..plane]];
        // BGR plane c takes RGB channel 2 - c
        for (c, plane) in planes.into_iter().enumerate() {
            let (scale, offset) = (self.scale[c], self.offset[c]);
            for (row, src) in plane.chunks_exact_mut(stride).zip(raw.chunks_exact(w * 3)) {
                for (dst, px) in row[..w].iter_mut().zip(src.chunks_exact(3)) {
                    *dst = f32::from(px[2 - c]) * scale + offset;
                }
            }
        }
    }

    /// `img` as a new 3 x height x width tensor.
    pub fn planes(&self, img: &RgbImage) -> Vec<f32> {
        let mut out = vec![0f32; 3 * img.width() as usize * img.height() as usize];
        self.write_planes(img, img.width() as usize, &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 7 % 256) as u8, (y * 5 % 256) as u8, 90]))
    }

    #[test]
    fn identity_resize_keeps_pixels() {
        let img = gradient(37, 23);
        assert_eq!(resize_linear(&img, 37, 23), img);
        assert_eq!(resize_lanczos4(&img, 37, 23), img);
    }

    #[test]
    fn linear_matches_opencv_on_a_two_pixel_row() {
        // cv2.resize(np.array([[[0,0,0],[100,100,100]]], np.uint8), (4, 1))
        // gives 0, 25, 75, 100
        let img = RgbImage::from_fn(2, 1, |x, _| image::Rgb([(x * 100) as u8; 3]));
        let out = resize_linear(&img, 4, 1);
        let values: Vec<u8> = out.pixels().map(|p| p.0[0]).collect();
        assert_eq!(values, vec![0, 25, 75, 100]);
    }

    #[test]
    fn planes_are_bgr_and_normalised() {
        let img = RgbImage::from_pixel(2, 1, image::Rgb([255, 0, 51]));
        let planes = Normalize::symmetric().planes(&img);
        assert_eq!(planes.len(), 6);
        let close = |a: f32, b: f32| (a - b).abs() < 1e-6;
        assert!(close(planes[0], -0.6)); // B = 51
        assert!(close(planes[2], -1.0)); // G = 0
        assert!(close(planes[4], 1.0)); // R = 255
    }
}
