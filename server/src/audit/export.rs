//! Audit export as CSV or JSON Lines, streamed page by page.

use super::{scan, Entry, Filter};
use crate::store::Db;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Jsonl,
}

impl Format {
    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "csv" => Some(Format::Csv),
            "jsonl" => Some(Format::Jsonl),
            _ => None,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Csv => "text/csv; charset=utf-8",
            Format::Jsonl => "application/x-ndjson",
        }
    }
}

pub const CSV_HEADER: &str = "seq,time,code,event,actor,subject,source,details,prev_hash,hash\n";

fn csv_field(out: &mut String, s: &str) {
    // Cells that a spreadsheet would run as a formula are prefixed with `'`.
    let risky = s.starts_with(['=', '+', '-', '@', '\t', '\r']);
    if risky || s.contains([',', '"', '\n', '\r']) {
        out.push('"');
        if risky {
            out.push('\'');
        }
        out.push_str(&s.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(s);
    }
}

/// RFC 3339 UTC with milliseconds.
pub fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

pub fn write_entry(out: &mut String, format: Format, e: &Entry) {
    match format {
        Format::Csv => {
            let time = rfc3339(e.time);
            let code = e.code.to_string();
            let seq = e.seq.to_string();
            let fields = [
                seq.as_str(),
                time.as_str(),
                code.as_str(),
                e.event_name(),
                &e.actor,
                &e.subject,
                &e.source,
                &e.details,
                &e.prev_hash,
                &e.hash,
            ];
            for (i, f) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                csv_field(out, f);
            }
            out.push('\n');
        }
        Format::Jsonl => {
            let details: serde_json::Value = serde_json::from_str(&e.details)
                .unwrap_or(serde_json::Value::String(e.details.clone()));
            let line = serde_json::json!({
                "seq": e.seq,
                "time": rfc3339(e.time),
                "time_ms": e.time,
                "code": e.code,
                "event": e.event_name(),
                "actor": e.actor,
                "subject": e.subject,
                "source": e.source,
                "details": details,
                "prev_hash": e.prev_hash,
                "hash": e.hash,
            });
            out.push_str(&line.to_string());
            out.push('\n');
        }
    }
}

/// Writes every matching entry, oldest first, calling `sink` with chunks.
pub async fn export<F>(db: &Db, filter: &Filter, format: Format, mut sink: F) -> anyhow::Result<u64>
where
    F: FnMut(String) -> anyhow::Result<()>,
{
    let mut n = 0u64;
    if format == Format::Csv {
        sink(CSV_HEADER.to_owned())?;
    }
    let mut after = 0;
    loop {
        let page = scan(db, filter, after, 1000).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        let mut chunk = String::new();
        for e in &page {
            write_entry(&mut chunk, format, e);
            n += 1;
        }
        sink(chunk)?;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_escapes_and_defuses_formulas() {
        let mut s = String::new();
        csv_field(&mut s, "a,b");
        s.push('|');
        csv_field(&mut s, "say \"hi\"");
        s.push('|');
        csv_field(&mut s, "=cmd()");
        assert_eq!(s, "\"a,b\"|\"say \"\"hi\"\"\"|\"'=cmd()\"");
    }

    #[test]
    fn rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    }
}
