//! Cutting a text line out of the page: a perspective warp of its
//! quadrilateral to an upright rectangle (bicubic, border replicated), as
//! OpenCV's `warpPerspective` does for the reference.

use image::{RgbImage, imageops};

use super::Quad;

/// Crops with height / width at least this are vertical text: turned 90
/// degrees counter-clockwise.
pub const VERTICAL_RATIO: f32 = 1.5;

/// The upright crop of `quad` (tl, tr, br, bl) from `img`: width the longer
/// horizontal edge, height the longer vertical edge. Vertical crops are
/// turned 90 degrees counter-clockwise; the flag says so.
pub fn crop_line(img: &RgbImage, quad: &Quad) -> (RgbImage, bool) {
    let len = |a: [f32; 2], b: [f32; 2]| (a[0] - b[0]).hypot(a[1] - b[1]);
    let width = len(quad[0], quad[1]).max(len(quad[2], quad[3])) as u32;
    let height = len(quad[0], quad[3]).max(len(quad[1], quad[2])) as u32;
    let crop = warp(img, quad, width.max(1), height.max(1));
    if crop.height() as f32 / crop.width() as f32 >= VERTICAL_RATIO {
        (imageops::rotate270(&crop), true)
    } else {
        (crop, false)
    }
}

/// The projective map from the `width` x `height` rectangle onto `quad`.
struct Homography {
    m: [f64; 8],
}

impl Homography {
    /// Heckbert's closed form for the unit square, scaled to the rectangle.
    fn onto(quad: &Quad, width: u32, height: u32) -> Homography {
        let p = quad.map(|[x, y]| [f64::from(x), f64::from(y)]);
        let (sx, sy) = (1.0 / f64::from(width), 1.0 / f64::from(height));
        let dx1 = p[1][0] - p[2][0];
        let dx2 = p[3][0] - p[2][0];
        let dx3 = p[0][0] - p[1][0] + p[2][0] - p[3][0];
        let dy1 = p[1][1] - p[2][1];
        let dy2 = p[3][1] - p[2][1];
        let dy3 = p[0][1] - p[1][1] + p[2][1] - p[3][1];
        let det = dx1 * dy2 - dx2 * dy1;
        let (g, h) = if (dx3 == 0.0 && dy3 == 0.0) || det.abs() < 1e-12 {
            (0.0, 0.0)
        } else {
            ((dx3 * dy2 - dx2 * dy3) / det, (dx1 * dy3 - dx3 * dy1) / det)
        };
        let a = p[1][0] - p[0][0] + g * p[1][0];
        let b = p[3][0] - p[0][0] + h * p[3][0];
        let d = p[1][1] - p[0][1] + g * p[1][1];
        let e = p[3][1] - p[0][1] + h * p[3][1];
        Homography { m: [a * sx, b * sy, p[0][0], d * sx, e * sy, p[0][1], g * sx, h * sy] }
    }

    fn map(&self, x: f64, y: f64) -> (f64, f64) {
        let m = &self.m;
        let w = m[6] * x + m[7] * y + 1.0;
        ((m[0] * x + m[1] * y + m[2]) / w, (m[3] * x + m[4] * y + m[5]) / w)
    }

    /// Whether the map is a shift by whole pixels.
    fn integer_shift(&self) -> Option<(i64, i64)> {
        let m = &self.m;
        let exact = |v: f64, want: f64| (v - want).abs() < 1e-9;
        let whole = |v: f64| exact(v, v.round());
        (exact(m[0], 1.0) && exact(m[4], 1.0) && exact(m[1], 0.0) && exact(m[3], 0.0))
            .then_some(())
            .filter(|()| exact(m[6], 0.0) && exact(m[7], 0.0) && whole(m[2]) && whole(m[5]))
            .map(|()| (m[2].round() as i64, m[5].round() as i64))
    }
}

/// OpenCV's bicubic weights (a = -0.75) for a fractional offset.
fn cubic_weights(t: f64) -> [f32; 4] {
    const A: f64 = -0.75;
    let near = |x: f64| ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
    let far = |x: f64| ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A;
    [far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)].map(|w| w as f32)
}

fn warp(img: &RgbImage, quad: &Quad, width: u32, height: u32) -> RgbImage {
    let (src_w, src_h) = (i64::from(img.width()), i64::from(img.height()));
    if src_w == 0 || src_h == 0 {
        return RgbImage::new(width, height);
    }
    let h = Homography::onto(quad, width, height);
    let raw = img.as_raw();
    let at = |x: i64, y: i64| {
        let (x, y) = (x.clamp(0, src_w - 1), y.clamp(0, src_h - 1));
        (y * src_w + x) as usize * 3
    };
    if let Some((dx, dy)) = h.integer_shift() {
        return RgbImage::from_fn(width, height, |x, y| {
            let i = at(i64::from(x) + dx, i64::from(y) + dy);
            image::Rgb([raw[i], raw[i + 1], raw[i + 2]])
        });
    }
    RgbImage::from_fn(width, height, |x, y| {
        let (fx, fy) = h.map(f64::from(x), f64::from(y));
        let (x0, y0) = (fx.floor(), fy.floor());
        let (wx, wy) = (cubic_weights(fx - x0), cubic_weights(fy - y0));
        let (x0, y0) = (x0 as i64 - 1, y0 as i64 - 1);
        let mut acc = [0f32; 3];
        for (j, wy) in wy.iter().enumerate() {
            let mut row = [0f32; 3];
            for (i, wx) in wx.iter().enumerate() {
                let p = at(x0 + i as i64, y0 + j as i64);
                for c in 0..3 {
                    row[c] += wx * f32::from(raw[p + c]);
                }
            }
            for c in 0..3 {
                acc[c] += wy * row[c];
            }
        }
        image::Rgb(acc.map(|v| (v.clamp(0.0, 255.0) + 0.5) as u8))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page() -> RgbImage {
        RgbImage::from_fn(64, 48, |x, y| image::Rgb([(x * 4) as u8, (y * 5) as u8, 7]))
    }

    #[test]
    fn an_axis_aligned_box_is_copied() {
        let img = page();
        let quad = [[10.0, 5.0], [40.0, 5.0], [40.0, 17.0], [10.0, 17.0]];
        let (crop, vertical) = crop_line(&img, &quad);
        assert!(!vertical);
        assert_eq!(crop.dimensions(), (30, 12));
        assert_eq!(crop.get_pixel(0, 0), img.get_pixel(10, 5));
        assert_eq!(crop.get_pixel(29, 11), img.get_pixel(39, 16));
    }

    #[test]
    fn a_scaled_box_interpolates_and_replicates_the_border() {
        let img = page();
        // corners past the image: sampled from the nearest edge pixels
        let quad = [[50.0, 40.0], [70.0, 40.0], [70.0, 52.0], [50.0, 52.0]];
        let (crop, _) = crop_line(&img, &quad);
        assert_eq!(crop.get_pixel(19, 11).0, img.get_pixel(63, 47).0);
        // a half-pixel shift of a linear ramp gives the mean of neighbours
        let quad = [[10.5, 5.0], [40.5, 5.0], [40.5, 17.0], [10.5, 17.0]];
        let (crop, _) = crop_line(&img, &quad);
        assert_eq!(crop.get_pixel(1, 0).0[0], 46);
    }

    #[test]
    fn tall_crops_are_turned_counter_clockwise() {
        let img = page();
        let quad = [[10.0, 0.0], [20.0, 0.0], [20.0, 30.0], [10.0, 30.0]];
        let (crop, vertical) = crop_line(&img, &quad);
        assert!(vertical);
        assert_eq!(crop.dimensions(), (30, 10));
        // the top-left of the original ends up bottom-left
        assert_eq!(crop.get_pixel(0, 9), img.get_pixel(10, 0));
    }
}
