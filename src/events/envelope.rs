//! The JSON body of every delivery: `{"id", "type", "created_at", "data"}`. The same event
//! gives the same body on every attempt; only the headers (timestamp, signatures) change.

use chrono::{DateTime, SecondsFormat, Utc};
use minipay_jobs::{EventId, EventType};
use serde::{Deserialize, Serialize};

/// One event as the merchant receives it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// Also the `webhook-id` header: the merchant's key for deduplication.
    pub id: EventId,
    #[serde(rename = "type")]
    pub kind: EventType,
    /// When the change happened (not when it was sent), RFC 3339 in UTC with milliseconds.
    #[serde(with = "rfc3339")]
    pub created_at: DateTime<Utc>,
    /// The admin view of the order or of the refund, as it was when the event was recorded.
    pub data: serde_json::Value,
}

impl Envelope {
    /// The body as sent and signed: compact JSON.
    pub fn to_body(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(self)
    }
}

mod rfc3339 {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&at.to_rfc3339_opts(SecondsFormat::Millis, true))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let text = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|at| at.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}

/// `created_at` the way the envelope writes it, for views that show the same instant.
pub fn format_rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_body_has_the_contract_shape() {
        let envelope = Envelope {
            id: EventId::from_random([0x5a; 16]),
            kind: EventType::OrderPaid,
            created_at: DateTime::from_timestamp_millis(1_700_000_000_123).unwrap(),
            data: json!({"out_trade_no": "MP1", "total_fee": 88}),
        };
        let body = envelope.to_body().unwrap();
        assert_eq!(
            String::from_utf8(body.clone()).unwrap(),
            r#"{"id":"evt_5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a","type":"order.paid","created_at":"2023-11-14T22:13:20.123Z","data":{"out_trade_no":"MP1","total_fee":88}}"#
        );
        assert_eq!(serde_json::from_slice::<Envelope>(&body).unwrap(), envelope);
        assert_eq!(
            format_rfc3339(envelope.created_at),
            "2023-11-14T22:13:20.123Z"
        );
    }
}
