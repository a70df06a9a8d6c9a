//! The one integration test binary: real files, real servers on port 0.

mod diff;
mod geoip;
mod rules;
mod support;
mod timeline;
mod timing;
