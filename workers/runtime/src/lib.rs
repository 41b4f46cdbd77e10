//! The transports that move pages between stages, and what runs around
//! them: the in-process transport ([`embedded`]), the JetStream transport
//! ([`jetstream`]: workers, split, assemble, streams, webhooks), the object
//! store ([`blobs`]), Prometheus metrics, the client commands' library
//! ([`client`]), document outputs, and the supervisor of worker pools on
//! one host ([`supervisor`]).

pub mod blobs;
pub mod client;
pub mod embedded;
pub mod jetstream;
pub mod metrics;
pub mod output;
pub mod shutdown;
pub mod supervisor;
