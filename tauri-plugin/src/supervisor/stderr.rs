//! The sidecar's stderr: every line goes to the `log` crate, and the last
//! ones are kept for error messages and the `sidecar-exited` event.

use std::collections::VecDeque;

use tokio::io::{AsyncRead, BufReader};

use crate::client::{read_line_bounded, LineRead};

/// Lines of stderr kept for error messages.
const TAIL_LINES: usize = 40;
/// Longest stderr line kept (a longer one is cut); the log gets it whole.
const TAIL_LINE_CHARS: usize = 2000;
const MAX_STDERR_LINE: usize = 1024 * 1024;

/// The last lines of the sidecar's stderr.
#[derive(Default)]
pub(super) struct Tail {
    lines: VecDeque<String>,
}

impl Tail {
    pub(super) fn push(&mut self, line: &str) {
        if self.lines.len() == TAIL_LINES {
            self.lines.pop_front();
        }
        let mut line = line.to_owned();
        if line.len() > TAIL_LINE_CHARS {
            let mut cut = TAIL_LINE_CHARS;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line.truncate(cut);
            line.push('…');
        }
        self.lines.push_back(line);
    }

    pub(super) fn clear(&mut self) {
        self.lines.clear();
    }

    pub(super) fn text(&self) -> String {
        self.lines
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Reads stderr to its end, logging each line and handing it to `keep`.
pub(super) async fn drain<R: AsyncRead + Unpin>(stderr: R, keep: impl Fn(&str)) {
    let mut reader = BufReader::new(stderr);
    let mut buf = Vec::new();
    loop {
        match read_line_bounded(&mut reader, &mut buf, MAX_STDERR_LINE).await {
            Ok(LineRead::Line) => {
                let line = String::from_utf8_lossy(&buf);
                let line = line.trim_end();
                log::info!(target: "sync_queue::sidecar", "{line}");
                keep(line);
            }
            Ok(LineRead::TooLong(n)) => {
                log::info!(target: "sync_queue::sidecar", "<a {n}-byte line>")
            }
            Ok(LineRead::Eof) | Err(_) => break,
        }
    }
}
