//! Stage steps. Every step is a module with its `Config`, the step and its tests.
