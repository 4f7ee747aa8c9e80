//! SHA-256 through `ring::digest` (already in the tree through rustls):
//! the profile digest both migration roles compare, the images sent over
//! the control connection, and the checkpoint manifest.

use ring::digest::{Context, SHA256};

/// Incremental SHA-256: [`Sha256::update`] with pieces of any size, then
/// [`Sha256::finish_hex`].
#[derive(Clone)]
pub struct Sha256(Context);

impl Default for Sha256 {
    fn default() -> Self {
        Sha256(Context::new(&SHA256))
    }
}

impl std::fmt::Debug for Sha256 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sha256")
    }
}

impl Sha256 {
    /// Add data.
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    /// The digest as lower-case hex.
    pub fn finish_hex(self) -> String {
        hex(self.0.finish().as_ref())
    }
}

/// SHA-256 of `data` as lower-case hex.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(ring::digest::digest(&SHA256, data).as_ref())
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// FIPS 180-4 test vectors, whole and in pieces.
    #[test]
    fn known_digests() {
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let mut h = Sha256::default();
        for piece in [
            &b"abcdbcdecdefdefgefghfghighijhi"[..],
            b"jkijkljklmklmnlmnomnopnopq",
        ] {
            h.update(piece);
        }
        assert_eq!(
            h.finish_hex(),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
        );
    }
}
