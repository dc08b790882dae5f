//! Payment notifies: what verifying one found, the verdict kept with it, and the answer owed
//! to the provider. Protocol versions produce these; the domain layer and the store use them.

use serde::Serialize;

use crate::gateway::Payment;

/// Why a notify was accepted or refused: stored with every recorded notify (the name is the
/// stored text), and the label of `minipay_notifies_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum NotifyVerdict {
    /// Verified, recorded with its status-update job.
    Accepted,
    /// Verified, and its transaction is already recorded (a re-send). Counted, not stored.
    Duplicate,
    /// Signed by the provider, but not a successful payment.
    NotPaid,
    /// The provider's protocol-level failure flag (`return_code` FAIL in v2).
    ReturnFail,
    /// The signature does not verify with our key, or uses the other algorithm.
    BadSignature,
    /// Signed, but for another appid or merchant.
    ForeignMerchant,
    /// A payment field is absent or malformed.
    Incomplete,
    /// Not in CNY.
    WrongCurrency,
    /// No order with this number.
    UnknownOrder,
    /// Its `total_fee` is not the order's.
    AmountMismatch,
    /// The database could not be asked: the provider is told to re-send.
    StoreError,
    /// The body is larger than any notify.
    TooLarge,
    /// The body is empty.
    Empty,
    /// The body is not UTF-8 (or declares another encoding).
    NotUtf8,
    /// A DOCTYPE (entity expansion, XXE).
    Doctype,
    /// An entity reference other than the predefined ones.
    Entity,
    /// A processing instruction.
    ProcessingInstruction,
    /// The root element is not `<xml>`.
    WrongRoot,
    /// An element inside a field.
    Nested,
    /// A field given twice.
    RepeatedField,
    /// An element name WeChat never writes.
    BadName,
    /// More fields than any notify has.
    TooManyFields,
    /// Not a well-formed document.
    Malformed,
}

impl NotifyVerdict {
    /// Every verdict, for reading stored names back.
    pub const ALL: [NotifyVerdict; 23] = [
        NotifyVerdict::Accepted,
        NotifyVerdict::Duplicate,
        NotifyVerdict::NotPaid,
        NotifyVerdict::ReturnFail,
        NotifyVerdict::BadSignature,
        NotifyVerdict::ForeignMerchant,
        NotifyVerdict::Incomplete,
        NotifyVerdict::WrongCurrency,
        NotifyVerdict::UnknownOrder,
        NotifyVerdict::AmountMismatch,
        NotifyVerdict::StoreError,
        NotifyVerdict::TooLarge,
        NotifyVerdict::Empty,
        NotifyVerdict::NotUtf8,
        NotifyVerdict::Doctype,
        NotifyVerdict::Entity,
        NotifyVerdict::ProcessingInstruction,
        NotifyVerdict::WrongRoot,
        NotifyVerdict::Nested,
        NotifyVerdict::RepeatedField,
        NotifyVerdict::BadName,
        NotifyVerdict::TooManyFields,
        NotifyVerdict::Malformed,
    ];

    /// The stored and metric name.
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyVerdict::Accepted => "accepted",
            NotifyVerdict::Duplicate => "duplicate",
            NotifyVerdict::NotPaid => "not_paid",
            NotifyVerdict::ReturnFail => "return_fail",
            NotifyVerdict::BadSignature => "bad_signature",
            NotifyVerdict::ForeignMerchant => "foreign_merchant",
            NotifyVerdict::Incomplete => "incomplete",
            NotifyVerdict::WrongCurrency => "wrong_currency",
            NotifyVerdict::UnknownOrder => "unknown_order",
            NotifyVerdict::AmountMismatch => "amount_mismatch",
            NotifyVerdict::StoreError => "store_error",
            NotifyVerdict::TooLarge => "too_large",
            NotifyVerdict::Empty => "empty",
            NotifyVerdict::NotUtf8 => "not_utf8",
            NotifyVerdict::Doctype => "doctype",
            NotifyVerdict::Entity => "entity",
            NotifyVerdict::ProcessingInstruction => "processing_instruction",
            NotifyVerdict::WrongRoot => "wrong_root",
            NotifyVerdict::Nested => "nested",
            NotifyVerdict::RepeatedField => "repeated_field",
            NotifyVerdict::BadName => "bad_name",
            NotifyVerdict::TooManyFields => "too_many_fields",
            NotifyVerdict::Malformed => "malformed",
        }
    }

    /// The `FAIL` reason the provider is told: the verdict, except that a store failure is
    /// only "temporarily unavailable" (nothing about our database leaves the process).
    pub fn fail_reason(self) -> &'static str {
        match self {
            NotifyVerdict::StoreError => "temporarily unavailable",
            verdict => verdict.as_str(),
        }
    }
}

impl std::fmt::Display for NotifyVerdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stored verdict name that is not one of ours.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown notify verdict {0:?}")]
pub struct UnknownVerdict(pub String);

impl TryFrom<String> for NotifyVerdict {
    type Error = UnknownVerdict;

    fn try_from(name: String) -> Result<Self, Self::Error> {
        Self::ALL
            .into_iter()
            .find(|v| v.as_str() == name)
            .ok_or(UnknownVerdict(name))
    }
}

/// A notify that is not believed or cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub verdict: NotifyVerdict,
    pub detail: String,
}

impl Refusal {
    pub fn new(verdict: NotifyVerdict, detail: impl Into<String>) -> Self {
        Refusal {
            verdict,
            detail: detail.into(),
        }
    }
}

/// What the provider's verification of one notify found. A verified payment always carries
/// its [`Payment`]; nothing else does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotifyCheck {
    /// Signed by the provider and a successful payment; still to be matched to its order.
    Paid(Payment),
    /// Signed by the provider, but not a successful payment (its result code): acknowledged
    /// so that re-sends stop, recorded, and nothing is applied.
    NotPaid { result: String },
    /// Not believed, or unreadable.
    Refused(Refusal),
}

/// A notify as verified, with the order number it names when it could be read at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedNotify {
    pub out_trade_no: Option<String>,
    pub check: NotifyCheck,
}

/// What a body posted to a notify URL is, read once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostedNotify {
    /// A payment notify: a verified payment, or why it was refused.
    Payment(CheckedNotify),
    /// A refund notify: merchants often give the provider one URL for payments and refunds.
    Refund,
}

/// What the provider is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotifyAck {
    /// Recorded (or nothing to record): stop re-sending.
    Success,
    /// Not taken, with the reason: re-send (or give up, for a forgery).
    Fail(&'static str),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_names_round_trip_and_match_serde() {
        for verdict in NotifyVerdict::ALL {
            assert_eq!(
                NotifyVerdict::try_from(verdict.as_str().to_owned()),
                Ok(verdict)
            );
            assert_eq!(
                serde_json::to_value(verdict).unwrap_or_default(),
                verdict.as_str()
            );
        }
        assert!(NotifyVerdict::try_from("ACCEPTED".to_owned()).is_err());
    }

    #[test]
    fn a_store_failure_is_not_told_to_the_provider() {
        assert_eq!(
            NotifyVerdict::StoreError.fail_reason(),
            "temporarily unavailable"
        );
        assert_eq!(NotifyVerdict::BadSignature.fail_reason(), "bad_signature");
    }
}
