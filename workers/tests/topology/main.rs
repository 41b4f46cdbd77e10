//! The pipeline file as the binary loads it: the topology crate's loader
//! with the step table of this crate (`workers::steps::catalogue()`).

#![allow(clippy::unwrap_used)]

mod broken;
mod models;
mod pipeline;

/// The step table the loader checks against.
fn steps() -> &'static topology::catalogue::Catalogue {
    workers::steps::catalogue()
}
