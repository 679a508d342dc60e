//! Read-ahead and write-behind threads for the vault operations, so reading, AES-GCM and writing
//! overlap on two cores. Memory stays bounded: a few fixed-size buffers in flight, recycled.
//! Each side can also hash what passes through it (SHA-256 of the sealed file, for the audit
//! event), on its own thread.

use std::io::{self, BufRead, Read, Write};

use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread::JoinHandle;
use warden_core::mac::Sha256;
use warden_core::stream::{FrameSink, StreamError};

const CHUNK: usize = 1024 * 1024;
/// Buffers in flight per direction (each `CHUNK` bytes).
const DEPTH: usize = 4;

/// Reads its source on a background thread, `CHUNK` bytes ahead.
pub struct ReadAhead {
    full: Receiver<io::Result<Vec<u8>>>,
    empty: SyncSender<Vec<u8>>,
    current: Vec<u8>,
    pos: usize,
    done: bool,
    digest: Receiver<[u8; 32]>,
    _thread: JoinHandle<()>,
}

impl ReadAhead {
    /// Reads `source` ahead and hashes everything read (see [`ReadAhead::finish_sha256`]).
    pub fn new<R: Read + Send + 'static>(mut source: R) -> Self {
        let (full_tx, full) = mpsc::sync_channel::<io::Result<Vec<u8>>>(DEPTH);
        let (empty, empty_rx) = mpsc::sync_channel::<Vec<u8>>(DEPTH + 2);
        let (digest_tx, digest) = mpsc::sync_channel::<[u8; 32]>(1);
        let mut hash = Some(Sha256::new());
        let thread = std::thread::spawn(move || loop {
            let mut buf = empty_rx.try_recv().unwrap_or_default();
            buf.resize(CHUNK, 0);
            let mut filled = 0;
            let result = loop {
                match source.read(&mut buf[filled..]) {
                    Ok(0) => break Ok(()),
                    Ok(n) => {
                        filled += n;
                        if filled == buf.len() {
                            break Ok(());
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => break Err(e),
                }
            };
            buf.truncate(filled);
            let end = filled == 0;
            if let Some(hash) = hash.as_mut() {
                hash.update(&buf);
            }
            if end {
                if let Some(hash) = hash.take() {
                    let _ = digest_tx.send(hash.finish());
                }
            }
            let message = result.map(|()| buf);
            let failed = message.is_err();
            if full_tx.send(message).is_err() || end || failed {
                return;
            }
        });
        Self {
            full,
            empty,
            current: Vec::new(),
            pos: 0,
            done: false,
            digest,
            _thread: thread,
        }
    }

    /// Reads whatever the consumer left unread and returns the SHA-256 of the whole source.
    pub fn finish_sha256(mut self) -> io::Result<[u8; 32]> {
        loop {
            let available = self.fill_buf()?.len();
            if available == 0 {
                break;
            }
            self.consume(available);
        }
        self.digest
            .recv()
            .map_err(|_| io::Error::other("the reading thread stopped"))
    }
}

impl BufRead for ReadAhead {
    /// The current read-ahead buffer, as it came from the reading thread (no copy).
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.pos == self.current.len() && !self.done {
            let next = match self.full.recv() {
                Ok(result) => result?,
                Err(_) => Vec::new(),
            };
            if next.is_empty() {
                self.done = true;
            }
            let used = std::mem::replace(&mut self.current, next);
            let _ = self.empty.try_send(used);
            self.pos = 0;
        }
        Ok(&self.current[self.pos..])
    }

    fn consume(&mut self, amount: usize) {
        self.pos = (self.pos + amount).min(self.current.len());
    }
}

impl Read for ReadAhead {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = out.len().min(available.len());
        out[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

/// Writes to its sink on a background thread. `finish` flushes, joins, and returns the sink
/// (and the first write error, if any). Buffers travel with how much of them is filled and keep
/// their length when recycled, so filling them in place never zero-fills.
pub struct WriteBehind<W: Write + Send + 'static> {
    buf: Vec<u8>,
    filled: usize,
    full: Option<SyncSender<(Vec<u8>, usize)>>,
    empty: Receiver<Vec<u8>>,
    thread: Option<JoinHandle<(W, io::Result<[u8; 32]>)>>,
}

impl<W: Write + Send + 'static> WriteBehind<W> {
    pub fn new(mut sink: W) -> Self {
        let (full, full_rx) = mpsc::sync_channel::<(Vec<u8>, usize)>(DEPTH);
        let (empty_tx, empty) = mpsc::sync_channel::<Vec<u8>>(DEPTH + 2);
        let thread = std::thread::spawn(move || {
            let mut result = Ok(());
            let mut hash = Sha256::new();
            for (buf, filled) in full_rx {
                if result.is_ok() {
                    hash.update(&buf[..filled]);
                    result = sink.write_all(&buf[..filled]);
                }
                let _ = empty_tx.try_send(buf);
            }
            if result.is_ok() {
                result = sink.flush();
            }
            (sink, result.map(|()| hash.finish()))
        });
        Self {
            buf: Vec::new(),
            filled: 0,
            full: Some(full),
            empty,
            thread: Some(thread),
        }
    }

    fn send(&mut self) -> io::Result<()> {
        let next = self.empty.try_recv().unwrap_or_default();
        let buf = std::mem::replace(&mut self.buf, next);
        let filled = std::mem::take(&mut self.filled);
        let sender = self.full.as_ref().expect("present until finish");
        sender
            .send((buf, filled))
            .map_err(|_| io::Error::other("the writer thread stopped"))
    }

    /// A slot of exactly `len` bytes at the end of the current buffer, sending the buffer
    /// first when it has no room. The slot counts as written only once `commit` says so.
    fn slot(&mut self, len: usize) -> io::Result<&mut [u8]> {
        if self.filled + len > self.buf.len().max(CHUNK) && self.filled > 0 {
            self.send()?;
        }
        let end = self.filled + len;
        if self.buf.len() < end {
            // Only a new (or too small) buffer is extended; recycled ones keep their length.
            self.buf.resize(end.max(CHUNK), 0);
        }
        Ok(&mut self.buf[self.filled..end])
    }

    fn commit(&mut self, len: usize) -> io::Result<()> {
        self.filled += len;
        if self.filled >= CHUNK {
            self.send()?;
        }
        Ok(())
    }

    /// Writes out everything, stops the thread, and returns the sink and the SHA-256 of
    /// everything written.
    pub fn finish(mut self) -> io::Result<(W, [u8; 32])> {
        if self.filled > 0 {
            self.send()?;
        }
        drop(self.full.take());
        let (sink, result) = self
            .thread
            .take()
            .expect("present until finish")
            .join()
            .map_err(|_| io::Error::other("the writer thread panicked"))?;
        result.map(|digest| (sink, digest))
    }
}

impl<W: Write + Send + 'static> Drop for WriteBehind<W> {
    /// Abandoned without `finish`: stop the thread and drop the sink now (a pending output file
    /// removes itself on drop, and that must have happened when the caller moves on).
    fn drop(&mut self) {
        drop(self.full.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl<W: Write + Send + 'static> Write for WriteBehind<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        // `commit` sends a full buffer at once, so there is always room here.
        let n = (CHUNK - self.filled).min(data.len());
        self.slot(n)?.copy_from_slice(&data[..n]);
        self.commit(n)?;
        Ok(n)
    }

    /// Data is flushed by `finish`; a flush in the middle would only add a round trip.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A [`WriteBehind`] seen as a frame sink: sealed frames go straight into the buffer the
/// writing thread will write (no copy).
pub struct FramesInto<'a, W: Write + Send + 'static>(pub &'a mut WriteBehind<W>);

impl<W: Write + Send + 'static> FrameSink for FramesInto<'_, W> {
    fn put_frame(
        &mut self,
        max_len: usize,
        _scratch: &mut Vec<u8>,
        fill: &mut dyn FnMut(&mut [u8]) -> Result<usize, StreamError>,
    ) -> Result<(), StreamError> {
        let len = fill(self.0.slot(max_len)?)?;
        self.0.commit(len)?;
        Ok(())
    }

    /// Data is flushed by `finish`.
    fn flush_frames(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_ahead_and_write_behind_preserve_every_byte() {
        let data: Vec<u8> = (0..5 * CHUNK + 1234)
            .map(|i| (i * 31 % 251) as u8)
            .collect();
        let mut reader = ReadAhead::new(io::Cursor::new(data.clone()));
        let mut writer = WriteBehind::new(Vec::new());
        let mut buf = vec![0u8; 70_000];
        loop {
            let n = reader.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            writer.write_all(&buf[..n]).unwrap();
        }
        let (written, digest) = writer.finish().unwrap();
        assert_eq!(written, data);
        assert_eq!(digest, warden_core::mac::sha256(&data));
        assert_eq!(
            reader.finish_sha256().unwrap(),
            warden_core::mac::sha256(&data)
        );
    }

    #[test]
    fn the_read_side_hashes_what_the_consumer_left_unread() {
        let data = vec![7u8; 3 * CHUNK + 5];
        let mut reader = ReadAhead::new(io::Cursor::new(data.clone()));
        let mut first = [0u8; 10];
        reader.read_exact(&mut first).unwrap();
        assert_eq!(
            reader.finish_sha256().unwrap(),
            warden_core::mac::sha256(&data)
        );
    }

    #[test]
    fn frames_sealed_in_place_make_a_stream_that_opens_to_the_same_bytes() {
        use warden_core::keyring::Purpose;
        use warden_core::secret::Key32;
        use warden_core::stream::{open_to, seal_from, SealedReader, SealedWriter};

        let key = Key32::from_bytes([9; 32]);
        // Segments that do not divide the buffer size, so frames keep crossing buffer ends.
        let data: Vec<u8> = (0..3 * CHUNK + 777).map(|i| (i * 7 % 253) as u8).collect();
        let mut reader = ReadAhead::new(io::Cursor::new(data.clone()));
        let mut behind = WriteBehind::new(Vec::new());
        let writer =
            SealedWriter::new(FramesInto(&mut behind), Purpose::Recordings, &key, 50_000).unwrap();
        let (_, summary) = seal_from(&mut reader, writer, |_| {}).unwrap();
        assert_eq!(summary.plaintext_bytes, data.len() as u64);
        let (sealed, _) = behind.finish().unwrap();

        let mut opened = Vec::new();
        let mut reader = SealedReader::new(&sealed[..], Purpose::Recordings, &key).unwrap();
        open_to(&mut reader, &mut opened, |_| {}).unwrap();
        assert_eq!(opened, data);
    }

    struct Failing;
    impl Write for Failing {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::other("disk full"))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn write_errors_surface_at_finish() {
        let mut writer = WriteBehind::new(Failing);
        writer.write_all(&[1u8; 100]).unwrap();
        assert_eq!(writer.finish().err().unwrap().to_string(), "disk full");
    }
}
