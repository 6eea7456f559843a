//! The benchmark's canned-reply endpoint: answers each recorded request of
//! a session with the reply the server gave to it, and does nothing else.
//!
//! It runs either in the simulator's own process or, by default, in a
//! process of its own (`handover sim canned-endpoint`, started by the
//! bench), so that it stands where the server stood: the baseline then
//! differs from the real run only in the protocol work the server does.
//! The replies go to the child in a file (see [`write_replies`]).

use std::io::{BufRead, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use clap::Args;

/// The recorded replies (content type and body), per session and exchange.
pub type Replies = Vec<Vec<(&'static str, Vec<u8>)>>;

/// The content types a reply can have; a file names them by index.
const CONTENT_TYPES: [&str; 3] = [
    "application/json",
    handover_dm::syncml::Encoding::Xml.content_type(),
    handover_dm::syncml::Encoding::Wbxml.content_type(),
];

/// The router answering `POST /canned/{session}/{exchange}`.
pub fn router(replies: Replies) -> Router {
    Router::new()
        .route("/canned/{dev}/{msg}", post(canned))
        .with_state(Arc::new(replies))
}

async fn canned(
    State(s): State<Arc<Replies>>,
    UrlPath((dev, msg)): UrlPath<(usize, usize)>,
    _body: Bytes,
) -> Response {
    match s.get(dev).and_then(|t| t.get(msg)) {
        Some((ct, r)) => ([(header::CONTENT_TYPE, *ct)], r.clone()).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Writes `replies` to `path`: per session the number of exchanges, then
/// per exchange the index of its content type and its length-prefixed body
/// (little-endian u32s).
pub fn write_replies(path: &Path, replies: &Replies) -> anyhow::Result<()> {
    let mut out = Vec::new();
    out.extend((replies.len() as u32).to_le_bytes());
    for t in replies {
        out.extend((t.len() as u32).to_le_bytes());
        for (ct, body) in t {
            let i = CONTENT_TYPES
                .iter()
                .position(|c| c == ct)
                .ok_or_else(|| anyhow::anyhow!("unexpected content type {ct}"))?;
            out.push(i as u8);
            out.extend((body.len() as u32).to_le_bytes());
            out.extend(body);
        }
    }
    std::fs::write(path, out)?;
    Ok(())
}

/// Reads what [`write_replies`] wrote; a short or inconsistent file is an error.
pub fn read_replies(bytes: &[u8]) -> anyhow::Result<Replies> {
    let mut r = bytes;
    let u32_of = |r: &mut &[u8]| -> anyhow::Result<usize> {
        let mut b = [0u8; 4];
        r.read_exact(&mut b)
            .map_err(|_| anyhow::anyhow!("replies file cut short"))?;
        Ok(u32::from_le_bytes(b) as usize)
    };
    let sessions = u32_of(&mut r)?;
    let mut out = Vec::with_capacity(sessions.min(1 << 20));
    for _ in 0..sessions {
        let n = u32_of(&mut r)?;
        let mut t = Vec::with_capacity(n.min(64));
        for _ in 0..n {
            let (&i, rest) = r
                .split_first()
                .ok_or_else(|| anyhow::anyhow!("replies file cut short"))?;
            r = rest;
            let ct = *CONTENT_TYPES
                .get(i as usize)
                .ok_or_else(|| anyhow::anyhow!("unknown content type index {i}"))?;
            let len = u32_of(&mut r)?;
            anyhow::ensure!(len <= r.len(), "replies file cut short");
            let (body, rest) = r.split_at(len);
            t.push((ct, body.to_vec()));
            r = rest;
        }
        out.push(t);
    }
    anyhow::ensure!(r.is_empty(), "trailing bytes in the replies file");
    Ok(out)
}

/// `handover sim canned-endpoint`: started by `handover sim bench`.
#[derive(Debug, Args)]
pub struct CannedArgs {
    /// The replies, as the bench wrote them.
    #[arg(long, value_name = "FILE")]
    pub replies: PathBuf,
    /// Where to listen (loopback).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
}

/// Serves the replies; prints `listening on ADDR` once bound, and stops
/// when its standard input closes (the bench that started it is gone).
pub async fn serve(a: CannedArgs) -> anyhow::Result<i32> {
    crate::serve::raise_open_files_limit();
    let replies = read_replies(&std::fs::read(&a.replies)?)?;
    let listener = tokio::net::TcpListener::bind(a.listen).await?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening on {}", listener.local_addr()?)?;
    out.flush()?;
    drop(out);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        // EOF or an error: whoever started this endpoint has let go of it.
        let mut line = String::new();
        let stdin = std::io::stdin();
        while stdin.lock().read_line(&mut line).is_ok_and(|n| n > 0) {
            line.clear();
        }
        let _ = tx.send(());
    });
    axum::serve(listener, router(replies))
        .with_graceful_shutdown(async move {
            let _ = rx.await;
        })
        .await?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_survive_the_file() {
        let replies: Replies = vec![
            vec![
                ("application/json", br#"{"jobs":[1,2]}"#.to_vec()),
                (CONTENT_TYPES[2], vec![0x02, 0xa4, 0x01, 0x6a, 0x00]),
            ],
            vec![],
            vec![(CONTENT_TYPES[1], b"<SyncML/>".to_vec())],
        ];
        let dir = std::env::temp_dir().join(format!("canned-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("replies");
        write_replies(&path, &replies).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(read_replies(&bytes).unwrap(), replies);
        // Every cut of the file is refused, not misread.
        for cut in 0..bytes.len() {
            assert!(read_replies(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(read_replies(&longer).is_err());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn unknown_content_types_are_refused() {
        let replies: Replies = vec![vec![("text/html", b"x".to_vec())]];
        let path = std::env::temp_dir().join(format!("canned-{}", uuid::Uuid::new_v4().simple()));
        assert!(write_replies(&path, &replies).is_err());
        // Index 3 names no content type.
        let bytes = [1, 0, 0, 0, 1, 0, 0, 0, 3, 0, 0, 0, 0];
        assert!(read_replies(&bytes).is_err());
    }
}
