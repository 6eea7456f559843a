//! How fast the Devices page answers at 100 000 devices on SQLite: p50 and
//! p95 of one page plus its count (what `devices/list` runs), for the
//! searches people make. Results go to `benches/INVENTORY.md`.
//!
//! `cargo bench -p handover --bench inventory` (add `--profile dev` for a
//! quick, pessimistic run: SQLite itself is then unoptimised).

use handover::store::{inventory, Db};
use handover_app::api::devices::{DeviceQuery, DeviceSort};
use std::time::{Duration, Instant};

const DEVICES: i64 = 100_000;
const RUNS: usize = 200;

fn main() {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(run());
}

async fn fill(db: &Db) {
    // Eight manufacturers, five models each, three authorities, three
    // states; one device in ten never seen. DevIds are 15-digit IMEIs in
    // scattered order.
    let sql = db.sql(
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < $1 - 1) \
         INSERT INTO devices (devid, man, model, authority, state, auth_type, client_name, \
           client_secret_enc, client_nonce, server_name, server_secret_enc, server_nonce, \
           created_at, first_seen, last_seen) \
         SELECT printf('IMEI:35%013d', (i * 2654435761) % 10000000000000), \
           'Vendor' || (i % 8), 'Model' || (i % 8) || '-' || ((i / 8) % 5), \
           CASE WHEN i % 20 = 0 THEN 'carrier.example' WHEN i % 50 = 1 THEN 'mdm.example' ELSE 'corp.example' END, \
           CASE WHEN i % 10 = 0 THEN 'provisioned' WHEN i % 20 = 5 THEN 'handed-over' ELSE 'active' END, \
           'md5', 'c', 'e', 'n', 's', 'e', 'n', 0, \
           CASE WHEN i % 10 = 0 THEN NULL ELSE 1795780800000 - (i * 37 % 86400000) END, \
           CASE WHEN i % 10 = 0 THEN NULL ELSE 1795780800000 - (i * 37 % 86400000) END \
         FROM n",
    );
    sqlx::query(&sql)
        .bind(DEVICES)
        .execute(db.pool())
        .await
        .expect("fill");
    sqlx::query("ANALYZE")
        .execute(db.pool())
        .await
        .expect("analyze");
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1000.0
}

async fn run() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = Db::connect(&Db::sqlite_url(dir.path()))
        .await
        .expect("database");
    let t = Instant::now();
    fill(&db).await;
    eprintln!("filled {DEVICES} devices in {:?}", t.elapsed());

    let q = |f: &dyn Fn(&mut DeviceQuery)| {
        let mut q = DeviceQuery::default();
        f(&mut q);
        q
    };
    let cases: Vec<(&str, DeviceQuery)> = vec![
        ("first page, by DevId", q(&|_| {})),
        ("DevId prefix `IMEI:3512`", q(&|q| q.q = "IMEI:3512".into())),
        ("DevId substring `4242`", q(&|q| q.q = "4242".into())),
        ("DevId substring, no match", q(&|q| q.q = "zzzz".into())),
        (
            "manufacturer, by last seen desc",
            q(&|q| {
                q.man = "Vendor3".into();
                q.sort = DeviceSort::LastSeen;
                q.desc = true;
            }),
        ),
        (
            "man + model + state, by DevId",
            q(&|q| {
                q.man = "Vendor3".into();
                q.model = "Model3-2".into();
                q.state = "active".into();
            }),
        ),
        (
            "authority, by model",
            q(&|q| {
                q.authority = "carrier.example".into();
                q.sort = DeviceSort::Model;
            }),
        ),
        (
            "substring + state, by last seen",
            q(&|q| {
                q.q = "77".into();
                q.state = "active".into();
                q.sort = DeviceSort::LastSeen;
            }),
        ),
        ("deep page 1500, by DevId", q(&|q| q.page = 1500)),
        (
            "deep page 1500, by last seen desc",
            q(&|q| {
                q.page = 1500;
                q.sort = DeviceSort::LastSeen;
                q.desc = true;
            }),
        ),
        (
            "last page, by manufacturer",
            q(&|q| {
                q.page = 2000;
                q.sort = DeviceSort::Man;
            }),
        ),
    ];

    println!("| search | rows | count | p50 ms | p95 ms |");
    println!("|---|---:|---:|---:|---:|");
    for (name, query) in &cases {
        let mut times = Vec::with_capacity(RUNS);
        let mut shown = (0, 0);
        for _ in 0..RUNS {
            let t = Instant::now();
            let (rows, n) =
                tokio::try_join!(inventory::search(&db, query), inventory::count(&db, query))
                    .expect("search");
            times.push(t.elapsed());
            shown = (rows.len(), n);
        }
        times.sort();
        println!(
            "| {name} | {} | {} | {:.2} | {:.2} |",
            shown.0,
            shown.1,
            pct(&times, 0.50),
            pct(&times, 0.95)
        );
    }
    let mut times = Vec::with_capacity(20);
    for _ in 0..20 {
        let t = Instant::now();
        inventory::facets(&db).await.expect("facets");
        times.push(t.elapsed());
    }
    times.sort();
    println!(
        "| filter values (all four columns) | – | – | {:.2} | {:.2} |",
        pct(&times, 0.50),
        pct(&times, 0.95)
    );
}
