//! Rate limits per client and per signer, and single-use holder challenges.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand_core::{OsRng, RngCore};

/// Token buckets by key: `rate` tokens per second, at most `burst` saved.
pub struct RateLimiter<K> {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<K, (f64, Instant)>>,
}

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    /// A limiter allowing `rate` per second with bursts of `burst`.
    pub fn new(rate: u32, burst: u32) -> Self {
        Self { rate: rate as f64, burst: burst.max(1) as f64, buckets: Mutex::default() }
    }

    /// Take `n` tokens for `key`; on refusal, the seconds until they would be there.
    pub fn take(&self, key: &K, n: u32) -> Result<(), u64> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().expect("rate buckets");
        if buckets.len() > 100_000 {
            // Forget clients that have been quiet long enough to have a full bucket again.
            let full = Duration::from_secs_f64(self.burst / self.rate);
            buckets.retain(|_, (_, t)| now.duration_since(*t) < full);
        }
        let (tokens, at) = buckets.entry(key.clone()).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.rate).min(self.burst);
        *at = now;
        let n = n as f64;
        if *tokens >= n {
            *tokens -= n;
            Ok(())
        } else {
            Err(((n - *tokens) / self.rate).ceil().max(1.0) as u64)
        }
    }
}

/// How long a challenge may be used.
pub const CHALLENGE_TTL: Duration = Duration::from_secs(60);

/// Challenges this router issued: `expiry (8, BE ms) ‖ random (16) ‖ MAC (16)`, each accepted once.
pub struct Challenges {
    key: [u8; 32],
    used: Mutex<HashMap<[u8; 40], u64>>,
}

/// Why a holder's proof was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChallengeError {
    /// Not a challenge of this router.
    #[error("the challenge was not issued by this router")]
    Unknown,
    /// Too old.
    #[error("the challenge has expired; ask for a new one")]
    Expired,
    /// Already used once.
    #[error("the challenge was already used; ask for a new one")]
    Used,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl Default for Challenges {
    fn default() -> Self {
        let mut key = [0u8; 32];
        OsRng.fill_bytes(&mut key);
        Self { key, used: Mutex::default() }
    }
}

impl Challenges {
    /// A fresh challenge and its expiry (ms since the epoch).
    pub fn issue(&self) -> (Vec<u8>, u64) {
        let expiry = now_ms() + CHALLENGE_TTL.as_millis() as u64;
        let mut c = Vec::with_capacity(40);
        c.extend_from_slice(&expiry.to_be_bytes());
        let mut r = [0u8; 16];
        OsRng.fill_bytes(&mut r);
        c.extend_from_slice(&r);
        let mac = blake3::keyed_hash(&self.key, &c);
        c.extend_from_slice(&mac.as_bytes()[..16]);
        (c, expiry)
    }

    /// Accept `challenge` once, if this router issued it and it has not expired.
    pub fn redeem(&self, challenge: &[u8]) -> Result<(), ChallengeError> {
        let c: [u8; 40] = challenge.try_into().map_err(|_| ChallengeError::Unknown)?;
        let mac = blake3::keyed_hash(&self.key, &c[..24]);
        if mac.as_bytes()[..16] != c[24..] {
            return Err(ChallengeError::Unknown);
        }
        let expiry = u64::from_be_bytes(c[..8].try_into().expect("8 bytes"));
        let now = now_ms();
        if now > expiry {
            return Err(ChallengeError::Expired);
        }
        let mut used = self.used.lock().expect("used challenges");
        used.retain(|_, e| *e >= now);
        if used.insert(c, expiry).is_some() {
            return Err(ChallengeError::Used);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_refuses_past_its_burst_and_names_the_wait() {
        let l = RateLimiter::new(1, 3);
        for _ in 0..3 {
            l.take(&"a", 1).unwrap();
        }
        assert_eq!(l.take(&"a", 1), Err(1));
        l.take(&"b", 3).unwrap();
        assert!(l.take(&"c", 10).is_err());
    }

    #[test]
    fn challenges_are_single_use_and_unforgeable() {
        let c = Challenges::default();
        let (ch, _) = c.issue();
        let mut forged = ch.clone();
        forged[30] ^= 1;
        assert_eq!(c.redeem(&forged), Err(ChallengeError::Unknown));
        assert_eq!(Challenges::default().redeem(&ch), Err(ChallengeError::Unknown));
        c.redeem(&ch).unwrap();
        assert_eq!(c.redeem(&ch), Err(ChallengeError::Used));
        assert_eq!(c.redeem(&ch[..10]), Err(ChallengeError::Unknown));
    }
}
