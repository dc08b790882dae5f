//! Rate limits (README, "Running it in public"): logins per client IP, orders and order reads per
//! user (openid), and wrong admin tokens per client IP. Each is a keyed token bucket
//! (`governor`'s GCRA) whose budget refills evenly over its period; `0` in the settings turns
//! one off. A limited request gets `429 RATE_LIMITED` with `Retry-After` (the unpaid-order cap
//! is enforced by the store, in the transaction that inserts the order). Every refusal counts
//! in `minipay_rate_limited_total{limit}`.
//!
//! The keyed state is swept every [`SWEEP_EVERY`] (`retain_recent`: a key whose bucket is full
//! again is forgotten), so a flood of distinct keys costs memory only for one period.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::http::request::Parts;
use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota};
use ipnet::IpNet;
use tokio_util::sync::CancellationToken;

use super::error::ApiError;
use super::payer_ip::payer_ip;
use crate::config::Limits;

/// How often forgotten keys are dropped.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// The service's rate limits (shared by every handler).
pub struct RateLimits {
    logins: Budget<IpAddr>,
    orders: Budget<String>,
    reads: Budget<String>,
    admin_failures: Budget<IpAddr>,
    /// Client IPs whose wrong admin tokens used up their budget, until when.
    admin_locked: Mutex<HashMap<IpAddr, Instant>>,
    /// The unpaid-order cap (the store enforces it); `None`: off.
    pub unpaid_per_user: Option<u32>,
}

impl RateLimits {
    pub fn new(limits: &Limits) -> Arc<RateLimits> {
        let per_minute = |n: u32| NonZeroU32::new(n).map(Quota::per_minute);
        let per_second = |n: u32| NonZeroU32::new(n).map(Quota::per_second);
        Arc::new(RateLimits {
            logins: Budget::new("logins_per_ip", per_minute(limits.logins_per_ip_per_minute)),
            orders: Budget::new(
                "orders_per_user",
                per_minute(limits.orders_per_user_per_minute),
            ),
            reads: Budget::new(
                "reads_per_user",
                per_second(limits.reads_per_user_per_second),
            ),
            admin_failures: Budget::new(
                "admin_failures_per_ip",
                per_minute(limits.admin_failures_per_ip_per_minute),
            ),
            admin_locked: Mutex::new(HashMap::new()),
            unpaid_per_user: (limits.unpaid_per_user > 0).then_some(limits.unpaid_per_user),
        })
    }

    /// One login from `ip` (before `jscode2session` is called).
    pub fn login(&self, ip: IpAddr) -> Result<(), ApiError> {
        self.logins.take(&ip_key(ip)).map_err(Refusal::answer)
    }

    /// One new order by `openid`: the refusal is the caller's to answer (a replay is not
    /// refused).
    pub fn order(&self, openid: &str) -> Result<(), Refusal> {
        self.orders.take_str(openid)
    }

    /// One order read by `openid`.
    pub fn read(&self, openid: &str) -> Result<(), ApiError> {
        self.reads.take_str(openid).map_err(Refusal::answer)
    }

    /// How long `ip` may not try the admin token at all (after too many wrong ones).
    pub fn admin_locked(&self, ip: IpAddr) -> Option<Duration> {
        let key = ip_key(ip);
        let locked = self.admin_locked.lock().unwrap_or_else(|e| e.into_inner());
        let until = *locked.get(&key)?;
        until.checked_duration_since(Instant::now())
    }

    /// `Err(RATE_LIMITED)` while `ip` may not try the admin token.
    pub fn admin_attempt(&self, ip: IpAddr) -> Result<(), ApiError> {
        match self.admin_locked(ip) {
            Some(left) => Err(self.admin_failures.refusal(left).answer()),
            None => Ok(()),
        }
    }

    /// A wrong admin token from `ip`: `Err(RATE_LIMITED)` once its budget is used up (and from
    /// then on, for any admin token, until the budget refills).
    pub fn admin_failure(&self, ip: IpAddr) -> Result<(), ApiError> {
        let key = ip_key(ip);
        let Some(limiter) = &self.admin_failures.limiter else {
            return Ok(());
        };
        match limiter.check_key(&key) {
            Ok(_) => Ok(()),
            Err(not_until) => {
                let wait = not_until.wait_time_from(limiter.clock().now());
                self.admin_locked
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(key, Instant::now() + wait);
                Err(self.admin_failures.refusal(wait).answer())
            }
        }
    }

    /// Forgets every key whose budget is full again, until `stop`.
    pub fn spawn_sweeper(self: &Arc<Self>, stop: CancellationToken) {
        let limits = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(SWEEP_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = every.tick() => {}
                    () = stop.cancelled() => return,
                }
                let Some(limits) = limits.upgrade() else {
                    return;
                };
                limits.sweep();
            }
        });
    }

    /// Drops what no bucket needs any more; reports the keys held.
    pub fn sweep(&self) {
        self.logins.sweep();
        self.orders.sweep();
        self.reads.sweep();
        self.admin_failures.sweep();
        let now = Instant::now();
        let mut locked = self.admin_locked.lock().unwrap_or_else(|e| e.into_inner());
        locked.retain(|_, until| *until > now);
        locked.shrink_to_fit();
    }
}

/// One keyed token bucket, or none (off).
struct Budget<K: Hash + Eq + Clone> {
    /// The `limit` label of the metrics.
    name: &'static str,
    limiter: Option<DefaultKeyedRateLimiter<K>>,
}

impl<K: Hash + Eq + Clone> Budget<K> {
    fn new(name: &'static str, quota: Option<Quota>) -> Self {
        Budget {
            name,
            limiter: quota.map(DefaultKeyedRateLimiter::keyed),
        }
    }

    /// Takes one token of `key`'s bucket, or refuses with the time until the next one.
    fn take(&self, key: &K) -> Result<(), Refusal> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        limiter
            .check_key(key)
            .map_err(|not_until| self.refusal(not_until.wait_time_from(limiter.clock().now())))
    }

    fn refusal(&self, wait: Duration) -> Refusal {
        Refusal {
            limit: self.name,
            wait,
        }
    }

    fn sweep(&self) {
        if let Some(limiter) = &self.limiter {
            limiter.retain_recent();
            limiter.shrink_to_fit();
            metrics::gauge!("minipay_rate_limit_keys", "limit" => self.name)
                .set(limiter.len() as f64);
        }
    }
}

/// A request a limit refuses, before it is answered.
#[derive(Debug)]
pub struct Refusal {
    limit: &'static str,
    wait: Duration,
}

impl Refusal {
    /// The `429 RATE_LIMITED` answer, counted in `minipay_rate_limited_total{limit}`.
    pub fn answer(self) -> ApiError {
        metrics::counter!("minipay_rate_limited_total", "limit" => self.limit).increment(1);
        ApiError::RateLimited {
            retry_after_secs: ceil_secs(self.wait),
        }
    }
}

impl Budget<String> {
    /// [`Budget::take`] without allocating the key when the limit is off.
    fn take_str(&self, key: &str) -> Result<(), Refusal> {
        match &self.limiter {
            None => Ok(()),
            Some(_) => self.take(&key.to_owned()),
        }
    }
}

/// Whole seconds, rounded up, at least 1 (a `Retry-After` of 0 invites a tight loop).
fn ceil_secs(wait: Duration) -> u64 {
    wait.as_secs()
        .saturating_add(u64::from(wait.subsec_nanos() > 0))
        .max(1)
}

/// The key of a client IP: IPv4 addresses as they are; IPv6 by their /64 (one subscriber's
/// network — a single host can use every address in it).
fn ip_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpNet::new(IpAddr::V6(v6), 64)
            .map(|net| net.network())
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// The client IP of a request, as the contract defines it: the peer, or the first hop of
/// `X-Forwarded-For` when the peer is a trusted proxy. Unspecified when the server gave no
/// peer address.
pub fn client_ip(parts: &Parts, trusted_proxies: &[IpNet]) -> IpAddr {
    let peer = parts
        .extensions
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map(|ConnectInfo(peer)| *peer)
        .unwrap_or_else(|| ([0, 0, 0, 0], 0).into());
    payer_ip(peer, &parts.headers, trusted_proxies)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(logins: u32, admin: u32) -> Arc<RateLimits> {
        RateLimits::new(&Limits {
            logins_per_ip_per_minute: logins,
            admin_failures_per_ip_per_minute: admin,
            ..Limits::OFF
        })
    }

    #[test]
    fn a_budget_is_spent_then_refused_with_the_wait() {
        let limits = limits(3, 0);
        let ip: IpAddr = "203.0.113.7".parse().unwrap();
        for _ in 0..3 {
            limits.login(ip).unwrap();
        }
        let Err(ApiError::RateLimited { retry_after_secs }) = limits.login(ip) else {
            panic!("the 4th login is limited")
        };
        // 3 per minute refill one every 20 s.
        assert!((1..=20).contains(&retry_after_secs), "{retry_after_secs}");
        limits.login("203.0.113.8".parse().unwrap()).unwrap();
    }

    #[test]
    fn zero_turns_a_limit_off() {
        let limits = limits(0, 0);
        for _ in 0..1000 {
            limits.login("203.0.113.7".parse().unwrap()).unwrap();
            limits.order("o").unwrap();
            limits.read("o").unwrap();
            limits
                .admin_failure("203.0.113.7".parse().unwrap())
                .unwrap();
        }
        assert_eq!(limits.unpaid_per_user, None);
    }

    #[test]
    fn an_ipv6_client_is_one_key_per_64() {
        let limits = limits(1, 0);
        limits.login("2001:db8:1:2::1".parse().unwrap()).unwrap();
        assert!(limits.login("2001:db8:1:2::ffff".parse().unwrap()).is_err());
        limits.login("2001:db8:1:3::1".parse().unwrap()).unwrap();
        limits
            .login("::ffff:198.51.100.1".parse().unwrap())
            .unwrap();
        assert!(limits.login("198.51.100.1".parse().unwrap()).is_err());
    }

    #[test]
    fn admin_failures_lock_the_ip_until_the_budget_refills() {
        let limits = limits(0, 2);
        let ip: IpAddr = "203.0.113.9".parse().unwrap();
        limits.admin_attempt(ip).unwrap();
        limits.admin_failure(ip).unwrap();
        limits.admin_failure(ip).unwrap();
        assert!(limits.admin_failure(ip).is_err());
        let Err(ApiError::RateLimited { retry_after_secs }) = limits.admin_attempt(ip) else {
            panic!("locked")
        };
        assert!((1..=30).contains(&retry_after_secs), "{retry_after_secs}");
        limits
            .admin_attempt("203.0.113.10".parse().unwrap())
            .unwrap();
    }

    #[test]
    fn the_sweep_forgets_full_buckets() {
        let limits = RateLimits::new(&Limits {
            reads_per_user_per_second: 1000,
            ..Limits::OFF
        });
        for n in 0..100 {
            limits.read(&format!("openid-{n}")).unwrap();
        }
        assert_eq!(limits.reads.limiter.as_ref().unwrap().len(), 100);
        std::thread::sleep(Duration::from_millis(5));
        limits.sweep();
        assert_eq!(limits.reads.limiter.as_ref().unwrap().len(), 0);
    }
}
