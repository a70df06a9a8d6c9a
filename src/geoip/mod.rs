//! GeoIP: MaxMind DB files resolved to a [`crate::location::Location`], loaded into
//! memory, checked, swapped atomically and reloaded when the file changes. Never
//! memory-maps a database and never writes a client address to a log or an error.

mod bundled;
#[cfg(feature = "server")]
pub mod cli;
mod db;
mod handle;
mod records;
mod verify;

pub use bundled::{bytes as bundled_bytes, BUNDLED_SOURCE};
pub use db::{canonical_ip, FieldPath, GeoDb, GeoDbError, Layout, LayoutChoice, LookupOptions};
pub use handle::{GeoIp, GeoIpConfig, GeoIpWatch, ReloadResult, ReloadStatus, WatchError};
