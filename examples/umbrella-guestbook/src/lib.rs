//! A guestbook: `GET` shows the newest entries and counts visits, `POST` (a form with `name` and
//! `message`) signs it, `DELETE` with the admin token clears it.
//!
//! State lives in the app's `entries` store: `visits` and `seq` are counters (atomic
//! increments), each entry is `entry/<seq, zero-padded>` so keys list in signing order. The title
//! and page size are plain config, the admin token a secret; all three arrive through
//! `wasi:config`, so the code never sees where they came from.

use meshwa_sdk::kv::Store;
use meshwa_sdk::{Request, Response, config, log};

const MAX_NAME: usize = 40;
const MAX_MESSAGE: usize = 280;

fn handle(request: Request) -> Response {
    let store = match Store::open("entries") {
        Ok(store) => store,
        Err(e) => return Response::new(500, format!("store unavailable: {e:?}")),
    };
    let outcome = match request.method.as_str() {
        "GET" => show(&store),
        "POST" => sign(&store, &request.body),
        "DELETE" => clear(&store, request.header("authorization")),
        _ => Ok(Response::new(405, "use GET, POST or DELETE\n")),
    };
    outcome.unwrap_or_else(|e| Response::new(503, format!("storage error: {e:?}\n")))
}

fn show(store: &Store) -> Result<Response, meshwa_sdk::kv::Error> {
    let title = config::get("title").unwrap_or_else(|| "Guestbook".to_string());
    let shown: usize = config::get("max-shown")
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let visits = store.increment("visits", 1)?;
    let keys: Vec<String> = store
        .keys()?
        .into_iter()
        .filter(|k| k.starts_with("entry/"))
        .collect();
    let newest: Vec<String> = keys.iter().rev().take(shown).cloned().collect();
    let mut page = format!(
        "{title}\n{}\nvisit #{visits}, {} entries\n\n",
        "=".repeat(title.len()),
        keys.len()
    );
    for entry in store.get_many(&newest)?.into_iter().flatten() {
        let text = String::from_utf8_lossy(&entry.1).into_owned();
        let (name, message) = text.split_once('\t').unwrap_or(("?", &text));
        page += &format!("{name}: {message}\n");
    }
    Ok(Response::new(200, page).with_header("content-type", "text/plain; charset=utf-8"))
}

fn sign(store: &Store, body: &[u8]) -> Result<Response, meshwa_sdk::kv::Error> {
    let form = String::from_utf8_lossy(body);
    let field = |name: &str| meshwa_sdk::form_value(&form, name).unwrap_or_default();
    let (name, message) = (field("name"), field("message"));
    if name.trim().is_empty() || message.trim().is_empty() {
        return Ok(Response::new(
            400,
            "send a form with `name` and `message`\n",
        ));
    }
    if name.chars().count() > MAX_NAME || message.chars().count() > MAX_MESSAGE {
        return Ok(Response::new(
            400,
            format!("name is at most {MAX_NAME} and message at most {MAX_MESSAGE} characters\n"),
        ));
    }
    let seq = store.increment("seq", 1)?;
    let clean = |s: &str| s.replace(['\t', '\n', '\r'], " ");
    store.set(
        &format!("entry/{seq:012}"),
        format!("{}\t{}", clean(&name), clean(&message)).as_bytes(),
    )?;
    log::info(&format!("entry {seq} signed by {}", clean(&name)));
    Ok(Response::new(201, format!("thank you, entry #{seq}\n")))
}

fn clear(store: &Store, authorization: Option<&str>) -> Result<Response, meshwa_sdk::kv::Error> {
    let expected = config::get("admin-token");
    let given = authorization.and_then(|v| v.strip_prefix("Bearer "));
    if expected.is_none() || given != expected.as_deref() {
        return Ok(Response::new(401, "admin token required\n"));
    }
    let keys: Vec<String> = store
        .keys()?
        .into_iter()
        .filter(|k| k.starts_with("entry/"))
        .collect();
    for page in keys.chunks(100) {
        store.delete_many(page)?;
    }
    log::warn(&format!("guestbook cleared: {} entries", keys.len()));
    Ok(Response::new(
        200,
        format!("cleared {} entries\n", keys.len()),
    ))
}

meshwa_sdk::http_handler!(handle);
