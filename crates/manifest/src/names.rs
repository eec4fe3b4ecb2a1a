//! Names of tenants, apps and functions: `[a-z0-9][a-z0-9-]{0,62}`.
//!
//! The rule keeps names usable unchanged as DNS labels (the internal host names of function calls),
//! as path segments and as metric labels.

use std::fmt;

/// A validated tenant, app or function name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name(String);

/// Why a string is not a valid name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid name {name:?}: names are 1 to 63 characters of a-z, 0-9 and '-', not starting with '-'"
)]
pub struct NameError {
    pub name: String,
}

impl Name {
    pub fn new(name: &str) -> Result<Name, NameError> {
        let bytes = name.as_bytes();
        let valid = !bytes.is_empty()
            && bytes.len() <= 63
            && bytes[0] != b'-'
            && bytes
                .iter()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-');
        if valid {
            Ok(Name(name.to_owned()))
        } else {
            Err(NameError {
                name: name.chars().take(80).collect(),
            })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A name orders and hashes as its string (the derives above are the `String`'s), so maps keyed
/// by names can be searched with a `&str`.
impl std::borrow::Borrow<str> for Name {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for Name {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Name::new(s)
    }
}

/// The name of a key-value store: a [`Name`], or `""`, the default store (the one
/// `wasmtime serve`'s and other hosts' `wasi:keyvalue` `open("")` means), so that components
/// written for those hosts find their store unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StoreName(String);

impl StoreName {
    /// The default store, `""`.
    pub const DEFAULT: &'static str = "";

    pub fn new(name: &str) -> Result<StoreName, NameError> {
        if name == Self::DEFAULT {
            return Ok(StoreName(String::new()));
        }
        Name::new(name).map(StoreName::from)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_default(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<Name> for StoreName {
    fn from(name: Name) -> StoreName {
        StoreName(name.0)
    }
}

impl std::borrow::Borrow<str> for StoreName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// As written in the manifest, so that messages show the default store as `""`.
impl fmt::Display for StoreName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_default() {
            f.write_str("\"\"")
        } else {
            f.write_str(&self.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid_names() {
        for ok in ["a", "acme", "0", "a-b-c", "x1", &"a".repeat(63)] {
            assert!(Name::new(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn refuses_invalid_names() {
        for bad in [
            "",
            "-a",
            "A",
            "a_b",
            "a.b",
            "a/b",
            "é",
            " a",
            &"a".repeat(64),
        ] {
            assert!(Name::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn store_names_are_names_or_the_default() {
        assert!(StoreName::new("").unwrap().is_default());
        assert_eq!(StoreName::new("visits").unwrap().as_str(), "visits");
        assert_eq!(StoreName::new("").unwrap().to_string(), "\"\"");
        for bad in ["-a", "A", " ", "a/b"] {
            assert!(StoreName::new(bad).is_err(), "{bad:?}");
        }
    }
}
