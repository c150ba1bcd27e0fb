//! The HTTP/1.1 listener owns its connections (DESIGN.md section 5): each accepted stream
//! is wrapped in `InterimIo`, which writes queued interim (1xx) response bytes ahead of the
//! dispatcher's own output. actix-http itself can send no 1xx but `100 Continue`; handlers
//! reach the queue through `req.conn_data::<InterimSender>()` (installed by
//! `on_connect_ext`), which is where `104 Upload Resumption Supported` is sent from
//! (`http::resumable`).
//! The same wrapper carries each connection's [`ReadGate`], which body pumps shut while they
//! wait for room. TLS connections run over the wrapper too (so HTTP/1.1 over TLS gets the
//! gate), and under a second one whose interim bytes go through TLS: HTTP/1.1 over TLS
//! takes its `InterimSender` (HTTP/2 none: its framing has no room for raw bytes).

use std::cell::{Cell, RefCell};
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use actix_rt::net::{ActixStream, Ready};
use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Queues interim response bytes for one connection.
#[derive(Clone, Default)]
pub struct InterimSender {
    pending: Rc<RefCell<BytesMut>>,
}

impl InterimSender {
    /// Queues a complete interim response (status line, headers, blank line). It goes out
    /// before any later byte of the final response.
    pub fn send(&self, head: &[u8]) {
        self.pending.borrow_mut().extend_from_slice(head);
    }

    fn has_pending(&self) -> bool {
        !self.pending.borrow().is_empty()
    }
}

/// Stops the dispatcher reading a connection while its request body cannot be taken.
///
/// actix-http keeps reading a connection whose body consumer is paused until 128 KiB sit
/// unparsed in its read buffer, which `BytesMut` grows by doubling (to 256 KiB and more,
/// while chunks handed out earlier still pin the old allocation): with 50 uploads waiting
/// for the body budget that was most of the server's heap (heaptrack: 33 of 41 MiB at the
/// peak). Closed, the gate makes reads pending, so the bytes wait in the kernel's socket
/// buffer and TCP pushes back on the client instead.
#[derive(Clone, Default)]
pub struct ReadGate {
    state: Rc<GateState>,
}

#[derive(Default)]
struct GateState {
    closed: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl ReadGate {
    pub fn close(&self) {
        self.state.closed.set(true);
    }

    /// Opens the gate and wakes the dispatcher if a read was held back.
    pub fn open(&self) {
        if self.state.closed.replace(false) {
            if let Some(waker) = self.state.waker.borrow_mut().take() {
                waker.wake();
            }
        }
    }

    fn hold(&self, cx: &mut Context<'_>) -> bool {
        if !self.state.closed.get() {
            return false;
        }
        *self.state.waker.borrow_mut() = Some(cx.waker().clone());
        true
    }
}

pub struct InterimIo<T> {
    inner: T,
    interim: InterimSender,
    gate: ReadGate,
}

impl<T> InterimIo<T> {
    pub fn new(inner: T) -> Self {
        InterimIo { inner, interim: InterimSender::default(), gate: ReadGate::default() }
    }

    pub fn read_gate(&self) -> ReadGate {
        self.gate.clone()
    }

    pub fn interim(&self) -> InterimSender {
        self.interim.clone()
    }

    pub fn get_ref(&self) -> &T {
        &self.inner
    }
}

impl<T: AsyncWrite + Unpin> InterimIo<T> {
    /// Writes queued interim bytes; Ready(Ok) once none are left.
    fn poll_flush_interim(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.interim.has_pending() {
            let mut pending = self.interim.pending.borrow_mut();
            match Pin::new(&mut self.inner).poll_write(cx, &pending) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => pending.advance(n),
                Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for InterimIo<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // While a request body streams in, the dispatcher reads but does not write: send
        // interim responses from here too, so they are not held until the final response,
        // and flush them (TLS may hold written bytes back until then).
        let had_interim = this.interim.has_pending();
        if let Poll::Ready(Err(err)) = this.poll_flush_interim(cx) {
            return Poll::Ready(Err(err));
        }
        if had_interim && !this.interim.has_pending() {
            if let Poll::Ready(Err(err)) = Pin::new(&mut this.inner).poll_flush(cx) {
                return Poll::Ready(Err(err));
            }
        }
        if this.gate.hold(cx) {
            return Poll::Pending;
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

/// So TLS can run over the wrapper (actix-tls accepts any `ActixStream`). Readiness is the
/// socket's own; a shut gate holds the reads themselves.
impl<T: ActixStream> ActixStream for InterimIo<T> {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<Ready>> {
        self.inner.poll_read_ready(cx)
    }

    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<Ready>> {
        self.inner.poll_write_ready(cx)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for InterimIo<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match this.poll_flush_interim(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.inner).poll_write(cx, buf),
            Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.poll_flush_interim(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.inner).poll_flush(cx),
            other => other,
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn interim_bytes_precede_the_final_response() {
        let (client, server) = tokio::io::duplex(1024);
        let mut wrapped = InterimIo::new(server);
        let interim = wrapped.interim();
        interim.send(b"HTTP/1.1 104 Upload Resumption Supported\r\n\r\n");
        wrapped.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").await.unwrap();
        wrapped.flush().await.unwrap();
        drop(wrapped);
        let mut seen = String::new();
        let mut client = client;
        client.read_to_string(&mut seen).await.unwrap();
        assert_eq!(seen, "HTTP/1.1 104 Upload Resumption Supported\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n");
    }

    #[tokio::test]
    async fn interim_bytes_go_out_while_the_body_is_being_read() {
        const INTERIM: &[u8] = b"HTTP/1.1 104 Upload Resumption Supported\r\n\r\n";
        let (mut client, server) = tokio::io::duplex(1024);
        let mut wrapped = InterimIo::new(server);
        wrapped.interim().send(INTERIM);
        client.write_all(b"body").await.unwrap();
        let mut buf = [0u8; 4];
        wrapped.read_exact(&mut buf).await.unwrap();
        let mut seen = vec![0u8; INTERIM.len()];
        client.read_exact(&mut seen).await.unwrap();
        assert_eq!(seen, INTERIM);
    }

    #[tokio::test]
    async fn a_closed_gate_holds_reads_until_it_opens() {
        let (mut client, server) = tokio::io::duplex(1024);
        let mut wrapped = InterimIo::new(server);
        let gate = wrapped.read_gate();
        client.write_all(b"body").await.unwrap();
        gate.close();
        // A task of its own, polled only when woken: opening the gate must wake it, as the
        // bytes are already there and nothing else would.
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async move {
                let reader = tokio::task::spawn_local(async move {
                    let mut buf = [0u8; 4];
                    wrapped.read_exact(&mut buf).await.map(|_| buf)
                });
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                assert!(!reader.is_finished(), "bytes were waiting, but the closed gate must hold the read");
                gate.open();
                let read = tokio::time::timeout(std::time::Duration::from_secs(5), reader).await;
                assert_eq!(&read.expect("woken by open").expect("task").expect("read"), b"body");
            })
            .await;
    }
}
