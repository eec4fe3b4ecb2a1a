//! Typed calls between functions: a function may import a WIT interface that another function of
//! its app exports (`[functions.imports]`), and meshwa links the two when the app loads.

use std::fmt;

/// A WIT interface name, `namespace:package/interface` with an optional `@version`: what a
/// component imports and exports, as the component model spells it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Interface(String);

/// Namespaces of the host's own services: a function cannot import these from another function.
pub const RESERVED_NAMESPACES: [&str; 2] = ["wasi", "meshwa"];

impl Interface {
    /// Checks the shape `ns:pkg/iface[@version]`, each of `ns`, `pkg` and `iface` a kebab-case
    /// word (lowercase letters, digits, `-`), and refuses the host's namespaces.
    pub fn new(name: &str) -> Result<Interface, String> {
        let shown: String = name.chars().take(80).collect();
        let malformed = || {
            format!(
                "`{shown}` is not an interface name: use `namespace:package/interface`, \
                 optionally with `@version` (lowercase letters, digits and '-')"
            )
        };
        let (path, version) = match name.split_once('@') {
            Some((path, version)) => (path, Some(version)),
            None => (name, None),
        };
        let (namespace, rest) = path.split_once(':').ok_or_else(malformed)?;
        let (package, interface) = rest.split_once('/').ok_or_else(malformed)?;
        let word = |w: &str| {
            !w.is_empty()
                && w.len() <= 63
                && w.as_bytes()[0].is_ascii_lowercase()
                && w.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        };
        if ![namespace, package, interface].into_iter().all(word) {
            return Err(malformed());
        }
        if let Some(version) = version {
            let valid = !version.is_empty()
                && version.len() <= 64
                && version
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-+".contains(&b));
            if !valid {
                return Err(malformed());
            }
        }
        if RESERVED_NAMESPACES.contains(&namespace) {
            return Err(format!(
                "`{shown}`: the `{namespace}:` namespace is the host's (services are granted, not \
                 imported from functions)"
            ));
        }
        Ok(Interface(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Interface {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One typed import of a function: `interface` comes from the function `exporter` of the same app,
/// linked as `link` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypedImport {
    pub interface: Interface,
    pub exporter: crate::Name,
    pub link: Linking,
}

/// How a typed import is linked to its exporter (`link = "..."` in `[functions.imports]`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Linking {
    /// The exporter's component is plugged into the importer's at load: one component, one
    /// store; a call is an adapter call with no host code on the path. The default.
    #[default]
    Composed,
    /// The import is a host function that runs the exporter in a fresh instance of its own (its
    /// own store, limits and grants) for every call.
    Host,
}

impl fmt::Display for Linking {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Linking::Composed => "composed",
            Linking::Host => "host",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Interface;

    #[test]
    fn interface_names_have_the_component_model_shape() {
        for good in [
            "shop:pricing/quote",
            "shop:pricing/quote@1.2.0",
            "a1:b-c/d-2",
        ] {
            assert!(Interface::new(good).is_ok(), "{good}");
        }
        for bad in [
            "quote",
            "shop/quote",
            "shop:pricing",
            "Shop:pricing/quote",
            "shop:pricing/quote@",
            "shop:pricing/quote@1 0",
            "shop:/quote",
            "shop:pricing/1quote",
        ] {
            assert!(Interface::new(bad).is_err(), "{bad}");
        }
        let reserved = Interface::new("wasi:http/incoming-handler").unwrap_err();
        assert!(
            reserved.contains("the `wasi:` namespace is the host's"),
            "{reserved}"
        );
        assert!(Interface::new("meshwa:platform/invoke").is_err());
    }
}
