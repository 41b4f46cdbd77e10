//! Step `orient`: page orientation model and rotation.
