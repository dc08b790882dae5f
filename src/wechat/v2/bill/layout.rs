//! The header lines of `bill_type=ALL` statements: which column layouts and summaries exist,
//! recognised by their exact column names (docs/bills.md).

/// The column layouts of an `ALL` statement this parser reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Layout {
    /// 24 columns: merchants without 免充值券.
    Columns24,
    /// 27 columns: merchants with 免充值券 (every merchant since 2018) — adds
    /// 订单金额, 申请退款金额 and 费率备注.
    Columns27,
    /// 24 columns under the names of the 2014 documentation (子商户号, 总金额,
    /// 代金券或立减优惠金额, ...), with the five-column summary of that time.
    Legacy24,
}

const COLUMNS_24: [&str; 24] = [
    "交易时间",
    "公众账号ID",
    "商户号",
    "特约商户号",
    "设备号",
    "微信订单号",
    "商户订单号",
    "用户标识",
    "交易类型",
    "交易状态",
    "付款银行",
    "货币种类",
    "应结订单金额",
    "代金券金额",
    "微信退款单号",
    "商户退款单号",
    "退款金额",
    "充值券退款金额",
    "退款类型",
    "退款状态",
    "商品名称",
    "商户数据包",
    "手续费",
    "费率",
];

/// The name of column `at` (0-based) under today's names, for error messages.
pub(super) fn column_name(at: usize) -> &'static str {
    COLUMNS_24
        .get(at)
        .or_else(|| EXTRA_27.get(at.wrapping_sub(24)))
        .copied()
        .unwrap_or("?")
}

const EXTRA_27: [&str; 3] = ["订单金额", "申请退款金额", "费率备注"];

/// The 2014 names, where they differ from today's: (index, name).
const LEGACY_NAMES: [(usize, &str); 4] = [
    (3, "子商户号"),
    (12, "总金额"),
    (13, "代金券或立减优惠金额"),
    (17, "代金券或立减优惠退款金额"),
];

/// The summary header lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SummaryLayout {
    /// `总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额`
    Seven,
    /// The first five of those.
    Five,
    /// `总交易单数,总交易额,总退款金额,总代金券或立减优惠退款金额,手续费总金额` (2014).
    Legacy,
}

const SUMMARY_7: [&str; 7] = [
    "总交易单数",
    "应结订单总金额",
    "退款总金额",
    "充值券退款总金额",
    "手续费总金额",
    "订单总金额",
    "申请退款总金额",
];

const SUMMARY_LEGACY: [&str; 5] = [
    "总交易单数",
    "总交易额",
    "总退款金额",
    "总代金券或立减优惠退款金额",
    "手续费总金额",
];

impl Layout {
    /// Number of columns of a row.
    pub fn columns(self) -> usize {
        match self {
            Layout::Columns27 => 27,
            Layout::Columns24 | Layout::Legacy24 => 24,
        }
    }

    /// The header line, without line break.
    pub fn header(self) -> String {
        let mut names: Vec<&str> = COLUMNS_24.to_vec();
        match self {
            Layout::Columns24 => {}
            Layout::Columns27 => names.extend(EXTRA_27),
            Layout::Legacy24 => {
                for (at, name) in LEGACY_NAMES {
                    names[at] = name;
                }
            }
        }
        names.join(",")
    }

    /// Recognises a header line (spaces around names are ignored).
    pub fn recognise(line: &str) -> Option<Layout> {
        let names = split_names(line);
        [Layout::Columns27, Layout::Columns24, Layout::Legacy24]
            .into_iter()
            .find(|layout| names == split_names(&layout.header()))
    }

    /// The summary this layout's statements end with when WeChat writes them.
    pub fn summary_layout(self) -> SummaryLayout {
        match self {
            Layout::Columns27 => SummaryLayout::Seven,
            Layout::Columns24 => SummaryLayout::Five,
            Layout::Legacy24 => SummaryLayout::Legacy,
        }
    }

    /// Whether rows carry 订单金额 and 申请退款金额.
    pub fn has_order_amounts(self) -> bool {
        self == Layout::Columns27
    }
}

impl SummaryLayout {
    /// The summary header line, without line break.
    pub fn header(self) -> String {
        match self {
            SummaryLayout::Seven => SUMMARY_7.join(","),
            SummaryLayout::Five => SUMMARY_7[..5].join(","),
            SummaryLayout::Legacy => SUMMARY_LEGACY.join(","),
        }
    }

    /// Number of values.
    pub fn columns(self) -> usize {
        match self {
            SummaryLayout::Seven => 7,
            SummaryLayout::Five | SummaryLayout::Legacy => 5,
        }
    }

    /// Recognises a summary header line.
    pub fn recognise(line: &str) -> Option<SummaryLayout> {
        let names = split_names(line);
        [
            SummaryLayout::Seven,
            SummaryLayout::Five,
            SummaryLayout::Legacy,
        ]
        .into_iter()
        .find(|summary| names == split_names(&summary.header()))
    }

    /// Whether a statement of `layout` may end with this summary: the five-column summaries
    /// go with any layout, the seven-column one needs the 27 columns it sums.
    pub fn fits(self, layout: Layout) -> bool {
        self != SummaryLayout::Seven || layout.has_order_amounts()
    }
}

fn split_names(line: &str) -> Vec<String> {
    line.split(',')
        .map(|name| name.chars().filter(|c| !c.is_whitespace()).collect())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_layout_recognises_its_own_header() {
        for layout in [Layout::Columns24, Layout::Columns27, Layout::Legacy24] {
            assert_eq!(Layout::recognise(&layout.header()), Some(layout));
            assert_eq!(layout.header().split(',').count(), layout.columns());
            let summary = layout.summary_layout();
            assert_eq!(SummaryLayout::recognise(&summary.header()), Some(summary));
            assert!(summary.fits(layout));
        }
        assert_eq!(
            Layout::recognise(
                "交易时间,公众账号 ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率"
            ),
            Some(Layout::Columns24)
        );
        assert_eq!(Layout::recognise("交易时间,公众账号ID"), None);
        assert!(!SummaryLayout::Seven.fits(Layout::Columns24));
    }
}
