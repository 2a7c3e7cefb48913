//! Shared helpers live in the test binaries.
