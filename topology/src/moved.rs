//! Keys that have moved: the per-stage settings sections of earlier files
//! (`[render]`, `[preprocess]`, `[layout]`, `[ocr]`, `[enrich]`) became the
//! settings of the step that reads them, `[steps.<step>]`. A file that still
//! has them fails with, for every key, where it goes now.

use crate::error::TopologyError;
use crate::source::Source;

/// Old section, old key, new place.
const MOVED: &[(&str, &str, &str)] = &[
    ("render", "dpi", "steps.rasterize.dpi"),
    ("render", "max_side_px", "steps.rasterize.max_side_px"),
    ("preprocess", "orientation_min_confidence", "steps.orient.min_confidence"),
    ("preprocess", "deskew_max_deg", "steps.deskew.max_deg"),
    ("layout", "score_threshold", "steps.detect_regions.min_score"),
    ("layout", "nms_iou", "steps.detect_regions.iou_threshold"),
    ("layout", "max_regions", "steps.detect_regions.max_per_class"),
    ("ocr", "det_limit_side", "steps.detect_text.limit_side_len"),
    ("ocr", "det_max_side", "steps.detect_text.det_max_side_len"),
    ("ocr", "det_thresh", "steps.detect_text.db.thresh"),
    ("ocr", "box_thresh", "steps.detect_text.db.box_thresh"),
    ("ocr", "unclip_ratio", "steps.detect_text.db.unclip_ratio"),
    ("ocr", "max_candidates", "steps.detect_text.db.max_candidates"),
    ("ocr", "text_layer_min_chars", "steps.detect_text.text_layer.min_chars"),
    ("ocr", "cls_thresh", "steps.classify_lines.min_confidence"),
    ("ocr", "rec_score_thresh", "steps.recognize_text.min_score"),
    ("ocr", "rec_batch", "steps.recognize_text.batch_size"),
    ("enrich", "min_language_confidence", "steps.detect_language.min_confidence"),
];

/// Sections that no longer exist.
const SECTIONS: &[&str] = &["render", "preprocess", "layout", "ocr", "enrich"];

/// Every moved key of `source`, each as a [`TopologyError::Moved`].
pub(crate) fn check(source: &Source<'_>) -> Result<(), Vec<TopologyError>> {
    let mut errors = Vec::new();
    for &section in SECTIONS {
        let Some((at, keys)) = source.top_level_table(section) else { continue };
        if keys.is_empty() {
            errors.push(TopologyError::Moved {
                at,
                key: section.to_owned(),
                to: "steps.<step>".to_owned(),
            });
        }
        for (key, at) in keys {
            let to = MOVED
                .iter()
                .find(|(s, k, _)| *s == section && *k == key)
                .map_or("steps.<step>", |(_, _, to)| to);
            errors.push(TopologyError::Moved {
                at,
                key: format!("{section}.{key}"),
                to: to.to_owned(),
            });
        }
    }
    errors.sort_by(|a, b| a.location().cmp(&b.location()));
    if errors.is_empty() { Ok(()) } else { Err(errors) }
}
