//! Content-Security-Policy hash sources for the pages the service embeds (the ops
//! console, the transparency page). Pure.

use sha2::{Digest, Sha256};

/// `'sha256-…'`: the CSP hash source of an inline script or style.
pub(crate) fn csp_hash(text: &str) -> String {
    use std::fmt::Write;
    let digest = Sha256::digest(text.as_bytes());
    // Standard base64 of the digest, as CSP hash sources want it.
    const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::from("'sha256-");
    for chunk in digest.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    let _ = write!(out, "'");
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn csp_hashes_are_base64_sha256() {
        // echo -n 'alert(1)' | openssl dgst -sha256 -binary | base64
        assert_eq!(
            super::csp_hash("alert(1)"),
            "'sha256-bhHHL3z2vDgxUt0W3dWQOrprscmda2Y5pLsLg4GF+pI='"
        );
        assert_eq!(super::csp_hash("").len(), "'sha256-'".len() + 44);
    }
}
