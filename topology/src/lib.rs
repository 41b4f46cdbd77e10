//! The pagestream pipeline definition: stages and their steps, the models
//! they use, subjects, streams, consumers and scaling, read from
//! `pipeline.toml` and validated with errors that point at the line.
//!
//! The crate does no network I/O; it reads the pipeline file and, in
//! [`Pipeline::verify_models`], the model files.
//!
//! The steps a stage may run are not known here: the crate that implements
//! them passes its [`catalogue::Catalogue`] to the loader, so that the step
//! table is written once, next to the steps.

pub mod catalogue;
mod check;
mod duration;
mod error;
mod moved;
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
    ConsumerSettings, Discard, Limits, Model, Resources, Retention, ScalingPolicy, StepTable,
    Storage, StreamSettings, Streams, Tenant, Webhook, WebhookSettings,
};
