//! Rules. (Being built.)
