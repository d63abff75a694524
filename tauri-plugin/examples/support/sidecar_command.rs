//! The sidecar command of the benchmarks (`bench`, `bench_outbox`), one copy
//! for both: `SYNC_QUEUE_SIDECAR_CMD` split into words, or else
//! `<checkout>/.venv/bin/python -m sync_queue` (`SYNC_QUEUE_PYTHON` for
//! another python). A folder without `main.rs`, so cargo does not take it
//! for an example of its own.

use std::path::Path;

pub fn sidecar_command() -> Vec<String> {
    match std::env::var("SYNC_QUEUE_SIDECAR_CMD") {
        Ok(text) if !text.trim().is_empty() => text.split_whitespace().map(str::to_owned).collect(),
        _ => {
            let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
            let python = std::env::var("SYNC_QUEUE_PYTHON")
                .unwrap_or_else(|_| root.join(".venv/bin/python").display().to_string());
            vec![python, "-m".into(), "sync_queue".into()]
        }
    }
}
