//! The statement parser: golden files of published samples (tests/fixtures/bills/README.md),
//! the errors it names, and properties (render → parse, yuan ↔ fen, arbitrary bytes).
// A case reads as one story, so the 80-line limit of production functions is lifted here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

use chrono::{NaiveDate, NaiveDateTime};
use minipay::wechat::v2::bill::{
    BillErrorKind, BillRow, ChunkParser, Fee, Layout, OrderAmounts, RowRefund, StatementReader,
    StatementWriter, Summary, format_yuan, parse_statement, parse_yuan, render_statement,
};
use minipay_jobs::bill::{WechatEntry, WechatPayment};
use proptest::prelude::*;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/bills/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn time(text: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S").unwrap()
}

/// The two rows of WeChat's 2014 example, as every copy of it has them.
fn check_2014_example(bytes: &[u8], bank: &str) {
    let (rows, statement) = parse_statement(bytes).unwrap();
    assert_eq!(statement.layout, Layout::Legacy24);
    assert_eq!(
        statement.summary,
        Summary {
            count: 2,
            settlement_total_fee: 2,
            refund_fee: 0,
            coupon_refund_fee: 0,
            poundage: Fee(0),
            total_fee: None,
            applied_refund_fee: None,
        }
    );
    let expected = |at: &str, txn: &str, otn: &str, openid: &str| BillRow {
        trade_time: time(at),
        appid: "wx2421b1c4370ec43b".into(),
        mch_id: "10000100".into(),
        sub_mch_id: "0".into(),
        device_info: "1000".into(),
        transaction_id: txn.into(),
        out_trade_no: otn.into(),
        openid: openid.into(),
        trade_type: "MICROPAY".into(),
        trade_state: "SUCCESS".into(),
        bank_type: bank.into(),
        fee_type: "CNY".into(),
        settlement_total_fee: 1,
        coupon_fee: 0,
        refund: None,
        body: "被扫支付测试".into(),
        attach: "订单额外描述".into(),
        poundage: Fee(0),
        rate: "0.60%".into(),
        order: None,
    };
    assert_eq!(
        rows,
        [
            expected(
                "2014-11-10 16:33:45",
                "1001690740201411100005734289",
                "1415640626",
                "085e9858e3ba5186aafcbaed1"
            ),
            expected(
                "2014-11-10 16:46:14",
                "1002780740201411100005729794",
                "1415635270",
                "085e9858e90ca40c0b5aee463"
            ),
        ]
    );
    assert_eq!(
        rows[0].entry(),
        WechatEntry::Payment(WechatPayment {
            out_trade_no: "1415640626".into(),
            transaction_id: "1001690740201411100005734289".into(),
            fee: 1,
            state: "SUCCESS".into(),
        })
    );
}

#[test]
fn golden_official_example_every_row_exact_and_totals_equal_the_summary() {
    check_2014_example(&fixture("official-9_6-example.csv"), "CFT");
}

#[test]
fn golden_wxjava_2014_layout_with_full_width_colons() {
    check_2014_example(&fixture("wxjava-all-legacy-24.csv"), "OTHERS");
}

#[test]
fn golden_wxjava_27_column_excerpt_parses_exactly_and_is_refused_as_not_adding_up() {
    let bytes = fixture("wxjava-all-27-excerpt.csv");
    let mut reader = StatementReader::new(&bytes[..]);
    let rows: Vec<BillRow> = reader.by_ref().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(row.trade_time, time("2019-07-25 08:35:41"));
    assert_eq!(row.out_trade_no, "XXXXXXXXXX");
    assert_eq!(row.bank_type, "PSBC_DEBIT");
    assert_eq!(row.settlement_total_fee, 600);
    assert_eq!(row.poundage, Fee(4000), "0.04000 yuan");
    assert_eq!(
        row.order,
        Some(OrderAmounts {
            total_fee: 600,
            applied_refund_fee: 0,
            rate_remark: String::new(),
        })
    );
    let unchecked = reader.finish_unchecked().unwrap();
    assert_eq!(unchecked.layout, Layout::Columns27);
    assert_eq!(
        unchecked.declared,
        Summary {
            count: 48,
            settlement_total_fee: 576,
            refund_fee: 142,
            coupon_refund_fee: 0,
            poundage: Fee(1000),
            total_fee: Some(576),
            applied_refund_fee: Some(142),
        }
    );
    // The sample is an excerpt: one row shown under a summary of 48. A statement whose rows
    // do not add up to its summary is an error.
    let refused = unchecked.check().unwrap_err();
    assert_eq!(refused.line, 4);
    assert_eq!(
        refused.kind,
        BillErrorKind::SummaryMismatch {
            field: "总交易单数",
            rows: "1".into(),
            summary: "48".into()
        }
    );
    assert_eq!(
        refused.to_string(),
        "statement line 4: 总交易单数: the rows add up to 1, the summary says 48"
    );
}

#[test]
fn golden_success_and_refund_statements_are_not_all_statements() {
    for name in ["wxjava-success-20.csv", "wxjava-refund-29.csv"] {
        let error = parse_statement(&fixture(name)).unwrap_err();
        assert_eq!(error.line, 1, "{name}");
        assert!(
            matches!(error.kind, BillErrorKind::UnknownHeader(_)),
            "{name}: {error}"
        );
    }
}

#[test]
fn a_bom_crlf_and_any_chunking_read_the_same() {
    let plain = fixture("official-9_6-example.csv");
    let (rows, statement) = parse_statement(&plain).unwrap();
    let text = String::from_utf8(plain).unwrap();
    let crlf = format!("\u{feff}{}", text.replace('\n', "\r\n"));
    assert_eq!(
        parse_statement(crlf.as_bytes()).unwrap(),
        (rows.clone(), statement)
    );
    for size in [1, 2, 3, 7, 64, 4096] {
        let mut parser = ChunkParser::new();
        let mut got = Vec::new();
        for chunk in crlf.as_bytes().chunks(size) {
            parser.push(chunk, &mut |row| got.push(row)).unwrap();
        }
        assert_eq!(parser.finish(&mut |row| got.push(row)).unwrap(), statement);
        assert_eq!(got, rows, "chunks of {size}");
    }
}

fn row(otn: &str, fen: i64, refund: Option<(&str, i64)>) -> BillRow {
    BillRow {
        trade_time: time("2026-11-29 10:23:44"),
        appid: "wxd930ea5d5a258f4f".into(),
        mch_id: "10000100".into(),
        sub_mch_id: "0".into(),
        device_info: String::new(),
        transaction_id: format!("4200000001202611290000{otn}"),
        out_trade_no: otn.into(),
        openid: "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o".into(),
        trade_type: "JSAPI".into(),
        trade_state: if refund.is_some() {
            "REFUND"
        } else {
            "SUCCESS"
        }
        .into(),
        bank_type: "OTHERS".into(),
        fee_type: "CNY".into(),
        settlement_total_fee: if refund.is_some() { 0 } else { fen },
        coupon_fee: 0,
        refund: refund.map(|(orn, fee)| RowRefund {
            refund_id: format!("5030{orn}"),
            out_refund_no: orn.into(),
            refund_fee: fee,
            coupon_refund_fee: 0,
            refund_type: "ORIGINAL".into(),
            refund_status: "PROCESSING".into(),
        }),
        body: "咖啡, 拿铁".into(),
        attach: "{\"k\":\"v,w\"}".into(),
        poundage: Fee(if refund.is_some() { -1000 } else { 2000 }),
        rate: "0.60%".into(),
        order: Some(OrderAmounts {
            total_fee: if refund.is_some() { 0 } else { fen },
            applied_refund_fee: refund.map_or(0, |(_, fee)| fee),
            rate_remark: String::new(),
        }),
    }
}

fn sample() -> String {
    let rows = [
        row("MP0001", 3400, None),
        row("MP0002", 88, None),
        row("MP0001", 0, Some(("RF0001", 50))),
    ];
    String::from_utf8(render_statement(Layout::Columns27, &rows).unwrap()).unwrap()
}

#[test]
fn a_rendered_statement_with_a_refund_reads_back() {
    let text = sample();
    let (rows, statement) = parse_statement(text.as_bytes()).unwrap();
    assert_eq!(rows[0], row("MP0001", 3400, None));
    assert_eq!(rows[2], row("MP0001", 0, Some(("RF0001", 50))));
    assert_eq!(
        rows[0].body, "咖啡, 拿铁",
        "a comma inside a value stays in it"
    );
    assert_eq!(statement.summary.count, 3);
    assert_eq!(statement.summary.total_fee, Some(3488));
    assert_eq!(statement.summary.applied_refund_fee, Some(50));
    assert_eq!(statement.summary.poundage, Fee(3000));
    assert!(text.ends_with("`3,`34.88,`0.50,`0.00,`0.03000,`34.88,`0.50\r\n"));
}

/// Replaces line `line` (1-based) of the sample and parses it.
fn with_line(
    line: usize,
    replace: &dyn Fn(&str) -> String,
) -> minipay::wechat::v2::bill::BillError {
    let text: Vec<String> = sample()
        .split("\r\n")
        .enumerate()
        .map(|(i, l)| {
            if i + 1 == line {
                replace(l)
            } else {
                l.to_owned()
            }
        })
        .collect();
    parse_statement(text.join("\r\n").as_bytes()).unwrap_err()
}

#[test]
fn errors_name_the_line_and_what_is_wrong() {
    type Edit = Box<dyn Fn(&str) -> String>;
    let cases: Vec<(usize, Edit, &str)> = vec![
        (
            1,
            Box::new(|l| l.replace("商户号", "商户编号")),
            "statement line 1: unknown header",
        ),
        (
            2,
            Box::new(|l| l.replacen(",`", ",", 1)),
            "statement line 2: has 26 columns where the header has 27",
        ),
        (
            2,
            Box::new(|l| l.replacen("`34.00", "`34.001", 1)),
            "statement line 2: 应结订单金额 \"34.001\" is not valid",
        ),
        (
            2,
            Box::new(|l| l.replacen("`34.00", "`3.4e1", 1)),
            "statement line 2: 应结订单金额 \"3.4e1\" is not valid",
        ),
        (
            3,
            Box::new(|l| l.replace("2026-11-29 10:23:44", "2026-11-31 10:23:44")),
            "statement line 3: 交易时间 \"2026-11-31 10:23:44\" is not valid",
        ),
        (
            3,
            Box::new(|l| l.replace("`0,`0,`0.00", "`0,`RF9,`0.00")),
            "statement line 3: a payment line with refund columns filled",
        ),
        (
            4,
            Box::new(|l| l.replace("`5030RF0001", "`0")),
            "statement line 4: a refund line without",
        ),
        (
            4,
            Box::new(|l| l.trim_start_matches('`').to_owned()),
            "statement line 4: expected a row (starting with a backtick) or the summary header",
        ),
        (
            5,
            Box::new(|_| "总交易单数,总交易额,总退款金额".into()),
            "statement line 5: expected a row",
        ),
        (
            6,
            Box::new(|l| l.replace("`3,", "`4,")),
            "statement line 6: 总交易单数: the rows add up to 3, the summary says 4",
        ),
        (
            6,
            Box::new(|l| {
                l.replace(
                    "`34.88,`0.50,`0.00,`0.03000,",
                    "`34.87,`0.50,`0.00,`0.03000,",
                )
            }),
            "statement line 6: 应结订单总金额: the rows add up to 3488, the summary says 3487",
        ),
        (
            6,
            Box::new(|l| l.replace("`0.50,`0.00,`0.03000", "`0.51,`0.00,`0.03000")),
            "statement line 6: 退款总金额: the rows add up to 50, the summary says 51",
        ),
        (
            6,
            Box::new(|l| l.replace("`0.03000", "`0.03001")),
            "statement line 6: 手续费总金额: the rows add up to 3000, the summary says 3001",
        ),
        (
            6,
            Box::new(|l| format!("{}`34.89,`0.50", l.strip_suffix("`34.88,`0.50").unwrap())),
            "statement line 6: 订单总金额: the rows add up to 3488, the summary says 3489",
        ),
        (
            6,
            Box::new(|l| format!("{}`", &l[..l.len() - 4])),
            "statement line 6: 申请退款总金额 \"`\" is not valid",
        ),
        (
            7,
            Box::new(|_| "more".into()),
            "statement line 7: text after the summary: \"more\"",
        ),
    ];
    for (line, replace, expected) in cases {
        let error = with_line(line, &*replace);
        assert!(
            error.to_string().starts_with(expected),
            "line {line}: got {error:?}, wanted {expected}"
        );
    }
}

#[test]
fn truncated_empty_and_foreign_statements_are_refused() {
    let text = sample();
    let cut = &text[..text.find("总交易单数").unwrap()];
    let error = parse_statement(cut.as_bytes()).unwrap_err();
    assert_eq!(error.kind, BillErrorKind::NoSummary);
    assert_eq!(error.line, 4);
    // Cut in the middle of a row: the last line is partial, so the summary is missing.
    let cut = &text[..text.find("MP0002").unwrap()];
    let error = parse_statement(cut.as_bytes()).unwrap_err();
    assert_eq!((error.line, error.kind), (3, BillErrorKind::NoSummary));
    let mut parser = ChunkParser::new();
    parser.push(cut.as_bytes(), &mut |_| {}).unwrap();
    let error = parser.finish(&mut |_| {}).unwrap_err();
    assert_eq!((error.line, error.kind), (3, BillErrorKind::NoSummary));
    assert_eq!(parse_statement(b"").unwrap_err().kind, BillErrorKind::Empty);
    // GBK bytes of 交易时间
    let error = parse_statement(b"\xbd\xbb\xd2\xd7\xca\xb1\xbc\xe4\r\n").unwrap_err();
    assert_eq!((error.line, error.kind), (1, BillErrorKind::NotUtf8));
    let long = format!("{}\r\n`{}", Layout::Columns27.header(), "x".repeat(70_000));
    let error = parse_statement(long.as_bytes()).unwrap_err();
    assert_eq!((error.line, error.kind), (2, BillErrorKind::TooLong));
    // The seven-column summary needs the 27 columns it adds up.
    let text = format!(
        "{}\r\n{}\r\n`0,`0.00,`0.00,`0.00,`0.00000,`0.00,`0.00\r\n",
        Layout::Columns24.header(),
        minipay::wechat::v2::bill::SummaryLayout::Seven.header()
    );
    let error = parse_statement(text.as_bytes()).unwrap_err();
    assert!(
        matches!(error.kind, BillErrorKind::SummaryLayout(_)),
        "{error}"
    );
}

#[test]
fn a_statement_without_rows_is_read() {
    for layout in [Layout::Columns24, Layout::Columns27, Layout::Legacy24] {
        let bytes = StatementWriter::new(Vec::new(), layout)
            .unwrap()
            .finish()
            .unwrap();
        let (rows, statement) = parse_statement(&bytes).unwrap();
        assert!(rows.is_empty());
        assert_eq!(statement.summary.count, 0);
    }
}

#[test]
fn the_writer_refuses_what_the_format_cannot_carry() {
    let mut bad = row("MP0001", 1, None);
    bad.body = "a,`b".into();
    assert!(render_statement(Layout::Columns27, [&bad]).is_err());
    bad.body = "a\nb".into();
    assert!(render_statement(Layout::Columns27, [&bad]).is_err());
}

// ---- properties ----

/// Text a statement value can carry: no line break, no `,\``.
fn value() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_ ,`{}\":.%咖啡拿铁测试-]{0,12}".prop_filter("no separator", |s| !s.contains(",`"))
}

fn id() -> impl Strategy<Value = String> {
    "[0-9A-Za-z_]{1,32}".prop_filter("0 means none", |s| s != "0")
}

fn trade_time() -> impl Strategy<Value = NaiveDateTime> {
    (
        2000i32..2100,
        1u32..=12,
        1u32..=28,
        0u32..24,
        0u32..60,
        0u32..60,
    )
        .prop_map(|(y, m, d, hh, mm, ss)| {
            NaiveDate::from_ymd_opt(y, m, d)
                .and_then(|day| day.and_hms_opt(hh, mm, ss))
                .unwrap()
        })
}

fn arb_row(layout: Layout) -> impl Strategy<Value = BillRow> {
    let fen = 0i64..10_000_000_000;
    let refund = prop::option::of((id(), id(), fen.clone(), fen.clone(), value(), value()));
    (
        (
            trade_time(),
            value(),
            value(),
            value(),
            value(),
            id(),
            id(),
            value(),
        ),
        (
            value(),
            prop::sample::select(vec!["SUCCESS", "REVOKED", "CLOSED"]),
            value(),
            value(),
            fen.clone(),
            fen.clone(),
        ),
        (
            refund,
            value(),
            value(),
            -1_000_000_000i64..1_000_000_000,
            value(),
        ),
        (fen.clone(), fen, value()),
    )
        .prop_map(move |(a, b, c, d)| {
            let refund = c.0.map(
                |(refund_id, out_refund_no, refund_fee, coupon, kind, status)| RowRefund {
                    refund_id,
                    out_refund_no,
                    refund_fee,
                    coupon_refund_fee: coupon,
                    refund_type: kind,
                    refund_status: status,
                },
            );
            BillRow {
                trade_time: a.0,
                appid: a.1,
                mch_id: a.2,
                sub_mch_id: a.3,
                device_info: a.4,
                transaction_id: a.5,
                out_trade_no: a.6,
                openid: a.7,
                trade_type: b.0,
                trade_state: if refund.is_some() {
                    "REFUND".into()
                } else {
                    b.1.into()
                },
                bank_type: b.2,
                fee_type: b.3,
                settlement_total_fee: b.4,
                coupon_fee: b.5,
                refund,
                body: c.1,
                attach: c.2,
                poundage: Fee(c.3),
                rate: c.4,
                order: layout.has_order_amounts().then_some(OrderAmounts {
                    total_fee: d.0,
                    applied_refund_fee: d.1,
                    rate_remark: d.2,
                }),
            }
        })
}

fn arb_statement() -> impl Strategy<Value = (Layout, Vec<BillRow>)> {
    prop::sample::select(vec![Layout::Columns24, Layout::Columns27, Layout::Legacy24])
        .prop_flat_map(|layout| (Just(layout), prop::collection::vec(arb_row(layout), 0..12)))
}

proptest! {
    #[test]
    fn rendered_rows_parse_back_equal((layout, rows) in arb_statement()) {
        let mut writer = StatementWriter::new(Vec::new(), layout).unwrap();
        for row in &rows {
            writer.row(row).unwrap();
        }
        let sums = writer.sums();
        let bytes = writer.finish().unwrap();
        let (parsed, statement) = parse_statement(&bytes).unwrap();
        prop_assert_eq!(parsed, rows);
        prop_assert_eq!(statement.layout, layout);
        prop_assert_eq!(statement.summary.count, sums.count);
        prop_assert_eq!(statement.summary.settlement_total_fee, sums.settlement_total_fee);
        prop_assert_eq!(statement.summary.poundage, sums.poundage);
    }

    #[test]
    fn yuan_text_and_fen_round_trip(fen in any::<i64>()) {
        prop_assert_eq!(parse_yuan(&format_yuan(fen)), Some(fen));
        prop_assert_eq!(Fee::parse(&Fee(fen / 1000).to_string()), Some(Fee(fen / 1000)));
    }

    #[test]
    fn yuan_text_reads_exactly(whole in 0u64..100_000_000_000, cents in 0u64..100) {
        let text = format!("{whole}.{cents:02}");
        let fen = parse_yuan(&text).unwrap();
        prop_assert_eq!(fen, i64::try_from(whole * 100 + cents).unwrap());
        prop_assert_eq!(format_yuan(fen), text);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512), split in 1usize..64) {
        let _ = parse_statement(&bytes);
        let mut parser = ChunkParser::new();
        let mut ok = true;
        for chunk in bytes.chunks(split) {
            ok &= parser.push(chunk, &mut |_| {}).is_ok();
        }
        if ok {
            let _ = parser.finish(&mut |_| {});
        }
    }

    #[test]
    fn damaged_statements_never_panic(edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
        let mut bytes = sample().into_bytes();
        for (at, byte) in edits {
            let at = at.index(bytes.len());
            bytes[at] = byte;
        }
        let _ = parse_statement(&bytes);
    }
}
