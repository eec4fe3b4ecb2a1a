//! The trigger seam without HTTP: a test trigger starts invocations with events, the runtime
//! runs each in a fresh instance within the function's limits, and the trigger gets the outcome.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use meshwa_manifest::Manifest;
use meshwa_runtime::{
    EngineSettings, Event, Function, InvokeError, Outcome, Runtime, Secrets, Shutdown, Trigger,
    TriggerError, run_triggers,
};
use meshwa_test_programs as programs;
use tokio::sync::mpsc;

/// Delivers its events one after the other, reports each outcome, then waits for shutdown.
struct TestTrigger {
    function: Arc<Function>,
    events: Vec<Event>,
    outcomes: mpsc::UnboundedSender<Result<Outcome, InvokeError>>,
}

impl Trigger for TestTrigger {
    fn kind(&self) -> &'static str {
        "test"
    }

    fn run(
        self: Box<Self>,
        shutdown: Shutdown,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<(), TriggerError>> + Send>> {
        Box::pin(async move {
            for event in self.events {
                let outcome = self.function.deliver(event).await;
                let _ = self.outcomes.send(outcome);
            }
            shutdown.await;
            Ok(())
        })
    }
}

/// Fails at once, as a trigger whose listener or broker is gone would.
struct BrokenTrigger;

impl Trigger for BrokenTrigger {
    fn kind(&self) -> &'static str {
        "broken"
    }

    fn run(
        self: Box<Self>,
        _shutdown: Shutdown,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<(), TriggerError>> + Send>> {
        Box::pin(async {
            Err(TriggerError {
                kind: "broken",
                source: "the broker went away".into(),
            })
        })
    }
}

fn event(subject: &str, payload: &'static [u8]) -> Event {
    Event {
        trigger: "test",
        subject: subject.to_owned(),
        attributes: vec![("content-type".to_owned(), "text/plain".to_owned())],
        payload: Bytes::from_static(payload),
        invocation: format!("test-{subject}"),
    }
}

/// One function `f` of `kind` running `component`, loaded on a runtime of its own.
fn load(component: &str, kind: &str, limits: &str) -> (Runtime, Arc<Function>, tempfile::TempDir) {
    let text = format!(
        "tenant = \"t\"\napp = \"a\"\n[[functions]]\nname = \"f\"\nkind = \"{kind}\"\n\
         component = \"{component}\"\nlimits = {{ {limits} }}\n"
    );
    let manifest = Manifest::parse(&text, Path::new("m.toml"), Path::new("/")).unwrap();
    let data = tempfile::tempdir().unwrap();
    let runtime = Runtime::with_cache_dir(
        EngineSettings {
            max_instances: 8,
            ..EngineSettings::default()
        },
        data.path(),
        Path::new(programs::COMPILE_CACHE_DIR),
    )
    .unwrap();
    let function = runtime
        .load_app(&manifest, &Secrets::default())
        .unwrap()
        .remove(0);
    (runtime, function, data)
}

/// Runs a test trigger with `events` against `function` and returns the outcomes in order.
async fn trigger(function: Arc<Function>, events: Vec<Event>) -> Vec<Result<Outcome, InvokeError>> {
    let count = events.len();
    let (outcomes, mut received) = mpsc::unbounded_channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(run_triggers(
        vec![Box::new(TestTrigger {
            function,
            events,
            outcomes,
        })],
        Box::pin(async {
            let _ = stopped.await;
        }),
    ));
    let mut results = Vec::new();
    while results.len() < count {
        results.push(received.recv().await.unwrap());
    }
    stop.send(()).unwrap();
    running.await.unwrap().unwrap();
    results
}

#[tokio::test]
async fn an_event_reaches_an_http_function_and_its_answer_comes_back() {
    let (_runtime, echo, _data) = load(programs::ECHO, "http", "");
    let outcomes = trigger(
        echo.clone(),
        vec![event("one", b"first payload"), event("two", b"second")],
    )
    .await;
    let bodies: Vec<Bytes> = outcomes
        .into_iter()
        .map(|outcome| {
            let outcome = outcome.unwrap();
            assert_eq!(outcome.status, 200);
            assert_eq!(outcome.headers["x-echo-method"], "Method::Post");
            outcome.body
        })
        .collect();
    assert_eq!(bodies, ["first payload", "second"]);
    // Each event had an instance of its own, and none is left.
    assert_eq!(echo.live_instances(), 0);
}

#[tokio::test]
async fn an_event_reaches_a_cgi_program_on_stdin() {
    let (_runtime, cgi, _data) = load(programs::C_CGI, "cgi", "");
    let outcome = trigger(cgi, vec![event("count", b"two words\n")])
        .await
        .remove(0)
        .unwrap();
    let body = String::from_utf8_lossy(&outcome.body);
    assert_eq!(outcome.status, 200);
    assert!(body.starts_with("1 2 10\nmethod=POST "), "{body}");
    assert!(body.contains("type=text/plain"), "{body}");
}

#[tokio::test]
async fn a_failing_guest_is_a_typed_outcome_for_the_trigger() {
    let (_runtime, faults, _data) = load(programs::FAULTS, "http", "timeout = \"300ms\"");
    let outcomes = trigger(
        faults.clone(),
        vec![event("trap", b""), event("loop", b""), event("ok", b"")],
    )
    .await;
    assert!(
        matches!(outcomes[0], Err(InvokeError::Trap(_))),
        "{:?}",
        outcomes[0]
    );
    assert!(
        matches!(outcomes[1], Err(InvokeError::Timeout(t)) if t == Duration::from_millis(300)),
        "{:?}",
        outcomes[1]
    );
    // The failures harmed nothing: the next event is served.
    assert_eq!(outcomes[2].as_ref().unwrap().body, "fine");
    assert_eq!(faults.live_instances(), 0);
}

#[tokio::test]
async fn an_invalid_event_attribute_is_the_triggers_fault() {
    let (_runtime, echo, _data) = load(programs::ECHO, "http", "");
    let mut bad = event("bad", b"");
    bad.attributes
        .push(("not a header".to_owned(), "x".to_owned()));
    let error = echo.deliver(bad).await.unwrap_err();
    assert!(matches!(error, InvokeError::BadRequest(_)), "{error:?}");
}

#[tokio::test]
async fn a_failing_trigger_stops_the_others() {
    let (_runtime, echo, _data) = load(programs::ECHO, "http", "");
    let (outcomes, _received) = mpsc::unbounded_channel();
    let waiting = TestTrigger {
        function: echo,
        events: Vec::new(),
        outcomes,
    };
    // No shutdown ever comes: the broken trigger alone must end the run.
    let result = tokio::time::timeout(
        Duration::from_secs(10),
        run_triggers(
            vec![Box::new(waiting), Box::new(BrokenTrigger)],
            Box::pin(std::future::pending()),
        ),
    )
    .await
    .expect("run_triggers returns once a trigger failed");
    let error = result.unwrap_err();
    assert_eq!(error.kind, "broken");
    assert!(
        error.to_string().contains("the broker went away"),
        "{error}"
    );
}
