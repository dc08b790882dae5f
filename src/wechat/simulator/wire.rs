//! How the simulator's WeChat endpoints write their XML answers.

use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::wechat::v2::xml;

/// An unsigned `return_code=FAIL` answer.
pub(super) fn return_fail(message: &str) -> Response {
    xml_response(xml::to_xml([
        ("return_code", "FAIL"),
        ("return_msg", message),
    ]))
}

pub(super) fn xml_response(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/xml; charset=utf-8")], body).into_response()
}
