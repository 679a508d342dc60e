//! Read-ahead and write-behind threads for the vault commands, so reading, AES-GCM and writing
//! overlap on two cores. Memory stays bounded: a few fixed-size buffers in flight, recycled.

use std::io::{self, Read, Write};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread::JoinHandle;

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
    _thread: JoinHandle<()>,
}

impl ReadAhead {
    pub fn new<R: Read + Send + 'static>(mut source: R) -> Self {
        let (full_tx, full) = mpsc::sync_channel::<io::Result<Vec<u8>>>(DEPTH);
        let (empty, empty_rx) = mpsc::sync_channel::<Vec<u8>>(DEPTH + 2);
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
            _thread: thread,
        }
    }
}

impl Read for ReadAhead {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.current.len() {
            if self.done {
                return Ok(0);
            }
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
        let n = out.len().min(self.current.len() - self.pos);
        out[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Writes to its sink on a background thread. `finish` flushes, joins, and returns the sink
/// (and the first write error, if any).
pub struct WriteBehind<W: Write + Send + 'static> {
    buf: Vec<u8>,
    full: Option<SyncSender<Vec<u8>>>,
    empty: Receiver<Vec<u8>>,
    thread: Option<JoinHandle<(W, io::Result<()>)>>,
}

impl<W: Write + Send + 'static> WriteBehind<W> {
    pub fn new(mut sink: W) -> Self {
        let (full, full_rx) = mpsc::sync_channel::<Vec<u8>>(DEPTH);
        let (empty_tx, empty) = mpsc::sync_channel::<Vec<u8>>(DEPTH + 2);
        let thread = std::thread::spawn(move || {
            let mut result = Ok(());
            for mut buf in full_rx {
                if result.is_ok() {
                    result = sink.write_all(&buf);
                }
                buf.clear();
                let _ = empty_tx.try_send(buf);
            }
            if result.is_ok() {
                result = sink.flush();
            }
            (sink, result)
        });
        Self {
            buf: Vec::with_capacity(CHUNK),
            full: Some(full),
            empty,
            thread: Some(thread),
        }
    }

    fn send(&mut self) -> io::Result<()> {
        let next = self
            .empty
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(CHUNK));
        let buf = std::mem::replace(&mut self.buf, next);
        let sender = self.full.as_ref().expect("present until finish");
        sender
            .send(buf)
            .map_err(|_| io::Error::other("the writer thread stopped"))
    }

    /// Writes out everything, stops the thread, and returns the sink.
    pub fn finish(mut self) -> io::Result<W> {
        if !self.buf.is_empty() {
            self.send()?;
        }
        drop(self.full.take());
        let (sink, result) = self
            .thread
            .take()
            .expect("present until finish")
            .join()
            .map_err(|_| io::Error::other("the writer thread panicked"))?;
        result.map(|()| sink)
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
        let room = CHUNK - self.buf.len();
        let n = room.min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    /// Data is flushed by `finish`; a flush in the middle would only add a round trip.
    fn flush(&mut self) -> io::Result<()> {
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
        assert_eq!(writer.finish().unwrap(), data);
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
