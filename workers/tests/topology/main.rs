//! The pipeline file as the binary loads it: the topology crate's loader
//! with the step table of this crate (`pages::steps::catalogue()`).

#![allow(clippy::unwrap_used)]

mod broken;
mod models;
mod pipeline;

/// The step table the loader checks against.
fn steps() -> &'static topology::catalogue::Catalogue {
    pages::steps::catalogue()
}
