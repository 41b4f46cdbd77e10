//! The pagestream worker runtime: stage steps, model inference, transports
//! and the command line behind the `pagestream` binary.

pub mod error;
pub mod page;
pub mod steps;
