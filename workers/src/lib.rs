//! The pagestream worker runtime: stage steps, model inference, transports
//! and the command line behind the `pagestream` binary.

pub mod blobs;
pub mod cli;
pub mod client;
pub mod deploy;
pub mod embedded;
pub mod error;
pub mod home;
pub mod images;
pub mod jetstream;
pub mod metrics;
pub mod models;
pub mod output;
pub mod page;
pub mod pdf;
pub mod pipeline;
pub mod registry;
pub mod shutdown;
pub mod steps;
pub mod supervisor;
