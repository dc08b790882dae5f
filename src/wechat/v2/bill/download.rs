//! `downloadbill` (no client certificate): the signed request, then the answer streamed into
//! the parser as it arrives — text, or gzip inflated on the way — so that a statement of any
//! size never sits in memory whole. A failure is always an unsigned XML document (it starts
//! with `<`), classified by `minipay_jobs::bill::classify_bill_failure`.

use std::io::Write;
use std::time::Duration;

use chrono::NaiveDate;
use flate2::write::GzDecoder;
use minipay_jobs::Transport;
use minipay_jobs::bill::{BillFailure, classify_bill_failure};

use super::reader::ChunkParser;
use super::{BillError, BillErrorKind, BillRow, Statement, bill_date};
use crate::wechat::v2::client::PayClient;
use crate::wechat::v2::reply::Answer;
use crate::wechat::v2::sign::nonce;
use crate::wechat::v2::{Fields, Merchant, xml};

/// One day's statement to ask for (`bill_type=ALL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BillQuery {
    /// The Beijing day.
    pub day: NaiveDate,
    /// Ask for `tar_type=GZIP`.
    pub gzip: bool,
    /// For the whole download; a day's statement can be tens of megabytes.
    pub timeout: Duration,
}

impl BillQuery {
    /// Gzip, five minutes.
    pub fn new(day: NaiveDate) -> Self {
        BillQuery {
            day,
            gzip: true,
            timeout: Duration::from_secs(300),
        }
    }

    /// The signed request fields.
    pub fn request(&self, merchant: &Merchant, nonce: &str) -> Fields {
        let mut fields = Fields::new();
        fields.set("bill_date", bill_date(self.day));
        fields.set("bill_type", "ALL");
        if self.gzip {
            fields.set("tar_type", "GZIP");
        }
        merchant.signed(fields, nonce)
    }
}

/// Why no statement was had.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// WeChat answered `return_code=FAIL` with this message (`No Bill Exist`, ...).
    #[error("WeChat Pay refused the download: {return_msg:?}")]
    Refused { return_msg: String },
    /// No usable answer: connect failure, timeout, 5xx, a body cut off or not readable.
    #[error("no usable answer from WeChat Pay ({0:?})")]
    Transport(Transport),
    /// HTTP 4xx.
    #[error("WeChat Pay answered HTTP {0}")]
    Rejected(u16),
    /// The statement cannot be read or does not add up to its summary.
    #[error(transparent)]
    Statement(#[from] BillError),
    /// The gzip body is corrupt.
    #[error("the gzip statement cannot be inflated: {0}")]
    Gzip(String),
}

impl DownloadError {
    /// What the failure means for the day.
    pub fn failure(&self) -> BillFailure {
        match self {
            DownloadError::Refused { return_msg } => classify_bill_failure(return_msg),
            DownloadError::Transport(_) | DownloadError::Gzip(_) => BillFailure::Retryable,
            DownloadError::Rejected(_) => BillFailure::Permanent,
            // A body that stops before its summary was most likely cut off on the way.
            DownloadError::Statement(e) if e.kind == BillErrorKind::NoSummary => {
                BillFailure::Retryable
            }
            DownloadError::Statement(_) => BillFailure::Permanent,
        }
    }

    fn from_answer(answer: Answer) -> Self {
        match answer {
            Answer::Rejected(status) => DownloadError::Rejected(status),
            Answer::Failed(transport) => DownloadError::Transport(transport),
            Answer::Xml { .. } => DownloadError::Transport(Transport::Unreadable),
        }
    }
}

/// Downloads one day's statement, handing each row to `on_row` as soon as its line has
/// arrived; the summary is checked against the rows at the end. Rows handed over before an
/// error must be discarded by the caller.
pub async fn download_bill(
    client: &PayClient,
    query: &BillQuery,
    mut on_row: impl FnMut(BillRow),
) -> Result<Statement, DownloadError> {
    let request = query.request(client.merchant(), &nonce());
    let mut response = client
        .post_unread("/pay/downloadbill", &request, query.timeout)
        .await
        .map_err(DownloadError::from_answer)?;
    let mut body = Body::Start(Vec::new());
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => body.push(&chunk, &mut on_row)?,
            Ok(None) => break,
            Err(e) if e.is_timeout() => return Err(DownloadError::Transport(Transport::Timeout)),
            Err(_) => return Err(DownloadError::Transport(Transport::Unreadable)),
        }
    }
    body.finish(&mut on_row)
}

const BOM: &[u8] = b"\xEF\xBB\xBF";
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
/// gzip is inflated this many compressed bytes at a time, which bounds what one step can
/// produce (deflate expands at most about 1000 times).
const INFLATE_STEP: usize = 1024;

/// The answer body as it arrives: undecided until its first bytes are seen.
enum Body {
    Start(Vec<u8>),
    Xml(Vec<u8>),
    Text(ChunkParser),
    Gzip(Box<GzDecoder<Vec<u8>>>, ChunkParser),
}

#[derive(Clone, Copy)]
enum Kind {
    Xml,
    Text,
    Gzip,
}

/// What the body is, from its first bytes; `None` while they do not tell yet.
fn kind(prefix: &[u8], at_end: bool) -> Option<Kind> {
    if prefix.starts_with(&GZIP_MAGIC) {
        return Some(Kind::Gzip);
    }
    let rest = prefix.strip_prefix(BOM).unwrap_or(prefix);
    let undecided = (BOM.starts_with(prefix) && !prefix.is_empty()) || prefix == [GZIP_MAGIC[0]];
    if undecided && !at_end {
        return None;
    }
    match rest.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'<') => Some(Kind::Xml),
        Some(_) => Some(Kind::Text),
        None if at_end => Some(Kind::Text),
        None => None,
    }
}

impl Body {
    fn push(
        &mut self,
        chunk: &[u8],
        on_row: &mut impl FnMut(BillRow),
    ) -> Result<(), DownloadError> {
        match self {
            Body::Start(prefix) => {
                prefix.extend_from_slice(chunk);
                if let Some(kind) = kind(prefix, false) {
                    let prefix = std::mem::take(prefix);
                    *self = Body::of(kind);
                    self.push(&prefix, on_row)?;
                }
                Ok(())
            }
            Body::Xml(buf) => {
                buf.extend_from_slice(chunk);
                if buf.len() > xml::DEFAULT_BODY_LIMIT {
                    return Err(DownloadError::Transport(Transport::Unreadable));
                }
                Ok(())
            }
            Body::Text(parser) => Ok(parser.push(chunk, on_row)?),
            Body::Gzip(decoder, parser) => {
                for piece in chunk.chunks(INFLATE_STEP) {
                    decoder
                        .write_all(piece)
                        .map_err(|e| DownloadError::Gzip(e.to_string()))?;
                    let inflated = decoder.get_mut();
                    parser.push(inflated, on_row)?;
                    inflated.clear();
                }
                Ok(())
            }
        }
    }

    fn of(kind: Kind) -> Body {
        match kind {
            Kind::Xml => Body::Xml(Vec::new()),
            Kind::Text => Body::Text(ChunkParser::new()),
            Kind::Gzip => Body::Gzip(Box::new(GzDecoder::new(Vec::new())), ChunkParser::new()),
        }
    }

    fn finish(self, on_row: &mut impl FnMut(BillRow)) -> Result<Statement, DownloadError> {
        match self {
            Body::Start(prefix) => {
                let kind = kind(&prefix, true).unwrap_or(Kind::Text);
                let mut body = Body::of(kind);
                body.push(&prefix, on_row)?;
                body.finish(on_row)
            }
            Body::Xml(buf) => {
                let fields = xml::parse(&buf, xml::DEFAULT_BODY_LIMIT)
                    .map_err(|_| DownloadError::Transport(Transport::Unreadable))?;
                Err(DownloadError::Refused {
                    return_msg: fields.get("return_msg").unwrap_or_default().to_owned(),
                })
            }
            Body::Text(parser) => Ok(parser.finish(on_row)?),
            Body::Gzip(mut decoder, mut parser) => {
                decoder
                    .try_finish()
                    .map_err(|e| DownloadError::Gzip(e.to_string()))?;
                parser.push(decoder.get_ref(), on_row)?;
                Ok(parser.finish(on_row)?)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wechat::v2::bill::{Layout, StatementWriter};

    fn statement() -> Vec<u8> {
        let mut text = b"\xEF\xBB\xBF".to_vec();
        let writer = StatementWriter::new(Vec::new(), Layout::Columns24).unwrap();
        text.extend(writer.finish().unwrap());
        text
    }

    /// Feeds `bytes` in chunks of `size` and ends the body.
    fn read(bytes: &[u8], size: usize) -> Result<Statement, DownloadError> {
        let mut body = Body::Start(Vec::new());
        let mut ignore = |_| {};
        for chunk in bytes.chunks(size) {
            body.push(chunk, &mut ignore)?;
        }
        body.finish(&mut ignore)
    }

    #[test]
    fn the_first_bytes_tell_statement_gzip_and_failure_apart_however_they_arrive() {
        let text = statement();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&text).unwrap();
        let gzip = gz.finish().unwrap();
        let failure = b"\xEF\xBB\xBF\r\n <xml><return_code><![CDATA[FAIL]]></return_code><return_msg><![CDATA[No Bill Exist]]></return_msg></xml>";
        for size in [1, 2, 3, 1000] {
            assert_eq!(read(&text, size).unwrap().layout, Layout::Columns24);
            assert_eq!(read(&gzip, size).unwrap().layout, Layout::Columns24);
            match read(failure, size) {
                Err(e @ DownloadError::Refused { .. }) => {
                    assert_eq!(e.failure(), BillFailure::NoBill)
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(
            read(&gzip[..gzip.len() - 9], 100),
            Err(DownloadError::Gzip(_))
        ));
        assert_eq!(
            read(&text[..text.len() / 2], 7).unwrap_err().failure(),
            BillFailure::Retryable,
            "a statement cut before its summary is worth asking again"
        );
        assert!(matches!(
            read(b"<xml", 2),
            Err(DownloadError::Transport(Transport::Unreadable))
        ));
        assert_eq!(read(b"", 1).unwrap_err().failure(), BillFailure::Permanent);
    }
}
