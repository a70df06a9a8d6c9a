//! The one integration test binary: real files, real servers on port 0.

mod geoip;
mod serve_binary;
mod server;
mod support;
