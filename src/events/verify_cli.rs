//! `minipay webhook verify`: checks a captured delivery the way a merchant's receiver would, or
//! prints the `webhook-signature` it should have carried. The body is read from stdin byte for
//! byte: the signature covers the exact bytes sent.

use std::io::{Read, Write};

use secrecy::{ExposeSecret, SecretString};

use super::signature::{TOLERANCE_SECS, VerifyError, WebhookSecrets, parse_timestamp};

/// What `minipay webhook verify` was asked.
#[derive(Debug, Clone)]
pub struct VerifyRequest {
    /// One or more `whsec_` secrets separated by spaces.
    pub secret: SecretString,
    /// The `webhook-id` header.
    pub id: String,
    /// The `webhook-timestamp` header, as received.
    pub timestamp: String,
    /// The `webhook-signature` header; `None` prints the expected one instead.
    pub signature: Option<String>,
    /// Unix seconds now, to say whether a receiver would still accept the timestamp.
    pub now: i64,
}

/// Runs the tool: one verdict line on `out`, notes on `err`. Returns the exit code: 0 valid
/// (or signature printed), 1 no signature matches, 2 bad input.
pub fn run(
    request: &VerifyRequest,
    stdin: &mut impl Read,
    out: &mut impl Write,
    err: &mut impl Write,
) -> std::io::Result<u8> {
    let secrets = match WebhookSecrets::parse(request.secret.expose_secret(), "--secret") {
        Ok(secrets) => secrets,
        Err(why) => {
            writeln!(err, "error: {why}")?;
            return Ok(2);
        }
    };
    let sent_at = match parse_timestamp(&request.timestamp) {
        Ok(at) => at,
        Err(why) => {
            writeln!(err, "error: {why}")?;
            return Ok(2);
        }
    };
    let mut body = Vec::new();
    if let Err(why) = stdin.read_to_end(&mut body) {
        writeln!(err, "error: reading the body from stdin: {why}")?;
        return Ok(2);
    }

    let Some(received) = &request.signature else {
        // `sign` formats the timestamp itself; it equals the header only in canonical form.
        if sent_at.to_string() != request.timestamp {
            writeln!(err, "error: --timestamp must be plain Unix seconds")?;
            return Ok(2);
        }
        writeln!(
            out,
            "webhook-signature: {}",
            secrets.sign(&request.id, sent_at, &body)
        )?;
        return Ok(0);
    };
    let verdict = secrets.check_signature(&request.id, &request.timestamp, &body, received);
    match &verdict {
        Ok(()) => writeln!(out, "OK: the signature matches")?,
        Err(VerifyError::NoSignature) => {
            writeln!(out, "INVALID: --signature holds no v1,<base64> signature")?
        }
        Err(why) => writeln!(out, "INVALID: {why}")?,
    }
    let age = request.now.saturating_sub(sent_at);
    if age.abs() > TOLERANCE_SECS {
        writeln!(
            err,
            "note: the timestamp is {age} s from now; a live receiver refuses deliveries more \
             than {TOLERANCE_SECS} s off (a replay guard), whatever the signature"
        )?;
    }
    if verdict.is_err() && body.ends_with(b"\n") {
        writeln!(
            err,
            "note: the body ends with a newline; deliveries have none (echo adds one, printf \
             or a saved file does not)"
        )?;
    }
    Ok(if verdict.is_ok() { 0 } else { 1 })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    const ID: &str = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
    const BODY: &str = r#"{"email":"test@example.com","username":"test_user"}"#;
    const SIGNATURE: &str = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";

    fn run_with(
        secret: &str,
        timestamp: &str,
        signature: Option<&str>,
        body: &str,
    ) -> (u8, String, String) {
        let request = VerifyRequest {
            secret: SecretString::from(secret),
            id: ID.into(),
            timestamp: timestamp.into(),
            signature: signature.map(str::to_owned),
            now: 1_649_367_600,
        };
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = run(&request, &mut body.as_bytes(), &mut out, &mut err).unwrap();
        (
            code,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    #[test]
    fn prints_the_expected_header_without_a_signature() {
        let (code, out, _) = run_with(SECRET, "1649367553", None, BODY);
        assert_eq!(
            (code, out.as_str()),
            (0, format!("webhook-signature: {SIGNATURE}\n").as_str())
        );
    }

    #[test]
    fn verifies_and_refuses_with_one_verdict_line() {
        let (code, out, err) = run_with(SECRET, "1649367553", Some(SIGNATURE), BODY);
        assert_eq!(
            (code, out.as_str(), err.as_str()),
            (0, "OK: the signature matches\n", "")
        );

        let (code, out, err) =
            run_with(SECRET, "1649367553", Some(SIGNATURE), &format!("{BODY}\n"));
        assert_eq!(code, 1);
        assert_eq!(out, "INVALID: no signature in webhook-signature matches\n");
        assert!(err.contains("ends with a newline"), "{err}");

        let (code, out, _) = run_with(SECRET, "1649367553", Some("t=1,v1=abc"), BODY);
        assert_eq!(code, 1);
        assert!(out.starts_with("INVALID: --signature holds no v1"), "{out}");
    }

    #[test]
    fn an_old_capture_still_verifies_with_a_note() {
        let request_now = 1_649_367_600; // 47 s after the capture: no note
        assert!(request_now - 1_649_367_553 < TOLERANCE_SECS);
        let old = "1649360000";
        let header = WebhookSecrets::parse(SECRET, "--secret").unwrap().sign(
            ID,
            1_649_360_000,
            BODY.as_bytes(),
        );
        let (code, out, err) = run_with(SECRET, old, Some(&header), BODY);
        assert_eq!((code, out.as_str()), (0, "OK: the signature matches\n"));
        assert!(err.contains("7600 s from now"), "{err}");
    }

    #[test]
    fn bad_input_is_exit_code_two_and_never_echoes_the_secret() {
        let (code, out, err) =
            run_with("C2FVsBQIhrscChlQIMV+b5sSYspob7oD", "1649367553", None, BODY);
        assert_eq!((code, out.as_str()), (2, ""));
        assert_eq!(
            err,
            "error: --secret: secret 1 does not start with whsec_\n"
        );
        let (code, _, err) = run_with(SECRET, "yesterday", Some(SIGNATURE), BODY);
        assert_eq!(code, 2);
        assert!(err.contains("\"yesterday\" is not Unix seconds"), "{err}");
        let (code, _, _) = run_with(SECRET, "+1649367553", None, BODY);
        assert_eq!(code, 2);
    }
}
