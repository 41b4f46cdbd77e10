//! Stage `preprocess`: make the page upright and straight.

pub mod deskew;
pub mod orient;
