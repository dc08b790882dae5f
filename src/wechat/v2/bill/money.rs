//! Statement amounts as exact integers: yuan with (at most) two decimals to fen, fees with
//! (at most) five decimals to units of 0.00001 yuan. Never through floats.

use std::fmt;

use minipay_jobs::bill::Fen;

/// Reads a yuan amount (`12.34`, `0.0` and `0` in old statements, `-1.00`) as fen. `None` for
/// anything else: more than two decimals, exponents, spaces, an empty text, overflow.
pub fn parse_yuan(text: &str) -> Option<Fen> {
    parse_decimal(text, 2)
}

/// Writes fen as yuan with two decimals, as statements do (`3400` → `34.00`).
pub fn format_yuan(fen: Fen) -> String {
    format_decimal(fen, 2)
}

/// A fee (手续费) in units of 0.00001 yuan (1/1000 fen): statements write fees with five
/// decimals (`0.04000`, and `-0.27000` on refund lines).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Fee(pub i64);

impl Fee {
    /// Units of 0.00001 yuan in one fen.
    pub const PER_FEN: i64 = 1000;

    /// Reads a fee with at most five decimals (`0` in old statements).
    pub fn parse(text: &str) -> Option<Fee> {
        parse_decimal(text, 5).map(Fee)
    }

    pub fn checked_add(self, other: Fee) -> Option<Fee> {
        self.0.checked_add(other.0).map(Fee)
    }
}

impl fmt::Display for Fee {
    /// Five decimals, as statements write fees.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_decimal(self.0, 5))
    }
}

/// Integer of `10^-scale` units from `[-]digits[.digits]` with at most `scale` decimals.
fn parse_decimal(text: &str, scale: u32) -> Option<i64> {
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = match unsigned.split_once('.') {
        Some((whole, fraction)) if !fraction.is_empty() => (whole, fraction),
        Some(_) => return None,
        None => (unsigned, ""),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || (!fraction.is_empty() && !digits(fraction)) {
        return None;
    }
    let places = u32::try_from(fraction.len()).ok()?;
    if places > scale {
        return None;
    }
    let mut value: i64 = 0;
    for b in whole.bytes().chain(fraction.bytes()) {
        value = value.checked_mul(10)?.checked_add(i64::from(b - b'0'))?;
    }
    value = value.checked_mul(10_i64.checked_pow(scale - places)?)?;
    Some(if negative { -value } else { value })
}

fn format_decimal(value: i64, scale: u32) -> String {
    let unit = 10_u64.pow(scale);
    let magnitude = value.unsigned_abs();
    let sign = if value < 0 { "-" } else { "" };
    format!(
        "{sign}{}.{:0width$}",
        magnitude / unit,
        magnitude % unit,
        width = scale as usize
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yuan_to_fen_is_exact() {
        for (text, fen) in [
            ("0.01", Some(1)),
            ("6.00", Some(600)),
            ("1299.02", Some(129_902)),
            ("0.0", Some(0)),
            ("0", Some(0)),
            ("0.1", Some(10)),
            ("-1.42", Some(-142)),
            ("92233720368547758.07", Some(i64::MAX)),
            ("92233720368547758.08", None),
            ("0.001", None),
            ("1.", None),
            (".5", None),
            ("", None),
            ("-", None),
            ("+1.00", None),
            ("1e3", None),
            (" 1.00", None),
            ("1,000.00", None),
            ("０.01", None),
        ] {
            assert_eq!(parse_yuan(text), fen, "{text:?}");
        }
        assert_eq!(format_yuan(3400), "34.00");
        assert_eq!(format_yuan(1), "0.01");
        assert_eq!(format_yuan(-142), "-1.42");
        assert_eq!(format_yuan(i64::MIN), "-92233720368547758.08");
    }

    #[test]
    fn fees_keep_five_decimals() {
        assert_eq!(Fee::parse("0.04000"), Some(Fee(4000)));
        assert_eq!(Fee::parse("-0.27000"), Some(Fee(-27000)));
        assert_eq!(Fee::parse("0"), Some(Fee(0)));
        assert_eq!(Fee::parse("0.00006"), Some(Fee(6)));
        assert_eq!(Fee::parse("0.000061"), None);
        assert_eq!(Fee::parse("6e-05"), None);
        assert_eq!(Fee(4000).to_string(), "0.04000");
        assert_eq!(Fee(-27000).to_string(), "-0.27000");
        assert_eq!(Fee(0).to_string(), "0.00000");
    }
}
