//! The pipeline definition: loading, the validated [`Pipeline`] and its stages.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File as FsFile;
use std::io;
use std::path::{Path, PathBuf};

use serde::de::{SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use sha2::{Digest, Sha256};

use crate::catalogue::Catalogue;
use crate::error::{Location, TopologyError};
use crate::settings::{
    ConsumerSettings, Limits, Model, Resources, ScalingPolicy, StepTable, Streams, Tenant,
    WebhookSettings,
};
use crate::source::{Source, key_path};
use crate::validate;

/// The pipeline definition shipped with pagestream (`topology/pipeline.toml`).
pub const EMBEDDED: &str = include_str!("../pipeline.toml");
/// The name errors in [`EMBEDDED`] are reported under.
pub const EMBEDDED_ORIGIN: &str = "pipeline.toml";
/// Where model files are looked for unless told otherwise.
pub const DEFAULT_MODEL_DIR: &str = ".pagestream/models";

/// A stage: a group of steps run in order by one worker pool, reading its
/// pages from one subject.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    /// The stage's name, the key of its `[stages.<name>]` table.
    #[serde(skip)]
    pub(crate) name: String,
    /// Last token of the input subject; the stage name when absent.
    #[serde(default)]
    pub(crate) subject: Option<String>,
    /// Steps, in the order they run.
    pub(crate) steps: Vec<String>,
    /// Stages that receive the page next: a name or a list of names.
    #[serde(default, deserialize_with = "one_or_many")]
    pub(crate) next: Vec<String>,
    /// Models the steps use.
    #[serde(default)]
    pub(crate) models: Vec<String>,
    /// Pages one worker processes at the same time.
    #[serde(default = "one")]
    pub(crate) concurrency: u32,
    /// The stage's consumer.
    #[serde(default)]
    pub(crate) consumer: ConsumerSettings,
    /// How the stage's pool scales.
    #[serde(default)]
    pub(crate) scaling: ScalingPolicy,
    /// CPU and memory of one replica.
    #[serde(default)]
    pub(crate) resources: Resources,
    /// Whether a step reads the document bytes; set by validation.
    #[serde(skip)]
    pub(crate) reads_document: bool,
}

fn one() -> u32 {
    1
}

impl Stage {
    /// The stage's name, e.g. `ocr`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The last token of the stage's input subject
    /// `pagestream.<tenant>.pages.<subject>`.
    pub fn subject(&self) -> &str {
        self.subject.as_deref().unwrap_or(&self.name)
    }

    /// The steps, in the order they run.
    pub fn steps(&self) -> &[String] {
        &self.steps
    }

    /// The stages that receive the page next; empty for the exit stage.
    pub fn next(&self) -> &[String] {
        &self.next
    }

    /// The names of the models the stage's steps use.
    pub fn models(&self) -> &[String] {
        &self.models
    }

    /// Whether a step of the stage reads the document bytes (see
    /// [`crate::catalogue::StepInfo::reads_document`]).
    pub fn reads_document(&self) -> bool {
        self.reads_document
    }

    /// Pages one worker of this stage processes at the same time.
    pub fn concurrency(&self) -> u32 {
        self.concurrency
    }

    /// The stage's consumer settings.
    pub fn consumer(&self) -> &ConsumerSettings {
        &self.consumer
    }

    /// The stage's scaling policy.
    pub fn scaling(&self) -> &ScalingPolicy {
        &self.scaling
    }

    /// CPU and memory one replica of the stage asks for and may use.
    pub fn resources(&self) -> &Resources {
        &self.resources
    }
}

/// `next = "render"` or `next = ["a", "b"]`.
fn one_or_many<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    struct OneOrMany;

    impl<'de> Visitor<'de> for OneOrMany {
        type Value = Vec<String>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a stage name or a list of stage names")
        }

        fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<Self::Value, E> {
            Ok(vec![name.to_owned()])
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut names = Vec::new();
            while let Some(name) = seq.next_element()? {
                names.push(name);
            }
            Ok(names)
        }
    }

    deserializer.deserialize_any(OneOrMany)
}

/// A pipeline file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct File {
    #[serde(default)]
    pub(crate) limits: Limits,
    #[serde(default)]
    pub(crate) steps: BTreeMap<String, toml::Table>,
    #[serde(default)]
    pub(crate) models: BTreeMap<String, Model>,
    pub(crate) streams: Streams,
    pub(crate) stages: BTreeMap<String, Stage>,
    #[serde(default)]
    pub(crate) tenants: BTreeMap<String, Tenant>,
    #[serde(default)]
    pub(crate) webhooks: WebhookSettings,
}

/// Where a model's keys are in the file, for errors found after loading.
#[derive(Debug, Clone)]
struct ModelSites {
    path: Location,
    sha256: Location,
}

/// A validated pipeline: stages in topological order, models and settings.
#[derive(Debug, Clone)]
pub struct Pipeline {
    origin: String,
    limits: Limits,
    steps: BTreeMap<String, StepTable>,
    models: BTreeMap<String, Model>,
    model_sites: BTreeMap<String, ModelSites>,
    streams: Streams,
    stages: Vec<Stage>,
    tenants: BTreeMap<String, Tenant>,
    webhooks: WebhookSettings,
}

impl Pipeline {
    /// Parses and validates a pipeline against the steps and rule kinds of
    /// `catalogue`; `origin` names the text in errors.
    ///
    /// Returns every problem found: all syntax errors, or else every key
    /// of a section that has moved, or else the first key or type error, or
    /// else every semantic error, sorted by position. Model files are not
    /// looked at; see [`Pipeline::verify_models`].
    pub fn from_str(
        text: &str,
        origin: &str,
        catalogue: &Catalogue,
    ) -> Result<Pipeline, Vec<TopologyError>> {
        let source = Source::parse(text, origin)?;
        crate::moved::check(&source)?;
        let mut file =
            File::deserialize(source.document()).map_err(|e| vec![source.deserialize_error(&e)])?;
        for (name, stage) in &mut file.stages {
            stage.name.clone_from(name);
        }
        let order = validate::check(&mut file, &source, catalogue)?;
        let model_sites = file
            .models
            .keys()
            .map(|name| {
                let sites = ModelSites {
                    path: source.at(&key_path!["models", name, "path"]),
                    sha256: source.at(&key_path!["models", name, "sha256"]),
                };
                (name.clone(), sites)
            })
            .collect();
        let stages = order.iter().filter_map(|name| file.stages.remove(name)).collect();
        Ok(Pipeline {
            origin: origin.to_owned(),
            limits: file.limits,
            steps: file.steps.into_iter().map(|(name, table)| (name, step_table(table))).collect(),
            models: file.models,
            model_sites,
            streams: file.streams,
            stages,
            tenants: file.tenants,
            webhooks: file.webhooks,
        })
    }

    /// Reads, parses and validates the pipeline file at `path`.
    pub fn load(path: &Path, catalogue: &Catalogue) -> Result<Pipeline, Vec<TopologyError>> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| vec![TopologyError::Read { path: path.to_owned(), source }])?;
        Pipeline::from_str(&text, &path.display().to_string(), catalogue)
    }

    /// The pipeline shipped with pagestream ([`EMBEDDED`]).
    pub fn embedded(catalogue: &Catalogue) -> Result<Pipeline, Vec<TopologyError>> {
        Pipeline::from_str(EMBEDDED, EMBEDDED_ORIGIN, catalogue)
    }

    /// The directory relative paths in the pipeline are resolved against
    /// (rule steps' table files): the file's directory, or the working
    /// directory for the embedded pipeline.
    pub fn base_dir(&self) -> PathBuf {
        if self.origin == EMBEDDED_ORIGIN {
            return PathBuf::new();
        }
        Path::new(&self.origin).parent().map(Path::to_owned).unwrap_or_default()
    }

    /// The name the pipeline was loaded under (a file path or `pipeline.toml`).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The stages in topological order, `split` first and `assemble` last.
    pub fn stages(&self) -> &[Stage] {
        &self.stages
    }

    /// The stage called `name`.
    pub fn stage(&self, name: &str) -> Option<&Stage> {
        self.stages.iter().find(|stage| stage.name == name)
    }

    /// The models by name.
    pub fn models(&self) -> &BTreeMap<String, Model> {
        &self.models
    }

    /// The model called `name`.
    pub fn model(&self, name: &str) -> Option<&Model> {
        self.models.get(name)
    }

    /// The file of model `name` inside `model_dir`.
    pub fn model_path(&self, name: &str, model_dir: &Path) -> Option<PathBuf> {
        self.model(name).map(|model| model_dir.join(&model.path))
    }

    /// The stream settings.
    pub fn streams(&self) -> &Streams {
        &self.streams
    }

    /// Document and page limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The `[steps.<name>]` table of step `name`, if the file has one (a
    /// built-in step without one runs with its defaults).
    pub fn step_table(&self, name: &str) -> Option<&StepTable> {
        self.steps.get(name)
    }

    /// Every `[steps.<name>]` table, by step name.
    pub fn step_tables(&self) -> &BTreeMap<String, StepTable> {
        &self.steps
    }

    /// The declared tenants; empty when every well-formed tenant name is
    /// accepted.
    pub fn tenants(&self) -> &BTreeMap<String, Tenant> {
        &self.tenants
    }

    /// Whether documents of `tenant` are accepted: any tenant when none is
    /// declared, else only the declared ones. (Whether the name is
    /// well-formed is checked where it enters, see `schemas::subjects`.)
    pub fn accepts_tenant(&self, tenant: &str) -> bool {
        self.tenants.is_empty() || self.tenants.contains_key(tenant)
    }

    /// How webhooks are delivered.
    pub fn webhooks(&self) -> &WebhookSettings {
        &self.webhooks
    }

    /// Checks that every model file exists in `model_dir` and has its sha256;
    /// returns every problem found.
    pub fn verify_models(&self, model_dir: &Path) -> Result<(), Vec<TopologyError>> {
        let errors: Vec<TopologyError> = self
            .models
            .iter()
            .filter_map(|(name, model)| {
                verify_model(name, model, self.model_sites.get(name)?, model_dir)
            })
            .collect();
        if errors.is_empty() { Ok(()) } else { Err(errors) }
    }
}

/// A `[steps.<name>]` table split into its rule kind and its settings.
pub(crate) fn step_table(mut settings: toml::Table) -> StepTable {
    let kind = match settings.remove("kind") {
        Some(toml::Value::String(kind)) => Some(kind),
        Some(other) => {
            // validation refuses a non-string kind; keep it visible anyway
            settings.insert("kind".into(), other);
            None
        }
        None => None,
    };
    StepTable { kind, settings }
}

/// The problem with model `name`'s file, if any.
fn verify_model(
    name: &str,
    model: &Model,
    sites: &ModelSites,
    model_dir: &Path,
) -> Option<TopologyError> {
    let path = model_dir.join(&model.path);
    let model_name = name.to_owned();
    match sha256_file(&path) {
        Ok(actual) if actual == model.sha256 => None,
        Ok(actual) => Some(TopologyError::ModelChecksum {
            at: sites.sha256.clone(),
            model: model_name,
            path,
            expected: model.sha256.clone(),
            actual,
        }),
        Err(source) if source.kind() == io::ErrorKind::NotFound => {
            Some(TopologyError::ModelMissing { at: sites.path.clone(), model: model_name, path })
        }
        Err(source) => Some(TopologyError::ModelUnreadable {
            at: sites.path.clone(),
            model: model_name,
            path,
            source,
        }),
    }
}

/// The sha256 of a file as lowercase hex, read in chunks.
fn sha256_file(path: &Path) -> io::Result<String> {
    let mut hasher = Sha256::new();
    io::copy(&mut FsFile::open(path)?, &mut hasher)?;
    Ok(hex::encode(hasher.finalize()))
}
