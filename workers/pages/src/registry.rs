//! Builds the runnable pipeline from the topology: loads PDFium and the
//! models the stages use (once per process) and creates each stage's steps
//! with their settings.

use std::collections::BTreeMap;

use topology::Pipeline as Topology;

use crate::home::Home;
use crate::models::{ModelError, ModelSpec, Models};
use crate::pipeline::{Pipeline, Stage};
use crate::steps::{self, BuildContext, Step, split};

/// Why the pipeline could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Pdfium(#[from] crate::pdf::PdfiumLoadError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Step(#[from] steps::BuildError),
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
    let base_dir = topology.base_dir();
    let context = BuildContext { limits: topology.limits(), models: &models, base_dir: &base_dir };
    let mut stages = Vec::new();
    for spec in served {
        // Split and assemble are document-level; the transports run them.
        if spec.name() == ENTRY_STAGE || spec.name() == EXIT_STAGE {
            continue;
        }
        let steps = spec
            .steps()
            .iter()
            .map(|step| build_step(topology, &context, spec.name(), step))
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

/// Builds every rule step of `topology` and drops it, to find what only
/// building shows (a lookup's table file missing or malformed) without
/// loading models or PDFium; returns the failures, by step name.
pub fn check_rule_steps(topology: &Topology) -> Vec<steps::BuildError> {
    let models = Models::default();
    let base_dir = topology.base_dir();
    let context = BuildContext { limits: topology.limits(), models: &models, base_dir: &base_dir };
    let rule = |kind: &str| steps::RULE_KINDS.iter().find(|rule| rule.info.name == kind);
    topology
        .step_tables()
        .iter()
        .filter_map(|(name, table)| {
            let rule = rule(table.kind.as_deref()?)?;
            (rule.build)(name, &context, &table.settings).err()
        })
        .collect()
}

/// Builds step `step` of `stage`: a built-in one from [`steps::BUILTIN`],
/// or a rule step from its kind in [`steps::RULE_KINDS`].
fn build_step(
    topology: &Topology,
    context: &BuildContext<'_>,
    stage: &str,
    step: &str,
) -> Result<Box<dyn Step>, BuildError> {
    let table = topology.step_table(step);
    let empty = toml::Table::new();
    let settings = table.map_or(&empty, |table| &table.settings);
    let unknown = || BuildError::UnknownStep { stage: stage.into(), step: step.into() };
    if let Some(def) = steps::builtin(step).filter(|def| def.info.stage == stage) {
        let build = def.build.ok_or_else(unknown)?;
        return Ok(build(context, settings)?);
    }
    let kind = table.and_then(|table| table.kind.as_deref()).ok_or_else(unknown)?;
    let rule = steps::RULE_KINDS.iter().find(|rule| rule.info.name == kind).ok_or_else(unknown)?;
    Ok((rule.build)(step, context, settings)?)
}
