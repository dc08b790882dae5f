//! `minipay sign`: the merchant's answer to 签名错误. Prints the string WeChat hashes (key
//! masked) and the signature; with `--check`, verifies a document's own `sign` and names the
//! common mistake that would explain a mismatch.

use std::io::{Read, Write};

use crate::wechat::v2::sign::{
    ApiKey, SignType, constant_time_eq, detect_sign_type, sign, sign_string, signed_pairs,
};
use crate::wechat::v2::{Fields, xml};

/// What `minipay sign` was asked.
#[derive(Debug, Clone)]
pub struct SignRequest {
    pub key: ApiKey,
    pub sign_type: SignType,
    pub check: bool,
    /// `name=value` arguments; when empty, an XML document is read from stdin.
    pub pairs: Vec<String>,
}

/// Runs the tool; returns the process exit code (0 valid or signed, 1 mismatch, 2 bad input).
pub fn run(
    request: &SignRequest,
    stdin: &mut impl Read,
    out: &mut impl Write,
) -> std::io::Result<u8> {
    let fields = match read_fields(&request.pairs, stdin) {
        Ok(fields) => fields,
        Err(why) => {
            writeln!(out, "error: {why}")?;
            return Ok(2);
        }
    };
    if request.key.len() != 32 {
        writeln!(
            out,
            "warning: the key has {} characters; a WeChat Pay APIv2 key has 32 (is this the AppSecret?)",
            request.key.len()
        )?;
    }
    if !request.check {
        let signature = sign(fields.iter(), &request.key, request.sign_type);
        print_string(out, &fields, &request.key)?;
        writeln!(out, "sign ({}) = {signature}", request.sign_type)?;
        return Ok(0);
    }

    let Some(received) = fields.non_empty("sign").map(str::to_owned) else {
        writeln!(out, "INVALID: the document has no sign field")?;
        return Ok(1);
    };
    let sign_type = match detect_sign_type(&fields) {
        Ok(detected) => detected,
        Err(why) => {
            writeln!(out, "note: {why}; trying {}", request.sign_type)?;
            request.sign_type
        }
    };
    print_string(out, &fields, &request.key)?;
    let expected = sign(fields.iter(), &request.key, sign_type);
    writeln!(out, "sign ({sign_type}) = {expected}")?;
    if constant_time_eq(expected.as_bytes(), received.as_bytes()) {
        writeln!(out, "OK: the document's sign is valid ({sign_type})")?;
        return Ok(0);
    }
    writeln!(out, "INVALID: the document's sign is {received}")?;
    let hints = explain_mismatch(&fields, &received, &request.key, sign_type);
    if hints.is_empty() {
        writeln!(
            out,
            "no common mistake explains it: check that the key is the APIv2 key of this mch_id \
             (not the AppSecret), and that it was not changed in the last 15 minutes"
        )?;
    }
    for hint in hints {
        writeln!(out, "likely mistake: {hint}")?;
    }
    Ok(1)
}

fn read_fields(pairs: &[String], stdin: &mut impl Read) -> Result<Fields, String> {
    if pairs.is_empty() {
        let mut body = Vec::new();
        stdin
            .read_to_end(&mut body)
            .map_err(|e| format!("reading stdin: {e}"))?;
        return xml::parse(&body, xml::DEFAULT_BODY_LIMIT).map_err(|e| format!("stdin: {e}"));
    }
    let mut fields = Fields::new();
    for pair in pairs {
        let (name, value) = pair
            .split_once('=')
            .ok_or_else(|| format!("{pair:?} is not name=value"))?;
        if fields.contains(name) {
            return Err(format!("field {name} is given twice"));
        }
        fields.set(name, value);
    }
    Ok(fields)
}

fn print_string(out: &mut impl Write, fields: &Fields, key: &ApiKey) -> std::io::Result<()> {
    let string_a = crate::wechat::v2::sign::string_to_sign(fields.iter());
    let masked = "*".repeat(key.len());
    writeln!(out, "string to sign: {string_a}&key={masked}")
}

/// A signed string the signer may have hashed instead of the right one, and the mistake that
/// makes it (`None`: the right string).
type Variant = (Option<String>, Vec<(String, String)>);

/// Each single common mistake, tried in both algorithms: the ones whose signature equals the
/// received one are what the signer did.
fn explain_mismatch(
    fields: &Fields,
    received: &str,
    key: &ApiKey,
    sign_type: SignType,
) -> Vec<String> {
    let mut hints = Vec::new();
    for (mistake, variant) in &variants(fields) {
        let string_a = variant
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        for algorithm in [sign_type, sign_type.other()] {
            let candidate = sign_string(&string_a, key, algorithm);
            if !candidate.eq_ignore_ascii_case(received) {
                continue;
            }
            let mut parts: Vec<String> = mistake.iter().cloned().collect();
            if algorithm != sign_type {
                parts.push(format!(
                    "it was signed with {algorithm}, but the message says {sign_type} \
                     (the sign_type field, or a {}-character sign when it is absent)",
                    received.len()
                ));
            }
            if candidate != received {
                parts.push("the signature is lowercase hex; WeChat's is uppercase".into());
            }
            hints.push(parts.join("; "));
        }
    }
    hints
}

/// The right signed pairs, and each common mistake's version of them.
fn variants(fields: &Fields) -> Vec<Variant> {
    let pairs: Vec<(String, String)> = signed_pairs(fields.iter())
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect();
    let mut variants: Vec<Variant> = vec![(None, pairs.clone())];
    let empties: Vec<&str> = fields
        .iter()
        .filter(|(n, v)| v.is_empty() && *n != "sign")
        .map(|(n, _)| n)
        .collect();
    if !empties.is_empty() {
        let mut with_empties: Vec<(String, String)> = fields
            .iter()
            .filter(|(n, _)| *n != "sign")
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
            .collect();
        with_empties.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        let mistake = format!(
            "the empty field(s) {} were signed; empty values must be left out",
            empties.join(", ")
        );
        variants.push((Some(mistake), with_empties));
    }
    if fields.non_empty("sign_type").is_some() {
        let without: Vec<_> = pairs
            .iter()
            .filter(|(n, _)| n != "sign_type")
            .cloned()
            .collect();
        let mistake = "sign_type was left out of the signed string; it is signed when present";
        variants.push((Some(mistake.into()), without));
    }
    let trimmed: Vec<(String, String)> = pairs
        .iter()
        .map(|(n, v)| (n.clone(), v.trim().to_owned()))
        .collect();
    if trimmed != pairs {
        let mistake = "values were trimmed; they must be signed verbatim";
        variants.push((Some(mistake.into()), trimmed));
    }
    let encoded: Vec<(String, String)> = pairs
        .iter()
        .map(|(n, v)| {
            let encoded = url::form_urlencoded::byte_serialize(v.as_bytes()).collect();
            (n.clone(), encoded)
        })
        .collect();
    if encoded != pairs {
        let mistake = "values were URL-encoded; they must be signed raw";
        variants.push((Some(mistake.into()), encoded));
    }
    variants
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "192006250b4c09247ec02edce69f6a2d";

    fn run_with(check: bool, sign_type: SignType, pairs: &[&str], stdin: &str) -> (u8, String) {
        let request = SignRequest {
            key: ApiKey::new(KEY),
            sign_type,
            check,
            pairs: pairs.iter().map(|p| (*p).to_owned()).collect(),
        };
        let mut out = Vec::new();
        let code = run(&request, &mut stdin.as_bytes(), &mut out).unwrap_or(99);
        (code, String::from_utf8(out).unwrap_or_default())
    }

    #[test]
    fn signs_the_official_vector_from_arguments_with_the_key_masked() {
        let (code, out) = run_with(
            false,
            SignType::Md5,
            &[
                "appid=wxd930ea5d5a258f4f",
                "mch_id=10000100",
                "device_info=1000",
                "body=test",
                "nonce_str=ibuaiVcKdpRxkhJA",
            ],
            "",
        );
        assert_eq!(code, 0);
        assert!(out.contains("appid=wxd930ea5d5a258f4f&body=test&device_info=1000&mch_id=10000100&nonce_str=ibuaiVcKdpRxkhJA&key=********************************"), "{out}");
        assert!(
            out.contains("sign (MD5) = 9A0A8659F005D6984697E2CA0A9CF3B7"),
            "{out}"
        );
        assert!(!out.contains(KEY));
    }

    fn notify_d(sign_type_field: bool, sign_value: &str) -> String {
        let mut xml = String::from(
            "<xml><appid>wxd930ea5d5a258f4f</appid><attach>order-42</attach><bank_type>OTHERS</bank_type><cash_fee>80</cash_fee><coupon_count>1</coupon_count><coupon_fee>8</coupon_fee><coupon_fee_0>8</coupon_fee_0><coupon_id_0>10000</coupon_id_0><coupon_type_0>NO_CASH</coupon_type_0><fee_type>CNY</fee_type><is_subscribe>N</is_subscribe><mch_id>10000100</mch_id><nonce_str>5d2b6c2a8db53831f7eda20af46e531c</nonce_str><openid>oUpF8uMuAJO_M2pxb1Q9zNjWeS6o</openid><out_trade_no>20150806125346</out_trade_no><result_code>SUCCESS</result_code><return_code>SUCCESS</return_code>",
        );
        if sign_type_field {
            xml.push_str("<sign_type>MD5</sign_type>");
        }
        xml.push_str("<time_end>20231114221320</time_end><total_fee>88</total_fee><trade_type>JSAPI</trade_type><transaction_id>1004400740201409030005092168</transaction_id>");
        xml.push_str(&format!("<sign>{sign_value}</sign></xml>"));
        xml
    }

    #[test]
    fn checks_vector_d_and_d_prime_from_stdin() {
        let (code, out) = run_with(
            true,
            SignType::Md5,
            &[],
            &notify_d(true, "FBE032DDA66191DD860150DCF42581EA"),
        );
        assert_eq!(code, 0, "{out}");
        let (code, out) = run_with(
            true,
            SignType::Md5,
            &[],
            &notify_d(
                false,
                "AE9E1F2FA772F1ACEF570E9DA5959BFAC72553488189EA5E70827F5CBB1AFC80",
            ),
        );
        assert_eq!(code, 0, "{out}");
        assert!(out.contains("valid (HMAC-SHA256)"), "{out}");
    }

    #[test]
    fn names_the_dropped_coupon_fields_mistake_as_unexplained_but_invalid() {
        let (code, out) = run_with(
            true,
            SignType::Md5,
            &[],
            &notify_d(true, "37484EF1CFEE50BC64D25F1C31BD8537"),
        );
        assert_eq!(code, 1, "{out}");
        assert!(out.contains("INVALID"), "{out}");
    }

    #[test]
    fn explains_a_signed_empty_field() {
        // vector A with attach= kept in the string
        let (code, out) = run_with(
            true,
            SignType::Md5,
            &[
                "appid=wxd930ea5d5a258f4f",
                "mch_id=10000100",
                "nonce_str=5K8264ILTKCH16CQ2502SI8ZNMTM67VS",
                "body=腾讯充值中心-QQ会员充值",
                "attach=",
                "out_trade_no=20150806125346",
                "total_fee=88",
                "spbill_create_ip=123.12.12.123",
                "notify_url=https://example.com/v1/wechat/notify",
                "trade_type=JSAPI",
                "openid=oUpF8uMuAJO_M2pxb1Q9zNjWeS6o",
                "sign=0CDA264D18CBA55C24AF8307306AB5F7",
            ],
            "",
        );
        assert_eq!(code, 1);
        assert!(out.contains("empty field(s) attach were signed"), "{out}");
    }

    #[test]
    fn explains_a_missing_sign_type_and_the_other_algorithm() {
        let base = [
            "appid=wxd930ea5d5a258f4f",
            "mch_id=10000100",
            "nonce_str=5K8264ILTKCH16CQ2502SI8ZNMTM67VS",
            "body=腾讯充值中心-QQ会员充值",
            "out_trade_no=20150806125346",
            "total_fee=88",
            "spbill_create_ip=123.12.12.123",
            "notify_url=https://example.com/v1/wechat/notify",
            "trade_type=JSAPI",
            "openid=oUpF8uMuAJO_M2pxb1Q9zNjWeS6o",
            "sign_type=HMAC-SHA256",
        ];
        let mut args: Vec<&str> = base.to_vec();
        args.push("sign=58D4CCB5B2030A85FB6CA949BABAD46B14827D05EE20E0B17BA8B109402918B7");
        let (code, out) = run_with(true, SignType::HmacSha256, &args, "");
        assert_eq!(code, 1);
        assert!(out.contains("sign_type was left out"), "{out}");

        // vector A's MD5 sign on a message that says HMAC-SHA256
        let mut args: Vec<&str> = base.to_vec();
        args.push("sign=0B8597460089E35E6602B5411146ECE5");
        let (_, out) = run_with(true, SignType::HmacSha256, &args, "");
        assert!(out.contains("signed with MD5"), "{out}");
    }

    #[test]
    fn explains_trimmed_and_url_encoded_values() {
        let key = ApiKey::new(KEY);
        let trimmed_sign = sign(
            [("a", "x"), ("b", "y"), ("sign_type", "MD5")],
            &key,
            SignType::Md5,
        );
        let arg = format!("sign={trimmed_sign}");
        let (code, out) = run_with(
            true,
            SignType::Md5,
            &["a= x", "b=y ", "sign_type=MD5", &arg],
            "",
        );
        assert_eq!(code, 1);
        assert!(out.contains("trimmed"), "{out}");

        let encoded = sign(
            [("body", "%E4%B8%AD+x"), ("sign_type", "MD5")],
            &key,
            SignType::Md5,
        );
        let arg = format!("sign={encoded}");
        let (code, out) = run_with(
            true,
            SignType::Md5,
            &["body=中 x", "sign_type=MD5", &arg],
            "",
        );
        assert_eq!(code, 1);
        assert!(out.contains("URL-encoded"), "{out}");
    }

    #[test]
    fn bad_input_is_exit_code_two() {
        assert_eq!(run_with(false, SignType::Md5, &["novalue"], "").0, 2);
        assert_eq!(
            run_with(false, SignType::Md5, &[], "<!DOCTYPE x><xml/>").0,
            2
        );
        assert_eq!(run_with(true, SignType::Md5, &["a=1"], "").0, 1);
    }
}
