//! The decision engine. (Being built.)
