//! What every console page shares: the page shell with its navigation, the stylesheet, and how
//! money, times and statuses are shown. Amounts are stored in fen and shown in yuan, computed
//! with integers; times are shown in Beijing time, WeChat Pay's day.

use chrono::{DateTime, FixedOffset, NaiveDate, TimeZone};
use maud::{DOCTYPE, Markup, html};
use minipay_jobs::OrderStatus;

/// The stylesheet, served at [`CSS_PATH`] (the CSP allows no inline style).
pub const CSS: &str = include_str!("console.css");
pub const CSS_PATH: &str = "/admin/console.css";

/// The console's sections, for the navigation.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Dashboard,
    Orders,
    Jobs,
    Bills,
}

const NAV: [(Section, &str, &str); 4] = [
    (Section::Dashboard, "/admin", "Dashboard"),
    (Section::Orders, "/admin/orders", "Orders"),
    (Section::Jobs, "/admin/jobs", "Jobs"),
    (Section::Bills, "/admin/bills", "Bills"),
];

/// A whole page: `title` is its heading too.
pub fn page(title: &str, section: Section, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · minipay" }
                link rel="stylesheet" href=(CSS_PATH);
            }
            body {
                header {
                    nav {
                        @for (s, href, label) in NAV {
                            a href=(href) class=[(s == section).then_some("here")] { (label) }
                        }
                    }
                }
                main {
                    h1 { (title) }
                    (body)
                }
                footer { "Times in Beijing time (UTC+8); amounts in yuan (¥), 1 yuan = 100 fen." }
            }
        }
    }
}

/// An amount in fen as yuan: `¥12.34` (`-¥0.05` below zero).
pub fn yuan(fen: i64) -> String {
    let sign = if fen < 0 { "-" } else { "" };
    let fen = fen.unsigned_abs();
    format!("{sign}¥{}.{:02}", fen / 100, fen % 100)
}

/// UTC+8, all year.
const BEIJING: FixedOffset = match FixedOffset::east_opt(8 * 3600) {
    Some(offset) => offset,
    None => panic!("8 hours is a valid offset"),
};

fn beijing() -> FixedOffset {
    BEIJING
}

fn at(ms: i64) -> Option<DateTime<FixedOffset>> {
    beijing().timestamp_millis_opt(ms).single()
}

/// Unix ms as Beijing time, `2026-11-30 15:48:17`.
pub fn time(ms: i64) -> String {
    at(ms).map_or_else(
        || ms.to_string(),
        |t| t.format("%Y-%m-%d %H:%M:%S").to_string(),
    )
}

/// Unix ms of the start and end of a Beijing day.
pub fn day_bounds(day: NaiveDate) -> Option<(i64, i64)> {
    let start = beijing()
        .from_local_datetime(&day.and_hms_opt(0, 0, 0)?)
        .single()?
        .timestamp_millis();
    Some((start, start + 86_400_000))
}

/// The Beijing day `now_ms` falls on.
pub fn day_of(now_ms: i64) -> Option<NaiveDate> {
    at(now_ms).map(|t| t.date_naive())
}

/// An order's status as a coloured label.
pub fn status(status: OrderStatus) -> Markup {
    html! { span class={ "status " (status.as_str()) } { (status.as_str()) } }
}

/// A link to an order's page.
pub fn order_link(out_trade_no: &str) -> Markup {
    html! { a class="id" href={ "/admin/orders/" (urlencode(out_trade_no)) } { (out_trade_no) } }
}

/// Percent-encodes a path segment or query value.
pub fn urlencode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yuan_from_fen_without_floats() {
        assert_eq!(yuan(0), "¥0.00");
        assert_eq!(yuan(5), "¥0.05");
        assert_eq!(yuan(1234), "¥12.34");
        assert_eq!(yuan(-5), "-¥0.05");
        assert_eq!(yuan(i64::MIN), "-¥92233720368547758.08");
    }

    #[test]
    fn beijing_days() {
        let day = NaiveDate::from_ymd_opt(2026, 11, 30).unwrap();
        let (start, end) = day_bounds(day).unwrap();
        assert_eq!(time(start), "2026-11-30 00:00:00");
        assert_eq!(end - start, 86_400_000);
        // 2026-11-29 16:00 UTC is midnight in Beijing.
        assert_eq!(start, 1_795_968_000_000);
        assert_eq!(day_of(start), Some(day));
        assert_eq!(day_of(start - 1), day.pred_opt());
    }
}
