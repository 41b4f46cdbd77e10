//! Page analysis: the in-memory [`page::Page`], the step table and every
//! step ([`steps`]), ONNX model inference ([`models`]), PDF and image
//! decoding, the [`pipeline::Stage`] that runs steps on a page, and the
//! [`registry`] that builds a pipeline from a topology.
//!
//! Synchronous CPU code only: no async runtime, no NATS. The transports
//! (crate `runtime`) call into it.

pub mod error;
pub mod home;
pub mod images;
pub mod models;
pub mod page;
pub mod pdf;
pub mod pipeline;
pub mod registry;
pub mod steps;
