//! The one integration test binary: real files, real servers on port 0.

mod redis_server;
mod rules;
mod store;
mod support;
