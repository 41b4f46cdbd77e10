//! Step `deskew`: estimate and correct small skew angles.
