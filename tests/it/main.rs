//! The one integration test binary: real files, real servers on port 0.

mod admin;
mod bypass;
mod caddy;
mod conformance;
mod console;
mod deploy;
mod diff;
mod envoy;
mod geoip;
mod laws;
mod limits;
mod middleware;
mod nginx;
mod observability;
mod privacy;
mod redis_server;
mod rules;
mod serve_binary;
mod server;
mod status;
mod store;
mod support;
mod timeline;
mod timing;
mod traefik;
mod transparency;
