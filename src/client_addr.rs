//! Client address derivation. (Being built.)
