//! marketgate: decides per request whether the market a request comes from is served,
//! limited or withdrawn. The library holds everything; `main.rs` only parses the command
//! line and maps the result to an exit code.

pub mod cli;
pub mod client;
pub mod client_addr;
pub mod config;
pub mod diff;
pub mod engine;
pub mod explain;
pub mod geoip;
pub mod git;
pub mod governance;
pub mod iso;
mod iso_data;
pub mod location;
pub mod middleware;
pub mod overrides;
pub mod path;
pub mod phone;
pub mod rules;
pub mod server;
pub mod status;
pub mod store;
pub mod telemetry;
pub mod timeline;
pub mod transparency;
