//! The length-delimited stream (a varint length, then the message) that the `.pb` CAD logs and replay's
//! `audit.pb` share: split into frames once, here.

/// Why a stream could not be split further. Framing is lost after it: the rest of the stream is one error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The length prefix is not a varint.
    BadPrefix(String),
    /// The prefix says `len` bytes, but only `left` remain.
    PastEnd { len: u64, left: usize },
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::BadPrefix(e) => write!(f, "bad length prefix: {e}"),
            FrameError::PastEnd { len, left } => {
                write!(f, "length prefix {len} runs past the end of the stream ({left} bytes left)")
            }
        }
    }
}

impl std::error::Error for FrameError {}

/// One frame: where its prefix starts in the stream, and the message bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    pub at: usize,
    pub body: &'a [u8],
}

/// The frames of `data`, in order; after an error (with the byte offset of the broken prefix), nothing.
pub fn frames(data: &[u8]) -> Frames<'_> {
    Frames { data, at: 0 }
}

#[derive(Debug, Clone)]
pub struct Frames<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Iterator for Frames<'a> {
    type Item = Result<Frame<'a>, (usize, FrameError)>;

    fn next(&mut self) -> Option<Self::Item> {
        let at = self.at;
        if at >= self.data.len() {
            return None;
        }
        let mut rest = &self.data[at..];
        let before = rest.len();
        let item = match prost::encoding::decode_varint(&mut rest) {
            Ok(len) if (len as usize) <= rest.len() => {
                let header = before - rest.len();
                self.at = at + header + len as usize;
                return Some(Ok(Frame { at, body: &rest[..len as usize] }));
            }
            Ok(len) => Err((at, FrameError::PastEnd { len, left: rest.len() })),
            Err(e) => Err((at, FrameError::BadPrefix(e.to_string()))),
        };
        self.at = self.data.len();
        Some(item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_then_one_error_then_nothing() {
        let mut data = vec![2, b'a', b'b', 0, 5, b'x'];
        let got: Vec<_> = frames(&data).collect();
        assert_eq!(got[0], Ok(Frame { at: 0, body: b"ab" }));
        assert_eq!(got[1], Ok(Frame { at: 3, body: b"" }));
        assert_eq!(got[2], Err((4, FrameError::PastEnd { len: 5, left: 1 })));
        assert_eq!(got.len(), 3);
        data = vec![0xff; 11];
        assert!(matches!(frames(&data).next(), Some(Err((0, FrameError::BadPrefix(_))))));
    }
}
