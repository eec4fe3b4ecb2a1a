//! Longest-prefix routing from request paths to functions.

use std::sync::Arc;

use meshwa_manifest::Route;
use meshwa_runtime::Function;

/// The public routes of every loaded function, longest first.
#[derive(Default)]
pub struct Router {
    routes: Vec<(Route, Arc<Function>)>,
}

impl Router {
    /// Builds a router. Route conflicts are checked before this (see
    /// `meshwa_manifest::check_route_collisions`); if two entries still share a route, the first
    /// one listed wins.
    pub fn new(mut routes: Vec<(Route, Arc<Function>)>) -> Router {
        // Longest prefix first; ties keep their order (stable sort).
        routes.sort_by_key(|(route, _)| std::cmp::Reverse(route.as_str().len()));
        Router { routes }
    }

    /// The function whose route is the longest prefix of `path` (on whole segments).
    pub fn lookup(&self, path: &str) -> Option<&Arc<Function>> {
        self.routes
            .iter()
            .find(|(route, _)| route.matches(path))
            .map(|(_, function)| function)
    }

    pub fn routes(&self) -> impl Iterator<Item = (&Route, &Arc<Function>)> {
        self.routes.iter().map(|(r, f)| (r, f))
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}
