use std::path::Path;

use super::*;

fn parse(text: &str) -> Result<Manifest, ManifestError> {
    Manifest::parse(text, Path::new("app/meshwa.toml"), Path::new("app"))
}

fn error(text: &str) -> String {
    parse(text)
        .expect_err("manifest should be refused")
        .to_string()
}

const VALID: &str = r#"
tenant = "acme"
app = "shop"

[[functions]]
name = "hello"
component = "hello.wasm"
route = "/acme/hello/"
limits = { max-memory = "16MiB", timeout = "250ms", max-request-body = "1KiB" }

[[functions]]
name = "private"
component = "/abs/private.wasm"
"#;

#[test]
fn parses_a_valid_manifest() {
    let m = parse(VALID).unwrap();
    assert_eq!(m.tenant.as_str(), "acme");
    assert_eq!(m.app.as_str(), "shop");
    let hello = &m.functions[0];
    assert_eq!(hello.component, Path::new("app/hello.wasm"));
    assert_eq!(hello.route.as_ref().unwrap().as_str(), "/acme/hello");
    assert_eq!(hello.limits.max_memory, 16 * 1024 * 1024);
    assert_eq!(hello.limits.timeout, std::time::Duration::from_millis(250));
    assert_eq!(hello.limits.max_request_body, 1024);
    let private = &m.functions[1];
    assert_eq!(private.component, Path::new("/abs/private.wasm"));
    assert_eq!(private.route, None);
    assert_eq!(private.limits, Limits::default());
    assert_eq!(m.function_id(hello).to_string(), "acme/shop/hello");
}

#[test]
fn unknown_key_is_named_with_its_line() {
    let e = error("tenant = \"a\"\napp = \"b\"\ncolour = \"red\"\n");
    assert!(e.contains("app/meshwa.toml"), "{e}");
    assert!(e.contains("colour"), "{e}");
    assert!(e.contains("line 3"), "{e}");

    let e = error(
        "tenant = \"a\"\napp = \"b\"\n[[functions]]\nname = \"f\"\ncomponent = \"f.wasm\"\nlimits = { max-memroy = \"1MiB\" }\n",
    );
    assert!(e.contains("max-memroy"), "{e}");
    assert!(e.contains("line 6"), "{e}");
}

#[test]
fn missing_key_is_named() {
    let e = error("tenant = \"a\"\n[[functions]]\nname = \"f\"\ncomponent = \"f.wasm\"\n");
    assert!(e.contains("app"), "{e}");
}

#[test]
fn bad_names_are_refused_with_line() {
    let e = error("tenant = \"Acme\"\napp = \"b\"\n");
    assert!(e.contains(":1: `tenant`"), "{e}");
    let e = error(
        "tenant = \"a\"\napp = \"b\"\n[[functions]]\nname = \"no_underscores\"\ncomponent = \"f.wasm\"\n",
    );
    assert!(
        e.contains(":4: `name`") && e.contains("no_underscores"),
        "{e}"
    );
}

#[test]
fn bad_limits_are_refused() {
    let fun = |limits: &str| {
        format!(
            "tenant = \"a\"\napp = \"b\"\n[[functions]]\nname = \"f\"\ncomponent = \"f.wasm\"\nlimits = {{ {limits} }}\n"
        )
    };
    let e = error(&fun("max-memory = \"lots\""));
    assert!(e.contains(":6: `limits.max-memory`"), "{e}");
    let e = error(&fun("timeout = \"forever\""));
    assert!(e.contains("`limits.timeout`"), "{e}");
    let e = error(&fun("timeout = \"0s\""));
    assert!(e.contains("more than zero"), "{e}");
    // "now + timeout" must never overflow: an absurd timeout is refused, not stored.
    let e = error(&fun("timeout = \"9000000000000000000s\""));
    assert!(
        e.contains("`limits.timeout`: must be more than zero and at most 1h"),
        "{e}"
    );
    let e = error(&fun("max-memory = \"1KiB\""));
    assert!(e.contains("64KiB"), "{e}");
    let e = error(&fun("timeout = 5"));
    assert!(e.contains("timeout"), "{e}");
}

#[test]
fn duplicate_functions_and_routes_are_refused() {
    let e = error(
        "tenant = \"a\"\napp = \"b\"\n[[functions]]\nname = \"f\"\ncomponent = \"f.wasm\"\nroute = \"/x\"\n[[functions]]\nname = \"f\"\ncomponent = \"g.wasm\"\n",
    );
    assert!(
        e.contains(":8: `name`") && e.contains("already declared on line 4"),
        "{e}"
    );
    let e = error(
        "tenant = \"a\"\napp = \"b\"\n[[functions]]\nname = \"f\"\ncomponent = \"f.wasm\"\nroute = \"/x\"\n[[functions]]\nname = \"g\"\ncomponent = \"g.wasm\"\nroute = \"/x/\"\n",
    );
    assert!(
        e.contains(":10: `route`") && e.contains("function `f` (line 6)"),
        "{e}"
    );
}

#[test]
fn bad_routes_are_refused() {
    let e = error(
        "tenant = \"a\"\napp = \"b\"\n[[functions]]\nname = \"f\"\ncomponent = \"f.wasm\"\nroute = \"x\"\n",
    );
    assert!(
        e.contains(":6: `route`") && e.contains("start with '/'"),
        "{e}"
    );
}

#[test]
fn syntax_errors_name_the_file() {
    let e = error("tenant = \"a\nxx");
    assert!(e.starts_with("app/meshwa.toml: "), "{e}");
}

#[test]
fn load_checks_component_files_and_size() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meshwa.toml");
    std::fs::write(&path, VALID).unwrap();
    let e = Manifest::load(&path).unwrap_err().to_string();
    assert!(
        e.contains("function `hello`") && e.contains("does not exist"),
        "{e}"
    );

    std::fs::write(dir.path().join("hello.wasm"), b"").unwrap();
    std::fs::write(&path, VALID.replace("/abs/private.wasm", "hello.wasm")).unwrap();
    let m = Manifest::load(&path).unwrap();
    assert_eq!(m.functions[0].component, dir.path().join("hello.wasm"));

    let e = Manifest::load(&dir.path().join("nope.toml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("nope.toml: cannot read manifest"), "{e}");

    std::fs::write(&path, "#".repeat(MAX_MANIFEST_BYTES as usize + 1)).unwrap();
    let e = Manifest::load(&path).unwrap_err().to_string();
    assert!(e.contains("more than"), "{e}");
}

#[test]
fn deeply_nested_manifest_is_refused_cleanly() {
    let e = error(&format!("tenant = {}\n", "[".repeat(10_000)));
    assert!(e.starts_with("app/meshwa.toml: "), "{e}");
}

fn app(tenant: &str, name: &str, routes: &[&str]) -> Manifest {
    let mut text = format!("tenant = \"{tenant}\"\napp = \"{name}\"\n");
    for (i, route) in routes.iter().enumerate() {
        text += &format!(
            "[[functions]]\nname = \"f{i}\"\ncomponent = \"f.wasm\"\nroute = \"{route}\"\n"
        );
    }
    Manifest::parse(&text, Path::new(&format!("{tenant}.toml")), Path::new(".")).unwrap()
}

#[test]
fn routes_of_different_tenants_must_not_collide() {
    let e = check_route_collisions(&[app("a", "x", &["/a"]), app("b", "y", &["/a"])])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("route /a of b/y/f0 (b.toml) is also claimed by a/x/f0 (a.toml)"),
        "{e}"
    );

    let e = check_route_collisions(&[app("a", "x", &["/api"]), app("b", "y", &["/api/b"])])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("/api/b of b/y/f0") && e.contains("lies under route /api of a/x/f0"),
        "{e}"
    );
    let e = check_route_collisions(&[app("b", "y", &["/api/b"]), app("a", "x", &["/api"])])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("/api/b of b/y/f0") && e.contains("lies under route /api of a/x/f0"),
        "{e}"
    );

    // Same tenant may nest its own routes; /apix is not under /api.
    check_route_collisions(&[app("a", "x", &["/api"]), app("a", "y", &["/api/v2"])]).unwrap();
    check_route_collisions(&[app("a", "x", &["/api"]), app("b", "y", &["/apix"])]).unwrap();
    // Same route in two apps of one tenant is still a collision.
    assert!(check_route_collisions(&[app("a", "x", &["/api"]), app("a", "y", &["/api"])]).is_err());
}

#[test]
fn callable_by_names_functions_of_the_app() {
    let base = "tenant = \"a\"\napp = \"b\"\n[[functions]]\nname = \"front\"\ncomponent = \"f.wasm\"\nroute = \"/x\"\n[[functions]]\nname = \"back\"\ncomponent = \"g.wasm\"\n";
    let m = parse(&format!("{base}callable-by = [\"front\"]\n")).unwrap();
    assert_eq!(
        m.functions[1].callable_by,
        Some(vec![Name::new("front").unwrap()])
    );
    assert_eq!(m.functions[0].callable_by, None);
    let e = error(&format!("{base}callable-by = [\"ghost\"]\n"));
    assert!(
        e.contains(":10: `callable-by`") && e.contains("`ghost` is not a function of this app"),
        "{e}"
    );
    let e = error(&format!("{base}callable-by = [\"Bad\"]\n"));
    assert!(e.contains("`callable-by`"), "{e}");
}

#[test]
fn tenant_limits() {
    let m = parse("tenant = \"a\"\napp = \"b\"\n[tenant-limits]\nmax-instances = 7\n").unwrap();
    assert_eq!(m.tenant_max_instances, Some(7));
    assert_eq!(parse(VALID).unwrap().tenant_max_instances, None);
    let e = error("tenant = \"a\"\napp = \"b\"\n[tenant-limits]\nmax-instances = 0\n");
    assert!(e.contains(":4: `tenant-limits.max-instances`"), "{e}");
    let e = error("tenant = \"a\"\napp = \"b\"\n[tenant-limits]\nmax-cpu = 1\n");
    assert!(e.contains("max-cpu"), "{e}");
    let m = parse("tenant = \"a\"\napp = \"b\"\n[tenant-limits]\nmax-memory = \"1GiB\"\n").unwrap();
    assert_eq!(m.tenant_max_memory, Some(1 << 30));
    let e = error("tenant = \"a\"\napp = \"b\"\n[tenant-limits]\nmax-memory = \"1KiB\"\n");
    assert!(
        e.contains(":4: `tenant-limits.max-memory`: must be at least 64KiB"),
        "{e}"
    );
}

const SERVICES: &str = r#"
tenant = "acme"
app = "book"
secrets = ["api-key"]

[[functions]]
name = "sign"
component = "sign.wasm"
route = "/acme/book"
limits = { max-outbound-response = "1MiB" }
[functions.grants]
key-value = ["entries"]
config = ["title", "api-key"]
logging = true
outbound = ["https://api.example.com", "http://127.0.0.1:*"]

[[functions]]
name = "plain"
component = "plain.wasm"

[key-value.entries]
max-key-size = "64B"
max-total-size = "1MiB"

[key-value.other]

[config]
title = "Guests"
"#;

#[test]
fn services_and_grants() {
    let m = parse(SERVICES).unwrap();
    assert_eq!(m.stores.len(), 2);
    let entries = m
        .stores
        .iter()
        .find(|s| s.name.as_str() == "entries")
        .unwrap();
    assert_eq!(entries.quota.max_key_size, 64);
    assert_eq!(
        entries.quota.max_value_size,
        DEFAULT_STORE_QUOTA.max_value_size
    );
    assert_eq!(entries.quota.max_total_size, 1024 * 1024);
    assert_eq!(m.config.len(), 1);
    assert_eq!(m.secrets.len(), 1);
    let sign = &m.functions[0];
    assert_eq!(sign.limits.max_outbound_response, 1024 * 1024);
    assert_eq!(sign.grants.key_value.len(), 1);
    assert_eq!(sign.grants.config.len(), 2);
    assert!(sign.grants.logging);
    assert!(sign.grants.outbound[1].allows(false, "127.0.0.1", 9));
    // Nothing is granted by default.
    assert_eq!(m.functions[1].grants, Grants::default());
}

#[test]
fn grants_must_name_declared_services() {
    let e = error(&SERVICES.replace(r#"key-value = ["entries"]"#, r#"key-value = ["ghost"]"#));
    assert!(
        e.contains(":12: `grants.key-value`") && e.contains("`ghost` is not a store"),
        "{e}"
    );
    let e = error(&SERVICES.replace(r#""title", "api-key""#, r#""title", "password""#));
    assert!(
        e.contains("`grants.config`") && e.contains("`password`"),
        "{e}"
    );
    let e = error(&SERVICES.replace("https://api.example.com", "https://api.example.com/v1"));
    assert!(
        e.contains("`grants.outbound`") && e.contains("without path"),
        "{e}"
    );
    let e = error(&SERVICES.replace("logging = true", "logging = true\nnetwork = true"));
    assert!(e.contains("network"), "{e}");
    let e = error(&SERVICES.replace(r#"secrets = ["api-key"]"#, r#"secrets = ["title"]"#));
    assert!(
        e.contains("`title` is both a plain config value and a secret"),
        "{e}"
    );
    let e = error(&SERVICES.replace(r#"max-key-size = "64B""#, r#"max-key-size = "0B""#));
    assert!(
        e.contains("`key-value.entries.max-key-size`: must be more than zero"),
        "{e}"
    );
    let e = error(&SERVICES.replace("[key-value.other]", "[key-value.Other]"));
    assert!(e.contains("`key-value`") && e.contains("Other"), "{e}");
    let e = error(&SERVICES.replace("[key-value.other]", "[key-value.other]\nmax-keys = 3"));
    assert!(e.contains("max-keys"), "{e}");
}

#[test]
fn a_function_kind_is_http_unless_it_says_cgi() {
    let m = parse(VALID).unwrap();
    assert_eq!(m.functions[0].kind, FunctionKind::Http);
    let cgi = VALID.replace(
        "name = \"private\"\n",
        "name = \"private\"\nkind = \"cgi\"\n",
    );
    assert_eq!(parse(&cgi).unwrap().functions[1].kind, FunctionKind::Cgi);
    let bad = VALID.replace(
        "name = \"private\"\n",
        "name = \"private\"\nkind = \"shell\"\n",
    );
    let message = error(&bad);
    assert!(
        message.contains("shell") && message.contains("cgi"),
        "{message}"
    );
}

#[test]
fn typed_imports_name_an_interface_and_a_function_of_the_app() {
    let base = "tenant = \"a\"\napp = \"b\"\n[[functions]]\nname = \"pricing\"\ncomponent = \"p.wasm\"\nkind = \"exports\"\n[[functions]]\nname = \"front\"\ncomponent = \"f.wasm\"\nroute = \"/x\"\n[functions.imports]\n";
    let m = parse(&format!(
        "{base}\"shop:pricing/quote@0.1.0\" = \"pricing\"\n"
    ))
    .unwrap();
    assert_eq!(m.functions[0].kind, FunctionKind::Exports);
    assert_eq!(
        m.functions[1].imports,
        vec![TypedImport {
            interface: Interface::new("shop:pricing/quote@0.1.0").unwrap(),
            exporter: Name::new("pricing").unwrap(),
            link: Linking::Composed,
        }]
    );
    assert!(m.functions[0].imports.is_empty());
    let m = parse(&format!(
        "{base}\"shop:pricing/quote\" = {{ function = \"pricing\", link = \"host\" }}\n\
         \"shop:pricing/tax\" = {{ function = \"pricing\" }}\n"
    ))
    .unwrap();
    let links: Vec<_> = m.functions[1]
        .imports
        .iter()
        .map(|i| (i.interface.as_str(), i.exporter.as_str(), i.link))
        .collect();
    assert_eq!(
        links,
        vec![
            ("shop:pricing/quote", "pricing", Linking::Host),
            ("shop:pricing/tax", "pricing", Linking::Composed),
        ]
    );
    for (line, expected) in [
        (
            "\"shop:pricing/quote\" = { function = \"pricing\", link = \"hots\" }",
            "unknown variant `hots`, expected `composed` or `host`",
        ),
        (
            "\"shop:pricing/quote\" = { function = \"pricing\", linking = \"host\" }",
            "unknown field `linking`",
        ),
        (
            "\"shop:pricing/quote\" = { link = \"host\" }",
            "missing field `function`",
        ),
        (
            "\"shop:pricing/quote\" = 3",
            "the exporting function's name, or",
        ),
    ] {
        let e = error(&format!("{base}{line}\n"));
        assert!(e.contains(expected), "{line}: {e}");
    }
    let e = error(&format!(
        "{base}\"shop:pricing/quote\" = {{ function = \"ghost\", link = \"host\" }}\n"
    ));
    assert!(
        e.contains("`imports`") && e.contains("`ghost` is not a function of this app"),
        "{e}"
    );
    for (line, expected) in [
        (
            "\"shop:pricing/quote\" = \"ghost\"",
            "`ghost` is not a function of this app",
        ),
        (
            "\"shop:pricing/quote\" = \"other/pricing\"",
            "linked to a function of this app",
        ),
        (
            "\"shop:pricing/quote\" = \"front\"",
            "cannot import from itself",
        ),
        ("\"quote\" = \"pricing\"", "is not an interface name"),
        (
            "\"wasi:http/outgoing-handler\" = \"pricing\"",
            "namespace is the host's",
        ),
    ] {
        let e = error(&format!("{base}{line}\n"));
        assert!(
            e.contains("`imports`") && e.contains(expected),
            "{line}: {e}"
        );
    }
}

#[test]
fn a_function_that_only_exports_has_no_route() {
    let e = error(
        "tenant = \"a\"\napp = \"b\"\n[[functions]]\nname = \"lib\"\ncomponent = \"l.wasm\"\nkind = \"exports\"\nroute = \"/lib\"\n",
    );
    assert!(
        e.contains("`route`") && e.contains("only exports interfaces"),
        "{e}"
    );
}

/// Every input of `fuzz/corpus/NAME`: the fuzz targets' seeds, and every input that ever made a
/// target fail (see docs/reliability.md).
fn fuzz_corpus(name: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(name);
    let inputs: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| std::fs::read(entry.unwrap().path()).unwrap())
        .collect();
    assert!(!inputs.is_empty(), "{} is empty", dir.display());
    inputs
}

/// The fuzz targets `manifest`, `policy` and `routes`, run over their corpora as plain tests.
#[test]
fn fuzz_corpora_parse_without_panicking() {
    for input in fuzz_corpus("manifest") {
        let text = String::from_utf8_lossy(&input);
        let _ = Manifest::parse(&text, Path::new("meshwa.toml"), Path::new(""));
        let _ = Manifest::parse_spin(&text, Path::new("spin.toml"), Path::new(""), None);
    }
    for input in fuzz_corpus("policy") {
        let _ = Policy::parse(&String::from_utf8_lossy(&input));
    }
    for input in fuzz_corpus("routes") {
        let text = String::from_utf8_lossy(&input);
        let (route, path) = text.split_once('\n').unwrap_or((&text, "/"));
        if let Ok(route) = Route::new(route) {
            assert!(route.matches(route.as_str()), "{route}");
            // Request paths start with '/' (hyper refuses others); "/" matches every one.
            if path.starts_with('/') && route.matches(path) {
                assert!(path.starts_with(route.as_str()), "{route} matched {path:?}");
            }
        }
    }
}

const WITH_ENV: &str = r#"
tenant = "acme"
app = "shop"

[[functions]]
name = "hello"
component = "hello.wasm"
env = { GREETING = "hi", "MY.VAR" = "a=b c", EMPTY = "" }

[[functions]]
name = "other"
component = "other.wasm"

[functions.env]
LANG = "C"
"#;

#[test]
fn environment_variables_per_function() {
    let m = parse(WITH_ENV).unwrap();
    let env = |f: &FunctionSpec| -> Vec<(String, String)> { f.env.clone() };
    assert_eq!(
        env(&m.functions[0]),
        [("EMPTY", ""), ("GREETING", "hi"), ("MY.VAR", "a=b c")]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
    );
    assert_eq!(env(&m.functions[1]), [("LANG".to_owned(), "C".to_owned())]);
    // None by default.
    assert!(parse(VALID).unwrap().functions[0].env.is_empty());
}

#[test]
fn bad_environment_variables_are_refused() {
    let with = |env: &str| {
        error(&format!(
            "tenant = \"a\"\napp = \"b\"\n[[functions]]\nname = \"f\"\ncomponent = \"f.wasm\"\nenv = {{ {env} }}\n"
        ))
    };
    for (env, says) in [
        (r#""A=B" = "x""#, "no '=' or NUL"),
        (r#""" = "x""#, "no '=' or NUL"),
        (r#""A\u0000" = "x""#, "no '=' or NUL"),
        (r#"A = "x\u0000y""#, "hold no NUL"),
        ("A = 1", "invalid type"),
    ] {
        let e = with(env);
        assert!(e.contains(says), "{env}: {e}");
        assert!(e.contains("app/meshwa.toml"), "{env}: {e}");
    }
    let e = with(&format!("A = \"{}\"", "x".repeat(MAX_ENV_BYTES)));
    assert!(e.contains("at most 32768 bytes"), "{e}");
    assert!(e.contains(":6:"), "the line is named: {e}");
    let many: Vec<String> = (0..=MAX_ENV_VARS).map(|i| format!("V{i} = \"\"")).collect();
    let e = with(&many.join(", "));
    assert!(e.contains("at most 128 environment variables"), "{e}");
    let e = error(&WITH_ENV.replace("LANG = \"C\"", "LANG = \"C\"\nunknown = { a = 1 }"));
    assert!(e.contains("invalid type"), "{e}");
}

const DEFAULT_STORE: &str = r#"
tenant = "acme"
app = "shop"

[[functions]]
name = "hello"
component = "hello.wasm"
grants = { key-value = ["", "named"] }

[key-value.""]
preload = "data/seed.json"
max-total-size = "1KiB"

[key-value.named]
"#;

#[test]
fn the_default_store_is_named_empty_and_may_be_preloaded() {
    let m = parse(DEFAULT_STORE).unwrap();
    let default = m.stores.iter().find(|s| s.name.is_default()).unwrap();
    assert_eq!(
        default.preload.as_deref(),
        Some(Path::new("app/data/seed.json"))
    );
    assert_eq!(default.quota.max_total_size, 1024);
    let named = m
        .stores
        .iter()
        .find(|s| s.name.as_str() == "named")
        .unwrap();
    assert_eq!(named.preload, None);
    let granted: Vec<&str> = m.functions[0]
        .grants
        .key_value
        .iter()
        .map(|s| s.as_str())
        .collect();
    assert_eq!(granted, ["", "named"]);
}

#[test]
fn preload_paths_stay_inside_the_app() {
    for bad in ["../secrets.json", "/etc/passwd", "", "data/../../x.json"] {
        let e = error(&DEFAULT_STORE.replace("data/seed.json", bad));
        assert!(
            e.contains("not a path inside the app's directory"),
            "{bad}: {e}"
        );
        assert!(e.contains("key-value.\"\".preload"), "{bad}: {e}");
    }
    // A grant of the default store needs it declared.
    let e = error(&DEFAULT_STORE.replace("[key-value.\"\"]", "[key-value.x]"));
    assert!(e.contains("`\"\"` is not a store of this app"), "{e}");
    // Store names other than "" follow the name rule.
    let e = error(&DEFAULT_STORE.replace("[key-value.named]", "[key-value.Named]"));
    assert!(e.contains("invalid name"), "{e}");
}

#[test]
fn a_missing_preload_file_is_named_at_load() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hello.wasm"), b"").unwrap();
    let path = dir.path().join("meshwa.toml");
    std::fs::write(&path, DEFAULT_STORE).unwrap();
    let e = Manifest::load(&path).unwrap_err().to_string();
    assert!(e.contains("preload file"), "{e}");
    assert!(e.contains("seed.json does not exist"), "{e}");
    std::fs::create_dir(dir.path().join("data")).unwrap();
    std::fs::write(dir.path().join("data/seed.json"), "{}").unwrap();
    Manifest::load(&path).unwrap();
}

#[test]
fn triggers_and_publish_grants_are_parsed_and_checked() {
    let manifest = parse(
        "tenant = \"acme\"\napp = \"shop\"\n\
         [[functions]]\nname = \"report\"\ncomponent = \"r.wasm\"\ncron = \"0 */5 * * * *\"\n\
         [[functions]]\nname = \"on-order\"\ncomponent = \"o.wasm\"\nsubscribe = \"orders.*\"\n\
         grants = { publish = [\"invoices.>\"] }\n",
    )
    .unwrap();
    let report = &manifest.functions[0];
    assert_eq!(
        report.triggers.cron.as_ref().map(|s| s.as_str()),
        Some("0 */5 * * * *")
    );
    let on_order = &manifest.functions[1];
    assert_eq!(
        on_order.triggers.subscribe.as_ref().map(|s| s.as_str()),
        Some("orders.*")
    );
    assert!(on_order.grants.publish[0].matches("invoices.eu.paid"));

    let bad_schedule = error(
        "tenant = \"a\"\napp = \"b\"\n[[functions]]\nname = \"f\"\ncomponent = \"f.wasm\"\ncron = \"hourly\"\n",
    );
    assert!(
        bad_schedule.contains("meshwa.toml:6") && bad_schedule.contains("seconds minutes hours"),
        "{bad_schedule}"
    );
    let bad_subject = error(
        "tenant = \"a\"\napp = \"b\"\n[[functions]]\nname = \"f\"\ncomponent = \"f.wasm\"\nsubscribe = \"Orders..x\"\n",
    );
    assert!(bad_subject.contains("invalid subject"), "{bad_subject}");
    let exports = error(
        "tenant = \"a\"\napp = \"b\"\n[[functions]]\nname = \"f\"\ncomponent = \"f.wasm\"\nkind = \"exports\"\ncron = \"* * * * * *\"\n",
    );
    assert!(exports.contains("nothing can trigger it"), "{exports}");
}
