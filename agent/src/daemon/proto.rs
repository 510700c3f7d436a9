//! What client and daemon say over the socket: the client sends one JSON request line (and,
//! for a run, later `cancel` lines); the daemon answers with frames: a tag byte, a
//! little-endian u32 length and the payload (output is bytes, not necessarily UTF-8).
use std::{io::{self, Read}, path::PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Request {
    /// Run `pilot ARGS...` (a `run` or `trace`) as the client would have, in its cwd and env.
    Run { args: Vec<String>, cwd: PathBuf, env: Vec<(String, String)>, exe: String },
    Status,
    /// Stop the run of this connection, as ^C would.
    Cancel,
}

pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
/// Payload: the exit status, i32 little-endian.
pub const EXIT: u8 = 3;
/// Payload: why the daemon will not serve this client (it then runs in-process).
pub const REFUSED: u8 = 4;
/// Payload: the status JSON.
pub const STATUS: u8 = 5;

/// One frame, ready to write in one piece.
pub fn frame(tag: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(5 + payload.len());
    frame.push(tag);
    frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// Frames from a stream that may time out between reads (the client checks for ^C then).
#[derive(Default)]
pub struct FrameReader {
    buf: Vec<u8>,
}

pub enum Next {
    Frame(u8, Vec<u8>),
    /// Nothing complete yet (read timed out).
    Idle,
    Closed,
}

impl FrameReader {
    pub fn next(&mut self, r: &mut impl Read) -> io::Result<Next> {
        loop {
            if self.buf.len() >= 5 {
                let len = u32::from_le_bytes(self.buf[1..5].try_into().expect("4 bytes")) as usize;
                if self.buf.len() >= 5 + len {
                    let payload = self.buf[5..5 + len].to_vec();
                    let tag = self.buf[0];
                    self.buf.drain(..5 + len);
                    return Ok(Next::Frame(tag, payload));
                }
            }
            let mut chunk = [0u8; 16384];
            match r.read(&mut chunk) {
                Ok(0) => return Ok(Next::Closed),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => return Ok(Next::Idle),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(Next::Idle),
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_survive_being_split_across_reads() {
        let mut bytes = frame(STDERR, b"hello");
        bytes.extend(frame(EXIT, &3i32.to_le_bytes()));
        let mut r = FrameReader::default();
        let mut src: &[u8] = &bytes;
        let mut got = Vec::new();
        // Feed three bytes at a time.
        loop {
            let take = src.len().min(3);
            let mut piece = &src[..take];
            src = &src[take..];
            while let Next::Frame(t, p) = r.next(&mut piece).unwrap() {
                got.push((t, p));
            }
            if src.is_empty() {
                break;
            }
        }
        assert_eq!(got, vec![(STDERR, b"hello".to_vec()), (EXIT, 3i32.to_le_bytes().to_vec())]);
    }
}
