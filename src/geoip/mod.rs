//! GeoIP: MaxMind DB files resolved to a [`crate::location::Location`]. (Being built.)

pub mod cli;
