//! Builds the runnable pipeline from the topology: loads PDFium and the
//! models the stages use (once per process) and creates each stage's steps
//! with their settings.

use std::collections::BTreeMap;
use std::sync::Arc;

use topology::Pipeline as Topology;

use crate::home::Home;
use crate::models::{Model, ModelError, ModelSpec, Models};
use crate::pipeline::{Pipeline, Stage};
use crate::steps::{Step, enrich, layout, ocr, preprocess, render, split};

/// Why the pipeline could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Pdfium(#[from] crate::pdf::PdfiumLoadError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("model files do not match the topology:\n  {0}")]
    ModelFiles(String),
    #[error("stage `{stage}` names step `{step}`, which this build does not implement")]
    UnknownStep { stage: String, step: String },
    #[error("stage `{stage}` uses model `{model}`, which the topology does not define")]
    UnknownModel { stage: String, model: String },
}

/// Loads what `topology` needs from `home` and builds every stage.
///
/// Only the models of stages in the topology are loaded; each gets one
/// session per worker thread of the stages that use it.
pub fn build(topology: &Topology, home: &Home) -> Result<Pipeline, BuildError> {
    build_stages(topology, home, |_| true)
}

/// Like [`build`], for a process that serves only the stages `serves`
/// accepts: only their steps are built and only their models loaded
/// (PDFium only when it splits or renders), so that a pool carries the
/// memory of what it runs and nothing else.
pub fn build_stages(
    topology: &Topology,
    home: &Home,
    serves: impl Fn(&str) -> bool,
) -> Result<Pipeline, BuildError> {
    use topology::catalogue::{ENTRY_STAGE, EXIT_STAGE};
    let served: Vec<&topology::Stage> =
        topology.stages().iter().filter(|s| serves(s.name())).collect();
    if served.iter().any(|s| s.name() == ENTRY_STAGE || s.reads_document()) {
        crate::pdf::init(&home.pdfium_lib())?;
    }
    let models = load_models(topology, home, &served)?;
    let splitter = split::Splitter { config: topology.limits().into() };
    let mut stages = Vec::new();
    for spec in served {
        // Split and assemble are document-level; the transports run them.
        if spec.name() == ENTRY_STAGE || spec.name() == EXIT_STAGE {
            continue;
        }
        let steps = spec
            .steps()
            .iter()
            .map(|step| build_step(topology, &models, spec.name(), step))
            .collect::<Result<Vec<_>, _>>()?;
        let mut stage = Stage::new(spec.name(), steps);
        stage.concurrency = spec.concurrency().max(1) as usize;
        stage.step_timeout = Some(topology.limits().step_timeout);
        stages.push(stage);
    }
    Ok(Pipeline { splitter, stages })
}

/// Loads the models of `stages`, each with one session per page the stages
/// using it work on at once.
fn load_models(
    topology: &Topology,
    home: &Home,
    stages: &[&topology::Stage],
) -> Result<Models, BuildError> {
    let model_dir = home.models_dir();
    let mut used: BTreeMap<String, usize> = BTreeMap::new();
    for stage in stages {
        for model in stage.models() {
            let sessions = used.entry(model.clone()).or_insert(1);
            *sessions = (*sessions).max(stage.concurrency().max(1) as usize);
        }
    }
    if used.is_empty() {
        return Ok(Models::default());
    }
    let mut specs = Vec::new();
    for (name, &sessions) in &used {
        let model = topology.model(name).ok_or_else(|| BuildError::UnknownModel {
            stage: String::new(),
            model: name.clone(),
        })?;
        let path = topology.model_path(name, &model_dir).ok_or_else(|| {
            BuildError::UnknownModel { stage: String::new(), model: name.clone() }
        })?;
        let mut spec = ModelSpec::new(name, path);
        spec.intra_threads = usize::from(model.intra_threads);
        spec.pool_size = Some(sessions);
        specs.push(spec);
    }
    if let Err(errors) = topology.verify_models(&model_dir) {
        let lines: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        return Err(BuildError::ModelFiles(format!("{}\n  run ./setup", lines.join("\n  "))));
    }
    Ok(Models::load(&home.onnxruntime_lib(), &specs, 1)?)
}

fn model(models: &Models, name: &str) -> Result<Arc<Model>, BuildError> {
    Ok(models.get(name)?)
}

fn build_step(
    topology: &Topology,
    models: &Models,
    stage: &str,
    step: &str,
) -> Result<Box<dyn Step>, BuildError> {
    use topology::catalogue::{MODEL_CLS, MODEL_DET, MODEL_LAYOUT, MODEL_ORIENTATION, MODEL_REC};
    let render_config = || render::Config {
        dpi: topology.render().dpi,
        max_side_px: topology.render().max_side_px,
        max_page_pixels: topology.limits().max_page_pixels,
    };
    let pre = topology.preprocess();
    let ocr_settings = topology.ocr();
    let step: Box<dyn Step> = match (stage, step) {
        ("render", "rasterize") => Box::new(render::Rasterize { config: render_config() }),
        ("render", "extract_text") => Box::new(render::ExtractText { config: render_config() }),
        ("preprocess", "orient") => Box::new(preprocess::orient::Orient::new(
            preprocess::orient::Config {
                min_confidence: pre.orientation_min_confidence,
                ..Default::default()
            },
            model(models, MODEL_ORIENTATION)?,
        )?),
        ("preprocess", "deskew") => {
            Box::new(preprocess::deskew::Deskew::new(preprocess::deskew::Config {
                max_deg: pre.deskew_max_deg,
                ..Default::default()
            }))
        }
        ("layout", "detect_regions") => {
            let settings = topology.layout();
            Box::new(layout::DetectRegions::new(
                layout::Config {
                    min_score: settings.score_threshold,
                    iou_threshold: settings.nms_iou,
                    max_per_class: settings.max_regions as usize,
                },
                model(models, MODEL_LAYOUT)?,
            )?)
        }
        ("ocr", "detect_text") => {
            let defaults = ocr::detect::Config::default();
            let config = ocr::detect::Config {
                limit_side_len: ocr_settings.det_limit_side,
                det_max_side_len: ocr_settings.det_max_side,
                db: ocr::db::Params {
                    thresh: ocr_settings.det_thresh,
                    box_thresh: ocr_settings.box_thresh,
                    unclip_ratio: ocr_settings.unclip_ratio,
                    max_candidates: ocr_settings.max_candidates as usize,
                    ..defaults.db
                },
                text_layer: ocr::text_layer::Config {
                    min_chars: ocr_settings.text_layer_min_chars as usize,
                    ..defaults.text_layer
                },
                ..defaults
            };
            Box::new(ocr::detect::DetectText::new(config, model(models, MODEL_DET)?))
        }
        ("ocr", "classify_lines") => Box::new(ocr::classify::ClassifyLines::new(
            ocr::classify::Config { min_confidence: ocr_settings.cls_thresh, ..Default::default() },
            model(models, MODEL_CLS)?,
        )),
        ("ocr", "recognize_text") => Box::new(ocr::recognize::RecognizeText::new(
            ocr::recognize::Config {
                batch_size: ocr_settings.rec_batch as usize,
                min_score: ocr_settings.rec_score_thresh,
                ..Default::default()
            },
            model(models, MODEL_REC)?,
        )?),
        ("enrich", "order_reading") => {
            Box::new(enrich::reading_order::OrderReading::new(Default::default()))
        }
        ("enrich", "detect_language") => {
            Box::new(enrich::language::DetectLanguage::new(enrich::language::Config {
                min_confidence: topology.enrich().min_language_confidence,
                ..Default::default()
            }))
        }
        ("enrich", "extract_fields") => Box::new(enrich::fields::ExtractFields::default()),
        ("enrich", "build_tables") => Box::new(enrich::tables::BuildTables::default()),
        ("enrich", "classify_page") => Box::new(enrich::classify::ClassifyPage::default()),
        (stage, step) => {
            return Err(BuildError::UnknownStep { stage: stage.into(), step: step.into() });
        }
    };
    Ok(step)
}
