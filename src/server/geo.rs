//! The service's view of GeoIP and the client address: turns an `ip=` value or a
//! request into a [`Location`]. Owns only the wiring; the database is
//! [`crate::geoip::GeoIp`] and the header rules are [`crate::client_addr`]. Never logs or
//! returns an address: only the location leaves this module.

use std::net::IpAddr;
use std::sync::Arc;

use actix_web::HttpRequest;

use crate::client_addr::{client_origin, peer_ip, ClientAddrConfig, ClientOrigin};
use crate::config::Config;
use crate::geoip::{GeoDbError, GeoIp, GeoIpConfig, GeoIpWatch};
use crate::location::{Location, Place};

use super::metrics::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum GeoError {
    #[error("geoip database {source_name}: {error}")]
    Load {
        source_name: String,
        #[source]
        error: GeoDbError,
    },
}

/// GeoIP database in service plus the client-address rules.
pub struct Geo {
    geoip: Arc<GeoIp>,
    client: ClientAddrConfig,
    _watch: Option<GeoIpWatch>,
}

impl Geo {
    /// Loads the configured (or bundled) database and, for a file, watches its
    /// directory so that a replaced file is reloaded (a bad one is refused).
    pub fn load(config: &Config) -> Result<Geo, GeoError> {
        Self::load_watching(config, true)
    }

    /// [`Geo::load`], with the directory watch only when `watch` is set (an embedding
    /// that turned reloading off).
    pub fn load_watching(config: &Config, watch: bool) -> Result<Geo, GeoError> {
        let gc = GeoIpConfig {
            path: config.geoip.clone(),
            layout: config.geoip_layout.clone(),
            fallback_registered_country: config.geoip_fallback_registered_country,
            max_age_days: config.geoip_max_age_days,
            bundled_until_present: config.geoip_bundled_until_present,
            ..GeoIpConfig::default()
        };
        let geoip = GeoIp::load(&gc).map_err(|error| GeoError::Load {
            source_name: config
                .geoip
                .as_ref()
                .map_or("bundled".into(), |p| p.display().to_string()),
            error,
        })?;
        Ok(Self::from_parts(
            Arc::new(geoip),
            config.client_addr(),
            watch,
        ))
    }

    /// Builds from a loaded database (tests); `watch` starts the directory watch.
    pub fn from_parts(geoip: Arc<GeoIp>, client: ClientAddrConfig, watch: bool) -> Geo {
        let watch = if watch && geoip.path().is_some() {
            match geoip.watch() {
                Ok(w) => Some(w),
                Err(e) => {
                    tracing::warn!(error = %e, "geoip database will reload on SIGHUP only");
                    None
                }
            }
        } else {
            None
        };
        Geo {
            geoip,
            client,
            _watch: watch,
        }
    }

    /// Exports the database's metrics (build time, reload counts).
    pub fn export(&self, m: &Metrics) {
        m.geoip_build_time.set(self.geoip.build_epoch() as i64);
        let (loaded, failed) = self.geoip.reload_counts();
        for (result, n) in [("success", loaded), ("failure", failed)] {
            let c = m.geoip_reloads.with_label_values(&[result]);
            c.inc_by(n.saturating_sub(c.get()));
        }
    }

    /// The database in service, for state reports.
    pub fn geoip(&self) -> &GeoIp {
        &self.geoip
    }

    /// Rereads the database file (SIGHUP); the old one stays on failure.
    pub fn reload(&self) {
        let _ = self.geoip.reload();
    }

    /// The location of an address; a miss is counted.
    #[inline]
    pub fn lookup(&self, ip: IpAddr, m: &Metrics) -> Location {
        let l = self.geoip.lookup(ip);
        if l.is_unknown() {
            m.geoip_misses.inc();
        }
        l
    }

    /// Where the client of a request is: the peer, or what trusted proxies say. A
    /// request without a socket peer, or whose client hop a trusted proxy's data does not
    /// establish, is [`Place::Unestablished`].
    pub fn client_place(&self, req: &HttpRequest, m: &Metrics) -> Place {
        let Some(peer) = req.peer_addr() else {
            return Place::Unestablished;
        };
        match client_origin(peer_ip(peer), req.headers(), &self.client) {
            ClientOrigin::Address(ip) => Place::At(self.lookup(ip, m)),
            ClientOrigin::Country(l) => Place::At(l),
            ClientOrigin::Unestablished => Place::Unestablished,
        }
    }

    /// The client-address rules (trusted proxies, headers) in service.
    pub fn client_addr(&self) -> &ClientAddrConfig {
        &self.client
    }

    /// Whether the socket peer of a request is one of the trusted proxies.
    pub fn peer_is_trusted(&self, req: &HttpRequest) -> bool {
        req.peer_addr()
            .is_some_and(|p| self.client.is_trusted(peer_ip(p)))
    }
}
