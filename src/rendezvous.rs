//! Weighted rendezvous (highest random weight) hashing: every limpet instance
//! with the same servers ranks them the same way for a key, and removing a
//! server moves only the keys it ranked first. xxh3 with a fixed seed, never
//! a per-process random hasher.

use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

const SEED: u64 = 0x6c69_6d70_6574; // "limpet"

/// Hash of a key (session id, client address) for [`score`].
pub fn key_hash(key: &[u8]) -> u64 {
    xxh3_64_with_seed(key, SEED)
}

/// Hash of a server's identity (its route), computed once per snapshot.
pub fn server_hash(route: &str) -> u64 {
    xxh3_64(route.as_bytes())
}

/// The server's score for a key; the highest score wins. Weighted as in
/// "weighted rendezvous hashing": `-w / ln(u)` with `u` uniform in (0, 1).
pub fn score(key: u64, server: u64, weight: u32) -> f64 {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&key.to_le_bytes());
    bytes[8..].copy_from_slice(&server.to_le_bytes());
    let h = xxh3_64_with_seed(&bytes, SEED);
    // 53 high bits → (0, 1), never 0 or 1
    let u = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    -f64::from(weight) / u.ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn best(key: u64, servers: &[(u64, u32)]) -> usize {
        let mut best = 0;
        for i in 1..servers.len() {
            if score(key, servers[i].0, servers[i].1) > score(key, servers[best].0, servers[best].1)
            {
                best = i;
            }
        }
        best
    }

    #[test]
    fn removing_a_server_moves_only_its_keys() {
        let all: Vec<(u64, u32)> = ["a", "b", "c", "d"]
            .iter()
            .map(|r| (server_hash(r), 1))
            .collect();
        let without_c: Vec<(u64, u32)> = all
            .iter()
            .copied()
            .filter(|s| s.0 != server_hash("c"))
            .collect();
        for k in 0..2000u64 {
            let key = key_hash(&k.to_le_bytes());
            let before = all[best(key, &all)].0;
            let after = without_c[best(key, &without_c)].0;
            if before != server_hash("c") {
                assert_eq!(before, after);
            }
        }
    }

    #[test]
    fn weights_shift_the_share() {
        let servers = [(server_hash("a"), 1), (server_hash("b"), 3)];
        let n = 20_000u64;
        let b = (0..n)
            .filter(|k| best(key_hash(&k.to_le_bytes()), &servers) == 1)
            .count() as f64;
        let share = b / n as f64;
        assert!(
            (0.70..0.80).contains(&share),
            "share of weight-3 server: {share}"
        );
    }
}
