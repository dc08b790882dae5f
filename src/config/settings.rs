//! How a concern declares its settings: once each, with name, type, default, documentation and
//! check, in one [`settings!`](crate::config::settings) block. The block makes the settings
//! struct (read from the file and the environment), its `Default`, the list of its keys (so no
//! list of names is kept by hand), and its checks.

/// One setting: its key (lowercase, as in the TOML file; `MINIPAY_` + uppercase in the
/// environment) and its documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    pub name: &'static str,
    pub doc: &'static str,
}

impl Key {
    /// The environment variable, e.g. `MINIPAY_DATABASE_URL`.
    pub fn env(&self) -> String {
        env_name(self.name)
    }
}

/// `MINIPAY_` + the key in uppercase.
pub fn env_name(key: &str) -> String {
    format!("MINIPAY_{}", key.to_ascii_uppercase())
}

/// A default as the README's settings table shows it; `None` for defaults that are not one
/// plain value (absent, empty, or computed).
pub trait Shown {
    fn shown(&self) -> Option<String>;
}

impl Shown for String {
    fn shown(&self) -> Option<String> {
        (!self.is_empty()).then(|| self.clone())
    }
}

macro_rules! shown_as_number {
    ($($t:ty),*) => {$(
        impl Shown for $t {
            fn shown(&self) -> Option<String> {
                Some(self.to_string())
            }
        }
    )*};
}
shown_as_number!(u32, u64, usize, bool);

impl<T> Shown for Option<T> {
    fn shown(&self) -> Option<String> {
        None
    }
}

/// Declares a concern's settings. Each field: its `///` documentation, `name: Type = default`,
/// and optionally `, check |value| …` returning `Err(reason)` (the refusal then reads
/// `MINIPAY_NAME <reason>`).
macro_rules! settings {
    (
        $(#[doc = $sdoc:literal])*
        pub struct $name:ident {
            $(
                $(#[doc = $doc:literal])+
                $key:ident: $ty:ty = $default:expr $(, check $check:expr)?;
            )*
        }
    ) => {
        $(#[doc = $sdoc])*
        #[derive(Debug, Clone, serde::Deserialize)]
        #[serde(default)]
        pub struct $name {
            $(
                $(#[doc = $doc])+
                pub $key: $ty,
            )*
        }

        impl Default for $name {
            fn default() -> Self {
                Self { $($key: $default,)* }
            }
        }

        impl $name {
            /// Every setting of this concern.
            pub const KEYS: &'static [$crate::config::Key] = &[$(
                $crate::config::Key {
                    name: stringify!($key),
                    doc: concat!($($doc),+),
                }
            ),*];

            /// Each setting's own check; the first refusal names its setting.
            pub fn check(&self) -> Result<(), $crate::config::ConfigError> {
                $($(
                    $crate::config::settings::checked(stringify!($key), &self.$key, $check)?;
                )?)*
                Ok(())
            }

            /// Each setting's default as the README shows it (see [`Shown`]).
            pub fn shown_defaults() -> Vec<(&'static str, Option<String>)> {
                let defaults = Self::default();
                vec![$((
                    stringify!($key),
                    $crate::config::settings::Shown::shown(&defaults.$key),
                )),*]
            }
        }
    };
}
pub(crate) use settings;

/// Runs one setting's check, naming the setting in the refusal.
pub fn checked<T>(
    key: &str,
    value: &T,
    check: impl Fn(&T) -> Result<(), String>,
) -> Result<(), super::ConfigError> {
    check(value).map_err(|reason| super::ConfigError(format!("{} {reason}", env_name(key))))
}

/// The check of counts and durations that must not be zero.
pub fn positive(value: u64) -> Result<(), String> {
    if value == 0 {
        Err("must be at least 1".into())
    } else {
        Ok(())
    }
}
