//! The loopback sinks the ceilings are measured with: HTTP/1.1 servers with no protocol that
//! read each request body and discard it, append it to a file, or append it and make it
//! durable before answering (a request without a body gets its answer at once). The last two bound what any server
//! that keeps the bytes could do on this machine with this client, so Hoist's figures can be
//! read against them.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

use super::Client;

/// What a sink does with the bodies it reads.
#[derive(Clone, Copy, PartialEq)]
pub enum SinkKeeps {
    /// Nothing: loopback and the client's own cost.
    Nothing,
    /// Each connection appends its bodies to a file of its own, no fsync: receiving plus the
    /// copy into the page cache, which any server that keeps the bytes must make.
    File,
    /// The same, each body durable before its answer: every 512 KiB handed to the device as
    /// it is written (`sync_file_range`, as Hoist's disk store does) and `fdatasync` at the
    /// body's end. The least a server that acknowledges only durable bytes must do, without
    /// recording the new offset anywhere (Hoist's database commit is on top).
    DurableFile,
}

/// Bytes read from the socket before they go to the writing thread, as Hoist's disk store
/// batches its writes.
const BATCH: usize = 512 * 1024;

/// The answer to a PATCH (its body kept) and to a DELETE.
pub(super) const NO_CONTENT: &[u8] = b"HTTP/1.1 204 No Content\r\n\r\n";

/// The answer to a HEAD.
pub(super) const HEAD_OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";

/// Starts a sink on a loopback port, on the benchmark's own runtime; the file-keeping kinds
/// write `dir/sink-N.bin`, one file per connection, which the caller removes between runs.
pub async fn start_sink(keeps: SinkKeeps, dir: &Path) -> Client {
    let (listener, client) = listen();
    tokio::spawn(accept_loop(listener, keeps, dir.to_path_buf(), None));
    client
}

/// A sink on a runtime of its own (two worker threads, as Hoist has two HTTP workers here),
/// so that its answers do not wait behind the benchmark client's tasks: the latency bound.
/// Each of its files is deleted and created again at the end of a body once it holds
/// `at_most` bytes, as a server deletes a finished upload and creates the next, so a load that
/// runs for a while fills no disk. It stops when dropped.
pub struct SeparateSink {
    pub client: Client,
    runtime: Option<tokio::runtime::Runtime>,
    /// The S3 staging sink's runtime for its S3 requests.
    requests: Option<tokio::runtime::Runtime>,
}

fn sink_runtime(threads: usize, name: &str) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name(name)
        .enable_all()
        .build()
        .expect("sink runtime")
}

impl SeparateSink {
    pub fn start(keeps: SinkKeeps, dir: &Path, at_most: u64) -> SeparateSink {
        let runtime = sink_runtime(2, "sink");
        let (listener, client) = listen();
        runtime.spawn(accept_loop(listener, keeps, dir.to_path_buf(), Some(at_most)));
        SeparateSink { client, runtime: Some(runtime), requests: None }
    }

    /// The same for the sink staging each body in S3 (`super::s3_sink`), on the emulator at
    /// `endpoint`, with a third thread of its own for the S3 requests; it deletes what a
    /// connection staged when a DELETE comes on it.
    pub async fn start_staging_in_s3(endpoint: &str) -> SeparateSink {
        let runtime = sink_runtime(2, "sink");
        let requests = sink_runtime(1, "sink-s3");
        let (listener, client) = listen();
        let (ready, started) = tokio::sync::oneshot::channel();
        runtime.spawn(super::s3_sink::staging_sink(listener, endpoint.to_owned(), requests.handle().clone(), ready));
        let sink = SeparateSink { client, runtime: Some(runtime), requests: Some(requests) };
        started.await.expect("the staging sink's bucket");
        sink
    }
}

impl Drop for SeparateSink {
    fn drop(&mut self) {
        // Not a plain drop: a runtime dropped inside another one's task panics.
        for runtime in [self.runtime.take(), self.requests.take()].into_iter().flatten() {
            runtime.shutdown_background();
        }
    }
}

/// A loopback listener (not yet on any runtime) and a client of it.
pub(super) fn listen() -> (std::net::TcpListener, Client) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("sink");
    listener.set_nonblocking(true).expect("non-blocking sink socket");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    (listener, Client { http: reqwest::Client::new(), base, token: String::new(), sink: true })
}

/// Serves each connection on the runtime this runs on.
async fn accept_loop(listener: std::net::TcpListener, keeps: SinkKeeps, dir: PathBuf, at_most: Option<u64>) {
    let Ok(listener) = TcpListener::from_std(listener) else { return };
    let connections = AtomicUsize::new(0);
    while let Ok((stream, _)) = listener.accept().await {
        let path = dir.join(format!("sink-{}.bin", connections.fetch_add(1, Ordering::Relaxed)));
        tokio::spawn(serve(stream, keeps, path, at_most));
    }
}

/// Removes the files a sink wrote into `dir`.
pub fn remove_sink_files(dir: &Path) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_name().to_string_lossy().starts_with("sink-") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

async fn serve(stream: TcpStream, keeps: SinkKeeps, path: PathBuf, at_most: Option<u64>) {
    let (read, mut write) = stream.into_split();
    // Small, so that body reads into a batch's larger free space bypass it (no extra copy).
    let mut reader = BufReader::with_capacity(64 * 1024, read);
    let mut writer = match keeps {
        SinkKeeps::Nothing => None,
        SinkKeeps::File | SinkKeeps::DurableFile => {
            match FileWriter::start(&path, keeps == SinkKeeps::DurableFile, at_most) {
                Ok(writer) => Some(writer),
                Err(_) => return,
            }
        }
    };
    let mut batch = Vec::with_capacity(BATCH);
    while let Some(head) = read_head(&mut reader).await {
        // A request without a body (the latency probe's HEAD, the load's DELETE) is answered at
        // once, as a server answers one from its cache.
        if head.content_length == 0 {
            let answer = if head.is_head { HEAD_OK } else { NO_CONTENT };
            if write.write_all(answer).await.is_err() {
                return;
            }
            continue;
        }
        let mut body = (&mut reader).take(head.content_length);
        loop {
            match body.read_buf(&mut batch).await {
                Ok(0) => break,
                Ok(_) => {}
                Err(_) => return,
            }
            if batch.len() >= BATCH {
                match writer.as_mut() {
                    None => batch.clear(),
                    Some(writer) => {
                        let full = std::mem::replace(&mut batch, writer.spare_buffer());
                        if writer.write(full).await.is_err() {
                            return;
                        }
                    }
                }
            }
        }
        if body.limit() != 0 {
            return; // the client went away mid-body
        }
        match writer.as_mut() {
            None => batch.clear(),
            Some(writer) => {
                let rest = std::mem::replace(&mut batch, writer.spare_buffer());
                if (!rest.is_empty() && writer.write(rest).await.is_err()) || writer.end_of_body().await.is_err() {
                    return;
                }
            }
        }
        if write.write_all(NO_CONTENT).await.is_err() {
            return;
        }
    }
}

/// What the sink needs of a request head.
pub(super) struct RequestHead {
    pub(super) is_head: bool,
    pub(super) content_length: u64,
}

/// The next request's head, or None once the connection ends.
pub(super) async fn read_head(reader: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> Option<RequestHead> {
    let mut head = RequestHead { is_head: false, content_length: 0 };
    let mut first = true;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
            return None;
        }
        if line == "\r\n" {
            return Some(head);
        }
        if std::mem::take(&mut first) {
            head.is_head = line.starts_with("HEAD ");
        } else if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                head.content_length = value.trim().parse().unwrap_or(0);
            }
        }
    }
}

enum ToWriter {
    Batch(Vec<u8>),
    EndOfBody(oneshot::Sender<std::io::Result<()>>),
}

/// A thread of its own per connection writing that connection's file, so that receiving
/// the next batch overlaps writing this one, as in Hoist (its `hoist-io` threads).
struct FileWriter {
    to_thread: mpsc::Sender<ToWriter>,
    /// Batches the thread has written, to be filled again: a fresh 512 KiB allocation per
    /// batch would fault its pages in each time, a cost Hoist (reusing actix's read buffers)
    /// does not pay, and the sink would understate the bound.
    written: std::sync::mpsc::Receiver<Vec<u8>>,
}

impl FileWriter {
    fn start(path: &Path, durable: bool, at_most: Option<u64>) -> std::io::Result<FileWriter> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        // 16 batches in flight, 8 MiB: Hoist's default body budget.
        let (to_thread, from_reader) = mpsc::channel(16);
        let (give_back, written) = std::sync::mpsc::channel();
        let path = path.to_path_buf();
        std::thread::spawn(move || write_loop(file, &path, durable, at_most, from_reader, give_back));
        Ok(FileWriter { to_thread, written })
    }

    fn spare_buffer(&mut self) -> Vec<u8> {
        match self.written.try_recv() {
            Ok(mut buffer) => {
                buffer.clear();
                buffer
            }
            Err(_) => Vec::with_capacity(BATCH),
        }
    }

    async fn write(&mut self, batch: Vec<u8>) -> Result<(), mpsc::error::SendError<ToWriter>> {
        self.to_thread.send(ToWriter::Batch(batch)).await
    }

    async fn end_of_body(&mut self) -> std::io::Result<()> {
        let (reply, answer) = oneshot::channel();
        self.to_thread.send(ToWriter::EndOfBody(reply)).await.map_err(std::io::Error::other)?;
        answer.await.map_err(std::io::Error::other)?
    }
}

fn write_loop(
    mut file: File,
    path: &Path,
    durable: bool,
    at_most: Option<u64>,
    mut from_reader: mpsc::Receiver<ToWriter>,
    give_back: std::sync::mpsc::Sender<Vec<u8>>,
) {
    let (mut written, mut failed) = (0u64, None);
    while let Some(message) = from_reader.blocking_recv() {
        match message {
            ToWriter::Batch(batch) => {
                if failed.is_none() {
                    match file.write_all(&batch) {
                        Ok(()) if durable => start_writeback(&file, written, batch.len() as u64),
                        Ok(()) => {}
                        Err(err) => failed = Some(err),
                    }
                    written += batch.len() as u64;
                }
                let _ = give_back.send(batch);
            }
            ToWriter::EndOfBody(reply) => {
                let mut result = match failed.take() {
                    Some(err) => Err(err),
                    None if durable => file.sync_data(),
                    None => Ok(()),
                };
                if result.is_ok() && at_most.is_some_and(|at_most| written >= at_most) {
                    result = replace_file(&mut file, path, durable);
                    written = 0;
                }
                let _ = reply.send(result);
            }
        }
    }
}

/// Deletes the file and starts a new one in its place, as a server deletes a finished upload
/// and creates the next (durably with `durable`, as Hoist's disk store creates one).
fn replace_file(file: &mut File, path: &Path, durable: bool) -> std::io::Result<()> {
    std::fs::remove_file(path)?;
    *file = OpenOptions::new().create(true).append(true).open(path)?;
    if durable {
        file.sync_all()?;
        if let Some(dir) = path.parent() {
            File::open(dir)?.sync_all()?;
        }
    }
    Ok(())
}

fn start_writeback(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else { return };
    // SAFETY: a plain syscall on a descriptor `file` keeps open for the whole call.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE);
    }
}
