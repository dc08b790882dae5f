//! Requests to WeChat Pay and the rules WeChat checks them by (docs/wechat-pay-v2.md §3, §7).
//! The simulator applies the same rule functions to what it receives, so a request our
//! builders accept is one the simulator accepts, and vice versa.

use std::net::IpAddr;

use chrono::{DateTime, FixedOffset, NaiveDateTime, TimeZone, Utc};
use minipay_jobs::ParamError;
use serde::{Deserialize, Serialize};

use super::Fields;
use super::sign::{ApiKey, SignType, sign};

fn refuse(field: &'static str, reason: impl Into<String>) -> ParamError {
    ParamError::new(field, reason)
}

/// Shortest time between now and `time_expire` WeChat accepts for JSAPI orders.
pub const MIN_EXPIRE_SECS: i64 = 5 * 60;

/// `out_trade_no`: 6–32 characters of `0-9 a-z A-Z _ - | *`.
pub fn check_out_trade_no(value: &str) -> Result<(), ParamError> {
    if !(6..=32).contains(&value.len()) {
        return Err(refuse("out_trade_no", "must be 6 to 32 characters"));
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'|' | b'*'))
    {
        return Err(refuse(
            "out_trade_no",
            "only 0-9, a-z, A-Z and _ - | * are allowed",
        ));
    }
    Ok(())
}

/// `body` and `attach`: at most 127 UTF-8 bytes, and no 4-byte characters (API v2 supports
/// only 1–3-byte UTF-8 sequences).
pub fn check_text(field: &'static str, value: &str, required: bool) -> Result<(), ParamError> {
    if required && value.is_empty() {
        return Err(refuse(field, "is required"));
    }
    if value.len() > 127 {
        return Err(refuse(
            field,
            format!("is {} UTF-8 bytes; at most 127 are allowed", value.len()),
        ));
    }
    if value.chars().any(|c| c.len_utf8() == 4) {
        return Err(refuse(
            field,
            "contains a 4-byte character (emoji?), which WeChat Pay v2 does not support",
        ));
    }
    Ok(())
}

/// `total_fee`: whole fen, at least 1, within WeChat's Int.
pub fn check_total_fee(value: i64) -> Result<(), ParamError> {
    if value < 1 {
        return Err(refuse("total_fee", "must be at least 1 fen"));
    }
    if value > i64::from(i32::MAX) {
        return Err(refuse("total_fee", "is larger than WeChat Pay accepts"));
    }
    Ok(())
}

/// `spbill_create_ip`: an IPv4 or IPv6 address.
pub fn check_ip(value: &str) -> Result<(), ParamError> {
    value
        .parse::<IpAddr>()
        .map(|_| ())
        .map_err(|_| refuse("spbill_create_ip", "is not an IP address"))
}

/// `notify_url`: absolute http(s), no query string, at most 256 characters.
pub fn check_notify_url(value: &str) -> Result<(), ParamError> {
    if value.len() > 256 {
        return Err(refuse("notify_url", "is longer than 256 characters"));
    }
    let rest = value
        .strip_prefix("https://")
        .or_else(|| value.strip_prefix("http://"))
        .ok_or_else(|| refuse("notify_url", "must be an absolute http(s) URL"))?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err(refuse("notify_url", "has no host"));
    }
    if value.contains('?') {
        return Err(refuse("notify_url", "must not carry a query string"));
    }
    Ok(())
}

/// `openid`: required for JSAPI, at most 128 characters.
pub fn check_openid(value: &str) -> Result<(), ParamError> {
    if value.is_empty() || value.len() > 128 {
        return Err(refuse("openid", "must be 1 to 128 characters"));
    }
    Ok(())
}

/// China Standard Time, UTC+8, in which WeChat Pay writes every time.
pub(crate) const BEIJING: FixedOffset = match FixedOffset::east_opt(8 * 3600) {
    Some(offset) => offset,
    None => panic!("UTC+8 is a valid offset"),
};

/// `yyyyMMddHHmmss` in Beijing time, as `time_start`, `time_expire` and `time_end` are written.
pub fn beijing_time(at: DateTime<Utc>) -> String {
    at.with_timezone(&BEIJING)
        .format("%Y%m%d%H%M%S")
        .to_string()
}

/// Reads a `yyyyMMddHHmmss` Beijing time.
pub fn parse_beijing_time(value: &str) -> Option<DateTime<Utc>> {
    if value.len() != 14 {
        return None;
    }
    let naive = NaiveDateTime::parse_from_str(value, "%Y%m%d%H%M%S").ok()?;
    BEIJING
        .from_local_datetime(&naive)
        .single()
        .map(|t| t.with_timezone(&Utc))
}

/// `time_expire`: a Beijing time at least 5 minutes after `now`.
pub fn check_time_expire(value: &str, now: DateTime<Utc>) -> Result<(), ParamError> {
    let at = parse_beijing_time(value)
        .ok_or_else(|| refuse("time_expire", "must be yyyyMMddHHmmss in Beijing time"))?;
    if (at - now).num_seconds() < MIN_EXPIRE_SECS {
        return Err(refuse(
            "time_expire",
            "time_expire时间过短，刷卡至少1分钟，其他5分钟",
        ));
    }
    Ok(())
}

/// The merchant identity every request carries.
#[derive(Debug, Clone)]
pub struct Merchant {
    pub appid: String,
    pub mch_id: String,
    pub key: ApiKey,
    pub sign_type: SignType,
}

impl Merchant {
    /// Adds `appid`, `mch_id`, `nonce_str` and `sign_type` to `fields` and signs them.
    pub fn signed(&self, mut fields: Fields, nonce: &str) -> Fields {
        fields.set("appid", &self.appid);
        fields.set("mch_id", &self.mch_id);
        fields.set("nonce_str", nonce);
        fields.set("sign_type", self.sign_type.as_str());
        let signature = sign(fields.iter(), &self.key, self.sign_type);
        fields.set("sign", signature);
        fields
    }
}

/// The business parameters of one `unifiedorder`, frozen when the order is created and sent
/// unchanged on every attempt: WeChat's re-entry rule wants the same values each time
/// (docs/wechat-pay-v2.md §3.4); only `nonce_str` and `sign` change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnifiedOrderParams {
    pub appid: String,
    pub mch_id: String,
    pub sign_type: SignType,
    pub body: String,
    #[serde(default)]
    pub attach: String,
    pub out_trade_no: String,
    pub total_fee: i64,
    pub spbill_create_ip: String,
    pub notify_url: String,
    pub trade_type: String,
    pub openid: String,
    pub time_start: String,
    pub time_expire: String,
}

impl UnifiedOrderParams {
    /// Checks every field the way WeChat does, `time_expire` against `now`.
    pub fn validate(&self, now: DateTime<Utc>) -> Result<(), ParamError> {
        check_text("body", &self.body, true)?;
        check_text("attach", &self.attach, false)?;
        check_out_trade_no(&self.out_trade_no)?;
        check_total_fee(self.total_fee)?;
        check_ip(&self.spbill_create_ip)?;
        check_notify_url(&self.notify_url)?;
        check_openid(&self.openid)?;
        if self.trade_type != "JSAPI" {
            return Err(refuse("trade_type", "mini-program payments use JSAPI"));
        }
        parse_beijing_time(&self.time_start)
            .ok_or_else(|| refuse("time_start", "must be yyyyMMddHHmmss in Beijing time"))?;
        check_time_expire(&self.time_expire, now)
    }

    /// The business fields as WeChat receives them (empty `attach` is left out).
    pub fn business_fields(&self) -> Fields {
        let mut fields = Fields::new();
        fields.set("body", &self.body);
        if !self.attach.is_empty() {
            fields.set("attach", &self.attach);
        }
        fields.set("out_trade_no", &self.out_trade_no);
        fields.set("total_fee", self.total_fee.to_string());
        fields.set("spbill_create_ip", &self.spbill_create_ip);
        fields.set("notify_url", &self.notify_url);
        fields.set("trade_type", &self.trade_type);
        fields.set("openid", &self.openid);
        fields.set("time_start", &self.time_start);
        fields.set("time_expire", &self.time_expire);
        fields
    }

    /// The full signed request with a fresh `nonce`.
    pub fn signed_request(&self, key: &ApiKey, nonce: &str) -> Fields {
        let merchant = Merchant {
            appid: self.appid.clone(),
            mch_id: self.mch_id.clone(),
            key: key.clone(),
            sign_type: self.sign_type,
        };
        merchant.signed(self.business_fields(), nonce)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beijing_time_is_utc_plus_eight() {
        let at = Utc
            .with_ymd_and_hms(2023, 11, 14, 14, 13, 20)
            .single()
            .unwrap_or_default();
        assert_eq!(beijing_time(at), "20231114221320");
        assert_eq!(parse_beijing_time("20231114221320"), Some(at));
        assert_eq!(parse_beijing_time("2023-11-14"), None);
        assert_eq!(parse_beijing_time("20231314221320"), None);
    }

    fn valid(now: DateTime<Utc>) -> UnifiedOrderParams {
        UnifiedOrderParams {
            appid: "wxd930ea5d5a258f4f".into(),
            mch_id: "10000100".into(),
            sign_type: SignType::Md5,
            body: "咖啡-拿铁".into(),
            attach: String::new(),
            out_trade_no: "MP20231114_0001|a*b-c".into(),
            total_fee: 1,
            spbill_create_ip: "203.0.113.7".into(),
            notify_url: "https://shop.example.com/v1/wechat/notify".into(),
            trade_type: "JSAPI".into(),
            openid: "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o".into(),
            time_start: beijing_time(now),
            time_expire: beijing_time(now + chrono::Duration::minutes(30)),
        }
    }

    #[test]
    fn the_builder_refuses_what_wechat_refuses() {
        let now = Utc::now();
        assert_eq!(valid(now).validate(now), Ok(()));
        let refused = |change: &dyn Fn(&mut UnifiedOrderParams)| {
            let mut params = valid(now);
            change(&mut params);
            params.validate(now).map_err(|e| e.field)
        };
        assert_eq!(
            refused(&|p| p.out_trade_no = "A".repeat(33)),
            Err("out_trade_no")
        );
        assert_eq!(
            refused(&|p| p.out_trade_no = "MP 0001".into()),
            Err("out_trade_no")
        );
        assert_eq!(
            refused(&|p| p.out_trade_no = "MP#0001".into()),
            Err("out_trade_no")
        );
        assert_eq!(refused(&|p| p.out_trade_no = "A".repeat(32)), Ok(()));
        // 42 three-byte characters are 126 bytes, one more ASCII byte 127: the limit exactly.
        assert_eq!(
            refused(&|p| p.body = format!("{}x", "长".repeat(42))),
            Ok(())
        );
        assert_eq!(refused(&|p| p.body = "长".repeat(43)), Err("body"));
        assert_eq!(refused(&|p| p.body = "咖啡🎉".into()), Err("body"));
        assert_eq!(refused(&|p| p.body = String::new()), Err("body"));
        assert_eq!(refused(&|p| p.attach = "😀".into()), Err("attach"));
        assert_eq!(refused(&|p| p.total_fee = 0), Err("total_fee"));
        assert_eq!(refused(&|p| p.total_fee = -1), Err("total_fee"));
        assert_eq!(
            refused(&|p| p.time_expire = beijing_time(now + chrono::Duration::seconds(299))),
            Err("time_expire")
        );
        assert_eq!(
            refused(&|p| p.time_expire = beijing_time(now + chrono::Duration::seconds(301))),
            Ok(())
        );
        assert_eq!(
            refused(&|p| p.time_expire = "2023-11-14 22:13:20".into()),
            Err("time_expire")
        );
    }
}
