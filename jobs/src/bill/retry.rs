//! When a day whose statement WeChat did not hand over is tried again. WeChat makes a day's
//! bill from about 09:00 Beijing time the next day and advises fetching after 10:00
//! (docs/bills.md): `Bill Creating` is asked again half an hour later; a transient failure
//! (`SYSTEMERROR`, a cut-off download, no answer) after 5, 10, 20, 40, then every 60 minutes.
//! A run gives up at its `give_up_at` (the end of the Beijing day it was requested on, at
//! least two hours after the request) and is then `failed`, for an operator to look at.

use super::BillFailure;

const MINUTE_MS: i64 = 60_000;
/// How long after `Bill Creating` the day is asked for again.
pub const NOT_YET_DELAY_MS: i64 = 30 * MINUTE_MS;
/// The first pause after a transient failure; doubled per attempt up to [`RETRY_MAX_MS`].
pub const RETRY_FIRST_MS: i64 = 5 * MINUTE_MS;
pub const RETRY_MAX_MS: i64 = 60 * MINUTE_MS;
/// A run requested late in the day still gets this long to retry.
pub const MIN_RETRY_WINDOW_MS: i64 = 2 * 60 * MINUTE_MS;
const DAY_MS: i64 = 24 * 60 * MINUTE_MS;
const BEIJING_OFFSET_MS: i64 = 8 * 60 * MINUTE_MS;

/// When the next attempt of a run is due after `failure` on its `attempts`-th attempt
/// (1-based), or `None` when the run is over: no bill (`NoBill` is an outcome, not a
/// failure), a permanent refusal, or no time left before `give_up_at_ms`.
pub fn next_attempt_at(
    failure: BillFailure,
    attempts: u32,
    now_ms: i64,
    give_up_at_ms: i64,
) -> Option<i64> {
    let delay = match failure {
        BillFailure::NotYet => NOT_YET_DELAY_MS,
        BillFailure::Retryable => {
            let doublings = attempts.saturating_sub(1).min(10);
            (RETRY_FIRST_MS << doublings).min(RETRY_MAX_MS)
        }
        BillFailure::NoBill | BillFailure::Permanent => return None,
    };
    let at = now_ms.saturating_add(delay);
    (at <= give_up_at_ms).then_some(at)
}

/// When a run requested at `now_ms` stops retrying: the end of that Beijing day, or two
/// hours after the request if that is later.
pub fn give_up_at(now_ms: i64) -> i64 {
    let local = now_ms + BEIJING_OFFSET_MS;
    let end_of_day = local - local.rem_euclid(DAY_MS) + DAY_MS - BEIJING_OFFSET_MS;
    end_of_day.max(now_ms + MIN_RETRY_WINDOW_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-30 10:00 Beijing (02:00 UTC).
    const TEN_AM: i64 = 1_796_004_000_000;

    #[test]
    fn runs_give_up_at_the_end_of_the_beijing_day_with_two_hours_at_least() {
        // 10:00 Beijing: 14 hours left, to midnight Beijing (16:00 UTC).
        assert_eq!(give_up_at(TEN_AM), TEN_AM + 14 * 60 * MINUTE_MS);
        // 23:00 Beijing: two hours, past midnight.
        let late = TEN_AM + 13 * 60 * MINUTE_MS;
        assert_eq!(give_up_at(late), late + MIN_RETRY_WINDOW_MS);
    }

    #[test]
    fn not_yet_waits_half_an_hour_transient_failures_back_off() {
        let end = give_up_at(TEN_AM);
        let next = |failure, attempts| next_attempt_at(failure, attempts, TEN_AM, end);
        assert_eq!(next(BillFailure::NotYet, 1), Some(TEN_AM + 30 * MINUTE_MS));
        assert_eq!(next(BillFailure::NotYet, 9), Some(TEN_AM + 30 * MINUTE_MS));
        let pauses: Vec<i64> = (1..=6)
            .map(|n| (next(BillFailure::Retryable, n).unwrap() - TEN_AM) / MINUTE_MS)
            .collect();
        assert_eq!(pauses, [5, 10, 20, 40, 60, 60]);
        assert_eq!(next(BillFailure::Permanent, 1), None);
        assert_eq!(next(BillFailure::NoBill, 1), None);
    }

    #[test]
    fn no_retry_is_scheduled_past_the_end() {
        let end = TEN_AM + 29 * MINUTE_MS;
        assert_eq!(next_attempt_at(BillFailure::NotYet, 1, TEN_AM, end), None);
        assert_eq!(
            next_attempt_at(BillFailure::Retryable, 1, TEN_AM, end),
            Some(TEN_AM + 5 * MINUTE_MS)
        );
    }
}
