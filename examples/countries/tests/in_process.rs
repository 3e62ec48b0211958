//! The countries service in-process, through `nucleon::test::TestClient` (no socket,
//! one worker, the `test` environment): the quickstart's answers and the per-worker
//! hit counter.

use nucleon::test::TestClient;

#[test]
fn the_countries_answer_in_process() {
    let client = TestClient::new(countries::app());

    let list = client.get("/countries/");
    assert_eq!(list.status(), 200);
    assert_eq!(list.json::<Vec<String>>(), ["de", "fr", "gb", "jp", "us"]);

    let gb = client.get("/countries/gb/");
    assert_eq!(gb.status(), 200);
    assert_eq!(gb.header("content-type"), Some("application/json"));
    let gb: serde_json::Value = gb.json();
    assert_eq!(gb["name"], "United Kingdom");
    assert_eq!(gb["population"], 67_000_000);

    // A code of the right shape that is not known: the handler's 404, naming it.
    let unknown = client.get("/countries/zz/");
    assert_eq!(unknown.status(), 404);
    let body: serde_json::Value = unknown.json();
    assert_eq!(body["error"], "NOT_FOUND");
    assert_eq!(body["message"], "no country with code `zz`");
    // A code of the wrong shape fails the route's constraint: the router's 404.
    let reply = client.get("/countries/gbr/");
    assert_eq!(reply.status(), 404);
    assert!(reply.header("x-request-id").is_some());

    let reply = client.delete("/countries/gb/");
    assert_eq!(reply.status(), 405);
    assert_eq!(reply.header("allow"), Some("GET, HEAD"));
    client.stop().expect("the app stops cleanly");
}

#[test]
fn the_hit_counter_is_per_worker_state() {
    let client = TestClient::new(countries::app());
    for expected in 1..=3_u64 {
        let hits: serde_json::Value = client.get("/hits").json();
        assert_eq!(hits["hits"], expected);
        assert_eq!(hits["worker"], 0, "TestClient serves as worker 0");
    }
    // Another client is another worker: its own count.
    let other = TestClient::new(countries::app());
    let hits: serde_json::Value = other.get("/hits").json();
    assert_eq!(hits["hits"], 1);
}
