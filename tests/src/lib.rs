//! Cross-crate integration tests for Nucleon live in `tests/tests/`.
