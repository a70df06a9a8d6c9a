//! The one integration test binary: real files, real servers on port 0.

mod admin;
mod diff;
mod geoip;
mod middleware;
mod nginx;
mod privacy;
mod redis_server;
mod rules;
mod serve_binary;
mod server;
mod store;
mod support;
mod timeline;
mod timing;
