//! The product catalog: sku → description and price in fen. Orders are priced from here,
//! never from the client. Loaded and validated once at start; a mistake names its line.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use crate::wechat::v2::params::check_text;

/// One product.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    pub sku: String,
    /// What goes into unifiedorder's `body` (≤ 127 UTF-8 bytes, no 4-byte characters).
    pub description: String,
    /// Fen, ≥ 1.
    pub price: i64,
}

/// The products on sale.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    products: HashMap<String, Product>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    product: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    sku: Spanned<String>,
    description: Spanned<String>,
    price: Spanned<i64>,
}

/// Why a catalog file is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    #[error("{path}: cannot read: {reason}")]
    Unreadable { path: String, reason: String },
    #[error("line {line}: {reason}")]
    Invalid { line: usize, reason: String },
}

const DEMO: &str = include_str!("../demo/catalog.toml");

impl Catalog {
    /// The demo catalog shipped in the binary (`demo/catalog.toml`).
    pub fn demo() -> Catalog {
        // The shipped file is checked by a test; an error here is a build mistake.
        Catalog::parse(DEMO).unwrap_or_default()
    }

    /// Reads and validates a catalog file.
    pub fn load(path: &Path) -> Result<Catalog, CatalogError> {
        let text = std::fs::read_to_string(path).map_err(|e| CatalogError::Unreadable {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Catalog::parse(&text)
    }

    /// Validates catalog text: unknown fields, bad skus, bad descriptions, prices below one
    /// fen and duplicate skus are refused with the line they are on.
    pub fn parse(text: &str) -> Result<Catalog, CatalogError> {
        let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
        let file: File = toml::from_str(text).map_err(|e| CatalogError::Invalid {
            line: e.span().map(|s| line_of(s.start)).unwrap_or(0),
            reason: e.message().to_owned(),
        })?;
        let mut products = HashMap::new();
        for entry in file.product {
            let invalid = |span: std::ops::Range<usize>, reason: String| CatalogError::Invalid {
                line: line_of(span.start),
                reason,
            };
            let sku = entry.sku.get_ref();
            if !(1..=64).contains(&sku.len())
                || !sku
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
            {
                return Err(invalid(
                    entry.sku.span(),
                    format!("sku {sku:?} must be 1-64 of A-Z a-z 0-9 _ . -"),
                ));
            }
            check_text("description", entry.description.get_ref(), true).map_err(|e| {
                invalid(
                    entry.description.span(),
                    format!("description {}", e.reason),
                )
            })?;
            let price = *entry.price.get_ref();
            if price < 1 {
                return Err(invalid(
                    entry.price.span(),
                    format!("price {price} must be at least 1 fen"),
                ));
            }
            crate::wechat::v2::params::check_total_fee(price)
                .map_err(|e| invalid(entry.price.span(), format!("price {}", e.reason)))?;
            if products.contains_key(sku) {
                return Err(invalid(
                    entry.sku.span(),
                    format!("sku {sku:?} appears twice"),
                ));
            }
            products.insert(
                sku.clone(),
                Product {
                    sku: sku.clone(),
                    description: entry.description.into_inner(),
                    price,
                },
            );
        }
        Ok(Catalog { products })
    }

    pub fn get(&self, sku: &str) -> Option<&Product> {
        self.products.get(sku)
    }

    pub fn products(&self) -> impl Iterator<Item = &Product> {
        self.products.values()
    }

    pub fn len(&self) -> usize {
        self.products.len()
    }

    pub fn is_empty(&self) -> bool {
        self.products.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_catalog_is_valid() {
        let catalog = Catalog::parse(DEMO).unwrap();
        assert_eq!(catalog.get("sms-100").unwrap().price, 88);
        assert_eq!(catalog.len(), Catalog::demo().len());
    }

    fn error(text: &str) -> CatalogError {
        Catalog::parse(text).unwrap_err()
    }

    #[test]
    fn mistakes_name_their_line() {
        let ok = "[[product]]\nsku = \"a\"\ndescription = \"A\"\nprice = 1\n";
        assert!(Catalog::parse(ok).is_ok());

        let zero = "[[product]]\nsku = \"a\"\ndescription = \"A\"\nprice = 0\n";
        assert!(
            matches!(error(zero), CatalogError::Invalid { line: 4, .. }),
            "{:?}",
            error(zero)
        );
        let negative = "[[product]]\nsku = \"a\"\ndescription = \"A\"\nprice = -5\n";
        assert!(matches!(
            error(negative),
            CatalogError::Invalid { line: 4, .. }
        ));
        let float = "[[product]]\nsku = \"a\"\ndescription = \"A\"\nprice = 0.88\n";
        assert!(
            matches!(error(float), CatalogError::Invalid { line: 4, .. }),
            "{:?}",
            error(float)
        );
        let unknown =
            "[[product]]\nsku = \"a\"\ndescription = \"A\"\nprice = 1\ncolour = \"red\"\n";
        assert!(
            matches!(error(unknown), CatalogError::Invalid { line: 5, .. }),
            "{:?}",
            error(unknown)
        );
        let dup = format!("{ok}\n[[product]]\nsku = \"a\"\ndescription = \"B\"\nprice = 2\n");
        assert!(
            matches!(error(&dup), CatalogError::Invalid { line: 7, .. }),
            "{:?}",
            error(&dup)
        );
        let bad_sku = "[[product]]\nsku = \"a b\"\ndescription = \"A\"\nprice = 1\n";
        assert!(matches!(
            error(bad_sku),
            CatalogError::Invalid { line: 2, .. }
        ));
        let emoji = "[[product]]\nsku = \"a\"\ndescription = \"咖啡☕🎉\"\nprice = 1\n";
        assert!(matches!(
            error(emoji),
            CatalogError::Invalid { line: 3, .. }
        ));
        let long = format!(
            "[[product]]\nsku = \"a\"\ndescription = \"{}\"\nprice = 1\n",
            "长".repeat(43)
        );
        assert!(matches!(
            error(&long),
            CatalogError::Invalid { line: 3, .. }
        ));
        let missing = "[[product]]\nsku = \"a\"\nprice = 1\n";
        assert!(matches!(error(missing), CatalogError::Invalid { .. }));
    }
}
