//! Snapshot data on disk: a chain store export being sent, or one being received.
//!
//! A snapshot is never held in memory whole: its size is the chain's whole state, which grows
//! without bound. A replica that must send one exports its store into a file in the chain's
//! directory, on a thread of its own, and the sender reads that file as it is written to
//! completion; a replica that receives one writes the chunks to a file and imports it from
//! there (see [`crate::store::Export`] for the format).

use std::future::Future;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncSeek, AsyncWrite, ReadBuf};

/// Resolves once the export behind a [`SnapshotFile`] is complete.
type Ready = Pin<Box<dyn Future<Output = io::Result<()>> + Send>>;

/// A snapshot's bytes in a file: openraft's `SnapshotData`.
pub struct SnapshotFile {
    /// Waited for before the first read or seek: the export is still being written.
    ready: Option<Ready>,
    file: File,
    /// A seek asked for while not ready yet, done once ready.
    seek: Option<SeekFrom>,
    /// Where a seek of the blocking file landed, for `poll_complete`.
    position: u64,
    path: PathBuf,
}

enum File {
    /// No bytes: see [`SnapshotFile::position_only`].
    None,
    /// The deterministic simulator: plain calls, done at once, in order.
    Blocking(std::fs::File),
    /// Elsewhere: tokio's file, whose calls run on blocking threads.
    Async(tokio::fs::File),
}

impl SnapshotFile {
    /// The file at `path`, opened for reading, to be read once `ready` resolves (`None`: at
    /// once). It is opened now, so that removing the path later (a newer export replacing this
    /// one) does not take the bytes from under a reader.
    pub fn reader(path: &Path, ready: Option<Ready>, blocking: bool) -> io::Result<SnapshotFile> {
        let f = std::fs::File::open(path)?;
        Ok(SnapshotFile::new(path, f, ready, blocking))
    }

    /// An empty file at `path` (replacing what was there), to receive a snapshot.
    pub fn receiver(path: &Path, blocking: bool) -> io::Result<SnapshotFile> {
        let f = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(path)?;
        Ok(SnapshotFile::new(path, f, None, blocking))
    }

    /// A snapshot that is a position only. openraft takes the position of a snapshot it has
    /// built and drops its bytes, so building one makes none; the bytes are exported when the
    /// snapshot is sent. Reading this fails with an error that says so.
    pub fn position_only() -> SnapshotFile {
        SnapshotFile { ready: None, file: File::None, seek: None, position: 0, path: PathBuf::new() }
    }

    fn new(path: &Path, f: std::fs::File, ready: Option<Ready>, blocking: bool) -> SnapshotFile {
        let file = if blocking { File::Blocking(f) } else { File::Async(tokio::fs::File::from_std(f)) };
        SnapshotFile { ready, file, seek: None, position: 0, path: path.to_path_buf() }
    }

    /// Where the bytes are.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(ready) = &mut self.ready {
            ready!(ready.as_mut().poll(cx))?;
            self.ready = None;
        }
        Poll::Ready(Ok(()))
    }

    fn start_seek_now(&mut self, pos: SeekFrom) -> io::Result<()> {
        match &mut self.file {
            File::None => Err(no_bytes()),
            File::Blocking(f) => {
                self.position = f.seek(pos)?;
                Ok(())
            }
            File::Async(f) => Pin::new(f).start_seek(pos),
        }
    }
}

impl AsyncRead for SnapshotFile {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_ready(cx))?;
        match &mut this.file {
            File::Blocking(f) => {
                let n = f.read(buf.initialize_unfilled())?;
                buf.advance(n);
                Poll::Ready(Ok(()))
            }
            File::Async(f) => Pin::new(f).poll_read(cx, buf),
            File::None => Poll::Ready(Err(no_bytes())),
        }
    }
}

impl AsyncWrite for SnapshotFile {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_ready(cx))?;
        match &mut this.file {
            File::Blocking(f) => Poll::Ready(f.write(buf)),
            File::Async(f) => Pin::new(f).poll_write(cx, buf),
            File::None => Poll::Ready(Err(no_bytes())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().file {
            File::Blocking(f) => Poll::Ready(f.flush()),
            File::Async(f) => Pin::new(f).poll_flush(cx),
            File::None => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().file {
            File::Blocking(f) => Poll::Ready(f.flush()),
            File::Async(f) => Pin::new(f).poll_shutdown(cx),
            File::None => Poll::Ready(Ok(())),
        }
    }
}

impl AsyncSeek for SnapshotFile {
    fn start_seek(self: Pin<&mut Self>, pos: SeekFrom) -> io::Result<()> {
        let this = self.get_mut();
        if this.ready.is_some() {
            this.seek = Some(pos);
            return Ok(());
        }
        this.start_seek_now(pos)
    }

    fn poll_complete(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        let this = self.get_mut();
        ready!(this.poll_ready(cx))?;
        if let Some(pos) = this.seek.take() {
            this.start_seek_now(pos)?;
        }
        match &mut this.file {
            File::Blocking(_) | File::None => Poll::Ready(Ok(this.position)),
            File::Async(f) => Pin::new(f).poll_complete(cx),
        }
    }
}

fn no_bytes() -> io::Error {
    io::Error::other("a snapshot built by this replica is a position only; its bytes are exported when it is sent")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_reader_waits_for_its_export_and_keeps_its_bytes_when_the_path_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chain.snapshot-1");
        let mut writer = std::fs::File::create(&path).unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let ready: Ready = Box::pin(async move { rx.await.map_err(|_| io::Error::other("export stopped")) });
        let mut reader = SnapshotFile::reader(&path, Some(ready), false).unwrap();
        // A newer export replaces this one before it is read: the opened file keeps its bytes.
        std::fs::remove_file(&path).unwrap();
        let read = tokio::spawn(async move {
            let end = reader.seek(SeekFrom::End(0)).await.unwrap();
            reader.seek(SeekFrom::Start(2)).await.unwrap();
            let mut rest = Vec::new();
            reader.read_to_end(&mut rest).await.unwrap();
            (end, rest)
        });
        tokio::task::yield_now().await;
        writer.write_all(b"snapshot").unwrap();
        tx.send(()).unwrap();
        assert_eq!(read.await.unwrap(), (8, b"apshot".to_vec()));
    }

    #[tokio::test]
    async fn a_failed_export_fails_the_reader() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chain.snapshot-2");
        std::fs::File::create(&path).unwrap();
        let ready: Ready = Box::pin(async { Err(io::Error::other("disk full")) });
        let mut reader = SnapshotFile::reader(&path, Some(ready), false).unwrap();
        let e = reader.seek(SeekFrom::End(0)).await.unwrap_err();
        assert_eq!(e.to_string(), "disk full");
    }

    #[tokio::test]
    async fn a_position_only_snapshot_refuses_to_be_read() {
        let mut f = SnapshotFile::position_only();
        let e = f.read_u8().await.unwrap_err();
        assert!(e.to_string().contains("position only"), "{e}");
        assert!(f.seek(SeekFrom::End(0)).await.is_err());
    }

    #[tokio::test]
    async fn chunks_received_out_of_order_land_at_their_offsets_in_both_kinds() {
        for blocking in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("chain.snapshot-received");
            std::fs::write(&path, b"an older, longer snapshot").unwrap();
            let mut f = SnapshotFile::receiver(&path, blocking).unwrap();
            f.seek(SeekFrom::Start(4)).await.unwrap();
            f.write_all(b"5678").await.unwrap();
            f.seek(SeekFrom::Start(0)).await.unwrap();
            f.write_all(b"1234").await.unwrap();
            f.shutdown().await.unwrap();
            assert_eq!(f.path(), path);
            assert_eq!(std::fs::read(&path).unwrap(), b"12345678", "blocking: {blocking}");
        }
    }
}
