//! The audit log is append-only and tampering is detected (issue: foundation).

mod common;

use common::TestDb;
use handover::audit::{self, Event, NewEntry};
use handover::store::{Db, Dialect};
use sqlx::Row;

async fn fill(db: &Db, n: usize) {
    for i in 0..n {
        audit::append(
            db,
            NewEntry::new(Event::SignIn, format!("user{i}"), "x")
                .details(serde_json::json!({ "i": i })),
        )
        .await
        .unwrap();
    }
}

async fn tamper_is_named(t: TestDb) {
    let db = Db::connect(&t.url).await.unwrap();
    fill(&db, 5).await;
    assert_eq!(audit::verify(&db).await.unwrap().broken, None);

    // The product cannot change an entry: the database refuses.
    let refused = sqlx::query("UPDATE audit_log SET actor = 'eve' WHERE seq = 3")
        .execute(db.pool())
        .await;
    assert!(
        refused.is_err(),
        "an UPDATE of the audit log must be refused"
    );
    let refused = sqlx::query("DELETE FROM audit_log WHERE seq = 5")
        .execute(db.pool())
        .await;
    assert!(
        refused.is_err(),
        "a DELETE from the audit log must be refused"
    );

    // Someone with raw access to the database disables that and edits a row.
    match db.dialect() {
        Dialect::Sqlite => {
            sqlx::query("DROP TRIGGER audit_log_no_update")
                .execute(db.pool())
                .await
                .unwrap();
        }
        Dialect::Postgres => {
            sqlx::query("ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update")
                .execute(db.pool())
                .await
                .unwrap();
        }
    }
    sqlx::query("UPDATE audit_log SET actor = 'eve' WHERE seq = 3")
        .execute(db.pool())
        .await
        .unwrap();
    let v = audit::verify(&db).await.unwrap();
    assert_eq!(v.broken.as_ref().map(|b| b.0), Some(3), "{v:?}");
    assert_eq!(v.checked, 2);

    // The CLI names it too and exits 1.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_handover"))
        .args([
            "--data-dir",
            t.dir.path().to_str().unwrap(),
            "--database-url",
            &t.url,
            "audit",
            "verify",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("broken at entry 3"), "{text}");

    // Deleting an entry is named as a gap.
    match db.dialect() {
        Dialect::Sqlite => {
            sqlx::query("DROP TRIGGER audit_log_no_delete")
                .execute(db.pool())
                .await
                .unwrap();
        }
        Dialect::Postgres => {}
    }
    sqlx::query("UPDATE audit_log SET actor = 'user2' WHERE seq = 3")
        .execute(db.pool())
        .await
        .unwrap();
    assert_eq!(
        audit::verify(&db).await.unwrap().broken,
        None,
        "restoring the row restores the chain"
    );
    sqlx::query("DELETE FROM audit_log WHERE seq = 4")
        .execute(db.pool())
        .await
        .unwrap();
    let v = audit::verify(&db).await.unwrap();
    assert_eq!(v.broken.map(|b| b.0), Some(4));
}

async fn concurrent_appends_keep_one_chain(t: TestDb) {
    let db = Db::connect(&t.url).await.unwrap();
    let mut tasks = Vec::new();
    for w in 0..4 {
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..10 {
                audit::append(
                    &db,
                    NewEntry::new(Event::SignOut, format!("w{w}"), format!("{i}")),
                )
                .await
                .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let v = audit::verify(&db).await.unwrap();
    assert_eq!(v.checked, 40);
    assert_eq!(v.broken, None);
}

async fn export_lists_every_entry(t: TestDb) {
    let db = Db::connect(&t.url).await.unwrap();
    fill(&db, 3).await;
    let mut csv = String::new();
    let n = audit::export::export(
        &db,
        &audit::Filter::default(),
        audit::export::Format::Csv,
        |c| {
            csv.push_str(&c);
            Ok(())
        },
    )
    .await
    .unwrap();
    assert_eq!(n, 3);
    assert_eq!(csv.lines().count(), 4);
    let mut jsonl = String::new();
    audit::export::export(
        &db,
        &audit::Filter::default(),
        audit::export::Format::Jsonl,
        |c| {
            jsonl.push_str(&c);
            Ok(())
        },
    )
    .await
    .unwrap();
    let first: serde_json::Value = serde_json::from_str(jsonl.lines().next().unwrap()).unwrap();
    assert_eq!(first["event"], "auth.sign_in");
    assert_eq!(first["details"]["i"], 0);
}

/// Entries appended together commit with their transaction, in order, over
/// several multi-row statements, and chain on to single appends; a rolled
/// back batch leaves no trace.
async fn batches_chain_on_and_roll_back(t: TestDb) {
    let db = Db::connect(&t.url).await.unwrap();
    fill(&db, 2).await;
    let batch = |n: usize, tag: &str| -> Vec<NewEntry> {
        (0..n)
            .map(|i| {
                NewEntry::new(Event::SignOut, format!("{tag}{i}"), "batch")
                    .details(serde_json::json!({ "i": i }))
            })
            .collect()
    };

    // 150 entries: three statements of at most 64 rows.
    let mut tx = db.begin_write().await.unwrap();
    let seqs = audit::append_all_in(&db, &mut *tx, &batch(150, "a"))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(seqs, (3..153).collect::<Vec<i64>>());

    // Rolled back: neither the entries nor a gap remain.
    let mut tx = db.begin_write().await.unwrap();
    audit::append_all_in(&db, &mut *tx, &batch(70, "gone"))
        .await
        .unwrap();
    drop(tx);
    fill(&db, 1).await;
    let mut tx = db.begin_write().await.unwrap();
    assert!(audit::append_all_in(&db, &mut *tx, &[])
        .await
        .unwrap()
        .is_empty());
    let seqs = audit::append_all_in(&db, &mut *tx, &batch(1, "b"))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(seqs, vec![154]);

    let v = audit::verify(&db).await.unwrap();
    assert_eq!(v.broken, None);
    assert_eq!(v.checked, 154);
    let entries = audit::scan(&db, &audit::Filter::default(), 0, 1000)
        .await
        .unwrap();
    let actors: Vec<&str> = entries.iter().map(|e| e.actor.as_str()).collect();
    assert_eq!(actors[2], "a0");
    assert_eq!(actors[151], "a149");
    assert_eq!(actors[153], "b0");
    assert!(!actors.iter().any(|a| a.starts_with("gone")));
    assert!(entries
        .windows(2)
        .all(|w| w[1].prev_hash == w[0].hash && w[1].seq == w[0].seq + 1));
}

/// Migration 0010 drops the unique index on `prev_hash`: a log written
/// before keeps every entry and its chain, stays append-only, and grows on;
/// an entry after a predecessor that already has one still collides (on
/// `seq`, the primary key).
async fn log_kept_by_the_migration(t: TestDb) {
    let pool = common::migrated_before(&t, "0010").await;
    // A chain of three entries, as the product wrote them then.
    let mut prev = audit::GENESIS.to_owned();
    for seq in 1..=3_i64 {
        let details = format!("{{\"i\":{seq}}}");
        let hash = audit::chain_hash(
            &prev,
            &audit::canonical(seq, 1000 + seq, 1, "admin", "x", "cli", &details),
        );
        sqlx::query(&format!(
            "INSERT INTO audit_log (seq, time, code, actor, subject, source, details, prev_hash, hash) \
             VALUES ({seq}, {}, 1, 'admin', 'x', 'cli', '{details}', '{prev}', '{hash}')",
            1000 + seq
        ))
        .execute(&pool)
        .await
        .unwrap();
        prev = hash;
    }
    pool.close().await;

    let db = Db::connect(&t.url).await.unwrap();
    let v = audit::verify(&db).await.unwrap();
    assert_eq!((v.checked, v.broken), (3, None));
    let indexed: i64 = match db.dialect() {
        Dialect::Sqlite => sqlx::query(
            "SELECT COUNT(*) AS n FROM pragma_index_list('audit_log') AS l \
             JOIN pragma_index_info(l.name) AS i WHERE i.name = 'prev_hash'",
        ),
        Dialect::Postgres => sqlx::query(
            "SELECT COUNT(*) AS n FROM pg_indexes \
             WHERE tablename = 'audit_log' AND indexdef LIKE '%prev_hash%'",
        ),
    }
    .fetch_one(db.pool())
    .await
    .unwrap()
    .try_get("n")
    .unwrap();
    assert_eq!(indexed, 0, "prev_hash is not indexed any more");
    for refused in [
        "UPDATE audit_log SET actor = 'eve' WHERE seq = 2",
        "DELETE FROM audit_log WHERE seq = 2",
    ] {
        let e = sqlx::query(refused).execute(db.pool()).await.unwrap_err();
        assert!(e.to_string().contains("append-only"), "{refused}: {e}");
    }
    fill(&db, 2).await;
    let v = audit::verify(&db).await.unwrap();
    assert_eq!((v.checked, v.broken), (5, None));
    // A second entry after entry 4, as a writer racing the one that wrote
    // entry 5 would make it.
    let fourth: String = sqlx::query("SELECT hash FROM audit_log WHERE seq = 4")
        .fetch_one(db.pool())
        .await
        .unwrap()
        .try_get("hash")
        .unwrap();
    let e = sqlx::query(&format!(
        "INSERT INTO audit_log (seq, time, code, actor, subject, source, details, prev_hash, hash) \
         VALUES (5, 1, 1, 'eve', 'x', 'cli', '{{}}', '{fourth}', 'h')"
    ))
    .execute(db.pool())
    .await
    .unwrap_err();
    assert!(handover::store::is_unique_violation(&e), "{e}");
}

on_both_databases! {
    migration => log_kept_by_the_migration;
    batches => batches_chain_on_and_roll_back;
    tamper => tamper_is_named;
    concurrent => concurrent_appends_keep_one_chain;
    export => export_lists_every_entry;
}
