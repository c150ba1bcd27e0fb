//! Replicas over one PostgreSQL and one bucket, with a client's requests reaching either (a
//! load balancer spreads connections, and a phone that changed networks opens new ones): an
//! upload moves to whichever node a request reaches, at once, instead of 423 until the other
//! node's session idles out (`uploads.session_idle_secs`, 60 s); and a resume on another node
//! cuts the request the first node still holds.

use std::time::Duration;

use reqwest::Method;

use crate::helpers::{bytes, hand_fed_body, header_u64, spawn_app_with, Backend, TestApp};

/// Two nodes of one deployment, with the default session idle time. A request waits up to
/// 5 s for the other node to let an upload go (10-20 ms here when the machine is idle), not
/// the tests' usual 500 ms: with the whole suite running on two cores, a hand-over once took
/// longer than that.
async fn two_nodes() -> (TestApp, TestApp) {
    let a = spawn_app_with(Backend::S3, |s| {
        s.server.node_id = "node-a".to_owned();
        s.uploads.lock_wait_ms = 5000;
    })
    .await;
    let b = a.spawn_node("node-b").await;
    (a, b)
}

#[actix_rt::test]
async fn an_upload_moves_to_the_node_each_request_reaches() {
    let (a, b) = two_nodes().await;
    let data = bytes(600_000, 50);
    let url_a = a.create_upload(data.len() as u64).await;
    let url_b = url_a.replace(&a.address, &b.address);
    for (i, chunk) in data.chunks(100_000).enumerate() {
        let (node, url, name) = if i % 2 == 0 { (&a, &url_a, "a") } else { (&b, &url_b, "b") };
        let response = node.patch(url, (i * 100_000) as u64, chunk).await;
        assert_eq!(response.status(), 204, "PATCH {i} on node {name}");
    }
    assert_eq!(b.download_bytes(&url_b).await, data);
    // Every PATCH after the first asked the other node for the upload, and got it.
    let released = "hoist_lease_handovers_total{outcome=\"released\"}";
    assert_eq!(a.metric(released).await + b.metric(released).await, 5.0);
}

#[actix_rt::test]
async fn a_resume_on_another_node_cuts_the_request_the_first_still_holds() {
    let (a, b) = two_nodes().await;
    let data = bytes(300_000, 51);
    let url_a = a.create_upload(data.len() as u64).await;
    let url_b = url_a.replace(&a.address, &b.address);
    let (tx, body) = hand_fed_body();
    let lost = a.patch_request(&url_a, 0, body).header("Content-Length", data.len().to_string()).send();
    let lost = tokio::spawn(lost);
    tx.send(data[..100_000].to_vec()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The client comes back through another node: its HEAD has node a cut the stalled
    // request, commit it and let the upload go.
    let head = b.tus(Method::HEAD, &url_b).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(header_u64(head.headers(), "Upload-Offset"), 100_000, "the cut request's bytes");
    assert_eq!(b.patch(&url_b, 100_000, &data[100_000..]).await.status(), 204);
    assert_eq!(b.download_bytes(&url_b).await, data);
    assert_eq!(a.metric("hoist_requests_cut_total").await, 1.0, "node a cut its stalled request");
    drop(tx);
    lost.abort();
}

/// The holder hears requests on `database.listen_url` when it is set (a direct address
/// beside a transaction pooler that drops LISTEN), not on `database.url`: pointed at a port
/// where no PostgreSQL listens, node a never hears node b ask, and b's PATCH meets 423.
#[actix_rt::test]
async fn the_holder_listens_on_database_listen_url() {
    let a = spawn_app_with(Backend::S3, |s| {
        s.server.node_id = "node-a".to_owned();
        let nowhere = format!("postgres://postgres@127.0.0.1:{}/nowhere", crate::binary::free_port());
        s.database.listen_url = nowhere.into();
    })
    .await;
    let b = a.spawn_node("node-b").await;
    let url_a = a.create_upload(10).await;
    let url_b = url_a.replace(&a.address, &b.address);
    assert_eq!(a.patch(&url_a, 0, b"abcde").await.status(), 204);
    assert_eq!(b.patch(&url_b, 5, b"fghij").await.status(), 423, "node a heard a request it cannot hear");
    assert_eq!(b.metric("hoist_lease_handovers_total{outcome=\"timed_out\"}").await, 1.0);
    // Node a stays silent: the next requests for its uploads get their 423 without waiting for
    // it again, so a dead node does not make each of them wait `uploads.lock_wait_ms`.
    assert_eq!(b.tus(Method::HEAD, &url_b).send().await.unwrap().status(), 200);
    assert_eq!(b.patch(&url_b, 5, b"fghij").await.status(), 423);
    assert_eq!(b.metric("hoist_lease_handovers_total{outcome=\"skipped\"}").await, 2.0);
    assert_eq!(b.metric("hoist_lease_handovers_total{outcome=\"timed_out\"}").await, 1.0);
}

/// Every node hears its own requests too, and by the time it reads one the request that sent
/// it may have started the session that must keep the upload: a node lets an upload go only
/// when another node asks. (A node that took its own request for another's stopped the
/// session it had just started, and the next request, on either node, found no one to ask.)
#[actix_rt::test]
async fn a_node_lets_an_upload_go_only_when_another_asks() {
    use diesel::{Connection, RunQueryDsl};
    let (a, _b) = two_nodes().await;
    let url = a.create_upload(10).await;
    assert_eq!(a.patch(&url, 0, b"abcde").await.status(), 204);
    let id = hoist::domain::UploadId::parse(url.rsplit('/').next().unwrap()).unwrap();
    let mut db = diesel::PgConnection::establish(a.settings.database.url.expose()).expect("the test database");
    let mut ask = |payload: String| {
        diesel::sql_query(format!("SELECT pg_notify('hoist_lease_release', '{payload}')")).execute(&mut db).unwrap();
    };

    ask(format!("{id} node-a"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(a.state.sessions.is_live(&id), "node a let the upload go on its own request");

    ask(format!("{id} node-b"));
    let mut live = true;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        live = a.state.sessions.is_live(&id);
        if !live {
            break;
        }
    }
    assert!(!live, "node a kept the upload node b asked for");
}
