//! The plain listener's TCP behaviour: a small write (a response after `100 Continue`, say)
//! must not wait for the client's delayed ACK of an earlier one. The TLS listener's own
//! check, where HTTP/2's WINDOW_UPDATE frames made it matter, is in tls.rs.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{server_end_has_nodelay, spawn_app, Backend};

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
