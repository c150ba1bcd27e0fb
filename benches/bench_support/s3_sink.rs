//! The S3 staging sink: a loopback HTTP/1.1 server with no protocol that puts each request
//! body into the S3 emulator as an object of its own (one `PutObject` of the whole body)
//! before it answers. A server that acknowledges only bytes S3 holds, so that any node can
//! resume the upload, must do at least that for a body smaller than a part (S3 takes no
//! part under 5 MiB but the last), which is what Hoist's S3 store does with each 64 KiB PATCH
//! (and then records the new offset, which this sink does not). So it bounds scenario 3 on S3,
//! and, carrying scenario 2's load (Hoist also uploads a part per 8 MiB and completes each
//! upload, which the sink does not), scenario 5's HEAD latency on S3.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use aws_sdk_s3::config::{Credentials, Region};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{Delete, ObjectIdentifier};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use super::sink::{listen, read_head, HEAD_OK, NO_CONTENT};
use super::Client;

/// Starts the sink on a loopback port, on the runtime this is called on.
pub async fn start_s3_staging_sink(endpoint: &str) -> Client {
    let (listener, client) = listen();
    let (ready, started) = oneshot::channel();
    tokio::spawn(staging_sink(listener, endpoint.to_owned(), tokio::runtime::Handle::current(), ready));
    started.await.expect("the staging sink's bucket");
    client
}

/// Sets up the SDK as Hoist's S3 store sets it up (path-style addressing, checksums only where
/// required), creates a bucket of the sink's own at `endpoint`, says so on `ready`, then
/// serves each connection on the runtime this runs on, its S3 requests on `requests` (as
/// Hoist's HTTP workers hand each body to the sessions' thread, which talks to S3).
pub(super) async fn staging_sink(
    listener: std::net::TcpListener,
    endpoint: String,
    requests: tokio::runtime::Handle,
    ready: oneshot::Sender<()>,
) {
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
    if s3.create_bucket().bucket(&*bucket).send().await.is_err() {
        return; // `ready` dropped: the caller fails loudly
    }
    let Ok(listener) = TcpListener::from_std(listener) else { return };
    let _ = ready.send(());
    let connections = AtomicUsize::new(0);
    while let Ok((stream, _)) = listener.accept().await {
        let connection = connections.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(serve(stream, s3.clone(), bucket.clone(), connection, requests.clone()));
    }
}

async fn serve(
    stream: TcpStream,
    s3: aws_sdk_s3::Client,
    bucket: Arc<str>,
    connection: usize,
    requests: tokio::runtime::Handle,
) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::with_capacity(64 * 1024, read);
    let mut bodies = 0u64;
    // The objects this connection put since its last DELETE.
    let mut staged = Vec::new();
    while let Some(head) = read_head(&mut reader).await {
        let answer: &[u8] = if head.is_head {
            HEAD_OK
        } else if head.content_length == 0 {
            // A DELETE (the latency bound's load terminating an upload): the objects this
            // connection staged go, in one request, as a server removes a finished upload's
            // staged objects; otherwise half a minute of load would pile gigabytes into the
            // emulator's memory.
            let (s3, bucket, keys) = (s3.clone(), bucket.clone(), std::mem::take(&mut staged));
            if requests.spawn(async move { delete(&s3, &bucket, keys).await }).await.unwrap_or(false) {
                NO_CONTENT
            } else {
                SERVICE_UNAVAILABLE
            }
        } else {
            let Ok(len) = usize::try_from(head.content_length) else { return };
            let mut body = Vec::with_capacity(len);
            if (&mut reader).take(head.content_length).read_to_end(&mut body).await.is_err() || body.len() != len {
                return; // the client went away mid-body
            }
            bodies += 1;
            let key = format!("sink/{connection}/{bodies:020}");
            staged.push(key.clone());
            let put = s3
                .put_object()
                .bucket(&*bucket)
                .key(key)
                .content_length(head.content_length as i64)
                .body(ByteStream::from(body))
                // As Hoist's streamed bodies go (UNSIGNED-PAYLOAD): the SDK would otherwise
                // hash each body held in memory to sign it, work Hoist does not do.
                .customize()
                .disable_payload_signing()
                .send();
            match requests.spawn(put).await {
                Ok(Ok(_)) => NO_CONTENT,
                _ => SERVICE_UNAVAILABLE,
            }
        };
        if write.write_all(answer).await.is_err() {
            return;
        }
    }
}

/// The benchmark's client fails loudly on anything but the answer it expects.
const SERVICE_UNAVAILABLE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n";

/// Deletes `keys` with one `DeleteObjects` per thousand (the load stages a handful per
/// upload); true if they are gone.
async fn delete(s3: &aws_sdk_s3::Client, bucket: &str, keys: Vec<String>) -> bool {
    for batch in keys.chunks(1000) {
        let objects: Result<Vec<ObjectIdentifier>, _> =
            batch.iter().map(|key| ObjectIdentifier::builder().key(key).build()).collect();
        let Ok(delete) = objects.and_then(|objects| Delete::builder().set_objects(Some(objects)).quiet(true).build())
        else {
            return false;
        };
        if s3.delete_objects().bucket(bucket).delete(delete).send().await.is_err() {
            return false;
        }
    }
    true
}
