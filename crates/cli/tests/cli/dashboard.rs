//! The dashboard (issue 20, item 3) in a real browser: headless Chromium (Debian's `chromium`,
//! which `cargo xtask setup` installs) driven over the DevTools protocol by `chromiumoxide`,
//! against `meshwa serve` with example apps. Screenshots are written to
//! `target/tmp/dashboard-*.png` as the test's artifacts.

use chromiumoxide::Page;
use chromiumoxide::browser::{Browser, BrowserConfig};
use chromiumoxide::page::ScreenshotParams;
use futures::StreamExt as _;

use super::*;

const CHROMIUM: &str = "/usr/bin/chromium";

/// Polls `expression` in the page until it is true-ish as in JavaScript (an empty array too is
/// not), for 10 s at most; returns its value.
async fn wait_for(page: &Page, what: &str, expression: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let value: serde_json::Value = page
            .evaluate(expression)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"))
            .into_value()
            .unwrap_or(serde_json::Value::Null);
        let truthy = match &value {
            serde_json::Value::Null | serde_json::Value::Bool(false) => false,
            serde_json::Value::Array(items) => !items.is_empty(),
            serde_json::Value::Number(n) => n.as_f64() != Some(0.0),
            serde_json::Value::String(s) => !s.is_empty(),
            _ => true,
        };
        if truthy {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: still {value} after 10 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn log_in(page: &Page, token: &str) {
    let field = page.find_element("#token").await.unwrap();
    field.click().await.unwrap().type_str(token).await.unwrap();
    page.find_element("#login-button")
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// The apps listed, as `tenant/app`.
async fn listed_apps(page: &Page) -> Vec<String> {
    let apps = wait_for(
        page,
        "the app list",
        "Array.from(document.querySelectorAll('#apps li[data-app]')).map(li => li.dataset.app)",
    )
    .await;
    serde_json::from_value(apps).unwrap()
}

async fn screenshot(page: &Page, name: &str) {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("dashboard-{name}.png"));
    page.save_screenshot(ScreenshotParams::builder().full_page(true).build(), &path)
        .await
        .unwrap_or_else(|e| panic!("screenshot {}: {e}", path.display()));
    eprintln!("screenshot: {}", path.display());
}

/// The operator logs in and sees every tenant's apps, the pool, a latency plot and a chain's
/// waterfall; a tenant logs in and sees only its own app; a wrong token is refused. And the
/// tenant's chains in the terminal, with `meshwa traces`.
#[test]
fn the_dashboard_shows_apps_plots_and_a_waterfall_and_a_tenant_only_its_own() {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: `cargo xtask setup` installs Debian's chromium"
    );
    let dir = tempfile::tempdir().unwrap();
    let served = serve_with(
        &dir.path().join("data"),
        &[
            programs::example_manifest("acme-greeter"),
            programs::example_manifest("initech-orders"),
        ],
        &["--operator-token", "op-token"],
    );
    let (code, _, err) = client(served.admin, "op-token", &["tenant", "create", "initech"]);
    assert_eq!(code, 0, "{err}");
    let (code, initech, err) = client(
        served.admin,
        "op-token",
        &["token", "create", "--tenant", "initech"],
    );
    assert_eq!(code, 0, "{err}");
    // Traffic to draw: chains of five functions, and a greeting.
    for _ in 0..5 {
        let (status, body) = http(served.addr, "POST", "/initech/orders", super::traces::ORDER);
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(http(served.addr, "GET", "/acme/hello", b"").0, 200);

    // The same chains in the terminal: `meshwa traces`, with the tenant's token.
    let (code, out, err) = client(
        served.admin,
        initech.trim(),
        &["traces", "orders", "--limit", "1"],
    );
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 6, "a chain line and five spans:\n{out}");
    assert!(lines[0].contains("from ingest (5 spans)"), "{out}");
    assert!(lines[1].starts_with("  orders/ingest ") && lines[1].contains("status=200"));
    assert!(
        lines[2].starts_with("    orders/parse "),
        "a callee one level in:\n{out}"
    );
    assert!(
        lines.iter().skip(1).all(|l| l.contains('#')),
        "every span has a bar:\n{out}"
    );
    let (code, _, err) = client(served.admin, initech.trim(), &["traces", "greeter"]);
    assert_eq!(code, 4, "another tenant's app is not found: {err}");

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let profile = tempfile::tempdir().unwrap();
        let config = BrowserConfig::builder()
            .chrome_executable(CHROMIUM)
            // Chromium's own sandbox needs user namespaces or a setuid helper, and refuses root.
            .no_sandbox()
            .user_data_dir(profile.path())
            .window_size(1400, 1100)
            .viewport(None)
            .build()
            .unwrap();
        let (mut browser, mut handler) = Browser::launch(config).await.unwrap();
        let driver = tokio::spawn(async move { while handler.next().await.is_some() {} });
        let page = browser
            .new_page(format!("http://{}/dashboard", served.admin))
            .await
            .unwrap();

        // A wrong token is refused on the page.
        log_in(&page, "not-a-token").await;
        let refused = wait_for(
            &page,
            "the refusal",
            "document.getElementById('login-error').textContent",
        )
        .await;
        assert!(refused.as_str().unwrap().contains("refused"), "{refused}");
        page.evaluate("document.getElementById('token').value = ''")
            .await
            .unwrap();

        log_in(&page, "op-token").await;
        let apps = listed_apps(&page).await;
        let login_shown = page
            .evaluate("getComputedStyle(document.getElementById('login')).display")
            .await
            .unwrap()
            .into_value::<String>()
            .unwrap();
        assert_eq!(login_shown, "none", "the login form goes once logged in");
        assert_eq!(apps, ["acme/greeter", "initech/orders"]);
        wait_for(
            &page,
            "the pool",
            "!document.getElementById('pool').hidden && document.getElementById('pool-text').textContent",
        )
        .await;
        page.find_element("#apps li[data-app='initech/orders']")
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        wait_for(
            &page,
            "the functions table",
            "document.getElementById('app-name').textContent === 'initech/orders' \
             && document.querySelectorAll('#functions tbody tr').length === 5",
        )
        .await;
        // A latency plot with a marker on each interval with traffic, joined by lines.
        wait_for(
            &page,
            "the latency plot",
            "document.querySelectorAll('#plot-latency polyline[data-series=p99]').length \
             && document.querySelectorAll('#plot-latency circle[data-series=p99]').length",
        )
        .await;
        wait_for(
            &page,
            "the requests plot",
            "document.querySelectorAll('#plot-requests polyline[data-series=requests]').length",
        )
        .await;
        // The newest chain, drawn as a waterfall of its five invocations.
        let chains = wait_for(
            &page,
            "the recent invocations",
            "document.querySelectorAll('#invocations tbody tr[data-invocation]').length",
        )
        .await;
        assert_eq!(chains, 5);
        page.find_element("#invocations tbody tr[data-invocation]")
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let bars = wait_for(
            &page,
            "the waterfall",
            "Array.from(document.querySelectorAll('#waterfall text.name')).map(t => t.textContent)",
        )
        .await;
        let bars: Vec<String> = serde_json::from_value(bars).unwrap();
        assert_eq!(bars.len(), 5, "{bars:?}");
        assert_eq!(bars[0], "orders/ingest");
        screenshot(&page, "operator").await;

        // A tenant sees its own app only, and no pool.
        page.find_element("#logout")
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        log_in(&page, initech.trim()).await;
        wait_for(
            &page,
            "the tenant's login",
            "document.getElementById('who').textContent === 'tenant initech'",
        )
        .await;
        assert_eq!(listed_apps(&page).await, ["initech/orders"]);
        let pool_hidden = page
            .evaluate("document.getElementById('pool').hidden")
            .await
            .unwrap()
            .into_value::<bool>()
            .unwrap();
        assert!(pool_hidden, "a tenant sees no pool");
        wait_for(
            &page,
            "the tenant's plot",
            "document.querySelectorAll('#plot-latency polyline').length",
        )
        .await;
        screenshot(&page, "tenant").await;

        browser.close().await.unwrap();
        browser.wait().await.unwrap();
        driver.abort();
    });
}
