// A decision table reads as one list, so the 80-line limit of production functions is lifted.
#![allow(clippy::too_many_lines)]

use super::*;
use crate::OrderStatus::{Closed, Failed, Paid, Pending, Ready};

fn order(otn: &str, fee: Fen, status: OrderStatus) -> LocalOrder {
    LocalOrder {
        out_trade_no: otn.into(),
        total_fee: fee,
        status,
    }
}

fn refund(otn: &str, orn: &str, fee: Fen, status: LocalRefundStatus) -> LocalRefund {
    LocalRefund {
        out_trade_no: otn.into(),
        out_refund_no: orn.into(),
        refund_fee: fee,
        status,
    }
}

fn paid(otn: &str, fee: Fen, state: &str) -> WechatEntry {
    WechatEntry::Payment(WechatPayment {
        out_trade_no: otn.into(),
        transaction_id: format!("4200{otn}"),
        fee,
        state: state.into(),
    })
}

fn refunded(otn: &str, orn: &str, fee: Fen, status: &str) -> WechatEntry {
    WechatEntry::Refund(WechatRefund {
        out_trade_no: otn.into(),
        out_refund_no: orn.into(),
        refund_fee: fee,
        status: status.into(),
    })
}

/// One day: local trades of the day, the statement, what a lookup finds elsewhere.
struct Day {
    orders: Vec<LocalOrder>,
    refunds: Vec<LocalRefund>,
    statement: Vec<WechatEntry>,
    elsewhere: Vec<LocalOrder>,
    elsewhere_refunds: Vec<LocalRefund>,
}

fn day() -> Day {
    // A clean day: two payments and a partial refund of the first, on both sides.
    Day {
        orders: vec![order("MP0001", 3400, Paid), order("MP0002", 88, Paid)],
        refunds: vec![refund(
            "MP0001",
            "RF0001",
            50,
            LocalRefundStatus::Processing,
        )],
        statement: vec![
            paid("MP0002", 88, "SUCCESS"),
            refunded("MP0001", "RF0001", 50, "PROCESSING"),
            paid("MP0001", 3400, "SUCCESS"),
        ],
        elsewhere: vec![],
        elsewhere_refunds: vec![],
    }
}

fn run(d: Day) -> BillReport {
    let mut rec = DayReconciliation::new(d.orders, d.refunds);
    for entry in d.statement {
        rec.add(entry);
    }
    let wanted = rec.unresolved();
    let elsewhere = Elsewhere {
        orders: d
            .elsewhere
            .into_iter()
            .filter(|o| wanted.out_trade_nos.contains(&o.out_trade_no.as_str()))
            .map(|o| (o.out_trade_no.clone(), o))
            .collect(),
        refunds: d
            .elsewhere_refunds
            .into_iter()
            .filter(|r| wanted.out_refund_nos.contains(&r.out_refund_no.as_str()))
            .map(|r| (r.out_refund_no.clone(), r))
            .collect(),
    };
    rec.finish(&elsewhere)
}

type Expected = Vec<(MismatchKind, &'static str, Option<&'static str>, bool)>;

fn found(report: &BillReport) -> Vec<(MismatchKind, String, Option<String>, bool)> {
    report
        .mismatches
        .iter()
        .map(|m| {
            (
                m.kind,
                m.out_trade_no.clone(),
                m.out_refund_no.clone(),
                m.healable,
            )
        })
        .collect()
}

#[test]
fn a_clean_day_has_no_mismatch_and_equal_totals() {
    let report = run(day());
    assert!(report.is_clean(), "{report:?}");
    let expected = Totals {
        payments: 2,
        payment_fee: 3488,
        refunds: 1,
        refund_fee: 50,
    };
    assert_eq!(report.wechat, expected);
    assert_eq!(report.local, expected);
}

#[test]
fn each_difference_is_reported_with_its_kind() {
    use MismatchKind::*;
    type Change = Box<dyn Fn(&mut Day)>;
    let cases: Vec<(&str, Change, Expected)> = vec![
        (
            "WeChat lists an order minipay never created",
            Box::new(|d| d.statement.push(paid("MPGHOST1", 100, "SUCCESS"))),
            vec![(MissingLocal, "MPGHOST1", None, false)],
        ),
        (
            "WeChat does not list a paid order",
            Box::new(|d| {
                d.statement
                    .retain(|e| !matches!(e, WechatEntry::Payment(p) if p.out_trade_no == "MP0002"))
            }),
            vec![(MissingWechat, "MP0002", None, false)],
        ),
        (
            "amounts differ",
            Box::new(|d| d.statement[0] = paid("MP0002", 87, "SUCCESS")),
            vec![(Amount, "MP0002", None, false)],
        ),
        (
            "WeChat paid an order minipay holds as ready: healable",
            Box::new(|d| {
                d.statement.push(paid("MP0003", 500, "SUCCESS"));
                d.elsewhere.push(order("MP0003", 500, Ready));
            }),
            vec![(Status, "MP0003", None, true)],
        ),
        (
            "WeChat paid an order minipay holds as pending: healable",
            Box::new(|d| {
                d.statement.push(paid("MP0003", 500, "SUCCESS"));
                d.elsewhere.push(order("MP0003", 500, Pending));
            }),
            vec![(Status, "MP0003", None, true)],
        ),
        (
            "WeChat paid an order minipay closed: not healable",
            Box::new(|d| {
                d.statement.push(paid("MP0003", 500, "SUCCESS"));
                d.elsewhere.push(order("MP0003", 500, Closed));
            }),
            vec![(Status, "MP0003", None, false)],
        ),
        (
            "WeChat paid an order minipay failed, at another amount: both kinds",
            Box::new(|d| {
                d.statement.push(paid("MP0003", 500, "SUCCESS"));
                d.elsewhere.push(order("MP0003", 400, Failed));
            }),
            vec![
                (Amount, "MP0003", None, false),
                (Status, "MP0003", None, false),
            ],
        ),
        (
            "minipay holds the payment on another day",
            Box::new(|d| {
                d.statement.push(paid("MP0003", 500, "SUCCESS"));
                d.elsewhere.push(order("MP0003", 500, Paid));
            }),
            vec![(Status, "MP0003", None, false)],
        ),
        (
            "WeChat lists a paid order as revoked",
            Box::new(|d| d.statement[0] = paid("MP0002", 88, "REVOKED")),
            vec![(Status, "MP0002", None, false)],
        ),
        (
            "a revoked trade of an order minipay never got paid is no difference",
            Box::new(|d| {
                d.statement.push(paid("MP0003", 500, "REVOKED"));
                d.elsewhere.push(order("MP0003", 500, Ready));
            }),
            vec![],
        ),
        (
            "WeChat lists a payment twice",
            Box::new(|d| d.statement.push(paid("MP0002", 88, "SUCCESS"))),
            vec![(MissingLocal, "MP0002", None, false)],
        ),
        (
            "refund amounts differ",
            Box::new(|d| d.statement[1] = refunded("MP0001", "RF0001", 60, "SUCCESS")),
            vec![(Amount, "MP0001", Some("RF0001"), false)],
        ),
        (
            "WeChat lists a refund as failed that minipay counts",
            Box::new(|d| d.statement[1] = refunded("MP0001", "RF0001", 50, "FAIL")),
            vec![(Status, "MP0001", Some("RF0001"), false)],
        ),
        (
            "WeChat lists a refund minipay does not have",
            Box::new(|d| {
                d.statement
                    .push(refunded("MP0002", "RF0009", 10, "SUCCESS"))
            }),
            vec![(MissingLocal, "MP0002", Some("RF0009"), false)],
        ),
        (
            "WeChat does not list a refund minipay submitted",
            Box::new(|d| {
                d.refunds
                    .push(refund("MP0002", "RF0002", 8, LocalRefundStatus::Succeeded))
            }),
            vec![(MissingWechat, "MP0002", Some("RF0002"), false)],
        ),
        (
            "a refund WeChat refused need not be listed",
            Box::new(|d| {
                d.refunds
                    .push(refund("MP0002", "RF0002", 8, LocalRefundStatus::Failed))
            }),
            vec![],
        ),
        (
            "WeChat listed a refund as processing that failed later (REFUNDCLOSE)",
            Box::new(|d| {
                d.statement
                    .push(refunded("MP0002", "RF0002", 8, "PROCESSING"));
                d.refunds
                    .push(refund("MP0002", "RF0002", 8, LocalRefundStatus::Failed));
            }),
            vec![],
        ),
        (
            "WeChat lists a refund as succeeded that failed here",
            Box::new(|d| {
                d.statement.push(refunded("MP0002", "RF0002", 8, "SUCCESS"));
                d.refunds
                    .push(refund("MP0002", "RF0002", 8, LocalRefundStatus::Failed));
            }),
            vec![(Status, "MP0002", Some("RF0002"), false)],
        ),
        (
            "minipay holds the refund on another day",
            Box::new(|d| {
                d.statement.push(refunded("MP0002", "RF0002", 8, "SUCCESS"));
                d.elsewhere_refunds.push(refund(
                    "MP0002",
                    "RF0002",
                    8,
                    LocalRefundStatus::Succeeded,
                ));
            }),
            vec![(Status, "MP0002", Some("RF0002"), false)],
        ),
        (
            "WeChat lists a refund twice",
            Box::new(|d| {
                d.statement
                    .push(refunded("MP0001", "RF0001", 50, "PROCESSING"))
            }),
            vec![(MissingLocal, "MP0001", Some("RF0001"), false)],
        ),
    ];
    for (name, change, expected) in cases {
        let mut d = day();
        change(&mut d);
        let report = run(d);
        let expected: Vec<_> = expected
            .into_iter()
            .map(|(k, otn, orn, h)| (k, otn.to_owned(), orn.map(str::to_owned), h))
            .collect();
        assert_eq!(found(&report), expected, "{name}: {report:#?}");
    }
}

#[test]
fn mismatches_describe_both_sides() {
    let mut d = day();
    d.statement.push(paid("MP0003", 500, "SUCCESS"));
    d.elsewhere.push(order("MP0003", 500, Ready));
    d.statement[0] = paid("MP0002", 87, "SUCCESS");
    let report = run(d);
    let sides: Vec<_> = report
        .mismatches
        .iter()
        .map(|m| (m.wechat.as_str(), m.local.as_str()))
        .collect();
    assert_eq!(
        sides,
        [("SUCCESS 87", "paid 88"), ("SUCCESS 500", "ready 500")]
    );
    assert_eq!(report.healable().collect::<Vec<_>>(), ["MP0003"]);
    assert_eq!(report.count(MismatchKind::Amount), 1);
    // WeChat's totals count what it lists as paid; minipay's count its own paid orders.
    assert_eq!(report.wechat.payments, 3);
    assert_eq!(report.wechat.payment_fee, 3400 + 87 + 500);
    assert_eq!(report.local.payments, 2);
    assert_eq!(report.local.payment_fee, 3488);
}

#[test]
fn only_lines_the_day_does_not_explain_are_looked_up() {
    let mut rec = DayReconciliation::new(day().orders, day().refunds);
    for entry in day().statement {
        rec.add(entry);
    }
    rec.add(paid("MPZ", 1, "SUCCESS"));
    rec.add(paid("MPA", 1, "SUCCESS"));
    rec.add(refunded("MPA", "RFA", 1, "SUCCESS"));
    assert_eq!(
        rec.unresolved(),
        Unresolved {
            out_trade_nos: vec!["MPA", "MPZ"],
            out_refund_nos: vec!["RFA"],
        }
    );
}

#[test]
fn the_report_serialises_in_the_contract_shape() {
    let mut d = day();
    d.statement.push(paid("MPGHOST1", 100, "SUCCESS"));
    let json = serde_json::to_value(run(d)).unwrap();
    assert_eq!(
        json["wechat"],
        serde_json::json!({"payments": 3, "payment_fee": 3588, "refunds": 1, "refund_fee": 50})
    );
    assert_eq!(
        json["mismatches"][0],
        serde_json::json!({"kind": "missing_local", "out_trade_no": "MPGHOST1",
            "wechat": "SUCCESS 100", "local": "absent", "healable": false})
    );
}

#[test]
fn download_failures_are_classified_like_wechat_documents_them() {
    use BillFailure::*;
    for (msg, expected) in [
        ("No Bill Exist", NoBill),
        ("NO Bill Exist", NoBill),
        ("Bill Creating", NotYet),
        ("SYSTEMERROR", Retryable),
        ("system error", Retryable),
        ("CompressGZip Error", Retryable),
        ("UnCompressGZip Error", Retryable),
        ("invalid bill_type", Permanent),
        ("SIGN ERROR", Permanent),
        ("data format error", Permanent),
        ("missing parameter", Permanent),
        ("invalid bill_date", Permanent),
        ("something new", Permanent),
    ] {
        assert_eq!(classify_bill_failure(msg), expected, "{msg}");
    }
}
