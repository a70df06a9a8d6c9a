//! The one integration test binary: real files, real servers on port 0.

mod rules;
mod support;
