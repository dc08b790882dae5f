//! When the reconciler asks WeChat about a `ready` order whose notify has not come
//! (docs/wechat-pay-v2.md §7.1: a first check within about a minute of silence, then on a timer).

/// Gaps between checks, in seconds; the last one repeats.
const GAPS_SECS: [i64; 6] = [30, 60, 120, 300, 600, 1800];

/// Unix second of the first check of an order that became `ready` at `ready_at`.
pub fn first_check_at(ready_at: i64, delay_secs: i64) -> i64 {
    ready_at + delay_secs
}

/// After expiry, until WeChat confirms the close (a close can be refused, or its answer lost),
/// the order is checked at least this often.
const AFTER_EXPIRY_GAP_SECS: i64 = 60;

/// Unix second of the check after check number `check` (0-based) ran at `now`. While the
/// order is still payable the next check is never later than its expiry, so an unpaid order is
/// closed promptly once its window ends; after that it is checked every minute until closed.
pub fn next_check_at(now: i64, check: u32, expires_at: i64) -> i64 {
    let gap = GAPS_SECS[(check as usize).min(GAPS_SECS.len() - 1)];
    if now < expires_at {
        (now + gap).min(expires_at)
    } else {
        now + gap.min(AFTER_EXPIRY_GAP_SECS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_back_off_and_then_repeat_every_half_hour() {
        let far = i64::MAX;
        let mut now = first_check_at(1000, 60);
        assert_eq!(now, 1060);
        let mut gaps = vec![];
        for check in 0..8 {
            let next = next_check_at(now, check, far);
            gaps.push(next - now);
            now = next;
        }
        assert_eq!(gaps, [30, 60, 120, 300, 600, 1800, 1800, 1800]);
    }

    #[test]
    fn the_expiry_is_never_skipped() {
        assert_eq!(next_check_at(1000, 5, 1100), 1100);
        assert_eq!(next_check_at(1000, 0, 1100), 1030);
        // already past expiry (e.g. the close was refused or its answer lost): every minute
        assert_eq!(next_check_at(1200, 1, 1100), 1260);
        assert_eq!(next_check_at(1200, 5, 1100), 1260);
        assert_eq!(next_check_at(1200, 0, 1100), 1230);
    }
}
