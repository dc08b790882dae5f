//! The fault soak (filled in below).

use std::time::Duration;

pub async fn run(_duration: Duration) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
