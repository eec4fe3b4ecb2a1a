//! Spin apps run unchanged (issue 17, items 1 and 2): three spin-sdk 3 components
//! (`guests/spin-*`) served from their `spin.toml` (`guests/spin-front/spin.toml`), routed by
//! spin-sdk's router, calling each other through `*.spin.internal`, reading Spin variables and
//! Spin's key-value store, and seeing Spin's request headers.

use std::path::{Path, PathBuf};

use http_body_util::BodyExt;
use meshwa_manifest::Manifest;
use meshwa_runtime::Secrets;

use crate::common::{client, get, send, start, start_full};
use meshwa_test_programs as programs;

/// The committed `spin.toml` of the three components.
fn spin_toml() -> PathBuf {
    Path::new(programs::EXAMPLES_DIR).join("../guests/spin-front/spin.toml")
}

/// A runtime of its own (data in `dir`), for apps that must fail to load.
fn runtime(dir: &Path) -> meshwa_runtime::Runtime {
    meshwa_runtime::Runtime::with_cache_dir(
        meshwa_runtime::EngineSettings::default(),
        dir,
        Path::new(programs::COMPILE_CACHE_DIR),
    )
    .unwrap()
}

/// Why the app at `path` does not load.
fn refusal(runtime: &meshwa_runtime::Runtime, path: &Path, secrets: &Secrets) -> String {
    runtime
        .load_app(&Manifest::load(path).unwrap(), secrets)
        .err()
        .expect("the app is refused")
        .to_string()
}

async fn put(addr: std::net::SocketAddr, path: &str, body: &str) -> (u16, String) {
    let answer = send(&client(), addr, "PUT", path, body.as_bytes()).await;
    (answer.status, answer.body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
pub(crate) async fn a_spin_app_runs_from_its_spin_toml() {
    let manifest = Manifest::load(&spin_toml()).unwrap();
    assert_eq!(
        (manifest.tenant.as_str(), manifest.app.as_str()),
        ("spin", "spin-chain")
    );
    let server = start(&[spin_toml()]).await;

    // spin-sdk's router, with a parameter.
    let hello = get(server.addr, "/spin/hello/ada").await;
    assert_eq!((hello.status, hello.body.as_str()), (200, "hello, ada"));
    let missing = get(server.addr, "/spin/nowhere").await;
    assert_eq!(missing.status, 404, "{}", missing.body);

    // Spin's request headers, as Spin's HTTP trigger sets them.
    let headers = get(server.addr, "/spin/headers/a/b?q=1").await;
    assert_eq!(headers.status, 200, "{}", headers.body);
    let line = |name: &str| {
        headers
            .body
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .unwrap_or_else(|| panic!("no {name} in {}", headers.body))
            .to_owned()
    };
    assert_eq!(line("spin-path-info"), "/headers/a/b");
    assert_eq!(line("spin-matched-route"), "/spin/...");
    assert_eq!(line("spin-raw-component-route"), "/spin/...");
    assert_eq!(line("spin-component-route"), "/spin");
    assert_eq!(line("spin-base-path"), "/");
    assert_eq!(
        line("spin-full-url"),
        format!("http://{}/spin/headers/a/b?q=1", server.addr)
    );
    assert!(
        line("spin-client-addr").starts_with("127.0.0.1:"),
        "{}",
        headers.body
    );
    // A client cannot forge them: the host's word replaces the client's.
    let forged = http::Request::get(format!("http://{}/spin/headers/x", server.addr))
        .header("spin-path-info", "/forged")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let forged = client().request(forged).await.unwrap();
    let forged = forged.into_body().collect().await.unwrap().to_bytes();
    let forged = String::from_utf8_lossy(&forged);
    assert!(forged.contains("spin-path-info: /headers/x\n"), "{forged}");

    // Variables: the component's own, templated from the app's.
    let message = get(server.addr, "/spin/variable/message").await;
    assert_eq!(
        (message.status, message.body.as_str()),
        (200, "hello from spin.toml")
    );
    let undefined = get(server.addr, "/spin/variable/greeting").await;
    assert_eq!(undefined.status, 404);
    assert!(undefined.body.contains("Undefined"), "{}", undefined.body);

    // Spin's key-value store, `default`, and a label it was not given.
    assert_eq!(get(server.addr, "/spin/kv/colour").await.status, 404);
    let (status, body) = put(server.addr, "/spin/kv/colour", "teal").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("elsewhere: Error::NoSuchStore"), "{body}");
    let read = get(server.addr, "/spin/kv/colour").await;
    assert_eq!((read.status, read.body.as_str()), (200, "teal"));
    put(server.addr, "/spin/kv/animal", "otter").await;
    let keys = get(server.addr, "/spin/keys").await;
    assert_eq!((keys.status, keys.body.as_str()), (200, "animal\ncolour"));

    // The chain: front → middle → back, by Spin names, each in its own fresh instance.
    let chain = get(server.addr, "/spin/chain").await;
    assert_eq!(
        (chain.status, chain.body.as_str()),
        (
            200,
            "front > middle/spin-middle/hop > back says hello, says the back"
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
pub(crate) async fn spin_calls_and_variables_keep_to_the_manifest() {
    let dir = tempfile::tempdir().unwrap();
    // spin-front may not call spin-middle here; spin-back's greeting is a required variable
    // that the operator's secrets file supplies (`api_token` as `api-token`).
    let text = format!(
        r#"
spin_manifest_version = 2
[application]
name = "strict"
[variables]
api_token = {{ required = true }}
[[trigger.http]]
route = "/spin/..."
component = "spin-front"
[[trigger.http]]
route = "/back"
component = "spin-back"
[component.spin-front]
source = "{front}"
key_value_stores = ["other"]
[component.spin-middle]
source = "{middle}"
allowed_outbound_hosts = ["http://*.spin.internal"]
[component.spin-back]
source = "{back}"
[component.spin-back.variables]
greeting = "token {{{{ api_token }}}}"
"#,
        front = programs::SPIN_FRONT,
        middle = programs::SPIN_MIDDLE,
        back = programs::SPIN_BACK,
    );
    let path = dir.path().join("spin.toml");
    std::fs::write(&path, text).unwrap();

    // Without the secret, the app does not load.
    let runtime = runtime(dir.path());
    let refused = refusal(&runtime, &path, &Secrets::default());
    assert!(refused.contains("api-token"), "{refused}");

    let secrets = Secrets::parse(
        "[local.strict]\napi-token = \"s3cret\"\n",
        Path::new("secrets.toml"),
    )
    .unwrap();
    let server = start_full(std::slice::from_ref(&path), Default::default(), &secrets).await;
    let back = get(server.addr, "/back").await;
    assert_eq!(
        (back.status, back.body.as_str()),
        (200, "back says token s3cret")
    );

    // Not in spin-front's allowed_outbound_hosts: denied, as Spin denies it.
    let chain = get(server.addr, "/spin/chain").await;
    assert_eq!(chain.status, 502, "{}", chain.body);
    assert!(chain.body.contains("HttpRequestDenied"), "{}", chain.body);
    // Nor does Spin's key-value interface open a store the component was not given
    // (`default` is not declared here, so it does not exist).
    let (status, body) = put(server.addr, "/spin/kv/x", "y").await;
    assert_eq!(status, 500, "{body}");

    // A component that imports Spin's key-value interface without any store is refused at
    // load, naming the import and the key to add (granting is linking, as for every service).
    let ungranted = std::fs::read_to_string(&path)
        .unwrap()
        .replace("key_value_stores = [\"other\"]\n", "");
    std::fs::write(&path, ungranted).unwrap();
    let refused = refusal(&runtime, &path, &secrets);
    assert!(
        refused.contains("fermyon:spin/key-value") && refused.contains("key_value_stores"),
        "{refused}"
    );
}

/// A component built with spin-sdk 2.x imports the pre-release WASI `0.2.0-rc-2023-10-18`,
/// which meshwa does not link: it is refused at load with an error that says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
pub(crate) async fn a_spin_sdk_2_component_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spin.toml");
    let text = format!(
        "spin_manifest_version = 2\n[application]\nname = \"old\"\n\
         [[trigger.http]]\nroute = \"/old\"\ncomponent = \"old\"\n\
         [component.old]\nsource = \"{}\"\n",
        programs::SPIN2_HELLO
    );
    std::fs::write(&path, text).unwrap();
    let refused = refusal(&runtime(dir.path()), &path, &Secrets::default());
    assert!(
        refused.contains("0.2.0-rc-2023-10-18") && refused.contains("spin-sdk 3"),
        "{refused}"
    );
}

/// The same spin-sdk component served from a meshwa.toml: its router and Spin's key-value
/// interface work (granted as any store is); there are no Spin variables or headers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
pub(crate) async fn spin_components_also_run_from_a_meshwa_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meshwa.toml");
    let text = format!(
        "tenant = \"spin\"\napp = \"plain\"\n[[functions]]\nname = \"front\"\n\
         component = \"{}\"\nroute = \"/spin\"\ngrants = {{ key-value = [\"default\"] }}\n\
         [key-value.default]\n",
        programs::SPIN_FRONT
    );
    std::fs::write(&path, text).unwrap();
    let server = start(&[path]).await;
    let hello = get(server.addr, "/spin/hello/bo").await;
    assert_eq!((hello.status, hello.body.as_str()), (200, "hello, bo"));
    let (status, body) = put(server.addr, "/spin/kv/k", "v").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(get(server.addr, "/spin/kv/k").await.body, "v");
    let undefined = get(server.addr, "/spin/variable/message").await;
    assert_eq!(undefined.status, 404, "{}", undefined.body);
    let headers = get(server.addr, "/spin/headers/x").await;
    assert!(
        headers.body.contains("spin-path-info: (none)"),
        "{}",
        headers.body
    );
}
