//! The hot write path of the store: a write transaction on the shared
//! writer, and writes deferred to its end (issue: DM Server runtime, its
//! load goal).

mod common;

use common::TestDb;
use handover::store::{devices, Db, Dialect, Writes};
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

/// What the writer reads back keeps its types (integers, text, NULL, a
/// value bound twice), and a constraint it breaks is reported as such.
async fn values_and_errors(t: TestDb) {
    let db = with_table(&t).await;
    sqlx::query("CREATE UNIQUE INDEX bench_t_a ON bench_t (a)")
        .execute(db.pool())
        .await
        .unwrap();
    let mut tx = db.begin_write().await.unwrap();
    let row =
        sqlx::query(&db.sql("INSERT INTO bench_t (a, b, c) VALUES ($1, $2, $1) RETURNING a, b, c"))
            .bind(-5_i64)
            .bind("é, 'quoted'")
            .fetch_one(&mut *tx)
            .await
            .unwrap();
    assert_eq!(row.get::<i64, _>("a"), -5);
    assert_eq!(row.get::<String, _>("b"), "é, 'quoted'");
    assert_eq!(row.get::<Option<i64>, _>("c"), Some(-5));
    let row = sqlx::query("SELECT NULL AS n, 2 AS two")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(row.get::<Option<String>, _>("n"), None);
    assert_eq!(row.get::<i64, _>("two"), 2);
    assert!(
        row.try_get::<String, _>("two").is_err(),
        "an integer is not text"
    );
    assert!(row.try_get::<i64, _>("missing").is_err());
    tx.commit().await.unwrap();

    let mut tx = db.begin_write().await.unwrap();
    let e = sqlx::query(&db.sql("INSERT INTO bench_t (a) VALUES ($1)"))
        .bind(-5_i64)
        .execute(&mut *tx)
        .await
        .unwrap_err();
    assert!(handover::store::is_unique_violation(&e), "{e}");
    drop(tx);
    let e = sqlx::query("SELECT x FROM nowhere")
        .execute(&mut *db.write_conn().await.unwrap())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("nowhere"), "{e}");
    assert_eq!(
        rows(&db).await,
        vec![(-5, Some("é, 'quoted'".into()), Some(-5))]
    );
}

/// Migration 0008 moves each device's DevDetail and cached tree out of its
/// row: a database made before keeps them all; a device never read has
/// none and reads as empty; storing them again inserts, then updates.
async fn inventory_kept_by_the_migration(t: TestDb) {
    // The migrations before 0008, as a database made then had them.
    let pool = common::migrated_before(&t, "0008").await;
    let tree = r#"[{"uri":"./Vendor/Corp/Apps","acl":"Get=corp.example"}]"#;
    let detail = r#"{"DevTyp":"phone"}"#;
    for (devid, detail, tree) in [("IMEI:read", detail, tree), ("IMEI:never", "{}", "[]")] {
        sqlx::query(&format!(
            "INSERT INTO devices (devid, devdetail, tree, auth_type, client_name, \
             client_secret_enc, client_nonce, server_name, server_secret_enc, server_nonce, \
             created_at) VALUES ('{devid}', '{detail}', '{tree}', 'md5', 'c', 'enc', 'bm9uY2U=', \
             'corp.example', 'enc', 'bm9uY2U=', 1)"
        ))
        .execute(&pool)
        .await
        .unwrap();
    }
    pool.close().await;

    let db = Db::connect(&t.url).await.unwrap();
    let read = devices::get(&db, "IMEI:read").await.unwrap().unwrap();
    assert_eq!(
        (read.devdetail.as_str(), read.tree.as_str()),
        (detail, tree)
    );
    let never = devices::get(&db, "IMEI:never").await.unwrap().unwrap();
    assert_eq!(
        (never.devdetail.as_str(), never.tree.as_str()),
        ("{}", "[]")
    );
    let rows: i64 = sqlx::query("SELECT COUNT(*) AS n FROM device_inventory")
        .fetch_one(db.pool())
        .await
        .unwrap()
        .get("n");
    assert_eq!(rows, 1, "only the device read has an inventory");
    let shown = handover::store::inventory::device(&db, "IMEI:read")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(shown.tree, tree);

    for (detail, tree) in [("{\"A\":\"1\"}", "[1]"), ("{\"A\":\"2\"}", "[2]")] {
        let mut w = Writes::default();
        devices::set_inventory(&mut w, "IMEI:never", detail, tree);
        let tx = db.begin_write().await.unwrap();
        tx.commit_with(&db, &mut w).await.unwrap();
        let d = devices::get(&db, "IMEI:never").await.unwrap().unwrap();
        assert_eq!((d.devdetail.as_str(), d.tree.as_str()), (detail, tree));
        assert_eq!(
            devices::inventory_in(&db, &mut *db.begin_write().await.unwrap(), "IMEI:never")
                .await
                .unwrap(),
            Some((detail.to_owned(), tree.to_owned()))
        );
    }
    assert_eq!(
        devices::inventory_in(&db, &mut *db.begin_write().await.unwrap(), "IMEI:unknown")
            .await
            .unwrap(),
        None
    );
}

on_both_databases! {
    values => values_and_errors;
    inventory => inventory_kept_by_the_migration;
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

/// SQLite: a transaction that commits while others wait for the writer
/// shares their `COMMIT` (store::writer): it is not reported committed, nor
/// seen by readers, before that; one of them that fails or is dropped
/// leaves the others' work alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit() {
    let t = common::fresh(common::Kind::Sqlite).await.unwrap();
    let db = with_table(&t).await;
    sqlx::query("CREATE UNIQUE INDEX bench_t_a ON bench_t (a)")
        .execute(db.pool())
        .await
        .unwrap();
    let insert = {
        let db = db.clone();
        move |a: i64| {
            let db = db.clone();
            async move {
                let mut tx = db.begin_write().await.unwrap();
                let done = sqlx::query(&db.sql("INSERT INTO bench_t (a) VALUES ($1)"))
                    .bind(a)
                    .execute(&mut *tx)
                    .await;
                (tx, done)
            }
        }
    };
    let seen = |db: Db| async move {
        let rows = sqlx::query("SELECT a FROM bench_t ORDER BY a")
            .fetch_all(db.reader())
            .await
            .unwrap();
        rows.iter()
            .map(|r| r.get::<i64, _>("a"))
            .collect::<Vec<_>>()
    };
    // A transaction that inserts `a`, then holds the writer until told to
    // commit.
    let held = |a: i64| {
        let insert = insert.clone();
        let (go, wait) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let (tx, done) = insert(a).await;
            done.unwrap();
            wait.await.unwrap();
            tx.commit().await
        });
        (go, task)
    };
    // A transaction inserting `a` commits while one inserting `a + 1` waits
    // for the writer, which it then holds until told.
    let group_of_two = |a: i64| {
        let insert = insert.clone();
        async move {
            let (first, done) = insert(a).await;
            done.unwrap();
            let (go, second) = held(a + 1);
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            let first = tokio::spawn(first.commit());
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            (first, go, second)
        }
    };
    let (first, go, second) = group_of_two(1).await;
    assert!(
        !first.is_finished(),
        "the first waits for the group's COMMIT"
    );
    assert_eq!(seen(db.clone()).await, Vec::<i64>::new());
    // Meanwhile: one that breaks the unique index, and one dropped.
    let broken = tokio::spawn({
        let insert = insert.clone();
        async move {
            let (tx, done) = insert(1).await;
            assert!(done.is_err(), "a = 1 is taken inside the group");
            drop(tx);
        }
    });
    let dropped = tokio::spawn({
        let insert = insert.clone();
        async move {
            let (tx, done) = insert(3).await;
            done.unwrap();
            drop(tx);
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    go.send(()).unwrap();
    second.await.unwrap().unwrap();
    broken.await.unwrap();
    dropped.await.unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(5), first)
        .await
        .expect("the group commits once nobody waits")
        .unwrap()
        .unwrap();
    assert_eq!(seen(db.clone()).await, vec![1, 2]);

    // A task cancelled while it waits for the writer, with a group open,
    // leaves nobody waiting for ever.
    let (committed, go, next) = group_of_two(10).await;
    let cancelled = tokio::spawn({
        let insert = insert.clone();
        async move {
            let _ = insert(12).await;
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    cancelled.abort();
    assert!(cancelled.await.unwrap_err().is_cancelled());
    go.send(()).unwrap();
    next.await.unwrap().unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(5), committed)
        .await
        .expect("the group commits without a next transaction")
        .unwrap()
        .unwrap();
    assert_eq!(seen(db.clone()).await, vec![1, 2, 10, 11]);
}

/// SQLite: while another connection holds the write lock, the writer waits
/// for it without holding up the thread, even on a one-thread runtime where
/// that connection's commit needs the same thread.
#[tokio::test(flavor = "current_thread")]
async fn writer_waits_for_another_connection() {
    let t = common::fresh(common::Kind::Sqlite).await.unwrap();
    let db = with_table(&t).await;
    let mut other = db.pool().acquire().await.unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut *other)
        .await
        .unwrap();
    sqlx::query("INSERT INTO bench_t (a) VALUES (1)")
        .execute(&mut *other)
        .await
        .unwrap();
    let release = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        sqlx::query("COMMIT").execute(&mut *other).await.unwrap();
    });
    let t0 = std::time::Instant::now();
    let mut tx = db.begin_write().await.unwrap();
    assert!(t0.elapsed() >= std::time::Duration::from_millis(250));
    let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM bench_t")
        .fetch_one(&mut *tx)
        .await
        .unwrap()
        .get("n");
    assert_eq!(n, 1, "the other connection's row is committed first");
    sqlx::query("INSERT INTO bench_t (a) VALUES (2)")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    release.await.unwrap();
    let a: Vec<i64> = rows(&db).await.into_iter().map(|r| r.0).collect();
    assert_eq!(a, vec![1, 2]);
}

/// SQLite: the readers of the hot paths see what is committed, not what an
/// open write transaction has done, and never write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_see_commits_only() {
    let t = common::fresh(common::Kind::Sqlite).await.unwrap();
    let db = with_table(&t).await;
    let count = |db: Db| async move {
        sqlx::query("SELECT COUNT(*) AS n FROM bench_t")
            .fetch_one(db.reader())
            .await
            .unwrap()
            .get::<i64, _>("n")
    };
    let mut tx = db.begin_write().await.unwrap();
    sqlx::query("INSERT INTO bench_t (a) VALUES (1)")
        .execute(&mut *tx)
        .await
        .unwrap();
    assert_eq!(count(db.clone()).await, 0);
    tx.commit().await.unwrap();
    assert_eq!(count(db.clone()).await, 1);
    let e = sqlx::query("INSERT INTO bench_t (a) VALUES (2)")
        .execute(db.reader())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("readonly"), "{e}");
    let many: Vec<_> = (0..20).map(|_| tokio::spawn(count(db.clone()))).collect();
    for n in many {
        assert_eq!(n.await.unwrap(), 1);
    }
}

/// What one statement costs on the shared writer when nothing else runs,
/// which bounds how long a transaction holds SQLite's write lock
/// (server/benches/LOAD.md).
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
        "BEGIN IMMEDIATE, an INSERT and COMMIT: {:?} each",
        t0.elapsed() / n
    );
}
