//! The hot write path of the store: a write transaction on the shared
//! writer, and writes deferred to its end (issue: DM Server runtime, its
//! load goal).

mod common;

use common::TestDb;
use handover::store::{Db, Dialect, Writes};
use sqlx::Row;

async fn with_table(t: &TestDb) -> Db {
    let db = Db::connect(&t.url).await.unwrap();
    sqlx::query("CREATE TABLE bench_t (a BIGINT NOT NULL, b TEXT, c BIGINT)")
        .execute(db.pool())
        .await
        .unwrap();
    db
}

async fn rows(db: &Db) -> Vec<(i64, Option<String>, Option<i64>)> {
    sqlx::query("SELECT a, b, c FROM bench_t ORDER BY a, c")
        .fetch_all(db.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get("a"), r.get("b"), r.get("c")))
        .collect()
}

/// Statements sent together each get their own values, whatever the order
/// and repetition of their placeholders.
async fn deferred_writes(t: TestDb) {
    let db = with_table(&t).await;
    let mut w = Writes::default();
    w.push(
        "INSERT INTO bench_t (a, b, c) VALUES ($1, $2, $1)",
        vec![1.into(), "one".into()],
    );
    w.push(
        "INSERT INTO bench_t (c, b, a) VALUES ($3, $1, $2)",
        vec![Some("two".to_owned()).into(), 2.into(), None::<i64>.into()],
    );
    w.push(
        "UPDATE bench_t SET b = $2 WHERE a = $1 AND c = $1",
        vec![1.into(), "first".into()],
    );
    assert!(!w.is_empty());
    let tx = db.begin_write().await.unwrap();
    tx.commit_with(&db, &mut w).await.unwrap();
    assert!(w.is_empty(), "sent writes are not kept");
    assert_eq!(
        rows(&db).await,
        vec![
            (1, Some("first".into()), Some(1)),
            (2, Some("two".into()), None)
        ]
    );
}

/// A failing statement among deferred writes commits none of them, nor
/// anything else of the transaction; the writer serves the next one.
async fn failed_batch_leaves_nothing(t: TestDb) {
    let db = with_table(&t).await;
    let mut tx = db.begin_write().await.unwrap();
    sqlx::query(&db.sql("INSERT INTO bench_t (a, b) VALUES ($1, 'direct')"))
        .bind(7_i64)
        .execute(&mut *tx)
        .await
        .unwrap();
    let mut w = Writes::default();
    w.push(
        "INSERT INTO bench_t (a, b) VALUES ($1, 'deferred')",
        vec![8.into()],
    );
    // a is NOT NULL.
    w.push(
        "INSERT INTO bench_t (a) VALUES ($1)",
        vec![None::<i64>.into()],
    );
    assert!(tx.commit_with(&db, &mut w).await.is_err());
    let mut tx = db.begin_write().await.unwrap();
    sqlx::query(&db.sql("INSERT INTO bench_t (a, b) VALUES ($1, 'after')"))
        .bind(9_i64)
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(rows(&db).await, vec![(9, Some("after".into()), None)]);
}

/// A write transaction dropped without a commit is rolled back, and the
/// writer is free for the next transaction and for single statements.
async fn dropped_transaction(t: TestDb) {
    let db = with_table(&t).await;
    {
        let mut tx = db.begin_write().await.unwrap();
        sqlx::query(&db.sql("INSERT INTO bench_t (a) VALUES ($1)"))
            .bind(1_i64)
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    let tx = db.begin_write().await.unwrap();
    let mut w = Writes::default();
    w.push("INSERT INTO bench_t (a) VALUES ($1)", vec![2.into()]);
    tx.commit_with(&db, &mut w).await.unwrap();
    sqlx::query(&db.sql("INSERT INTO bench_t (a) VALUES ($1)"))
        .bind(3_i64)
        .execute(&mut *db.write_conn().await.unwrap())
        .await
        .unwrap();
    let a: Vec<i64> = rows(&db).await.into_iter().map(|r| r.0).collect();
    assert_eq!(a, vec![2, 3]);
}

on_both_databases! {
    deferred => deferred_writes;
    failed_batch => failed_batch_leaves_nothing;
    dropped => dropped_transaction;
}

/// SQLite: write transactions of concurrent tasks run one after the other
/// on the shared writer, so a read-modify-write in them loses no update.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_take_turns() {
    let t = common::fresh(common::Kind::Sqlite).await.unwrap();
    let db = with_table(&t).await;
    assert_eq!(db.dialect(), Dialect::Sqlite);
    sqlx::query("INSERT INTO bench_t (a, c) VALUES (1, 0)")
        .execute(db.pool())
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..40 {
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            let mut tx = db.begin_write().await.unwrap();
            let n: i64 = sqlx::query("SELECT c FROM bench_t WHERE a = 1")
                .fetch_one(&mut *tx)
                .await
                .unwrap()
                .get("c");
            tokio::task::yield_now().await;
            let mut w = Writes::default();
            w.push(
                "UPDATE bench_t SET c = $1 WHERE a = 1",
                vec![(n + 1).into()],
            );
            tx.commit_with(&db, &mut w).await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(rows(&db).await, vec![(1, None, Some(40))]);
}

/// What one statement costs on the shared writer when nothing else runs:
/// the hand-off to the connection's thread and back, which bounds how long
/// a transaction holds SQLite's write lock (server/benches/LOAD.md).
/// `cargo test --release -p handover --test write_path -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: prints figures"]
async fn writer_round_trip() {
    let t = common::fresh(common::Kind::Sqlite).await.unwrap();
    let db = with_table(&t).await;
    let n = 20_000;
    let t0 = std::time::Instant::now();
    let mut c = db.write_conn().await.unwrap();
    for _ in 0..n {
        sqlx::query("SELECT 1").fetch_one(&mut *c).await.unwrap();
    }
    drop(c);
    eprintln!("SELECT 1 on the writer: {:?} each", t0.elapsed() / n);
    let n = 2_000;
    let t0 = std::time::Instant::now();
    for i in 0..n {
        let tx = db.begin_write().await.unwrap();
        let mut w = Writes::default();
        w.push(
            "INSERT INTO bench_t (a, b) VALUES ($1, 'x')",
            vec![i64::from(i).into()],
        );
        tx.commit_with(&db, &mut w).await.unwrap();
    }
    eprintln!(
        "BEGIN IMMEDIATE, then an INSERT with the COMMIT: {:?} each",
        t0.elapsed() / n
    );
}
