//! Bill settings: when the worker roles reconcile yesterday's bill (docs/bills.md).

use chrono::NaiveTime;

use super::ConfigError;
use super::settings::settings;

settings! {
    /// The bill settings as read.
    pub struct BillSettings {
        /// Beijing time of day (`HH:MM`) at which the worker roles reconcile yesterday's bill
        bill_at: String = "10:00".into(), check |at: &String| parse_at(at).map(|_| ());
    }
}

/// When bills are reconciled.
#[derive(Debug, Clone)]
pub struct Bills {
    /// Beijing time of day; WeChat's bill of a day is ready from about 09:00-10:00 the next.
    pub at: NaiveTime,
}

fn parse_at(at: &str) -> Result<NaiveTime, String> {
    let at = at.trim();
    let well_formed = at.len() == 5 && at.as_bytes()[2] == b':';
    match NaiveTime::parse_from_str(at, "%H:%M") {
        Ok(time) if well_formed => Ok(time),
        _ => Err("must be a Beijing time of day as HH:MM (e.g. 10:00)".into()),
    }
}

impl BillSettings {
    pub fn config(self) -> Result<Bills, ConfigError> {
        self.check()?;
        let at = parse_at(&self.bill_at).map_err(super::refuse)?;
        Ok(Bills { at })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bill_at_is_hh_mm() {
        let at = |s: &str| {
            BillSettings { bill_at: s.into() }
                .config()
                .map(|b| b.at.format("%H:%M").to_string())
                .map_err(|e| e.to_string())
        };
        assert_eq!(at("10:00").unwrap(), "10:00");
        assert_eq!(at("09:30").unwrap(), "09:30");
        for bad in ["9:30", "24:00", "10:60", "10", "ten", ""] {
            let message = at(bad).unwrap_err();
            assert!(message.contains("MINIPAY_BILL_AT"), "{bad}: {message}");
        }
    }
}
