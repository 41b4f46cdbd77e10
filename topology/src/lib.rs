//! The pagestream pipeline definition: stages and their steps, the models
//! they use, subjects, streams, consumers and scaling, read from
//! `pipeline.toml` and validated with errors that point at the line.
//!
//! The crate does no network I/O; it reads the pipeline file and, in
//! [`Pipeline::verify_models`], the model files.
//!
//! ```
//! let pipeline = topology::Pipeline::embedded().unwrap();
//! let ocr = pipeline.stage("ocr").unwrap();
//! assert_eq!(ocr.steps(), ["detect_text", "classify_lines", "recognize_text"]);
//! assert_eq!(pipeline.stages().first().map(|s| s.name()), Some("split"));
//! ```

pub mod catalogue;
mod check;
mod duration;
mod error;
mod pipeline;
pub mod scaling;
mod settings;
mod source;
mod validate;

pub use check::{CheckReport, check};
pub use duration::parse as parse_duration;
pub use error::{Location, TopologyError};
pub use pipeline::{DEFAULT_MODEL_DIR, EMBEDDED, EMBEDDED_ORIGIN, Pipeline, Stage};
pub use settings::{
    ConsumerSettings, Discard, EnrichSettings, LayoutSettings, Limits, Model, OcrSettings,
    PreprocessSettings, RenderSettings, Resources, Retention, ScalingPolicy, Storage,
    StreamSettings, Streams, Tenant, Webhook, WebhookSettings,
};
