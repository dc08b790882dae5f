//! Order settings: what is on sale and how long an order may be paid.

use std::path::PathBuf;
use std::time::Duration;

use super::settings::settings;
use super::{ConfigError, refuse};
use crate::catalog::Catalog;

settings! {
    /// The order settings as read.
    pub struct OrderSettings {
        /// product catalog file (TOML; see `demo/catalog.toml`)
        catalog: Option<PathBuf> = None;
        /// payment window (`time_expire`); 360 s to 7 days
        order_ttl_secs: u64 = 30 * 60, check |secs: &u64| {
            // WeChat refuses a time_expire under 5 minutes away; keep a margin for the prepay
            // retries and for closeorder's own 5-minute rule.
            if *secs < 6 * 60 {
                Err("must be at least 360 (WeChat needs time_expire ≥ 5 minutes ahead)".into())
            } else if *secs > 7 * 24 * 3600 {
                Err("must be at most 7 days".into())
            } else {
                Ok(())
            }
        };
    }
}

/// What is sold, and for how long an order may be paid.
#[derive(Debug, Clone)]
pub struct Orders {
    pub catalog: Catalog,
    pub order_ttl: Duration,
}

impl OrderSettings {
    pub fn config(self) -> Result<Orders, ConfigError> {
        self.check()?;
        let catalog = match &self.catalog {
            Some(path) => {
                Catalog::load(path).map_err(|e| refuse(format!("MINIPAY_CATALOG: {e}")))?
            }
            None => Catalog::demo(),
        };
        Ok(Orders {
            catalog,
            order_ttl: Duration::from_secs(self.order_ttl_secs),
        })
    }
}
