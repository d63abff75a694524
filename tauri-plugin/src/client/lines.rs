//! Reading newline-delimited text with a bound on a line's length (the
//! sidecar's stdout and stderr).

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

#[derive(Debug, PartialEq)]
pub(crate) enum LineRead {
    /// `buf` holds one line, without its `\n` (the last line may lack one).
    Line,
    /// The line was longer than allowed and has been skipped; its length.
    TooLong(usize),
    Eof,
}

/// Reads one `\n`-terminated line into `buf`, never holding more than `max`
/// bytes of it: a longer line is consumed and reported as `TooLong`.
pub(crate) async fn read_line_bounded<R>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<LineRead>
where
    R: AsyncBufRead + Unpin,
{
    buf.clear();
    let mut total = 0usize;
    let mut too_long = false;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(match (total, too_long) {
                (0, _) => LineRead::Eof,
                (n, true) => LineRead::TooLong(n),
                _ => LineRead::Line,
            });
        }
        let (chunk, ends_line) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (&available[..i], true),
            None => (available, false),
        };
        total += chunk.len();
        if !too_long {
            if buf.len() + chunk.len() > max {
                too_long = true;
                buf.clear();
                buf.shrink_to(64 * 1024);
            } else {
                buf.extend_from_slice(chunk);
            }
        }
        let used = chunk.len() + usize::from(ends_line);
        reader.consume(used);
        if ends_line {
            return Ok(if too_long {
                LineRead::TooLong(total)
            } else {
                LineRead::Line
            });
        }
    }
}
