//! Differentiable-binarisation post-processing: text boxes from the
//! detection model's probability map, step by step as the reference
//! implementation (PaddleOCR's `DBPostProcess`) does it.

use image::GrayImage;
use imageproc::contours::find_contours;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::Quad;

/// Thresholds of the post-processing.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Params {
    /// Probability above which a pixel is text.
    pub thresh: f32,
    /// Minimum mean probability inside a box.
    pub box_thresh: f32,
    /// Contours looked at, at most.
    pub max_candidates: usize,
    /// How far a box is grown: area * ratio / perimeter.
    pub unclip_ratio: f32,
    /// Dilate the text mask with a 2x2 kernel first.
    pub use_dilation: bool,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            thresh: 0.3,
            box_thresh: 0.5,
            max_candidates: 1000,
            unclip_ratio: 1.6,
            use_dilation: true,
        }
    }
}

/// Boxes shorter than this (map pixels) are noise.
const MIN_SIZE: f32 = 3.0;
/// Boxes on one line when their tops differ by less (pixels).
const SAME_LINE_DY: f32 = 10.0;

/// A text box found in the map, scaled to the image the map was made from.
#[derive(Debug, Clone, PartialEq)]
pub struct TextBox {
    /// Corners tl, tr, br, bl.
    pub quad: Quad,
    /// Mean probability inside the box.
    pub score: f32,
}

/// The text boxes of the probability map `prob` (`width` x `height`),
/// scaled to an image of `dest` pixels, in reading order (top to bottom,
/// then left to right).
pub fn text_boxes(
    prob: &[f32],
    width: usize,
    height: usize,
    dest: (u32, u32),
    params: &Params,
) -> Vec<TextBox> {
    if width == 0 || height == 0 || prob.len() < width * height {
        return Vec::new();
    }
    let mask = text_mask(prob, width, height, params);
    let (dest_w, dest_h) = (dest.0 as f32, dest.1 as f32);
    let (sx, sy) = (dest_w / width as f32, dest_h / height as f32);
    let mut boxes: Vec<TextBox> = find_contours::<i32>(&mask)
        .into_iter()
        .take(params.max_candidates)
        .filter_map(|contour| {
            let points: Vec<[i64; 2]> =
                contour.points.iter().map(|p| [i64::from(p.x), i64::from(p.y)]).collect();
            let rect = min_area_rect(points);
            if short_side(&rect) < MIN_SIZE {
                return None;
            }
            let score = mean_inside(prob, width, height, &rect);
            if score < params.box_thresh {
                return None;
            }
            let grown = unclip(&rect, params.unclip_ratio);
            if short_side(&grown) < MIN_SIZE + 2.0 {
                return None;
            }
            let scaled = grown.map(|[x, y]| {
                [(x * sx).round().clamp(0.0, dest_w), (y * sy).round().clamp(0.0, dest_h)]
            });
            let quad = order_corners(scaled).map(|[x, y]| {
                [x.clamp(0.0, dest_w - 1.0).trunc(), y.clamp(0.0, dest_h - 1.0).trunc()]
            });
            let too_small = |a: [f32; 2], b: [f32; 2]| distance(a, b).trunc() <= 3.0;
            if too_small(quad[0], quad[1]) || too_small(quad[0], quad[3]) {
                return None;
            }
            Some(TextBox { quad, score })
        })
        .collect();
    sort_reading_order(&mut boxes, |b| b.quad[0]);
    boxes
}

/// Sorts items top to bottom by their top-left corner, putting corners
/// less than 10 pixels below the previous one on the same line, then each
/// line left to right (the reference's box order).
pub fn sort_reading_order<T>(items: &mut Vec<T>, top_left: impl Fn(&T) -> [f32; 2]) {
    items.sort_by(|a, b| top_left(a)[1].total_cmp(&top_left(b)[1]));
    let mut line = 0usize;
    let mut prev_y = None;
    let mut keyed: Vec<(usize, f32, T)> = items
        .drain(..)
        .map(|item| {
            let [x, y] = top_left(&item);
            if prev_y.is_some_and(|prev| y - prev >= SAME_LINE_DY) {
                line += 1;
            }
            prev_y = Some(y);
            (line, x, item)
        })
        .collect();
    keyed.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
    items.extend(keyed.into_iter().map(|(_, _, item)| item));
}

/// The thresholded (and dilated) probability map as a 0/255 image.
fn text_mask(prob: &[f32], width: usize, height: usize, params: &Params) -> GrayImage {
    let mut mask = vec![0u8; width * height];
    mask.par_chunks_mut(width).enumerate().for_each(|(y, row)| {
        let on = |yy: usize, x: usize| prob[yy * width + x] > params.thresh;
        for (x, m) in row.iter_mut().enumerate() {
            // OpenCV's 2x2 kernel is anchored at (1, 1): it looks up and left
            let hit = on(y, x)
                || (params.use_dilation
                    && ((x > 0 && on(y, x - 1))
                        || (y > 0 && (on(y - 1, x) || (x > 0 && on(y - 1, x - 1))))));
            *m = if hit { 255 } else { 0 };
        }
    });
    GrayImage::from_raw(width as u32, height as u32, mask)
        .unwrap_or_else(|| GrayImage::new(width as u32, height as u32))
}

fn distance(a: [f32; 2], b: [f32; 2]) -> f32 {
    (a[0] - b[0]).hypot(a[1] - b[1])
}

/// The shorter side of a rectangle given by its corners in any order.
fn short_side(rect: &Quad) -> f32 {
    let d = [distance(rect[0], rect[1]), distance(rect[0], rect[2]), distance(rect[0], rect[3])];
    d.into_iter().fold(f32::INFINITY, f32::min)
}

/// The convex hull of `points`, counter-clockwise (Andrew's monotone chain).
fn convex_hull(mut points: Vec<[i64; 2]>) -> Vec<[i64; 2]> {
    points.sort_unstable();
    points.dedup();
    if points.len() < 3 {
        return points;
    }
    let cross = |o: [i64; 2], a: [i64; 2], b: [i64; 2]| {
        (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])
    };
    let mut hull: Vec<[i64; 2]> = Vec::with_capacity(2 * points.len());
    for pass in [&points[..], &points.iter().rev().copied().collect::<Vec<_>>()[..]] {
        let start = hull.len();
        for &p in pass {
            while hull.len() >= start + 2
                && cross(hull[hull.len() - 2], hull[hull.len() - 1], p) <= 0
            {
                hull.pop();
            }
            hull.push(p);
        }
        hull.pop(); // the last point starts the other half
    }
    hull
}

/// The minimum-area rectangle holding `points` (rotating calipers over
/// every edge of their convex hull), corners in order around it.
fn min_area_rect(points: Vec<[i64; 2]>) -> Quad {
    let hull: Vec<[f64; 2]> =
        convex_hull(points).into_iter().map(|[x, y]| [x as f64, y as f64]).collect();
    let Some(&first) = hull.first() else { return [[0.0; 2]; 4] };
    let mut best = (f64::INFINITY, [first; 4]);
    for (i, a) in hull.iter().enumerate() {
        let b = hull[(i + 1) % hull.len()];
        let len = (b[0] - a[0]).hypot(b[1] - a[1]);
        let u = if len > 0.0 { [(b[0] - a[0]) / len, (b[1] - a[1]) / len] } else { [1.0, 0.0] };
        let v = [-u[1], u[0]];
        let (mut s0, mut s1, mut t0, mut t1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        for p in &hull {
            let (s, t) = (p[0] * u[0] + p[1] * u[1], p[0] * v[0] + p[1] * v[1]);
            (s0, s1, t0, t1) = (s0.min(s), s1.max(s), t0.min(t), t1.max(t));
        }
        let area = (s1 - s0) * (t1 - t0);
        if area < best.0 {
            let at = |s: f64, t: f64| [s * u[0] + t * v[0], s * u[1] + t * v[1]];
            best = (area, [at(s0, t0), at(s1, t0), at(s1, t1), at(s0, t1)]);
        }
    }
    best.1.map(|[x, y]| [x as f32, y as f32])
}

/// Mean of `prob` over the pixels of the convex polygon `quad`, its corners
/// cut to whole pixels (the reference's "fast" box score).
fn mean_inside(prob: &[f32], width: usize, height: usize, quad: &Quad) -> f32 {
    let quad = &quad.map(|[x, y]| [x.floor(), y.floor()]);
    let (min_y, max_y) = quad
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), p| (lo.min(p[1]), hi.max(p[1])));
    let y0 = (min_y.floor().max(0.0) as usize).min(height - 1);
    let y1 = (max_y.ceil().max(0.0) as usize).min(height - 1);
    let (mut sum, mut count) = (0f64, 0usize);
    for y in y0..=y1 {
        let Some((xl, xr)) = row_span(quad, y as f32) else { continue };
        let x0 = (xl.round().max(0.0) as usize).min(width - 1);
        let x1 = (xr.round().max(0.0) as usize).min(width - 1);
        let row = &prob[y * width..(y + 1) * width];
        sum += row[x0..=x1].iter().map(|&p| f64::from(p)).sum::<f64>();
        count += x1 + 1 - x0;
    }
    if count == 0 { 0.0 } else { (sum / count as f64) as f32 }
}

/// Where the horizontal line at `y` crosses the convex polygon `quad`.
fn row_span(quad: &Quad, y: f32) -> Option<(f32, f32)> {
    let mut span: Option<(f32, f32)> = None;
    for i in 0..4 {
        let (a, b) = (quad[i], quad[(i + 1) % 4]);
        let (lo, hi) = (a[1].min(b[1]), a[1].max(b[1]));
        if y < lo || y > hi {
            continue;
        }
        let xs = if a[1] == b[1] {
            [a[0], b[0]]
        } else {
            let x = a[0] + (y - a[1]) * (b[0] - a[0]) / (b[1] - a[1]);
            [x, x]
        };
        for x in xs {
            span = Some(span.map_or((x, x), |(l, r)| (l.min(x), r.max(x))));
        }
    }
    span
}

/// Grows a rectangle by `area * ratio / perimeter` on every side: the
/// minimum-area rectangle of its round-joined offset polygon.
fn unclip(rect: &Quad, ratio: f32) -> Quad {
    let area = (0..4)
        .map(|i| {
            let (a, b) = (rect[i], rect[(i + 1) % 4]);
            a[0] * b[1] - b[0] * a[1]
        })
        .sum::<f32>()
        .abs()
        / 2.0;
    let perimeter: f32 = (0..4).map(|i| distance(rect[i], rect[(i + 1) % 4])).sum();
    if perimeter <= 0.0 {
        return *rect;
    }
    let d = area * ratio / perimeter;
    // a side from corner 0: the nearer of the two other corners that are
    // not across the diagonal
    let p0 = rect[0];
    let mut others = [rect[1], rect[2], rect[3]];
    others.sort_by(|a, b| distance(p0, *a).total_cmp(&distance(p0, *b)));
    let side = others.iter().find(|p| distance(p0, **p) > 0.0).copied().unwrap_or(p0);
    let len = distance(p0, side);
    let u = if len > 0.0 { [(side[0] - p0[0]) / len, (side[1] - p0[1]) / len] } else { [1.0, 0.0] };
    let v = [-u[1], u[0]];
    let c = [
        rect.iter().map(|p| p[0]).sum::<f32>() / 4.0,
        rect.iter().map(|p| p[1]).sum::<f32>() / 4.0,
    ];
    let half = |axis: [f32; 2]| {
        rect.iter()
            .map(|p| ((p[0] - c[0]) * axis[0] + (p[1] - c[1]) * axis[1]).abs())
            .fold(0f32, f32::max)
            + d
    };
    let (hu, hv) = (half(u), half(v));
    let corner = |su: f32, sv: f32| {
        [c[0] + su * hu * u[0] + sv * hv * v[0], c[1] + su * hu * u[1] + sv * hv * v[1]]
    };
    [corner(-1.0, -1.0), corner(1.0, -1.0), corner(1.0, 1.0), corner(-1.0, 1.0)]
}

/// Orders corners tl, tr, br, bl: the two leftmost are tl and bl (by y),
/// the two rightmost tr and br.
pub fn order_corners(mut points: Quad) -> Quad {
    points.sort_by(|a, b| a[0].total_cmp(&b[0]));
    let [mut l0, mut l1, mut r0, mut r1] = points;
    if l1[1] < l0[1] {
        std::mem::swap(&mut l0, &mut l1);
    }
    if r1[1] < r0[1] {
        std::mem::swap(&mut r0, &mut r1);
    }
    [l0, r0, r1, l1]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A map with probability 0.9 inside the given pixel rectangles.
    fn map(width: usize, height: usize, rects: &[(usize, usize, usize, usize)]) -> Vec<f32> {
        let mut prob = vec![0.01f32; width * height];
        for &(x0, y0, x1, y1) in rects {
            for y in y0..=y1 {
                prob[y * width + x0..=y * width + x1].fill(0.9);
            }
        }
        prob
    }

    #[test]
    fn a_rectangle_is_grown_by_the_unclip_distance() {
        // pixels 20..=119 x 30..=49; dilation adds a column and a row, so the
        // contour spans 20..=120 x 30..=50: a 100 x 20 rectangle, grown by
        // 100 * 20 * 1.6 / 240 = 13.3 on every side
        let prob = map(200, 80, &[(20, 30, 119, 49)]);
        let boxes = text_boxes(&prob, 200, 80, (200, 80), &Params::default());
        assert_eq!(boxes.len(), 1);
        assert_eq!(boxes[0].quad, [[7.0, 17.0], [133.0, 17.0], [133.0, 63.0], [7.0, 63.0]]);
        assert!(boxes[0].score > 0.8);
    }

    #[test]
    fn boxes_scale_to_the_destination_and_sort_by_line() {
        let prob = map(200, 100, &[(120, 12, 180, 25), (10, 10, 90, 25), (10, 60, 90, 75)]);
        let boxes = text_boxes(&prob, 200, 100, (400, 200), &Params::default());
        assert_eq!(boxes.len(), 3);
        // same line (tops 10 and 12 map to rows within 10 px after sorting)
        assert!(boxes[0].quad[0][0] < boxes[1].quad[0][0]);
        assert!(boxes[2].quad[0][1] > boxes[1].quad[2][1]);
        // scaled by two: the right box starts near 2 * (120 - 9)
        assert!(boxes[1].quad[0][0] > 200.0 && boxes[1].quad[0][0] < 240.0);
    }

    #[test]
    fn weak_or_tiny_blobs_are_dropped() {
        let mut prob = map(100, 100, &[(10, 10, 11, 11)]);
        for p in prob.iter_mut().skip(50 * 100).take(100 * 20) {
            *p = 0.35; // above thresh, below box_thresh
        }
        assert!(text_boxes(&prob, 100, 100, (100, 100), &Params::default()).is_empty());
    }

    #[test]
    fn the_minimum_rectangle_follows_a_tilted_hull() {
        // the corners and edge points of a 25 x 5 bar tilted by atan(3/4)
        let mut points = Vec::new();
        for k in 0..=5 {
            for (ox, oy) in [(0, 0), (-3, 4)] {
                points.push([4 * k + ox, 3 * k + oy]);
            }
        }
        let rect = min_area_rect(points);
        let sides = [distance(rect[0], rect[1]), distance(rect[1], rect[2])];
        let (short, long) = (sides[0].min(sides[1]), sides[0].max(sides[1]));
        assert!((short - 5.0).abs() < 1e-4 && (long - 25.0).abs() < 1e-4, "{rect:?}");
        assert_eq!(
            convex_hull(vec![[0, 0], [2, 0], [1, 0], [0, 0], [2, 2], [0, 2], [1, 1]]).len(),
            4
        );
    }

    #[test]
    fn corners_are_ordered_clockwise_from_top_left() {
        let q = order_corners([[10.0, 5.0], [0.0, 0.0], [10.0, 0.0], [0.0, 5.0]]);
        assert_eq!(q, [[0.0, 0.0], [10.0, 0.0], [10.0, 5.0], [0.0, 5.0]]);
    }
}
