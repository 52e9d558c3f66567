//! Appending records to the newest segment file in large chunks.

use super::*;

impl Writer {
    /// Hands everything pending to the operating system, as far as the file system has room
    /// beyond [`STORE_HEADROOM`]. What was not written stays pending (and readable), so nothing
    /// accepted is lost while the disk refuses writes; the error says why.
    pub(super) fn write_out(&mut self, path: &Path) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let room = free_space(path).map_or(usize::MAX, |free| {
            usize::try_from(free.saturating_sub(STORE_HEADROOM)).unwrap_or(usize::MAX)
        });
        let take = self.pending.len().min(room);
        let mut done = 0;
        while done < take {
            match (&*self.file).write(&self.pending[done..take]) {
                Ok(0) => {
                    self.consume(done);
                    return Err(named(
                        path,
                        io::Error::new(io::ErrorKind::WriteZero, "the disk took no bytes"),
                    ));
                }
                Ok(written) => done += written,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => {
                    self.consume(done);
                    return Err(named(path, error));
                }
            }
        }
        self.consume(done);
        if !self.pending.is_empty() {
            return Err(named(
                path,
                io::Error::new(
                    io::ErrorKind::StorageFull,
                    format!(
                        "no space left on device beyond the {} MiB the spool keeps free for the state store",
                        STORE_HEADROOM >> 20
                    ),
                ),
            ));
        }
        Ok(())
    }

    /// Notes that the first `n` pending bytes were written.
    pub(super) fn consume(&mut self, n: usize) {
        self.pending.drain(..n);
        self.written += n as u64;
        while self
            .unwritten_ends
            .front()
            .is_some_and(|&end| end <= self.written)
        {
            self.unwritten_ends.pop_front();
        }
    }

    /// The segment's bytes as the log wrote them: what the file holds up to `written` (zeros
    /// where it holds less), then what is still pending.
    pub(super) fn contents(&self) -> Vec<u8> {
        let mut bytes = vec![0u8; self.written as usize];
        let mut filled = 0;
        while filled < bytes.len() {
            match self.file.read_at(&mut bytes[filled..], filled as u64) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        bytes.extend_from_slice(&self.pending);
        bytes
    }
}
