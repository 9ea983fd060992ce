//! Unguessable names for plugins, from the operating system's CSPRNG.

use rand::{rngs::OsRng, Rng, TryRngCore};

/// `len` random lowercase ASCII letters, e.g. the secret part of a p2p
/// topic that only its subscriber may know.
pub fn lowercase_letters(len: usize) -> String {
    let mut rng = OsRng.unwrap_err();
    (0..len).map(|_| char::from(b'a' + rng.random_range(0..26u8))).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn letters_only_and_distinct() {
        let a = super::lowercase_letters(32);
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|b| b.is_ascii_lowercase()));
        assert_ne!(a, super::lowercase_letters(32));
    }
}
