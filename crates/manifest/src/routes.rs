//! HTTP routes: path prefixes matched on segment boundaries, and the rules that keep tenants from
//! shadowing each other.

use std::fmt;
use std::path::PathBuf;

use crate::Manifest;

/// The longest route we accept; longer ones are a mistake or an attack.
const MAX_ROUTE_LEN: usize = 256;

/// A validated path prefix such as `/acme/hello`. `/` is the catch-all.
///
/// A route matches a request path on whole segments: `/acme` matches `/acme`, `/acme/` and
/// `/acme/x`, never `/acmex`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Route(String);

impl Route {
    /// Validates `text` as a route. A trailing `/` is dropped (`/a/` is `/a`).
    pub fn new(text: &str) -> Result<Route, String> {
        if !text.starts_with('/') {
            return Err(format!("route {text:?} must start with '/'"));
        }
        if text.len() > MAX_ROUTE_LEN {
            return Err(format!("route is longer than {MAX_ROUTE_LEN} characters"));
        }
        let allowed = |c: char| c.is_ascii_alphanumeric() || "/-._~".contains(c);
        if let Some(c) = text.chars().find(|c| !allowed(*c)) {
            return Err(format!(
                "route {text:?} contains {c:?}; routes are path prefixes of a-z, A-Z, 0-9 and -._~/"
            ));
        }
        let trimmed = if text.len() > 1 {
            text.trim_end_matches('/')
        } else {
            text
        };
        if trimmed.is_empty() {
            return Ok(Route("/".to_owned()));
        }
        if trimmed.len() > 1
            && trimmed[1..]
                .split('/')
                .any(|segment| segment.is_empty() || segment == "." || segment == "..")
        {
            return Err(format!("route {text:?} has an empty, '.' or '..' segment"));
        }
        Ok(Route(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Does this prefix match the request path `path` (on whole segments)?
    pub fn matches(&self, path: &str) -> bool {
        if self.0 == "/" {
            return true;
        }
        match path.strip_prefix(self.0.as_str()) {
            Some(rest) => rest.is_empty() || rest.starts_with('/'),
            None => false,
        }
    }

    /// Is `other` equal to this route or below it?
    pub fn covers(&self, other: &Route) -> bool {
        self.matches(other.as_str())
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Two routes that may not coexist.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", describe(self))]
pub struct RouteError {
    pub first: Box<Claim>,
    pub second: Box<Claim>,
}

/// Who claims a route, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub route: Route,
    pub function: String,
    pub manifest: PathBuf,
}

fn describe(error: &RouteError) -> String {
    let (a, b) = (&error.first, &error.second);
    let how = if a.route == b.route {
        "is also claimed by".to_owned()
    } else {
        format!("lies under route {} of", a.route)
    };
    format!(
        "route {} of {} ({}) {how} {} ({}); a tenant's routes may not equal or lie under another tenant's",
        b.route,
        b.function,
        b.manifest.display(),
        a.function,
        a.manifest.display(),
    )
}

/// Checks the routes of several apps loaded into one server.
///
/// Refused: the same route twice anywhere, and a route of one tenant that lies under a route of
/// another tenant (it would silently take part of the other tenant's traffic). One tenant may nest
/// its own routes; the longest prefix then wins.
pub fn check_route_collisions(manifests: &[Manifest]) -> Result<(), RouteError> {
    let claims: Vec<(&str, Claim)> = manifests
        .iter()
        .flat_map(|manifest| {
            manifest.functions.iter().filter_map(move |function| {
                let route = function.route.clone()?;
                Some((
                    manifest.tenant.as_str(),
                    Claim {
                        route,
                        function: manifest.function_id(function).to_string(),
                        manifest: manifest.source.clone(),
                    },
                ))
            })
        })
        .collect();
    for (i, (tenant_a, a)) in claims.iter().enumerate() {
        for (tenant_b, b) in &claims[i + 1..] {
            let same = a.route == b.route;
            let nested =
                tenant_a != tenant_b && (a.route.covers(&b.route) || b.route.covers(&a.route));
            if same || nested {
                // Report the outer route first so the message reads "X lies under Y".
                let (first, second) = if b.route.covers(&a.route) && !same {
                    (b.clone(), a.clone())
                } else {
                    (a.clone(), b.clone())
                };
                return Err(RouteError {
                    first: Box::new(first),
                    second: Box::new(second),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_routes() {
        assert_eq!(Route::new("/a/b/").unwrap().as_str(), "/a/b");
        assert_eq!(Route::new("/").unwrap().as_str(), "/");
        assert_eq!(Route::new("//").unwrap().as_str(), "/");
        for bad in ["", "a", "/a//b", "/a/../b", "/a?x=1", "/a b", "/ä"] {
            assert!(Route::new(bad).is_err(), "{bad:?}");
        }
        assert!(Route::new(&format!("/{}", "a".repeat(300))).is_err());
    }

    #[test]
    fn matches_whole_segments() {
        let r = Route::new("/acme").unwrap();
        assert!(r.matches("/acme"));
        assert!(r.matches("/acme/"));
        assert!(r.matches("/acme/x/y"));
        assert!(!r.matches("/acmex"));
        assert!(!r.matches("/"));
        assert!(Route::new("/").unwrap().matches("/anything"));
    }
}
