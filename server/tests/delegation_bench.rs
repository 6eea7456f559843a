//! A batch of simulated devices delegated end to end between two servers on
//! this machine (issue #5 benchmark; see benches/DELEGATION.md). Ignored by
//! default; run it in release:
//!
//! ```text
//! DEVICES=1000 cargo test --release -p handover --test delegation_bench -- --ignored --nocapture
//! ```

mod common;

use common::world::*;
use common::Kind;
use handover::store::peers;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Milliseconds of an audit step.
fn at(step: &Value) -> i64 {
    step["time"].as_i64().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark: run in release with --ignored"]
async fn batch_end_to_end() {
    let n: usize = std::env::var("DEVICES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let kind = if std::env::var_os("BENCH_PG").is_some() {
        Kind::Postgres
    } else {
        Kind::Sqlite
    };
    let t_setup = Instant::now();
    let Some(w) = world(
        kind,
        Opts {
            devices: n,
            push: true,
            tune: |s| {
                s.poll = Duration::from_millis(500);
            },
            // The devices' own bookkeeping (a file written after each
            // session) is not the servers' work; with SIM_SAVES=1 it runs
            // on this machine's cores too.
            sim_saves: std::env::var_os("SIM_SAVES").is_some(),
        },
    )
    .await
    else {
        return;
    };
    // DMS-2 accepts DMS-1's partial requests by policy (B.4 auto-accept).
    let mut p = peers::get(&w.dms2.db, DMS1).await.unwrap().unwrap();
    p.auto_accept =
        Some(json!({"name": "bench", "roles": ["delegated"], "types": ["partial"]}).to_string());
    peers::update(&w.dms2.db, &p).await.unwrap();
    eprintln!(
        "setup of {n} devices: {:.1} s",
        t_setup.elapsed().as_secs_f64()
    );

    let mut b = body(&w.devids[0], DMS2, false, false, false);
    b["devices"] = json!(w.devids);
    let (s, v) = w
        .dms1
        .api("ana", "POST", "/api/v1/delegations", Some(b))
        .await;
    assert_eq!(s, 201, "{v}");
    let batch = v["batch_id"].as_i64().unwrap();
    let ids: Vec<i64> = v["delegations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect();
    let t0 = Instant::now();
    let start_ms = handover::store::now_ms();
    // A second person approves the whole batch in one call.
    let (s, v) = w
        .dms1
        .api(
            "ben",
            "POST",
            &format!("/api/v1/batches/{batch}/approve"),
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["approved"].as_array().map(Vec::len), Some(n), "{v}");
    let approvals = t0.elapsed();
    let mut last = Value::Null;
    let t_limit = Duration::from_secs(600);
    while t0.elapsed() < t_limit {
        let (_, v) = w
            .dms1
            .api("vic", "GET", &format!("/api/v1/batches/{batch}"), None)
            .await;
        if v["completed"].as_u64() == Some(n as u64) || v["running"].as_u64() == Some(0) {
            last = v;
            break;
        }
        last = v;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let wall = t0.elapsed();
    let completed = last["completed"].as_u64().unwrap_or(0);
    eprintln!(
        "{completed}/{n} completed in {:.2} s ({:.0} delegations/s); approving took {:.2} s",
        wall.as_secs_f64(),
        completed as f64 / wall.as_secs_f64(),
        approvals.as_secs_f64()
    );
    // Where the time goes: DMS-1's state changes, as offsets from the
    // first approval, per state (median and last).
    let mut reached: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let mut per_phase: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for id in ids.iter().step_by((n / 100).max(1)) {
        let d = w.dms1.delegation(*id).await;
        let mut prev: Option<(String, i64)> = None;
        for s in d["steps"].as_array().unwrap() {
            if s["event"] != "delegation.state_changed" {
                continue;
            }
            let to = s["details"]["to"].as_str().unwrap_or_default().to_owned();
            reached
                .entry(to.clone())
                .or_default()
                .push(at(s) - start_ms);
            if let Some((from, t)) = prev.take() {
                per_phase.entry(from).or_default().push(at(s) - t);
            }
            prev = Some((to, at(s)));
        }
    }
    let stat = |v: &mut Vec<i64>| {
        v.sort();
        (v[v.len() / 2], v[v.len() - 1])
    };
    eprintln!(
        "DMS-1 state         reached at (median / last, ms)   time spent in it (median / max, ms)"
    );
    for (state, mut v) in reached {
        let (med, max) = stat(&mut v);
        let spent = per_phase.get_mut(&state).map(stat);
        eprintln!(
            "{state:<20} {med:>8} / {max:<8}             {}",
            spent.map_or("-".into(), |(a, b)| format!("{a} / {b}"))
        );
    }
    assert_eq!(completed, n as u64, "{last:#}");
    w.stop().await;
}
