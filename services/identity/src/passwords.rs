//! Password hashing with Argon2id at OWASP's minimum parameters
//! (m = 19456 KiB, t = 2, p = 1), stored as PHC strings.
//!
//! Each hash needs 19 MiB of working memory and tens of milliseconds of CPU.
//! Hashes run on the blocking pool, at most one per core at a time (a burst
//! of logins queues instead of starving the async workers), and reuse a few
//! working buffers instead of allocating 19 MiB per hash: freed buffers that
//! size otherwise stay in the allocator's per-thread arenas, and the process
//! grows by 19 MiB per thread that ever hashed. Buffers unused for ten
//! seconds are released: a burst of logins reuses them, an idle identity
//! does not hold 19 MiB per core.

use anyhow::Context;
use argon2::password_hash::PasswordVerifier;
use argon2::{Algorithm, Argon2, Block, Params, Version};
use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use rand::RngCore;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

const M_COST_KIB: u32 = 19_456;
const T_COST: u32 = 2;
const P_COST: u32 = 1;
const OUTPUT_LEN: usize = 32;
const SALT_LEN: usize = 16;
/// Working buffers idle this long are released.
const BUFFER_IDLE: Duration = Duration::from_secs(10);

/// The PHC prefix of every hash this module writes.
fn phc_prefix() -> String {
    format!("$argon2id$v=19$m={M_COST_KIB},t={T_COST},p={P_COST}$")
}

#[derive(Clone)]
pub struct Passwords {
    argon2: Arc<Argon2<'static>>,
    /// Checked against when the user does not exist, so that an unknown user
    /// and a wrong password take the same time.
    decoy_hash: Arc<String>,
    permits: Arc<Semaphore>,
    buffers: Arc<Mutex<BufferPool>>,
}

#[derive(Default)]
struct BufferPool {
    free: Vec<Vec<Block>>,
    last_used: Option<Instant>,
}

impl std::fmt::Debug for Passwords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Passwords(argon2id)")
    }
}

impl Passwords {
    pub async fn new() -> anyhow::Result<Self> {
        let params = Params::new(M_COST_KIB, T_COST, P_COST, Some(OUTPUT_LEN))
            .context("argon2 parameters")?;
        let argon2 = Arc::new(Argon2::new(Algorithm::Argon2id, Version::V0x13, params));
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        let mut passwords = Self {
            argon2,
            decoy_hash: Arc::new(String::new()),
            permits: Arc::new(Semaphore::new(cores.max(1))),
            buffers: Arc::new(Mutex::new(BufferPool::default())),
        };
        // The decoy is random salt and random output in our own format:
        // checking against it costs a full Argon2 run, and nothing matches
        // it. Nothing is hashed at start, so an idle identity holds no
        // Argon2 memory.
        let mut salt = [0u8; SALT_LEN];
        let mut output = [0u8; OUTPUT_LEN];
        rand::rngs::OsRng.fill_bytes(&mut salt);
        rand::rngs::OsRng.fill_bytes(&mut output);
        passwords.decoy_hash = Arc::new(format!(
            "{}{}${}",
            phc_prefix(),
            STANDARD_NO_PAD.encode(salt),
            STANDARD_NO_PAD.encode(output)
        ));
        tokio::spawn(release_idle_buffers(Arc::downgrade(&passwords.buffers)));
        Ok(passwords)
    }

    /// The PHC string of a new salted hash of `password`.
    pub async fn hash(&self, password: &str) -> anyhow::Result<String> {
        let mut salt = [0u8; SALT_LEN];
        rand::rngs::OsRng.fill_bytes(&mut salt);
        let output = self.compute(password, salt.to_vec()).await?;
        Ok(format!(
            "{}{}${}",
            phc_prefix(),
            STANDARD_NO_PAD.encode(salt),
            STANDARD_NO_PAD.encode(output)
        ))
    }

    /// Whether `password` matches `hash`; with no hash (unknown user) it does
    /// the same work against a decoy and answers false.
    pub async fn verify(&self, password: &str, hash: Option<&str>) -> anyhow::Result<bool> {
        let known = hash.is_some();
        let hash = hash.unwrap_or(self.decoy_hash.as_str());
        let matches = match parse_own(hash) {
            Some((salt, expected)) => {
                let output = self.compute(password, salt).await?;
                constant_time_eq(&output, &expected)
            }
            // Written with other parameters: let argon2 read them.
            None => {
                let _permit = self
                    .permits
                    .acquire()
                    .await
                    .context("hash permits closed")?;
                let argon2 = self.argon2.clone();
                let (password, hash) = (password.to_owned(), hash.to_owned());
                tokio::task::spawn_blocking(move || {
                    argon2
                        .verify_password(password.as_bytes(), hash.as_str())
                        .is_ok()
                })
                .await
                .context("verification task")?
            }
        };
        Ok(known && matches)
    }

    async fn compute(&self, password: &str, salt: Vec<u8>) -> anyhow::Result<Vec<u8>> {
        let _permit = self
            .permits
            .acquire()
            .await
            .context("hash permits closed")?;
        let argon2 = self.argon2.clone();
        let buffers = self.buffers.clone();
        let password = password.to_owned();
        tokio::task::spawn_blocking(move || {
            let mut memory = take_buffer(&buffers);
            let mut output = vec![0u8; OUTPUT_LEN];
            let result = argon2.hash_password_into_with_memory(
                password.as_bytes(),
                &salt,
                &mut output,
                &mut memory,
            );
            give_back(&buffers, memory);
            result.map_err(|e| anyhow::anyhow!("argon2 failed: {e}"))?;
            Ok(output)
        })
        .await
        .context("hashing task")?
    }
}

/// Empties the pool once it has been idle for [`BUFFER_IDLE`]; ends with it.
async fn release_idle_buffers(pool: std::sync::Weak<Mutex<BufferPool>>) {
    let mut ticks = tokio::time::interval(BUFFER_IDLE / 4);
    loop {
        ticks.tick().await;
        let Some(pool) = pool.upgrade() else { return };
        let Ok(mut pool) = pool.lock() else { return };
        if pool.last_used.is_some_and(|at| at.elapsed() > BUFFER_IDLE) && !pool.free.is_empty() {
            pool.free = Vec::new();
        }
    }
}

fn take_buffer(pool: &Mutex<BufferPool>) -> Vec<Block> {
    let reused = pool.lock().ok().and_then(|mut pool| pool.free.pop());
    reused.unwrap_or_else(|| vec![Block::default(); M_COST_KIB as usize])
}

fn give_back(pool: &Mutex<BufferPool>, buffer: Vec<Block>) {
    let Ok(mut pool) = pool.lock() else { return };
    pool.last_used = Some(Instant::now());
    pool.free.push(buffer);
}

/// Salt and output of a hash written by this module; `None` for any other.
fn parse_own(hash: &str) -> Option<(Vec<u8>, Vec<u8>)> {
    let rest = hash.strip_prefix(&phc_prefix())?;
    let (salt, output) = rest.split_once('$')?;
    let salt = STANDARD_NO_PAD.decode(salt).ok()?;
    let output = STANDARD_NO_PAD.decode(output).ok()?;
    (output.len() == OUTPUT_LEN).then_some((salt, output))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::PasswordHasher;

    #[tokio::test]
    async fn hashes_verify_and_are_standard_phc() {
        let passwords = Passwords::new().await.unwrap();
        let hash = passwords.hash("correct horse battery").await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(
            passwords
                .verify("correct horse battery", Some(&hash))
                .await
                .unwrap()
        );
        assert!(!passwords.verify("wrong", Some(&hash)).await.unwrap());
        assert!(
            !passwords
                .verify("correct horse battery", None)
                .await
                .unwrap()
        );
        // The reference implementation accepts our hash …
        let reference = Argon2::default();
        assert!(
            reference
                .verify_password(b"correct horse battery", hash.as_str())
                .is_ok()
        );
        // … and we accept one it wrote with other parameters.
        let other = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(8192, 1, 1, None).unwrap(),
        )
        .hash_password(b"pw with other params")
        .unwrap()
        .to_string();
        assert!(
            passwords
                .verify("pw with other params", Some(&other))
                .await
                .unwrap()
        );
    }
}
