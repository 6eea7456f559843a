//! The hash-chained audit log.
//!
//! Every entry stores `hash = SHA-256(prev_hash ‖ canonical entry)` in hex,
//! where the canonical entry is the JSON array
//! `[seq, time, code, actor, subject, source, details]` and the first entry's
//! `prev_hash` is 64 zeros. Entries are only ever appended (the database
//! refuses updates and deletes too); cancelling something adds an event.

pub mod events;
pub mod export;

pub use events::Event;

use crate::store::{is_unique_violation, now_ms, Db, Dialect};
use sha2::{Digest, Sha256};
use sqlx::any::AnyRow;
use sqlx::Row;

/// The `prev_hash` of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// An entry about to be appended.
#[derive(Debug, Clone)]
pub struct NewEntry {
    pub event: Event,
    /// Who did it: a user name, `peer:<ServerID>`, `device:<DevId>` or `system`.
    pub actor: String,
    /// What it was done to.
    pub subject: String,
    /// Source address, or empty.
    pub source: String,
    /// JSON object with event-specific facts (never a secret), as text:
    /// rendered when the entry is made, not while the append holds the
    /// writer.
    details: String,
}

impl NewEntry {
    pub fn new(event: Event, actor: impl Into<String>, subject: impl Into<String>) -> Self {
        NewEntry {
            event,
            actor: actor.into(),
            subject: subject.into(),
            source: String::new(),
            details: "{}".to_owned(),
        }
    }

    pub fn source(mut self, source: impl Into<String>) -> Self {
        self.source = source.into();
        self
    }

    pub fn details(mut self, details: serde_json::Value) -> Self {
        self.details = details.to_string();
        self
    }

    /// [`NewEntry::details`] already rendered: compact JSON text of an
    /// object (`details_pattern` searches rely on the compact form).
    pub fn details_text(mut self, json_object: String) -> Self {
        debug_assert!(
            serde_json::from_str::<serde_json::Value>(&json_object)
                .is_ok_and(|v| v.is_object() && v.to_string().len() == json_object.len()),
            "details are compact JSON of an object: {json_object}"
        );
        self.details = json_object;
        self
    }
}

/// A stored entry.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Entry {
    pub seq: i64,
    pub time: i64,
    pub code: i64,
    pub actor: String,
    pub subject: String,
    pub source: String,
    pub details: String,
    pub prev_hash: String,
    pub hash: String,
}

impl Entry {
    pub fn event_name(&self) -> &'static str {
        Event::from_code(self.code)
            .map(|e| e.name())
            .unwrap_or("unknown")
    }
}

/// The canonical bytes an entry's hash covers after `prev_hash`.
pub fn canonical(
    seq: i64,
    time: i64,
    code: i64,
    actor: &str,
    subject: &str,
    source: &str,
    details: &str,
) -> Vec<u8> {
    serde_json::to_vec(&(seq, time, code, actor, subject, source, details))
        .expect("tuples of strings and numbers serialize")
}

pub fn chain_hash(prev_hash: &str, canonical: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(prev_hash.as_bytes());
    h.update(canonical);
    hex::encode(h.finalize())
}

/// Appends one entry and returns its sequence number. Appends through one
/// database handle take turns; two writers racing for the same predecessor
/// (another instance sharing the database) collide on `seq`, the primary
/// key (an entry's is its predecessor's plus one), and the loser reads the
/// new head and tries again.
pub async fn append(db: &Db, entry: NewEntry) -> Result<i64, sqlx::Error> {
    let _turn = db.audit_turn().await;
    for _ in 0..50 {
        let mut tx = db.begin_write().await?;
        match append_in(db, &mut *tx, &entry).await {
            Ok(seq) => {
                tx.commit().await?;
                return Ok(seq);
            }
            Err(e) if is_unique_violation(&e) => {
                drop(tx);
                continue;
            }
            Err(e) => return Err(e),
        }
    }
    Err(sqlx::Error::Protocol(
        "the audit log head kept moving".into(),
    ))
}

/// Appends one entry inside the caller's transaction, so that it commits
/// (or not) together with the change it records. The transaction must come
/// from [`Db::begin_write`]: on SQLite it holds the database's write lock
/// from its start, on PostgreSQL this takes the log's lock until its end.
/// A racing writer that still collides makes this fail with a unique
/// violation, and the caller's whole transaction is retried.
pub async fn append_in(
    db: &Db,
    tx: &mut crate::store::Conn,
    entry: &NewEntry,
) -> Result<i64, sqlx::Error> {
    let seqs = append_all_in(db, tx, std::slice::from_ref(entry)).await?;
    Ok(seqs[0])
}

/// Appends `entries`, in order, inside the caller's transaction (see
/// [`append_in`]): the head is read once and the entries are written in
/// multi-row statements, so a message that changed fifty ACLs costs a few
/// statements, not fifty transactions. Returns their sequence numbers.
pub async fn append_all_in(
    db: &Db,
    tx: &mut crate::store::Conn,
    entries: &[NewEntry],
) -> Result<Vec<i64>, sqlx::Error> {
    if entries.is_empty() {
        return Ok(Vec::new());
    }
    if db.dialect() == Dialect::Postgres {
        // Instances sharing one PostgreSQL append one at a time.
        sqlx::query("SELECT pg_advisory_xact_lock(7215004)")
            .execute(&mut *tx)
            .await?;
    }
    // On SQLite the transaction comes from `Db::begin_write`, whose
    // `BEGIN IMMEDIATE` holds the database's write lock from its start: the
    // head read below cannot move before the commit, in this process or
    // another one sharing the file.
    let head = sqlx::query("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
        .fetch_optional(&mut *tx)
        .await?;
    let (mut prev_seq, mut prev_hash) = match head {
        Some(r) => (r.try_get::<i64, _>("seq")?, r.try_get::<String, _>("hash")?),
        None => (0, GENESIS.to_owned()),
    };
    let time = now_ms();
    let mut rows = Vec::with_capacity(entries.len());
    for entry in entries {
        let seq = prev_seq + 1;
        let details = entry.details.as_str();
        let code = entry.event.code();
        let bytes = canonical(
            seq,
            time,
            code,
            &entry.actor,
            &entry.subject,
            &entry.source,
            details,
        );
        let hash = chain_hash(&prev_hash, &bytes);
        tracing::debug!(seq, event = entry.event.name(), actor = %entry.actor, subject = %entry.subject, "audit");
        rows.push((
            seq,
            code,
            entry,
            details,
            std::mem::replace(&mut prev_hash, hash),
        ));
        prev_seq = seq;
    }
    // The hash of each row is the next row's prev_hash; the last one is
    // the chain's new head.
    let mut hashes: Vec<&str> = rows.iter().skip(1).map(|r| r.4.as_str()).collect();
    hashes.push(&prev_hash);
    const ROWS_PER_STATEMENT: usize = 64;
    for (chunk, chunk_hashes) in rows
        .chunks(ROWS_PER_STATEMENT)
        .zip(hashes.chunks(ROWS_PER_STATEMENT))
    {
        // ($1, …, $9), ($10, …, $18), …
        let values: Vec<String> = (0..chunk.len())
            .map(|i| {
                let row: Vec<String> = (1..=9).map(|k| format!("${}", i * 9 + k)).collect();
                format!("({})", row.join(", "))
            })
            .collect();
        let sql = db.sql(&format!(
            "INSERT INTO audit_log (seq, time, code, actor, subject, source, details, prev_hash, hash) \
             VALUES {}",
            values.join(", ")
        ))
        .into_owned();
        let mut q = sqlx::query(&sql);
        for ((seq, code, entry, details, prev), hash) in chunk.iter().zip(chunk_hashes) {
            q = q
                .bind(*seq)
                .bind(time)
                .bind(*code)
                .bind(&entry.actor)
                .bind(&entry.subject)
                .bind(&entry.source)
                .bind(*details)
                .bind(prev)
                .bind(*hash);
        }
        q.execute(&mut *tx).await?;
    }
    Ok(rows.iter().map(|r| r.0).collect())
}

fn entry_from_row(r: &AnyRow) -> Result<Entry, sqlx::Error> {
    Ok(Entry {
        seq: r.try_get("seq")?,
        time: r.try_get("time")?,
        code: r.try_get("code")?,
        actor: r.try_get("actor")?,
        subject: r.try_get("subject")?,
        source: r.try_get("source")?,
        details: r.try_get("details")?,
        prev_hash: r.try_get("prev_hash")?,
        hash: r.try_get("hash")?,
    })
}

/// What to select from the log. Empty strings match anything.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub actor: String,
    pub subject: String,
    pub code: Option<i64>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub before_seq: Option<i64>,
    /// Entries about this device: its own, and those whose details name it.
    pub device: String,
    /// Entries about this peer: its own, and those whose details name it.
    pub peer: String,
}

/// A LIKE pattern (escape `!`) matching details that hold `"key":"value"`.
fn details_pattern(key: &str, value: &str) -> String {
    let json = serde_json::json!({ key: value }).to_string();
    let inner = &json[1..json.len() - 1];
    let mut p = String::from("%");
    for c in inner.chars() {
        if matches!(c, '!' | '%' | '_') {
            p.push('!');
        }
        p.push(c);
    }
    p.push('%');
    p
}

impl Filter {
    fn where_clause(&self) -> (String, Vec<FilterArg>) {
        let mut parts = Vec::new();
        let mut args = Vec::new();
        let mut n = 0;
        let mut next = || {
            n += 1;
            format!("${n}")
        };
        if !self.actor.is_empty() {
            parts.push(format!("actor = {}", next()));
            args.push(FilterArg::Text(self.actor.clone()));
        }
        if !self.subject.is_empty() {
            parts.push(format!("subject = {}", next()));
            args.push(FilterArg::Text(self.subject.clone()));
        }
        if let Some(c) = self.code {
            parts.push(format!("code = {}", next()));
            args.push(FilterArg::Int(c));
        }
        if let Some(t) = self.since {
            parts.push(format!("time >= {}", next()));
            args.push(FilterArg::Int(t));
        }
        if let Some(t) = self.until {
            parts.push(format!("time <= {}", next()));
            args.push(FilterArg::Int(t));
        }
        if let Some(s) = self.before_seq {
            parts.push(format!("seq < {}", next()));
            args.push(FilterArg::Int(s));
        }
        for (key, value) in [("devid", &self.device), ("peer", &self.peer)] {
            if !value.is_empty() {
                let (a, b) = (next(), next());
                parts.push(format!("(subject = {a} OR details LIKE {b} ESCAPE '!')"));
                args.push(FilterArg::Text(value.clone()));
                args.push(FilterArg::Text(details_pattern(key, value)));
            }
        }
        let clause = if parts.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", parts.join(" AND "))
        };
        (clause, args)
    }
}

enum FilterArg {
    Text(String),
    Int(i64),
}

fn bind_all<'q>(
    mut q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    args: &'q [FilterArg],
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    for a in args {
        q = match a {
            FilterArg::Text(s) => q.bind(s.as_str()),
            FilterArg::Int(i) => q.bind(*i),
        };
    }
    q
}

/// Newest first, at most `limit`.
pub async fn list(db: &Db, filter: &Filter, limit: i64) -> Result<Vec<Entry>, sqlx::Error> {
    let (clause, args) = filter.where_clause();
    let sql = format!(
        "SELECT seq, time, code, actor, subject, source, details, prev_hash, hash FROM audit_log{clause} ORDER BY seq DESC LIMIT {}",
        limit.clamp(1, 10_000)
    );
    let sql = db.sql(&sql);
    let rows = bind_all(sqlx::query(&sql), &args)
        .fetch_all(db.pool())
        .await?;
    rows.iter().map(entry_from_row).collect()
}

pub async fn count(db: &Db, filter: &Filter) -> Result<i64, sqlx::Error> {
    let (clause, args) = filter.where_clause();
    let sql = format!("SELECT COUNT(*) AS n FROM audit_log{clause}");
    let sql = db.sql(&sql);
    bind_all(sqlx::query(&sql), &args)
        .fetch_one(db.pool())
        .await?
        .try_get("n")
}

/// Oldest first, in pages, for export and verification.
pub async fn scan(
    db: &Db,
    filter: &Filter,
    after_seq: i64,
    limit: i64,
) -> Result<Vec<Entry>, sqlx::Error> {
    let (clause, mut args) = filter.where_clause();
    let n = args.len() + 1;
    let clause = if clause.is_empty() {
        format!(" WHERE seq > ${n}")
    } else {
        format!("{clause} AND seq > ${n}")
    };
    args.push(FilterArg::Int(after_seq));
    let sql = format!(
        "SELECT seq, time, code, actor, subject, source, details, prev_hash, hash FROM audit_log{clause} ORDER BY seq ASC LIMIT {limit}"
    );
    let sql = db.sql(&sql);
    let rows = bind_all(sqlx::query(&sql), &args)
        .fetch_all(db.pool())
        .await?;
    rows.iter().map(entry_from_row).collect()
}

/// The outcome of walking the whole chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    pub checked: i64,
    /// The first entry that does not match, and why.
    pub broken: Option<(i64, String)>,
}

impl Verification {
    pub fn message(&self) -> String {
        match &self.broken {
            None => format!("The chain is intact: {} entries verified.", self.checked),
            Some((seq, why)) => format!("The chain is broken at entry {seq}: {why}."),
        }
    }
}

/// Walks the chain from the first entry and names the first broken one.
pub async fn verify(db: &Db) -> Result<Verification, sqlx::Error> {
    let mut prev_hash = GENESIS.to_owned();
    let mut prev_seq = 0;
    let mut checked = 0;
    loop {
        let page = scan(db, &Filter::default(), prev_seq, 2000).await?;
        if page.is_empty() {
            return Ok(Verification {
                checked,
                broken: None,
            });
        }
        for e in page {
            let broken = |why: &str| Verification {
                checked,
                broken: Some((e.seq, why.to_owned())),
            };
            if e.seq != prev_seq + 1 {
                return Ok(Verification {
                    checked,
                    broken: Some((
                        prev_seq + 1,
                        format!("entry is missing (next present is {})", e.seq),
                    )),
                });
            }
            if e.prev_hash != prev_hash {
                return Ok(broken("its link to the previous entry does not match"));
            }
            let bytes = canonical(
                e.seq, e.time, e.code, &e.actor, &e.subject, &e.source, &e.details,
            );
            if chain_hash(&e.prev_hash, &bytes) != e.hash {
                return Ok(broken("its content does not match its hash"));
            }
            checked += 1;
            prev_seq = e.seq;
            prev_hash = e.hash;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_form_is_a_json_array() {
        let c = canonical(1, 2, 1001, "ana", "ana", "127.0.0.1", "{}");
        assert_eq!(
            std::str::from_utf8(&c).unwrap(),
            r#"[1,2,1001,"ana","ana","127.0.0.1","{}"]"#
        );
        // Changing any field changes the hash.
        let h1 = chain_hash(GENESIS, &c);
        let h2 = chain_hash(
            GENESIS,
            &canonical(1, 2, 1001, "ana", "ana", "127.0.0.2", "{}"),
        );
        assert_ne!(h1, h2);
        assert_eq!(h1.len(), 64);
    }

    #[test]
    fn details_patterns_escape_like_wildcards() {
        assert_eq!(details_pattern("devid", "IMEI:1"), r#"%"devid":"IMEI:1"%"#);
        assert_eq!(details_pattern("peer", "a_b%!"), r#"%"peer":"a!_b!%!!"%"#);
    }
}
