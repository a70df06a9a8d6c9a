//! marketgate: decides per request whether the market a request comes from is served,
//! limited or withdrawn. The library holds everything; `main.rs` only parses the command
//! line and maps the result to an exit code.
//!
//! The library surface covered by the semver policy (CHANGELOG.md) is what these docs
//! show: [`middleware`], the embedded gate for actix-web, built with
//! [`middleware::MarketGate::builder`], and [`client`], a typed client of a `serve`
//! fleet for apps that call it over the network. Every other module is public only for the binary,
//! the tests and the benches, hidden from the docs and free to change in any release.
//!
//! Cargo features: `server` (the default) has everything; `client` is the typed client
//! alone; without either the crate is the engine and the rules alone
//! (`examples/decide.rs`), not yet a documented surface.
#![deny(missing_docs)]

#[cfg(feature = "server")]
#[doc(hidden)]
// Internal docs link private items for readers of the code (`--document-private-items`).
#[allow(rustdoc::private_intra_doc_links, rustdoc::broken_intra_doc_links)]
pub mod cli;
#[cfg(feature = "client")]
pub mod client;
#[cfg(feature = "server")]
#[doc(hidden)]
// Internal docs link private items for readers of the code (`--document-private-items`).
#[allow(rustdoc::private_intra_doc_links, rustdoc::broken_intra_doc_links)]
pub mod client_addr;
#[cfg(feature = "server")]
#[doc(hidden)]
// Internal docs link private items for readers of the code (`--document-private-items`).
#[allow(rustdoc::private_intra_doc_links, rustdoc::broken_intra_doc_links)]
pub mod config;
#[doc(hidden)]
// Internal docs link private items for readers of the code (`--document-private-items`).
#[allow(rustdoc::private_intra_doc_links, rustdoc::broken_intra_doc_links)]
pub mod diff;
#[doc(hidden)]
// Internal docs link private items for readers of the code (`--document-private-items`).
#[allow(rustdoc::private_intra_doc_links, rustdoc::broken_intra_doc_links)]
pub mod engine;
#[doc(hidden)]
// Internal docs link private items for readers of the code (`--document-private-items`).
#[allow(rustdoc::private_intra_doc_links, rustdoc::broken_intra_doc_links)]
pub mod explain;
#[cfg(feature = "geoip")]
#[doc(hidden)]
// Internal docs link private items for readers of the code (`--document-private-items`).
#[allow(rustdoc::private_intra_doc_links, rustdoc::broken_intra_doc_links)]
pub mod geoip;
#[doc(hidden)]
// Internal docs link private items for readers of the code (`--document-private-items`).
#[allow(rustdoc::private_intra_doc_links, rustdoc::broken_intra_doc_links)]
pub mod git;
#[cfg(feature = "server")]
#[doc(hidden)]
// Internal docs link private items for readers of the code (`--document-private-items`).
#[allow(rustdoc::private_intra_doc_links, rustdoc::broken_intra_doc_links)]
pub mod governance;
#[doc(hidden)]
// Internal docs link private items for readers of the code (`--document-private-items`).
#[allow(rustdoc::private_intra_doc_links, rustdoc::broken_intra_doc_links)]
pub mod iso;
// Generated (tools/gen-iso.py); reached only through the hidden `iso`.
#[allow(missing_docs)]
mod iso_data;
#[doc(hidden)]
// Internal docs link private items for readers of the code (`--document-private-items`).
#[allow(rustdoc::private_intra_doc_links, rustdoc::broken_intra_doc_links)]
pub mod location;
#[cfg(feature = "server")]
pub mod middleware;
#[doc(hidden)]
// Internal docs link private items for readers of the code (`--document-private-items`).
#[allow(rustdoc::private_intra_doc_links, rustdoc::broken_intra_doc_links)]
pub mod overrides;
#[doc(hidden)]
// Internal docs link private items for readers of the code (`--document-private-items`).
#[allow(rustdoc::private_intra_doc_links, rustdoc::broken_intra_doc_links)]
pub mod path;
#[doc(hidden)]
// Internal docs link private items for readers of the code (`--document-private-items`).
#[allow(rustdoc::private_intra_doc_links, rustdoc::broken_intra_doc_links)]
pub mod phone;
#[doc(hidden)]
// Internal docs link private items for readers of the code (`--document-private-items`).
#[allow(rustdoc::private_intra_doc_links, rustdoc::broken_intra_doc_links)]
pub mod rules;
#[cfg(feature = "server")]
#[doc(hidden)]
// Internal docs link private items for readers of the code (`--document-private-items`).
#[allow(rustdoc::private_intra_doc_links, rustdoc::broken_intra_doc_links)]
pub mod server;
#[doc(hidden)]
// Internal docs link private items for readers of the code (`--document-private-items`).
#[allow(rustdoc::private_intra_doc_links, rustdoc::broken_intra_doc_links)]
pub mod status;
#[cfg(feature = "server")]
#[doc(hidden)]
// Internal docs link private items for readers of the code (`--document-private-items`).
#[allow(rustdoc::private_intra_doc_links, rustdoc::broken_intra_doc_links)]
pub mod store;
#[cfg(feature = "server")]
#[doc(hidden)]
// Internal docs link private items for readers of the code (`--document-private-items`).
#[allow(rustdoc::private_intra_doc_links, rustdoc::broken_intra_doc_links)]
pub mod telemetry;
#[doc(hidden)]
// Internal docs link private items for readers of the code (`--document-private-items`).
#[allow(rustdoc::private_intra_doc_links, rustdoc::broken_intra_doc_links)]
pub mod timeline;
#[doc(hidden)]
// Internal docs link private items for readers of the code (`--document-private-items`).
#[allow(rustdoc::private_intra_doc_links, rustdoc::broken_intra_doc_links)]
pub mod transparency;
