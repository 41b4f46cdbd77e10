//! The `pagestream` command line: every subcommand ([`cli`]) and the
//! Kubernetes manifests rendered from the topology ([`deploy`]), on top of
//! the crates `pages` (page analysis) and `runtime` (transports).

pub mod cli;
pub mod deploy;
