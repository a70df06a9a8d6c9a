//! The one integration test binary: real files, real servers on port 0.

mod diff;
mod geoip;
mod redis_server;
mod rules;
mod store;
mod support;
mod timeline;
mod timing;
