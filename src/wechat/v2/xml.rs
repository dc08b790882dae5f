//! WeChat's flat `<xml>` documents (docs/wechat-pay-v2.md §2), read defensively: requests from
//! WeChat's side are attacker-reachable, so DOCTYPEs, entity declarations, nesting, repeated
//! fields, non-UTF-8 and oversized bodies are refused with a typed error before any use.

use minipay_jobs::NotifyVerdict;
use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::{BytesCData, BytesEnd, BytesStart, BytesText, Event};
use quick_xml::{Reader, Writer};

use super::Fields;

/// Real notifies are a few KiB; 64 KiB is plenty (docs/wechat-pay-v2.md §2).
pub const DEFAULT_BODY_LIMIT: usize = 64 * 1024;

/// More fields than any WeChat message carries, low enough to bound the work per body.
pub const MAX_FIELDS: usize = 256;

/// Why a body is not an acceptable WeChat XML document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    #[error("body of {size} bytes is over the {limit}-byte limit")]
    TooLarge { size: usize, limit: usize },
    #[error("body is empty")]
    Empty,
    #[error("body is not UTF-8")]
    NotUtf8,
    #[error("declared encoding {0:?} is not UTF-8")]
    UnsupportedEncoding(String),
    #[error("DOCTYPE declarations are not allowed")]
    Doctype,
    #[error("entity reference &{0}; is not allowed")]
    Entity(String),
    #[error("processing instructions are not allowed")]
    ProcessingInstruction,
    #[error("root element <{0}> is not the expected one")]
    WrongRoot(String),
    #[error("field <{0}> contains an element; WeChat documents are flat")]
    Nested(String),
    #[error("{0:?} is not a field name")]
    BadName(String),
    #[error("field <{0}> appears more than once")]
    Repeated(String),
    #[error("more than {MAX_FIELDS} fields")]
    TooManyFields,
    #[error("text outside any field")]
    StrayText,
    #[error("content after the root element")]
    TrailingContent,
    #[error("malformed XML: {0}")]
    Malformed(String),
}

impl XmlError {
    /// The notify verdict of a body refused for this reason.
    pub fn verdict(&self) -> NotifyVerdict {
        match self {
            XmlError::TooLarge { .. } => NotifyVerdict::TooLarge,
            XmlError::Empty => NotifyVerdict::Empty,
            XmlError::NotUtf8 | XmlError::UnsupportedEncoding(_) => NotifyVerdict::NotUtf8,
            XmlError::Doctype => NotifyVerdict::Doctype,
            XmlError::Entity(_) => NotifyVerdict::Entity,
            XmlError::ProcessingInstruction => NotifyVerdict::ProcessingInstruction,
            XmlError::WrongRoot(_) => NotifyVerdict::WrongRoot,
            XmlError::Nested(_) => NotifyVerdict::Nested,
            XmlError::Repeated(_) => NotifyVerdict::RepeatedField,
            XmlError::BadName(_) => NotifyVerdict::BadName,
            XmlError::TooManyFields => NotifyVerdict::TooManyFields,
            XmlError::StrayText | XmlError::TrailingContent | XmlError::Malformed(_) => {
                NotifyVerdict::Malformed
            }
        }
    }
}

/// Reads one WeChat document into its raw fields, refusing anything but flat `<xml>` with
/// UTF-8 text or CDATA values. Entity references are limited to the five predefined ones and
/// numeric character references.
pub fn parse(body: &[u8], limit: usize) -> Result<Fields, XmlError> {
    parse_root(body, limit, "xml")
}

/// [`parse`] for a flat document whose root element is `root` (the refund notify's decrypted
/// `req_info` is a `<root>` document), under the same rules.
pub fn parse_root(body: &[u8], limit: usize, root: &str) -> Result<Fields, XmlError> {
    if body.len() > limit {
        return Err(XmlError::TooLarge {
            size: body.len(),
            limit,
        });
    }
    let text = std::str::from_utf8(body).map_err(|_| XmlError::NotUtf8)?;
    if text.trim().is_empty() {
        return Err(XmlError::Empty);
    }
    let mut reader = Reader::from_str(text);
    reader.config_mut().trim_text(false);
    let mut at = At::BeforeRoot;
    let mut fields = Fields::new();
    loop {
        let event = reader
            .read_event()
            .map_err(|e| XmlError::Malformed(e.to_string()))?;
        match step(at, event, root, &mut fields)? {
            Some(next) => at = next,
            None => return Ok(fields),
        }
    }
}

/// Where the reader is in the document.
enum At {
    BeforeRoot,
    InRoot,
    InField { name: String, value: String },
    AfterRoot,
}

/// One event read at `at`: where the reader is next, or `None` at the end of a good document.
fn step(at: At, event: Event<'_>, root: &str, fields: &mut Fields) -> Result<Option<At>, XmlError> {
    let next = match (at, event) {
        (_, Event::DocType(_)) => return Err(XmlError::Doctype),
        (_, Event::PI(_)) => return Err(XmlError::ProcessingInstruction),
        (at, Event::Comment(_)) => at,
        (At::BeforeRoot, Event::Decl(decl)) => {
            if let Some(Ok(encoding)) = decl.encoding() {
                let encoding = String::from_utf8_lossy(&encoding).into_owned();
                if !encoding.eq_ignore_ascii_case("utf-8") {
                    return Err(XmlError::UnsupportedEncoding(encoding));
                }
            }
            At::BeforeRoot
        }
        (At::BeforeRoot, Event::Start(element)) => {
            expect_root(&element, root)?;
            At::InRoot
        }
        (At::BeforeRoot, Event::Empty(element)) => {
            expect_root(&element, root)?;
            At::AfterRoot
        }
        (At::InRoot, Event::Start(field)) => At::InField {
            name: element_name(&field)?,
            value: String::new(),
        },
        (At::InRoot, Event::Empty(field)) => {
            add(fields, element_name(&field)?, String::new())?;
            At::InRoot
        }
        (At::InRoot, Event::End(_)) => At::AfterRoot,
        (At::InField { name, value }, event) => return in_field(name, value, event, fields),
        (at @ (At::BeforeRoot | At::InRoot | At::AfterRoot), Event::Text(t)) => {
            if !t.iter().all(u8::is_ascii_whitespace) {
                return Err(match at {
                    At::AfterRoot => XmlError::TrailingContent,
                    _ => XmlError::StrayText,
                });
            }
            at
        }
        (At::AfterRoot, Event::Eof) => return Ok(None),
        (_, Event::Eof) => return Err(XmlError::Malformed("unexpected end of document".into())),
        (At::AfterRoot, _) => return Err(XmlError::TrailingContent),
        (_, Event::GeneralRef(r)) => {
            return Err(XmlError::Entity(String::from_utf8_lossy(&r).into_owned()));
        }
        (_, _) => return Err(XmlError::StrayText),
    };
    Ok(Some(next))
}

/// One event inside a field's element: its value grows, or the field ends.
fn in_field(
    name: String,
    mut value: String,
    event: Event<'_>,
    fields: &mut Fields,
) -> Result<Option<At>, XmlError> {
    let malformed = |e: &dyn std::fmt::Display| XmlError::Malformed(e.to_string());
    match event {
        Event::Text(t) => value.push_str(&decode_text(&t)?),
        Event::CData(c) => value.push_str(&c.decode().map_err(|e| malformed(&e))?),
        Event::GeneralRef(r) => {
            if let Some(ch) = r.resolve_char_ref().map_err(|e| malformed(&e))? {
                value.push(ch);
            } else {
                let entity = r.decode().map_err(|e| malformed(&e))?;
                match resolve_predefined_entity(&entity) {
                    Some(resolved) => value.push_str(resolved),
                    None => return Err(XmlError::Entity(entity.into_owned())),
                }
            }
        }
        Event::Start(_) | Event::Empty(_) => return Err(XmlError::Nested(name)),
        Event::End(_) => {
            add(fields, name, value)?;
            return Ok(Some(At::InRoot));
        }
        Event::Comment(_) => {}
        Event::DocType(_) => return Err(XmlError::Doctype),
        Event::PI(_) => return Err(XmlError::ProcessingInstruction),
        Event::Eof => return Err(XmlError::Malformed("unexpected end of document".into())),
        _ => return Err(XmlError::StrayText),
    }
    Ok(Some(At::InField { name, value }))
}

fn expect_root(element: &BytesStart<'_>, root: &str) -> Result<(), XmlError> {
    let name = element_name(element)?;
    if name == root {
        Ok(())
    } else {
        Err(XmlError::WrongRoot(name))
    }
}

/// Element names as WeChat writes them: an ASCII letter or `_`, then letters, digits, `_`,
/// `-` or `.`. Anything else (quotes, `/`, control characters, which the tokenizer lets
/// through in odd places) is refused, so that every field read can be written back.
fn element_name(element: &BytesStart<'_>) -> Result<String, XmlError> {
    let name = std::str::from_utf8(element.name().as_ref())
        .map_err(|_| XmlError::NotUtf8)?
        .to_owned();
    let mut bytes = name.bytes();
    let valid = bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if valid {
        Ok(name)
    } else {
        Err(XmlError::BadName(name))
    }
}

fn decode_text(text: &BytesText<'_>) -> Result<String, XmlError> {
    // Verbatim: no trimming and no end-of-line normalisation, because WeChat signed the
    // value as it sent it.
    text.decode()
        .map(|t| t.into_owned())
        .map_err(|e| XmlError::Malformed(e.to_string()))
}

fn add(fields: &mut Fields, name: String, value: String) -> Result<(), XmlError> {
    if fields.contains(&name) {
        return Err(XmlError::Repeated(name));
    }
    if fields.len() >= MAX_FIELDS {
        return Err(XmlError::TooManyFields);
    }
    fields.push_unchecked(name, value);
    Ok(())
}

/// Writes a flat `<xml>` document. Values are CDATA (a `]]>` inside one is split across
/// sections), except all-digit values, which go bare as WeChat sends them.
pub fn to_xml<'a>(fields: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut writer = Writer::new(Vec::with_capacity(512));
    // Writing into a Vec cannot fail; the results are ignored for that reason.
    let _ = writer.write_event(Event::Start(BytesStart::new("xml")));
    for (name, value) in fields {
        let _ = writer.write_event(Event::Start(BytesStart::new(name)));
        if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
            let _ = writer.write_event(Event::Text(BytesText::from_escaped(value)));
        } else {
            for section in BytesCData::escaped(value) {
                let _ = writer.write_event(Event::CData(section));
            }
        }
        let _ = writer.write_event(Event::End(BytesEnd::new(name)));
    }
    let _ = writer.write_event(Event::End(BytesEnd::new("xml")));
    String::from_utf8(writer.into_inner()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wechat::v2::sign::{ApiKey, SignType, verify};
    use proptest::prelude::*;

    fn read(body: &str) -> Result<Fields, XmlError> {
        parse(body.as_bytes(), DEFAULT_BODY_LIMIT)
    }

    #[test]
    fn reads_the_documented_request_a_and_it_verifies() {
        let body = "<xml><appid><![CDATA[wxd930ea5d5a258f4f]]></appid><mch_id>10000100</mch_id><nonce_str><![CDATA[5K8264ILTKCH16CQ2502SI8ZNMTM67VS]]></nonce_str><body><![CDATA[腾讯充值中心-QQ会员充值]]></body><out_trade_no>20150806125346</out_trade_no><total_fee>88</total_fee><spbill_create_ip><![CDATA[123.12.12.123]]></spbill_create_ip><notify_url><![CDATA[https://example.com/v1/wechat/notify]]></notify_url><trade_type><![CDATA[JSAPI]]></trade_type><openid><![CDATA[oUpF8uMuAJO_M2pxb1Q9zNjWeS6o]]></openid><sign><![CDATA[0B8597460089E35E6602B5411146ECE5]]></sign></xml>";
        let fields = read(body).unwrap();
        assert_eq!(fields.get("body"), Some("腾讯充值中心-QQ会员充值"));
        assert_eq!(fields.get("total_fee"), Some("88"));
        assert_eq!(
            verify(&fields, &ApiKey::new("192006250b4c09247ec02edce69f6a2d")),
            Ok(SignType::Md5)
        );
    }

    #[test]
    fn reads_pretty_printed_mixed_escaped_and_empty_values() {
        let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<xml>\n  <a>x &amp; y &lt;z&gt; &#20013;&#x6587;</a>\n  <b><![CDATA[ spaced ]]></b>\n  <c></c>\n  <d/>\n  <!-- comment -->\n  <e>1<![CDATA[2]]>3</e>\n</xml>\n";
        let fields = read(body).unwrap();
        assert_eq!(fields.get("a"), Some("x & y <z> 中文"));
        assert_eq!(fields.get("b"), Some(" spaced "));
        assert_eq!(fields.get("c"), Some(""));
        assert_eq!(fields.get("d"), Some(""));
        assert_eq!(fields.get("e"), Some("123"));
        let names: Vec<_> = fields.iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["a", "b", "c", "d", "e"]);
    }

    #[test]
    fn hostile_documents_get_their_typed_error() {
        let cases: Vec<(Vec<u8>, XmlError)> = vec![
            (
                b"<?xml version=\"1.0\"?><!DOCTYPE xml [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]><xml><a>&xxe;</a></xml>".to_vec(),
                XmlError::Doctype,
            ),
            (
                b"<!DOCTYPE lolz [<!ENTITY lol \"lol\"><!ENTITY lol2 \"&lol;&lol;&lol;&lol;\">]><xml><a>&lol2;</a></xml>".to_vec(),
                XmlError::Doctype,
            ),
            (b"<xml><a>&xxe;</a></xml>".to_vec(), XmlError::Entity("xxe".into())),
            (b"<xml><a><b>1</b></a></xml>".to_vec(), XmlError::Nested("a".into())),
            (b"<xml><a/><a>2</a></xml>".to_vec(), XmlError::Repeated("a".into())),
            (b"<xml><a>1</a><a>1</a></xml>".to_vec(), XmlError::Repeated("a".into())),
            (b"<root><a>1</a></root>".to_vec(), XmlError::WrongRoot("root".into())),
            (b"<xml><a>\xff\xfe</a></xml>".to_vec(), XmlError::NotUtf8),
            (
                b"<?xml version=\"1.0\" encoding=\"GBK\"?><xml><a>1</a></xml>".to_vec(),
                XmlError::UnsupportedEncoding("GBK".into()),
            ),
            (b"<xml>loose<a>1</a></xml>".to_vec(), XmlError::StrayText),
            (b"<xml><a>1</a></xml><xml/>".to_vec(), XmlError::TrailingContent),
            (b"<xml><a>1</a></xml>junk".to_vec(), XmlError::TrailingContent),
            (b"<xml><?php evil ?><a>1</a></xml>".to_vec(), XmlError::ProcessingInstruction),
            (b"".to_vec(), XmlError::Empty),
            (b"  \n".to_vec(), XmlError::Empty),
            (vec![b' '; DEFAULT_BODY_LIMIT + 1], XmlError::TooLarge { size: DEFAULT_BODY_LIMIT + 1, limit: DEFAULT_BODY_LIMIT }),
        ];
        for (body, expected) in cases {
            assert_eq!(
                parse(&body, DEFAULT_BODY_LIMIT),
                Err(expected),
                "{}",
                String::from_utf8_lossy(&body)
            );
        }
        for malformed in [
            "<xml><a>1</b></xml>",
            "<xml><a>1</a>",
            "<xml",
            "not xml at all",
            "<xml><a>&amp</a></xml>",
        ] {
            assert!(
                matches!(
                    read(malformed),
                    Err(XmlError::Malformed(_) | XmlError::StrayText)
                ),
                "{malformed}: {:?}",
                read(malformed)
            );
        }
    }

    /// Found by `fuzz/run.sh` (xml_reader): names that read but could not be written back.
    #[test]
    fn odd_element_names_are_refused() {
        for body in [
            &b"<xml><\" \"/></xml>"[..],
            b"<xml><a' '/></xml>",
            b"<xml><\x19//></xml>",
            b"<xml><a//></xml>",
            b"<xml><1a>x</1a></xml>",
        ] {
            assert!(
                matches!(
                    parse(body, DEFAULT_BODY_LIMIT),
                    Err(XmlError::BadName(_) | XmlError::Malformed(_))
                ),
                "{}: {:?}",
                String::from_utf8_lossy(body),
                parse(body, DEFAULT_BODY_LIMIT)
            );
        }
        assert!(read("<xml><coupon_fee_0>1</coupon_fee_0><a-b.c>2</a-b.c></xml>").is_ok());
    }

    #[test]
    fn too_many_fields_are_refused() {
        let body: String = std::iter::once("<xml>".to_owned())
            .chain((0..=MAX_FIELDS).map(|i| format!("<f{i}>1</f{i}>")))
            .chain(std::iter::once("</xml>".to_owned()))
            .collect();
        assert_eq!(read(&body), Err(XmlError::TooManyFields));
    }

    #[test]
    fn writes_cdata_split_at_the_terminator_and_digits_bare() {
        let xml = to_xml([("a", "x]]>y"), ("total_fee", "88"), ("e", "")]);
        assert_eq!(
            xml,
            "<xml><a><![CDATA[x]]]]><![CDATA[>y]]></a><total_fee>88</total_fee><e><![CDATA[]]></e></xml>"
        );
        assert_eq!(read(&xml).unwrap().get("a"), Some("x]]>y"));
    }

    proptest! {
        #[test]
        fn write_then_read_round_trips(
            values in proptest::collection::vec(
                prop_oneof![
                    ".*",
                    "[\\]>&<中文 ]{0,30}",
                    Just("]]>".to_owned()),
                    Just("a]]>b]]]]>c".to_owned()),
                    Just("腾讯充值中心-QQ会员充值 & <tag>".to_owned()),
                ],
                0..12,
            )
        ) {
            let fields: Vec<(String, String)> = values
                .into_iter()
                .enumerate()
                .map(|(i, v)| (format!("field_{i}"), v))
                .collect();
            let xml = to_xml(fields.iter().map(|(n, v)| (n.as_str(), v.as_str())));
            let back = parse(xml.as_bytes(), usize::MAX).unwrap();
            let back: Vec<(String, String)> = back.iter().map(|(n, v)| (n.to_owned(), v.to_owned())).collect();
            prop_assert_eq!(back, fields);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse(&bytes, DEFAULT_BODY_LIMIT);
        }
    }
}
