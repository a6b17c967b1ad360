//! Rate limiting per client address: a token bucket of `rate` tokens per
//! second holding at most `burst`.
//!
//! Kept in memory, or in Redis when `DURE_REDIS_URL` is set so that every
//! gateway replica draws from the same bucket (the bucket's arithmetic runs
//! in a Lua script on Redis's own clock, atomically). If Redis cannot be
//! reached the gateway lets requests through and logs it: an outage of the
//! limiter must not become an outage of the site.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limit {
    pub per_second: f64,
    pub burst: f64,
}

pub enum RateLimiter {
    Off,
    Memory {
        limit: Limit,
        buckets: Mutex<HashMap<IpAddr, Bucket>>,
    },
    Redis {
        limit: Limit,
        connection: redis::aio::ConnectionManager,
        script: redis::Script,
    },
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Off => f.write_str("RateLimiter::Off"),
            Self::Memory { limit, .. } => write!(f, "RateLimiter::Memory({limit:?})"),
            Self::Redis { limit, .. } => write!(f, "RateLimiter::Redis({limit:?})"),
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Returns `{allowed, wait_ms}`; state is a hash `{tokens, ts}` per client.
const BUCKET_SCRIPT: &str = r"
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or burst
local ts = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate / 1000)
local allowed = 0
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  wait = math.ceil((1 - tokens) * 1000 / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 1000)
return {allowed, wait}
";

impl RateLimiter {
    pub fn memory(limit: Limit) -> Self {
        Self::Memory {
            limit,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    pub async fn redis(limit: Limit, url: &str) -> anyhow::Result<Self> {
        let client = redis::Client::open(url)?;
        let connection = redis::aio::ConnectionManager::new(client).await?;
        Ok(Self::Redis {
            limit,
            connection,
            script: redis::Script::new(BUCKET_SCRIPT),
        })
    }

    /// `Ok` to go ahead, or `Err(wait)` until a token is available.
    pub async fn check(&self, client: IpAddr) -> Result<(), Duration> {
        match self {
            Self::Off => Ok(()),
            Self::Memory { limit, buckets } => {
                let Ok(mut buckets) = buckets.lock() else {
                    return Ok(());
                };
                let now = Instant::now();
                // Forget buckets that have refilled completely.
                if buckets.len() > 10_000 {
                    let full_after = Duration::from_secs_f64(limit.burst / limit.per_second);
                    buckets.retain(|_, b| now.duration_since(b.updated) < full_after);
                }
                let bucket = buckets.entry(client).or_insert(Bucket {
                    tokens: limit.burst,
                    updated: now,
                });
                take(bucket, *limit, now)
            }
            Self::Redis {
                limit,
                connection,
                script,
            } => {
                let mut connection = connection.clone();
                let verdict: Result<(i64, i64), _> = script
                    .key(format!("dure:ratelimit:{client}"))
                    .arg(limit.per_second)
                    .arg(limit.burst)
                    .invoke_async(&mut connection)
                    .await;
                match verdict {
                    Ok((1, _)) => Ok(()),
                    Ok((_, wait_ms)) => Err(Duration::from_millis(
                        u64::try_from(wait_ms).unwrap_or(1000),
                    )),
                    Err(err) => {
                        tracing::warn!(error = %err, "rate limiter unavailable; letting the request through");
                        Ok(())
                    }
                }
            }
        }
    }
}

fn take(bucket: &mut Bucket, limit: Limit, now: Instant) -> Result<(), Duration> {
    let refill = now.duration_since(bucket.updated).as_secs_f64() * limit.per_second;
    bucket.tokens = (bucket.tokens + refill).min(limit.burst);
    bucket.updated = now;
    if bucket.tokens >= 1.0 {
        bucket.tokens -= 1.0;
        Ok(())
    } else {
        Err(Duration::from_secs_f64(
            (1.0 - bucket.tokens) / limit.per_second,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_burst_then_refusal_then_refill() {
        let limiter = RateLimiter::memory(Limit {
            per_second: 10.0,
            burst: 3.0,
        });
        let client: IpAddr = "203.0.113.1".parse().unwrap();
        for _ in 0..3 {
            assert!(limiter.check(client).await.is_ok());
        }
        let wait = limiter.check(client).await.unwrap_err();
        assert!(wait <= Duration::from_millis(100), "{wait:?}");
        // Another client has its own bucket.
        assert!(limiter.check("203.0.113.2".parse().unwrap()).await.is_ok());
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert!(limiter.check(client).await.is_ok());
    }

    #[tokio::test]
    async fn redis_buckets_are_shared() {
        let Ok(url) = std::env::var("DURE_TEST_REDIS_URL") else {
            eprintln!("DURE_TEST_REDIS_URL is not set: skipping");
            return;
        };
        let limit = Limit {
            per_second: 1.0,
            burst: 2.0,
        };
        // Two limiters stand for two gateway replicas.
        let one = RateLimiter::redis(limit, &url)
            .await
            .expect("Redis is configured but unreachable");
        let two = RateLimiter::redis(limit, &url).await.unwrap();
        let client: IpAddr = format!(
            "10.{}.{}.{}",
            rand::random::<u8>(),
            rand::random::<u8>(),
            rand::random::<u8>()
        )
        .parse()
        .unwrap();
        assert!(one.check(client).await.is_ok());
        assert!(two.check(client).await.is_ok());
        let wait = one.check(client).await.unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(1));
        assert!(two.check(client).await.is_err());
    }
}
