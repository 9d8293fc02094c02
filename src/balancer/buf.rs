//! `Buf`: a read buffer that hands out what it holds as one slice, lets the
//! caller consume from the front (pipelined requests stay for the next
//! round), and gives its memory back while a connection sits idle, so ten
//! thousand idle keep-alive clients cost almost nothing. Given-back buffers
//! wait in a small per-thread stack for the next read, so a busy connection
//! does not pay a malloc and a free per request. It only reads.

use std::cell::RefCell;
use tokio::io::{AsyncRead, AsyncReadExt};

const READ_SIZE: usize = 16 * 1024;
/// Buffers kept per thread; beyond this they are freed.
const SPARE_MAX: usize = 64;

thread_local! {
    static SPARE: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

fn fresh() -> Vec<u8> {
    SPARE
        .with(|s| s.borrow_mut().pop())
        .unwrap_or_else(|| Vec::with_capacity(READ_SIZE))
}

fn recycle(mut data: Vec<u8>) {
    if data.capacity() == 0 || data.capacity() > 4 * READ_SIZE {
        return;
    }
    data.clear();
    SPARE.with(|s| {
        let mut s = s.borrow_mut();
        if s.len() < SPARE_MAX {
            s.push(data);
        }
    });
}

#[derive(Debug, Default)]
pub struct Buf {
    data: Vec<u8>,
    start: usize,
}

impl Buf {
    /// The bytes read and not consumed yet.
    pub fn filled(&self) -> &[u8] {
        &self.data[self.start..]
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.data.len()
    }

    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.data.len());
        if self.start == self.data.len() {
            self.data.clear();
            self.start = 0;
        }
    }

    /// Takes every byte held, leaving the buffer empty.
    pub fn take_all(&mut self) -> Vec<u8> {
        let out = self.filled().to_vec();
        self.consume(out.len());
        out
    }

    /// Gives the memory back if nothing is held (between requests).
    pub fn release(&mut self) {
        if self.is_empty() {
            recycle(std::mem::take(&mut self.data));
            self.start = 0;
        }
    }

    /// Reads once, appending; `Ok(0)` is end of stream.
    pub async fn read_from<R: AsyncRead + Unpin>(&mut self, r: &mut R) -> std::io::Result<usize> {
        if self.data.capacity() == 0 {
            self.data = fresh();
        }
        if self.data.capacity() - self.data.len() < READ_SIZE / 4 {
            if self.start > 0 {
                self.data.drain(..self.start);
                self.start = 0;
            }
            self.data.reserve(READ_SIZE);
        }
        r.read_buf(&mut self.data).await
    }
}

impl Drop for Buf {
    fn drop(&mut self) {
        recycle(std::mem::take(&mut self.data));
    }
}
