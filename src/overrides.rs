//! Operator overrides. (Being built.)
