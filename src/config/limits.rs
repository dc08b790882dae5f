//! Rate-limit settings: how many logins one client IP, and how many orders and order reads one
//! user (openid) may make, each a token bucket that refills evenly over its period; how many
//! unpaid orders one user may hold; how many wrong admin tokens one client IP may present.
//! `0` turns a limit off.

use super::ConfigError;
use super::settings::settings;

settings! {
    /// The rate-limit settings as read.
    pub struct LimitSettings {
        /// logins (`POST /v1/sessions`) per minute from one client IP; `0`: no limit
        limit_logins_per_ip: u32 = 60;
        /// orders (`POST /v1/orders`) per minute one user (openid) may create; `0`: no limit
        limit_orders_per_user: u32 = 30;
        /// unpaid (`pending`/`ready`) orders one user may hold; `0`: no limit
        limit_unpaid_per_user: u32 = 20;
        /// order reads (`GET /v1/orders/{id}`, a long-poll counts once) per second one user may make; `0`: no limit
        limit_reads_per_user: u32 = 20;
        /// wrong admin tokens per minute from one client IP before every admin attempt from it gets `429`; `0`: no limit
        limit_admin_failures_per_ip: u32 = 10;
    }
}

/// The limits in force; `0` is off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub logins_per_ip_per_minute: u32,
    pub orders_per_user_per_minute: u32,
    pub unpaid_per_user: u32,
    pub reads_per_user_per_second: u32,
    pub admin_failures_per_ip_per_minute: u32,
}

impl Limits {
    /// Every limit off (tests and benchmarks that need no limits).
    pub const OFF: Limits = Limits {
        logins_per_ip_per_minute: 0,
        orders_per_user_per_minute: 0,
        unpaid_per_user: 0,
        reads_per_user_per_second: 0,
        admin_failures_per_ip_per_minute: 0,
    };
}

impl LimitSettings {
    pub fn config(self) -> Result<Limits, ConfigError> {
        self.check()?;
        Ok(Limits {
            logins_per_ip_per_minute: self.limit_logins_per_ip,
            orders_per_user_per_minute: self.limit_orders_per_user,
            unpaid_per_user: self.limit_unpaid_per_user,
            reads_per_user_per_second: self.limit_reads_per_user,
            admin_failures_per_ip_per_minute: self.limit_admin_failures_per_ip,
        })
    }

    /// Every limit off.
    pub fn off() -> Self {
        LimitSettings {
            limit_logins_per_ip: 0,
            limit_orders_per_user: 0,
            limit_unpaid_per_user: 0,
            limit_reads_per_user: 0,
            limit_admin_failures_per_ip: 0,
        }
    }
}
