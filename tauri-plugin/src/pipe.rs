//! Tells when a pipe from the sidecar has been read empty and every line in
//! it handled, without waiting for its EOF.
//!
//! When the sidecar process exits, whatever it wrote last (a reply, the
//! traceback on stderr) must still reach its reader; but EOF may never come,
//! because a process it started (a onefile PyInstaller launcher's Python
//! child) can hold the pipe open and keep answering. So the supervisor waits
//! until the pipe is empty *and* its reader is waiting for more: then every
//! byte written before the exit has been read and handled.

use std::{
    pin::Pin,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    task::{Context, Poll},
};

use tokio::io::{AsyncRead, ReadBuf};

/// A reader that records whether its consumer is waiting for the pipe.
pub(crate) struct Watched<R> {
    inner: R,
    waiting: Arc<AtomicBool>,
}

impl<R: AsyncRead + Unpin> AsyncRead for Watched<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        // Cleared before the read: while bytes taken out of the pipe are being
        // handled, the probe must not see an empty pipe and a waiting reader.
        this.waiting.store(false, Ordering::SeqCst);
        let poll = Pin::new(&mut this.inner).poll_read(cx, buf);
        if poll.is_pending() {
            // The reader (a BufReader) only asks the pipe once it has handed
            // out everything it buffered: all complete lines are handled.
            this.waiting.store(true, Ordering::SeqCst);
        }
        poll
    }
}

/// The other end of a [`Watched`] reader.
pub(crate) struct PipeProbe {
    waiting: Arc<AtomicBool>,
    #[cfg(unix)]
    fd: Option<std::os::fd::OwnedFd>,
}

impl PipeProbe {
    /// Whether the pipe holds nothing and its reader waits for more, i.e.
    /// everything written to it so far has been handled.
    pub(crate) fn drained(&self) -> bool {
        // The pipe first: if it was empty and afterwards the reader is found
        // waiting, the reader has handled all it took (see `poll_read`).
        self.pipe_empty() && self.waiting.load(Ordering::SeqCst)
    }

    #[cfg(unix)]
    fn pipe_empty(&self) -> bool {
        use std::os::fd::AsRawFd;
        let Some(fd) = &self.fd else {
            return true;
        };
        let mut n: libc::c_int = 0;
        // SAFETY: FIONREAD writes one c_int, the number of bytes the pipe
        // holds, through a pointer to a c_int we own; the fd is our own dup.
        let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut n) };
        rc != 0 || n == 0
    }

    #[cfg(not(unix))]
    fn pipe_empty(&self) -> bool {
        true
    }
}

/// Wraps the read end of a pipe; the probe tells when it is drained.
#[cfg(unix)]
pub(crate) fn watch<R: AsyncRead + Unpin + std::os::fd::AsFd>(
    reader: R,
) -> (Watched<R>, PipeProbe) {
    // A duplicate of the read end: it does not delay EOF (only write ends
    // do), and it stays valid after the reader closes its own.
    let fd = reader.as_fd().try_clone_to_owned().ok();
    let waiting = Arc::new(AtomicBool::new(false));
    let probe = PipeProbe {
        waiting: waiting.clone(),
        fd,
    };
    (
        Watched {
            inner: reader,
            waiting,
        },
        probe,
    )
}

/// Wraps the read end of a pipe; the probe tells when it is drained (without
/// a way to look into the pipe: when its reader waits for more).
#[cfg(not(unix))]
pub(crate) fn watch<R: AsyncRead + Unpin>(reader: R) -> (Watched<R>, PipeProbe) {
    let waiting = Arc::new(AtomicBool::new(false));
    let probe = PipeProbe {
        waiting: waiting.clone(),
    };
    (
        Watched {
            inner: reader,
            waiting,
        },
        probe,
    )
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::{process::Stdio, time::Duration};
    use tokio::io::{AsyncBufReadExt, BufReader};

    async fn until(what: &str, mut check: impl FnMut() -> bool) {
        for _ in 0..400 {
            if check() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("timed out waiting for {what}");
    }

    #[tokio::test]
    async fn drained_once_every_line_written_so_far_is_handled() {
        // Writes two lines, then keeps its stdout open (no EOF), as a
        // grandchild holding the sidecar's pipe would.
        let mut child = tokio::process::Command::new("sh")
            .args(["-c", "printf 'one\\ntwo\\n'; exec sleep 30"])
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let (watched, probe) = watch(child.stdout.take().unwrap());
        until("the lines in the pipe", || !probe.pipe_empty()).await;
        assert!(!probe.drained(), "two lines wait in the pipe");

        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let reader = tokio::spawn(async move {
            let mut lines = BufReader::new(watched).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                tx.send(line).unwrap();
            }
        });
        until("drained", || probe.drained()).await;
        // Handled before the probe said so, and without an EOF.
        assert_eq!(rx.try_recv().unwrap(), "one");
        assert_eq!(rx.try_recv().unwrap(), "two");
        assert!(!reader.is_finished());

        child.kill().await.unwrap();
        reader.await.unwrap();
    }
}
