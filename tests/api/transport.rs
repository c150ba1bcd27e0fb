//! The plain listener's TCP behaviour: a small write (a response after `100 Continue`, say)
//! must not wait for the client's delayed ACK of an earlier one. The TLS listener's own
//! check, where HTTP/2's WINDOW_UPDATE frames made it matter, is in tls.rs. And an answer
//! given before the body was read must reach a client still sending that body.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{bytes, header_u64, server_end_has_nodelay, spawn_app, Backend};

const MIB: usize = 1024 * 1024;

#[actix_rt::test]
async fn the_plain_listener_turns_nagle_off_on_every_connection() {
    let app = spawn_app(Backend::Sqlite).await;
    let mut client = tokio::net::TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
    client.write_all(b"GET /health/live HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap();
    let mut response = Vec::new();
    let mut buffer = [0u8; 1024];
    while !response.windows(4).any(|w| w == b"\r\n\r\n") {
        let read = client.read(&mut buffer).await.unwrap();
        assert!(read > 0, "the server closed the connection");
        response.extend_from_slice(&buffer[..read]);
    }
    assert!(response.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&response));
    let nodelay = server_end_has_nodelay(app.port, client.local_addr().unwrap());
    assert_eq!(nodelay, Some(true), "the server's socket for this connection");
}

/// A PATCH answered before its body is read (here 409: the offset is wrong) must still reach
/// the client: closing at once would make the kernel reset the connection under a client
/// still writing its chunk, which then sees a broken pipe instead of the 409 and the offset
/// to resume from. Several rounds, since whether the reset wins is a race.
#[actix_rt::test]
async fn a_client_still_sending_its_body_reads_the_early_answer() {
    let app = spawn_app(Backend::Sqlite).await;
    let url = app.create_upload(16 * MIB as u64).await;
    assert_eq!(app.patch(&url, 0, b"abcd").await.status(), 204);
    let chunk = bytes(8 * MIB, 31);
    for round in 0..5 {
        let response = app
            .patch_request(&url, 0, chunk.clone())
            .send()
            .await
            .unwrap_or_else(|err| panic!("round {round}: no answer but {err:?}"));
        assert_eq!(response.status(), 409, "round {round}");
        assert_eq!(header_u64(response.headers(), "Upload-Offset"), 4);
    }
    assert_eq!(app.offset(&url).await, 4);
}
