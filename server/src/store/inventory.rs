//! Reading the device inventory for the portal: search, count, facets, one
//! device with its sessions and jobs. (Writes live in `devices` and `jobs`.)
//!
//! Staying fast at 100 000 devices (measured in `benches/INVENTORY.md`):
//! - every sort has an index ending in `devid`, and each filter column has
//!   one in DevId and one in last-seen order (migration 0003), so a page is an
//!   index walk that stops after its rows;
//! - a page is chosen on ids alone (`OFFSET` inside a subquery the index
//!   covers) and only its 50 rows are read from the table;
//! - the DevId search is a case-insensitive substring match on the index
//!   column, which also finds prefixes;
//! - counting stops at [`COUNT_CAP`] + 1 rows, and a first page with room to
//!   spare is its own count (a rare match costs one scan, not two).

use super::{opt_i64, Db, Dialect};
use handover_app::api::devices::{
    DeviceFacets, DeviceQuery, DeviceRow, DeviceSort, COUNT_CAP, PAGE_SIZE,
};
use sqlx::any::AnyRow;
use sqlx::Row;

/// The WHERE clause of a search, and its text parameters in order.
struct Where {
    sql: String,
    binds: Vec<String>,
}

fn like_pattern(q: &str) -> String {
    let mut p = String::from("%");
    for c in q.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

fn where_clause(db: &Db, query: &DeviceQuery) -> Where {
    let mut terms = Vec::new();
    let mut binds = Vec::new();
    if !query.q.is_empty() {
        binds.push(like_pattern(&query.q));
        // SQLite's LIKE ignores ASCII case; PostgreSQL needs ILIKE for the same.
        let op = match db.dialect() {
            Dialect::Sqlite => "LIKE",
            Dialect::Postgres => "ILIKE",
        };
        terms.push(format!("devid {op} ${} ESCAPE '\\'", binds.len()));
    }
    for (col, v) in [
        ("man", &query.man),
        ("model", &query.model),
        ("authority", &query.authority),
        ("state", &query.state),
    ] {
        if !v.is_empty() {
            binds.push(v.clone());
            terms.push(format!("{col} = ${}", binds.len()));
        }
    }
    let sql = if terms.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", terms.join(" AND "))
    };
    Where { sql, binds }
}

/// `ORDER BY` for a sort. Never-seen devices sort as the oldest on both
/// databases (SQLite's order; PostgreSQL is told, and its index agrees).
fn order_by(db: &Db, sort: DeviceSort, desc: bool, alias: &str) -> String {
    let dir = if desc { "DESC" } else { "ASC" };
    let col = match sort {
        DeviceSort::Devid => return format!("{alias}devid {dir}"),
        DeviceSort::Man => format!("{alias}man {dir}"),
        DeviceSort::Model => format!("{alias}model {dir}"),
        DeviceSort::LastSeen => {
            let nulls = match (db.dialect(), desc) {
                (Dialect::Sqlite, _) => "",
                (Dialect::Postgres, false) => " NULLS FIRST",
                (Dialect::Postgres, true) => " NULLS LAST",
            };
            format!("{alias}last_seen {dir}{nulls}")
        }
    };
    format!("{col}, {alias}devid {dir}")
}

fn row(r: &AnyRow) -> Result<DeviceRow, sqlx::Error> {
    Ok(DeviceRow {
        devid: r.try_get("devid")?,
        man: r.try_get("man")?,
        model: r.try_get("model")?,
        authority: r.try_get("authority")?,
        state: r.try_get("state")?,
        last_seen: opt_i64(r, "last_seen")?,
    })
}

/// One page ([`PAGE_SIZE`] rows) of the devices matching `query`, in its order.
pub async fn search(db: &Db, query: &DeviceQuery) -> Result<Vec<DeviceRow>, sqlx::Error> {
    let w = where_clause(db, query);
    let offset = (query.page.max(1) - 1).saturating_mul(PAGE_SIZE);
    let n = w.binds.len();
    let sql = format!(
        "SELECT d.devid, d.man, d.model, d.authority, d.state, d.last_seen FROM devices d \
         JOIN (SELECT id FROM devices {where_} ORDER BY {inner} LIMIT ${} OFFSET ${}) p ON p.id = d.id \
         ORDER BY {outer}",
        n + 1,
        n + 2,
        where_ = w.sql,
        inner = order_by(db, query.sort, query.desc, ""),
        outer = order_by(db, query.sort, query.desc, "d."),
    );
    let sql = db.sql(&sql);
    let mut q = sqlx::query(&sql);
    for b in &w.binds {
        q = q.bind(b.as_str());
    }
    let rows = q.bind(PAGE_SIZE).bind(offset).fetch_all(db.pool()).await?;
    rows.iter().map(row).collect()
}

/// The DevIds of up to `limit` devices matching `query`, in DevId order
/// (a selection of "all matching", resolved when acted on).
pub async fn matching_devids(
    db: &Db,
    query: &DeviceQuery,
    limit: i64,
) -> Result<Vec<String>, sqlx::Error> {
    let w = where_clause(db, query);
    let sql = format!(
        "SELECT devid FROM devices {} ORDER BY devid LIMIT ${}",
        w.sql,
        w.binds.len() + 1
    );
    let sql = db.sql(&sql);
    let mut q = sqlx::query(&sql);
    for b in &w.binds {
        q = q.bind(b.as_str());
    }
    let rows = q.bind(limit).fetch_all(db.pool()).await?;
    rows.iter().map(|r| r.try_get("devid")).collect()
}

/// One page of `query` and how many devices match it (up to [`COUNT_CAP`] + 1).
pub async fn page(db: &Db, query: &DeviceQuery) -> Result<(Vec<DeviceRow>, i64), sqlx::Error> {
    let rows = search(db, query).await?;
    let n = rows.len() as i64;
    let total = if query.page <= 1 && n < PAGE_SIZE {
        n
    } else {
        count(db, query).await?
    };
    Ok((rows, total))
}

/// How many devices match `query`, counting no further than [`COUNT_CAP`] + 1.
pub async fn count(db: &Db, query: &DeviceQuery) -> Result<i64, sqlx::Error> {
    let w = where_clause(db, query);
    let sql = format!(
        "SELECT COUNT(*) AS n FROM (SELECT 1 AS one FROM devices {} LIMIT ${}) c",
        w.sql,
        w.binds.len() + 1
    );
    let sql = db.sql(&sql);
    let mut q = sqlx::query(&sql);
    for b in &w.binds {
        q = q.bind(b.as_str());
    }
    q.bind(COUNT_CAP + 1)
        .fetch_one(db.pool())
        .await?
        .try_get::<i64, _>("n")
}

/// The distinct values of each filter column (at most 500 each).
pub async fn facets(db: &Db) -> Result<DeviceFacets, sqlx::Error> {
    let mut out = DeviceFacets::default();
    for (col, into) in [
        ("man", &mut out.man),
        ("model", &mut out.model),
        ("authority", &mut out.authority),
        ("state", &mut out.state),
    ] {
        let sql = format!(
            "SELECT {col} AS v FROM devices WHERE {col} <> '' GROUP BY {col} ORDER BY {col} LIMIT 500"
        );
        let rows = sqlx::query(&sql).fetch_all(db.pool()).await?;
        *into = rows
            .iter()
            .map(|r| r.try_get::<String, _>("v"))
            .collect::<Result<_, _>>()?;
    }
    Ok(out)
}

/// A device as the device page needs it; credentials are not read.
#[derive(Debug, Clone)]
pub struct Device {
    pub devid: String,
    pub man: String,
    pub model: String,
    pub dmv: String,
    pub lang: String,
    /// JSON object.
    pub devdetail: String,
    pub auth_type: String,
    pub push_address: String,
    pub authority: String,
    pub state: String,
    /// JSON array of nodes.
    pub tree: String,
    pub created_at: i64,
    pub first_seen: Option<i64>,
    pub last_seen: Option<i64>,
}

pub async fn device(db: &Db, devid: &str) -> Result<Option<Device>, sqlx::Error> {
    use super::devices::{INVENTORY_COLUMNS, WITH_INVENTORY};
    let r = sqlx::query(&db.sql(&format!(
        "SELECT devid, man, model, dmv, lang, auth_type, push_address, authority, state, \
         created_at, first_seen, last_seen, {INVENTORY_COLUMNS} FROM {WITH_INVENTORY} \
         WHERE devid = $1",
    )))
    .bind(devid)
    .fetch_optional(db.pool())
    .await?;
    let Some(r) = r else { return Ok(None) };
    Ok(Some(Device {
        devid: r.try_get("devid")?,
        man: r.try_get("man")?,
        model: r.try_get("model")?,
        dmv: r.try_get("dmv")?,
        lang: r.try_get("lang")?,
        devdetail: r.try_get("devdetail")?,
        auth_type: r.try_get("auth_type")?,
        push_address: r.try_get("push_address")?,
        authority: r.try_get("authority")?,
        state: r.try_get("state")?,
        tree: r.try_get("tree")?,
        created_at: r.try_get("created_at")?,
        first_seen: opt_i64(&r, "first_seen")?,
        last_seen: opt_i64(&r, "last_seen")?,
    }))
}

/// A DM command of the device's queue, as `jobs` keeps it.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: i64,
    pub command: String,
    pub state: String,
    pub status: Option<i64>,
    pub error: String,
    pub requested_by: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// The device's latest jobs, newest first.
pub async fn jobs(db: &Db, devid: &str, limit: i64) -> Result<Vec<Job>, sqlx::Error> {
    let rows = sqlx::query(&db.sql(
        "SELECT id, command, state, status, error, requested_by, created_at, updated_at \
         FROM jobs WHERE devid = $1 ORDER BY id DESC LIMIT $2",
    ))
    .bind(devid)
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Job {
                id: r.try_get("id")?,
                command: r.try_get("command")?,
                state: r.try_get("state")?,
                status: opt_i64(r, "status")?,
                error: r.try_get("error")?,
                requested_by: r.try_get("requested_by")?,
                created_at: r.try_get("created_at")?,
                updated_at: r.try_get("updated_at")?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(super::like_pattern("IMEI:49"), "%IMEI:49%");
        assert_eq!(super::like_pattern("50%_a\\"), "%50\\%\\_a\\\\%");
    }
}
