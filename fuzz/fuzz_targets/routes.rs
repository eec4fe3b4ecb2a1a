//! Route prefixes: parsing never panics, and matching agrees with the prefix rule (a route
//! matches itself, and a request path it matches starts with it).
#![no_main]
use libfuzzer_sys::fuzz_target;
use meshwa_manifest::Route;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (route, path) = text.split_once('\n').unwrap_or((&text, "/"));
    if let Ok(route) = Route::new(route) {
        assert!(
            route.matches(route.as_str()),
            "{route} does not match itself"
        );
        // Request paths start with '/' (hyper refuses others); "/" matches every one.
        if path.starts_with('/') && route.matches(path) {
            assert!(path.starts_with(route.as_str()), "{route} matched {path:?}");
        }
    }
});
