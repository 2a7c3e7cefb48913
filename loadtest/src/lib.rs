//! # qbill-loadtest, the library
//!
//! What other crates share with the load tester (the binary, `main.rs`, is the rest):
//! - [`runtime_api`]: the stand-in of the Lambda Runtime API that runs the real `bootstrap`
//!   binary here, for the Lambda tests, the memory benchmark and `lambda-duration`.

pub mod runtime_api;
