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
//! Cargo features, each a layer over the one before: none, the engine and the rules
//! alone (`examples/decide.rs`, not yet a documented surface); `geoip`, plus the GeoIP
//! reader (a file the caller names); `bundled-geoip`, plus the country database inside
//! the binary; `middleware`, plus [`middleware`] (the embedded gate, its override store
//! and metrics); `redis`, plus the Redis override store shared with a `serve` fleet
//! (`MarketGateBuilder::redis`); `client`, [`client`] on its own; `server` (the
//! default), all of them plus the HTTP listeners and the command line.
#![deny(missing_docs)]

/// Modules public for the binary, the tests and the benches, hidden from the documented
/// surface and outside the semver policy. Their docs link private items for readers of
/// the code (`--document-private-items`), so rustdoc's link lints are off there only.
macro_rules! internal {
    ($($(#[$attr:meta])* $name:ident;)*) => {
        $(
            $(#[$attr])*
            #[doc(hidden)]
            #[allow(rustdoc::private_intra_doc_links, rustdoc::broken_intra_doc_links)]
            pub mod $name;
        )*
    };
}

#[cfg(feature = "client")]
pub mod client;
#[cfg(feature = "middleware")]
pub mod middleware;

internal! {
    #[cfg(feature = "server")]
    cli;
    #[cfg(feature = "middleware")]
    client_addr;
    #[cfg(feature = "middleware")]
    config;
    diff;
    engine;
    explain;
    #[cfg(feature = "geoip")]
    geoip;
    git;
    #[cfg(feature = "middleware")]
    governance;
    iso;
    location;
    overrides;
    path;
    phone;
    rules;
    #[cfg(feature = "middleware")]
    server;
    status;
    #[cfg(feature = "middleware")]
    store;
    #[cfg(feature = "middleware")]
    telemetry;
    timeline;
    transparency;
}

// Generated (tools/gen-iso.py); reached only through the hidden `iso`.
#[allow(missing_docs)]
mod iso_data;
