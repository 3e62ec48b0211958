//! `TestClient` end to end: hooks in the test environment, per-worker state, JSON in and
//! out, errors, the command line's `routes` and `check`.

use std::cell::Cell;
use std::rc::Rc;

use nucleon::test::TestClient;
use nucleon::{App, HttpError, Json, Local, Path, StatusCode, get, post};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Note {
    id: u32,
    text: String,
}

async fn create(Local(notes): Local<Vec<Note>>, Json(note): Json<Note>) -> (StatusCode, Json<u32>) {
    let id = note.id;
    notes.with_mut(|n| n.push(note));
    (StatusCode::CREATED, Json(id))
}

async fn one(Local(notes): Local<Vec<Note>>, Path(id): Path<u32>) -> Result<Json<Note>, HttpError> {
    notes
        .with(|n| {
            n.iter().find(|x| x.id == id).map(|x| Note {
                id: x.id,
                text: x.text.clone(),
            })
        })
        .map(Json)
        .ok_or_else(|| HttpError::not_found(format!("no note {id}")))
}

const CONFIG: &str = r#"
[default.http]
port = 8123
body_limit = 64

[test.http]
port = 0
"#;

fn app(log: Rc<Cell<u32>>) -> App {
    let (a, b, c) = (Rc::clone(&log), Rc::clone(&log), log);
    App::new("notes")
        .default_config(CONFIG)
        .local_state(Vec::<Note>::new)
        .route("/notes", post(create))
        .route("/notes/{id}", get(one))
        .on_initialise(move || async move {
            a.set(a.get() + 1);
            Ok(())
        })
        .on_start(move || async move {
            b.set(b.get() + 10);
            Ok(())
        })
        .on_stop(move || async move {
            c.set(c.get() + 100);
            Ok(())
        })
}

#[test]
fn test_client_end_to_end() {
    let hooks = Rc::new(Cell::new(0));
    let client = TestClient::new(app(Rc::clone(&hooks)));
    assert_eq!(hooks.get(), 11, "on_initialise and on_start ran");

    let created = client.post_json(
        "/notes",
        &Note {
            id: 7,
            text: "hi".into(),
        },
    );
    assert_eq!(created.status(), StatusCode::CREATED);
    assert_eq!(created.json::<u32>(), 7);
    assert!(created.header("x-request-id").is_some());

    let note: Note = client.get("/notes/7").json();
    assert_eq!(
        note,
        Note {
            id: 7,
            text: "hi".into()
        }
    );

    let missing = client.get("/notes/8");
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_eq!(missing.json::<serde_json::Value>()["message"], "no note 8");

    let bad = client.get("/notes/eight");
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        bad.json::<serde_json::Value>()["error"],
        "INVALID_PARAMETERS"
    );

    // The test environment's configuration is in force: its body limit is 64 bytes.
    let big = client.post_json(
        "/notes",
        &Note {
            id: 1,
            text: "x".repeat(100),
        },
    );
    assert_eq!(big.status(), StatusCode::PAYLOAD_TOO_LARGE);

    let wrong = client.delete("/notes/7");
    assert_eq!(wrong.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(wrong.header("allow"), Some("GET, HEAD"));

    drop(client);
    assert_eq!(hooks.get(), 111, "on_stop ran when the client dropped");
}

#[test]
fn command_line_routes_check_and_bad_configuration() {
    let log = Rc::new(Cell::new(0));
    nucleon::run_from(app(Rc::clone(&log)), ["notes", "routes"]).expect("routes");
    nucleon::run_from(app(Rc::clone(&log)), ["notes", "check", "--env", "test"]).expect("check");
    let error = nucleon::run_from(app(Rc::clone(&log)), ["notes", "check", "--env", "staging"])
        .expect_err("unknown environment");
    assert_eq!(error.exit_code(), 78);
    assert!(error.to_string().contains("staging"), "{error}");
    let error = nucleon::run_from(app(log), ["notes", "--port", "nope"]).expect_err("bad port");
    assert_eq!(error.exit_code(), 64);
}
