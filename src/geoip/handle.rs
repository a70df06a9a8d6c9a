//! The GeoIP database in service: an atomically swappable [`GeoDb`], reloads that keep
//! the old database on failure, and a directory watch that reloads after `geoipupdate`
//! renames a new file in. Logs database facts only, never a client address.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use arc_swap::ArcSwap;
use serde::Deserialize;

use super::bundled::BUNDLED_SOURCE;
use super::db::{GeoDb, GeoDbError, LayoutChoice, LookupOptions};
use crate::location::Location;

/// GeoIP settings, as they come from the config file (`geoip:`) or flags.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GeoIpConfig {
    /// The MaxMind DB file. `None`: the bundled database.
    pub path: Option<PathBuf>,
    /// Which fields hold the country and subdivision (`auto` detects).
    pub layout: LayoutChoice,
    /// Fall back to `registered_country` for records without a country.
    pub fallback_registered_country: bool,
    /// Warn when the database was built more than this many days ago; 0 never warns.
    pub max_age_days: u32,
    /// Watch the file's directory and reload on change.
    pub watch: bool,
    /// Quiet time after the last file event before reloading, in milliseconds.
    pub debounce_ms: u64,
    /// When `path` does not exist at load, serve the bundled database until it
    /// appears (the watch loads it) instead of failing.
    pub bundled_until_present: bool,
}

impl Default for GeoIpConfig {
    fn default() -> Self {
        GeoIpConfig {
            path: None,
            layout: LayoutChoice::Auto,
            fallback_registered_country: false,
            max_age_days: 30,
            watch: true,
            debounce_ms: 500,
            bundled_until_present: false,
        }
    }
}

impl GeoIpConfig {
    pub fn lookup_options(&self) -> LookupOptions {
        LookupOptions {
            layout: self.layout.clone(),
            fallback_registered_country: self.fallback_registered_country,
        }
    }
}

/// The outcome of the last load or reload, for metrics and the ops console.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReloadResult {
    Loaded,
    Failed,
}

impl ReloadResult {
    pub fn as_str(&self) -> &'static str {
        match self {
            ReloadResult::Loaded => "loaded",
            ReloadResult::Failed => "failed",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReloadStatus {
    pub at: jiff::Timestamp,
    pub result: ReloadResult,
    /// The error and its causes, for a failed reload. Never holds a client address.
    pub error: Option<String>,
}

/// Why the directory watch could not start.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("the bundled geoip database has no file to watch")]
    Bundled,
    #[error("geoip database path {0} has no file name or parent directory")]
    BadPath(PathBuf),
    #[error("cannot watch directory {path}")]
    Notify {
        path: PathBuf,
        #[source]
        source: notify::Error,
    },
    #[error("cannot start the geoip watch thread")]
    Spawn(#[source] std::io::Error),
}

/// The GeoIP database in service. Lookups read the current snapshot lock-free; a reload
/// builds and checks a new [`GeoDb`] and swaps it in only when it is good.
pub struct GeoIp {
    current: ArcSwap<GeoDb>,
    path: Option<PathBuf>,
    options: LookupOptions,
    max_age_days: u32,
    debounce: Duration,
    last_reload: Mutex<ReloadStatus>,
    reloads_loaded: AtomicU64,
    reloads_failed: AtomicU64,
}

impl std::fmt::Debug for GeoIp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeoIp")
            .field("source", &self.source())
            .field("current", &*self.current.load())
            .finish_non_exhaustive()
    }
}

impl GeoIp {
    /// Loads the configured file, or the bundled database when none is configured, and
    /// logs what was loaded. Fails when the file is refused: at start there is no older
    /// database to keep.
    pub fn load(config: &GeoIpConfig) -> Result<GeoIp, GeoDbError> {
        let options = config.lookup_options();
        let db = match &config.path {
            Some(path) if config.bundled_until_present && !path.exists() => {
                // A file that is not there yet (a fresh volume the updater has not
                // filled): start, and take the file when the watch sees it. A file that
                // is there but bad still fails below.
                tracing::warn!(
                    path = %path.display(),
                    "geoip file not present yet; serving the bundled country database until it appears"
                );
                GeoDb::bundled(&options)?
            }
            Some(path) => GeoDb::open(path, &options)?,
            None => GeoDb::bundled(&options)?,
        };
        Ok(GeoIp::from_db(db, config))
    }

    /// Puts an already loaded database in service.
    pub fn from_db(db: GeoDb, config: &GeoIpConfig) -> GeoIp {
        let geoip = GeoIp {
            current: ArcSwap::from_pointee(db),
            path: config.path.clone(),
            options: config.lookup_options(),
            max_age_days: config.max_age_days,
            debounce: Duration::from_millis(config.debounce_ms),
            last_reload: Mutex::new(ReloadStatus {
                at: jiff::Timestamp::now(),
                result: ReloadResult::Loaded,
                error: None,
            }),
            reloads_loaded: AtomicU64::new(0),
            reloads_failed: AtomicU64::new(0),
        };
        let db = geoip.current();
        tracing::info!(
            source = %geoip.source(),
            database_type = db.database_type(),
            build_time = %db.build_time(),
            layout = db.layout().name(),
            "geoip database loaded"
        );
        geoip.warn_if_old(&db);
        geoip
    }

    /// The location of an address in the current database.
    #[inline]
    pub fn lookup(&self, ip: IpAddr) -> Location {
        self.current.load().lookup(ip)
    }

    /// The database in service now.
    pub fn current(&self) -> Arc<GeoDb> {
        self.current.load_full()
    }

    /// The configured file, or the bundled database's name.
    pub fn source(&self) -> String {
        match &self.path {
            Some(path) => path.display().to_string(),
            None => BUNDLED_SOURCE.to_owned(),
        }
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// `database_type` of the database in service, for a metric label.
    pub fn database_type(&self) -> String {
        self.current.load().database_type().to_owned()
    }

    /// Build time of the database in service, seconds since the Unix epoch.
    pub fn build_epoch(&self) -> u64 {
        self.current.load().build_epoch()
    }

    /// The last load or reload and its result.
    pub fn last_reload(&self) -> ReloadStatus {
        self.last_reload
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Reloads counted by result since start: `(loaded, failed)`.
    pub fn reload_counts(&self) -> (u64, u64) {
        (
            self.reloads_loaded.load(Ordering::Relaxed),
            self.reloads_failed.load(Ordering::Relaxed),
        )
    }

    /// Reads and checks the file again and swaps it in when it is good. On failure the
    /// database in service stays, and the failure is logged and recorded. The bundled
    /// database never changes, so reloading it is a no-op.
    pub fn reload(&self) -> Result<Arc<GeoDb>, GeoDbError> {
        let Some(path) = &self.path else {
            return Ok(self.current());
        };
        match GeoDb::open(path, &self.options) {
            Ok(db) => {
                let db = Arc::new(db);
                self.current.store(Arc::clone(&db));
                self.reloads_loaded.fetch_add(1, Ordering::Relaxed);
                self.record(ReloadResult::Loaded, None);
                tracing::info!(
                    path = %path.display(),
                    database_type = db.database_type(),
                    build_time = %db.build_time(),
                    layout = db.layout().name(),
                    "geoip database reloaded"
                );
                self.warn_if_old(&db);
                Ok(db)
            }
            Err(err) => {
                let message = error_chain(&err);
                self.reloads_failed.fetch_add(1, Ordering::Relaxed);
                self.record(ReloadResult::Failed, Some(message.clone()));
                let kept = self.current.load();
                tracing::error!(
                    path = %path.display(),
                    error = %message,
                    kept_build_time = %kept.build_time(),
                    "geoip database refused, keeping the one in service"
                );
                Err(err)
            }
        }
    }

    /// Whether the database in service is older than the configured maximum age.
    pub fn is_stale(&self) -> bool {
        self.age_days(&self.current.load())
            .is_some_and(|days| self.max_age_days > 0 && days > i64::from(self.max_age_days))
    }

    fn age_days(&self, db: &GeoDb) -> Option<i64> {
        let age = jiff::Timestamp::now().duration_since(db.build_time());
        Some(age.as_secs() / 86_400)
    }

    fn warn_if_old(&self, db: &GeoDb) {
        if self.max_age_days == 0 {
            return;
        }
        if let Some(days) = self.age_days(db) {
            if days > i64::from(self.max_age_days) {
                tracing::warn!(
                    source = %self.source(),
                    build_time = %db.build_time(),
                    age_days = days,
                    max_age_days = self.max_age_days,
                    "geoip database is older than the configured maximum age"
                );
            }
        }
    }

    fn record(&self, result: ReloadResult, error: Option<String>) {
        let mut last = self
            .last_reload
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *last = ReloadStatus {
            at: jiff::Timestamp::now(),
            result,
            error,
        };
    }

    /// Watches the database's directory (not the file: `geoipupdate` and Kubernetes
    /// replace files by rename, which a watch on the inode would miss) and reloads once
    /// events for the file have been quiet for the debounce time. The watch stops when
    /// the returned guard is dropped.
    pub fn watch(self: &Arc<Self>) -> Result<GeoIpWatch, WatchError> {
        let path = self.path.as_ref().ok_or(WatchError::Bundled)?;
        let file_name = path
            .file_name()
            .map(OsString::from)
            .ok_or_else(|| WatchError::BadPath(path.clone()))?;
        let dir = match path.parent() {
            Some(p) if p.as_os_str().is_empty() => PathBuf::from("."),
            Some(p) => p.to_owned(),
            None => return Err(WatchError::BadPath(path.clone())),
        };
        let (tx, rx) = mpsc::channel::<notify::Result<notify::Event>>();
        let mut watcher = notify::recommended_watcher(move |event| {
            // The receiver is gone only while the watch is being dropped.
            let _ = tx.send(event);
        })
        .map_err(|source| WatchError::Notify {
            path: dir.clone(),
            source,
        })?;
        notify::Watcher::watch(&mut watcher, &dir, notify::RecursiveMode::NonRecursive).map_err(
            |source| WatchError::Notify {
                path: dir.clone(),
                source,
            },
        )?;
        let geoip = Arc::downgrade(self);
        let debounce = self.debounce;
        let thread = std::thread::Builder::new()
            .name("geoip-watch".into())
            .spawn(move || watch_loop(&rx, &file_name, debounce, &geoip))
            .map_err(WatchError::Spawn)?;
        tracing::info!(directory = %dir.display(), "watching the geoip database directory");
        Ok(GeoIpWatch {
            watcher: Some(watcher),
            thread: Some(thread),
        })
    }
}

fn watch_loop(
    rx: &mpsc::Receiver<notify::Result<notify::Event>>,
    file_name: &OsString,
    debounce: Duration,
    geoip: &Weak<GeoIp>,
) {
    while let Ok(event) = rx.recv() {
        match event {
            Ok(event) if concerns(&event, file_name) => {}
            Ok(_) => continue,
            Err(err) => {
                tracing::warn!(error = %error_chain(&err), "geoip directory watch error");
                continue;
            }
        }
        // Wait until the directory is quiet: a download is written, renamed, chmod-ed.
        loop {
            match rx.recv_timeout(debounce) {
                Ok(_) => continue,
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
        let Some(geoip) = geoip.upgrade() else {
            return;
        };
        // A failure is logged and recorded by `reload`; the old database stays.
        let _ = geoip.reload();
    }
}

/// An event about the database file itself, or a Kubernetes `..data` symlink swap.
fn concerns(event: &notify::Event, file_name: &OsString) -> bool {
    if matches!(event.kind, notify::EventKind::Access(_)) {
        return false;
    }
    event.paths.iter().any(|p| {
        p.file_name().is_some_and(|name| {
            name == file_name.as_os_str() || name.as_encoded_bytes().starts_with(b"..")
        })
    })
}

/// Keeps the directory watch running; dropping it stops the watch and its thread.
pub struct GeoIpWatch {
    watcher: Option<notify::RecommendedWatcher>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for GeoIpWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeoIpWatch").finish_non_exhaustive()
    }
}

impl Drop for GeoIpWatch {
    fn drop(&mut self) {
        // Dropping the watcher drops the sender, which ends the thread's loop.
        drop(self.watcher.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// `error: cause: cause`, for one log field.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let _ = write!(out, ": {cause}");
        source = cause.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_yaml() {
        let config: GeoIpConfig = serde_yaml::from_str(
            "path: /var/lib/GeoIP/GeoLite2-City.mmdb\nfallback_registered_country: true\nmax_age_days: 7",
        )
        .unwrap();
        assert_eq!(
            config.path.as_deref(),
            Some(Path::new("/var/lib/GeoIP/GeoLite2-City.mmdb"))
        );
        assert!(config.fallback_registered_country);
        assert_eq!(config.max_age_days, 7);
        assert!(config.watch);
        assert_eq!(config.debounce_ms, 500);
        assert!(serde_yaml::from_str::<GeoIpConfig>("pathh: x").is_err());
    }

    #[test]
    fn event_filter_matches_the_file_and_kubernetes_swaps() {
        let name = OsString::from("GeoLite2-City.mmdb");
        let event = |kind, path: &str| notify::Event::new(kind).add_path(PathBuf::from(path));
        let create = notify::EventKind::Create(notify::event::CreateKind::File);
        assert!(concerns(&event(create, "/db/GeoLite2-City.mmdb"), &name));
        assert!(concerns(&event(create, "/db/..data"), &name));
        assert!(!concerns(&event(create, "/db/GeoLite2-ASN.mmdb"), &name));
        let access = notify::EventKind::Access(notify::event::AccessKind::Any);
        assert!(!concerns(&event(access, "/db/GeoLite2-City.mmdb"), &name));
    }

    #[test]
    fn error_chain_keeps_causes() {
        let err = GeoDbError::Read {
            path: "/nope".into(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "gone"),
        };
        assert_eq!(error_chain(&err), "cannot read geoip database /nope: gone");
    }
}
