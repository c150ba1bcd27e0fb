//! The S3 staging sink: a loopback HTTP/1.1 server with no protocol that puts each request
//! body into the S3 emulator as an object of its own (one `PutObject` of the whole body)
//! before it answers. A server that acknowledges only bytes S3 holds, so that any node can
//! resume the upload, must do at least that for a body smaller than a part (S3 takes no
//! part under 5 MiB but the last), which is what Hoist's S3 store does with each 64 KiB PATCH
//! (and then records the new offset, which this sink does not). So it bounds scenario 3 on S3.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use aws_sdk_s3::config::{Credentials, Region};
use aws_sdk_s3::primitives::ByteStream;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use super::sink::{listen, read_head, HEAD_OK, NO_CONTENT};
use super::Client;

/// Starts the sink on a loopback port, on the benchmark's own runtime, writing into a new
/// bucket of the emulator at `endpoint`, with the SDK set up as Hoist's S3 store sets it up
/// (path-style addressing, checksums only where required).
pub async fn start_s3_staging_sink(endpoint: &str) -> Client {
    let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("bench", "bench", None, None, "bench"))
        .load()
        .await;
    let config = aws_sdk_s3::config::Builder::from(&shared)
        .endpoint_url(endpoint)
        .force_path_style(true)
        .request_checksum_calculation(aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired)
        .build();
    let s3 = aws_sdk_s3::Client::from_conf(config);
    let bucket: Arc<str> = format!("hoist-bench-sink-{}", uuid::Uuid::new_v4().simple()).into();
    s3.create_bucket().bucket(&*bucket).send().await.expect("the staging sink's bucket");
    let (listener, client) = listen();
    tokio::spawn(accept_loop(listener, s3, bucket));
    client
}

async fn accept_loop(listener: std::net::TcpListener, s3: aws_sdk_s3::Client, bucket: Arc<str>) {
    let Ok(listener) = TcpListener::from_std(listener) else { return };
    let connections = AtomicUsize::new(0);
    while let Ok((stream, _)) = listener.accept().await {
        let connection = connections.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(serve(stream, s3.clone(), bucket.clone(), connection));
    }
}

async fn serve(stream: TcpStream, s3: aws_sdk_s3::Client, bucket: Arc<str>, connection: usize) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::with_capacity(64 * 1024, read);
    let mut requests = 0u64;
    while let Some(head) = read_head(&mut reader).await {
        let answer: &[u8] = if head.content_length == 0 {
            if head.is_head {
                HEAD_OK
            } else {
                NO_CONTENT
            }
        } else {
            let Ok(len) = usize::try_from(head.content_length) else { return };
            let mut body = Vec::with_capacity(len);
            if (&mut reader).take(head.content_length).read_to_end(&mut body).await.is_err() || body.len() != len {
                return; // the client went away mid-body
            }
            requests += 1;
            let put = s3
                .put_object()
                .bucket(&*bucket)
                .key(format!("sink/{connection}/{requests:020}"))
                .content_length(head.content_length as i64)
                .body(ByteStream::from(body))
                .send()
                .await;
            match put {
                Ok(_) => NO_CONTENT,
                // The benchmark's client fails loudly on anything but 204.
                Err(_) => b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n",
            }
        };
        if write.write_all(answer).await.is_err() {
            return;
        }
    }
}
