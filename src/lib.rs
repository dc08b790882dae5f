//! minipay: WeChat mini-program payments from "the user tapped Buy" to "the order is paid".

pub mod clock;
pub mod sign_cli;
pub mod wechat;
