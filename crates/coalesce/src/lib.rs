//! Fewer, larger writes on a busy connection: a server connection's first write after a
//! flush waits one turn of the scheduler, so the answers of every call that finished in that
//! turn leave in one `writev` instead of one each.
//!
//! Without it, a group commit that answers twenty calls on one HTTP/2 connection woke the
//! connection's task twenty times, and each time it wrote one small response to the socket:
//! a system call, and on the client one more read and wake-up, per call. Holding the write
//! back costs an idle connection one extra poll of its task (microseconds), never a timer.
//! Clients connect the same way, through [`DirectChannel`], which also puts each call straight
//! onto the connection: Courier's Rust client library and `courier bench`.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;

mod direct;

pub use direct::{ClientChannel, DirectChannel};

pin_project! {
    /// `inner` with its first write after each flush held back for one scheduler turn.
    pub struct Coalesced<T> {
        #[pin]
        inner: T,
        // A write has been held back since the last flush: the next one goes through.
        held_back: bool,
    }
}

impl<T> Coalesced<T> {
    pub fn new(inner: T) -> Self {
        Self {
            inner,
            held_back: false,
        }
    }

    /// Whether this write may go now; if not, the task is woken to try again once the tasks
    /// already queued on this worker have run and it has polled for I/O.
    fn may_write(self: Pin<&mut Self>, cx: &mut Context<'_>) -> bool {
        let held_back = self.project().held_back;
        if *held_back {
            return true;
        }
        *held_back = true;
        // Tokio's own yield: its first poll hands our waker to the worker to wake after its
        // queue, without waking an idle worker to steal us (a plain self-wake would: on a
        // quiet server that cost every answer a thread wake-up). Outside a runtime it wakes
        // at once.
        let yielded = std::pin::pin!(tokio::task::yield_now()).poll(cx);
        debug_assert!(yielded.is_pending(), "a yield's first poll is pending");
        false
    }
}

impl<T: AsyncRead> AsyncRead for Coalesced<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.project().inner.poll_read(cx, buf)
    }
}

impl<T: AsyncWrite> AsyncWrite for Coalesced<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if !self.as_mut().may_write(cx) {
            return Poll::Pending;
        }
        self.project().inner.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if !self.as_mut().may_write(cx) {
            return Poll::Pending;
        }
        self.project().inner.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.project();
        let flushed = this.inner.poll_flush(cx);
        if flushed.is_ready() {
            *this.held_back = false;
        }
        flushed
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}

impl<T: Connected> Connected for Coalesced<T> {
    type ConnectInfo = T::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
    use std::task::Wake;

    use tokio::io::AsyncWriteExt;

    use super::*;

    /// Counts how often the task was woken.
    #[derive(Default)]
    struct Wakes(AtomicUsize);

    impl Wake for Wakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Relaxed);
        }
    }

    /// Every write the socket would have seen.
    #[derive(Default)]
    struct Writes(Vec<Vec<u8>>);

    impl AsyncWrite for Writes {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.0.push(buf.to_vec());
            Poll::Ready(Ok(buf.len()))
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn write(io: &mut Coalesced<Writes>, cx: &mut Context<'_>, bytes: &[u8]) -> Poll<usize> {
        Pin::new(io)
            .poll_write(cx, bytes)
            .map(|written| written.unwrap())
    }

    #[test]
    fn the_first_write_after_a_flush_waits_one_turn_and_wakes_its_task() {
        let wakes = Arc::new(Wakes::default());
        let waker = wakes.clone().into();
        let mut cx = Context::from_waker(&waker);
        let mut io = Coalesced::new(Writes::default());

        assert_eq!(write(&mut io, &mut cx, b"first"), Poll::Pending);
        assert_eq!(wakes.0.load(Relaxed), 1, "the held write woke its task");
        assert!(io.inner.0.is_empty(), "nothing reached the socket yet");

        assert_eq!(write(&mut io, &mut cx, b"first"), Poll::Ready(5));
        assert_eq!(write(&mut io, &mut cx, b"second"), Poll::Ready(6));
        assert!(Pin::new(&mut io).poll_flush(&mut cx).is_ready());
        assert_eq!(io.inner.0, [b"first".to_vec(), b"second".to_vec()]);

        assert_eq!(write(&mut io, &mut cx, b"third"), Poll::Pending);
        assert_eq!(wakes.0.load(Relaxed), 2, "held again after the flush");
    }

    #[tokio::test]
    async fn held_writes_still_arrive_whole_and_in_order() {
        let (client, mut server) = tokio::io::duplex(64);
        let mut client = Coalesced::new(client);
        let writing = tokio::spawn(async move {
            for chunk in [&b"one "[..], b"two ", b"three"] {
                client.write_all(chunk).await.unwrap();
                client.flush().await.unwrap();
            }
        });
        let mut received = Vec::new();
        // A held write nobody wakes would hang here: fail instead.
        let reading = tokio::io::AsyncReadExt::read_to_end(&mut server, &mut received);
        tokio::time::timeout(std::time::Duration::from_secs(5), reading)
            .await
            .expect("every held write is written")
            .unwrap();
        writing.await.unwrap();
        assert_eq!(received, b"one two three");
    }
}
