//! The device registry: accounts (secrets sealed by the [`Vault`]), DevInfo,
//! DevDetail, the cached tree, first/last seen, and session history.

use super::Conn;
use super::{now_ms, opt_i64, Db, Value, WriteTx, Writes};
use crate::device::vault::Vault;
use base64::Engine;
use handover_dm::auth::{AuthType, Nonce, Secret, StoredCredential};
use handover_dm::session::DeviceAccount;
use sqlx::any::AnyRow;
use sqlx::Row;

/// A device as the registry knows it. Secrets stay sealed until
/// [`Device::account`] opens them.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Device {
    pub devid: String,
    pub man: String,
    pub model: String,
    pub dmv: String,
    pub lang: String,
    /// JSON object of DevDetail leaves (relative to `./DevDetail`).
    pub devdetail: String,
    pub auth_type: String,
    pub client_name: String,
    #[serde(skip)]
    client_secret_enc: String,
    /// Base64 of the nonce the client must use next.
    pub client_nonce: String,
    pub server_name: String,
    #[serde(skip)]
    server_secret_enc: String,
    /// Base64 of the nonce the server uses next (Cred and package 0).
    pub server_nonce: String,
    pub push_address: String,
    /// Sealed secrets sent to the device and not yet confirmed ('' when none).
    #[serde(skip)]
    pending_client_secret_enc: String,
    #[serde(skip)]
    pending_server_secret_enc: String,
    pub authority: String,
    pub state: String,
    /// JSON array of tree nodes, sorted by uri.
    pub tree: String,
    pub created_at: i64,
    pub first_seen: Option<i64>,
    pub last_seen: Option<i64>,
}

/// A device's own columns.
const OWN_COLUMNS: &str = "devid, man, model, dmv, lang, auth_type, client_name, \
    client_secret_enc, client_nonce, server_name, server_secret_enc, server_nonce, push_address, \
    pending_client_secret_enc, pending_server_secret_enc, authority, state, created_at, first_seen, last_seen";

/// Its inventory (table `device_inventory`, empty until the first read of
/// the device), selected from [`WITH_INVENTORY`].
pub(super) const INVENTORY_COLUMNS: &str =
    "COALESCE(i.devdetail, '{}') AS devdetail, COALESCE(i.tree, '[]') AS tree";

/// The device with its inventory; `devid` unqualified is the device's.
pub(super) const WITH_INVENTORY: &str = "devices LEFT JOIN device_inventory i USING (devid)";

fn from_row(r: &AnyRow) -> Result<Device, sqlx::Error> {
    Ok(Device {
        devid: r.try_get("devid")?,
        man: r.try_get("man")?,
        model: r.try_get("model")?,
        dmv: r.try_get("dmv")?,
        lang: r.try_get("lang")?,
        devdetail: r.try_get("devdetail")?,
        auth_type: r.try_get("auth_type")?,
        client_name: r.try_get("client_name")?,
        client_secret_enc: r.try_get("client_secret_enc")?,
        client_nonce: r.try_get("client_nonce")?,
        server_name: r.try_get("server_name")?,
        server_secret_enc: r.try_get("server_secret_enc")?,
        server_nonce: r.try_get("server_nonce")?,
        push_address: r.try_get("push_address")?,
        pending_client_secret_enc: r.try_get("pending_client_secret_enc")?,
        pending_server_secret_enc: r.try_get("pending_server_secret_enc")?,
        authority: r.try_get("authority")?,
        state: r.try_get("state")?,
        tree: r.try_get("tree")?,
        created_at: r.try_get("created_at")?,
        first_seen: opt_i64(r, "first_seen")?,
        last_seen: opt_i64(r, "last_seen")?,
    })
}

/// SRVCRED's scheme for a device whose CLCRED uses `client` (PROTOCOL A.4):
/// HMAC with an HMAC client, so every answer carries `x-syncml-hmac`;
/// otherwise an MD5 digest `Cred` (basic would need TLS).
pub fn server_auth(client: AuthType) -> AuthType {
    match client {
        AuthType::Hmac => AuthType::Hmac,
        AuthType::Md5 | AuthType::Basic => AuthType::Md5,
    }
}

/// `md5 | hmac | basic` as the DM core's scheme.
pub fn parse_auth(s: &str) -> Option<AuthType> {
    match s {
        "md5" => Some(AuthType::Md5),
        "hmac" => Some(AuthType::Hmac),
        "basic" => Some(AuthType::Basic),
        _ => None,
    }
}

impl Device {
    /// The account the DM session checks against (PROTOCOL A.4).
    pub fn account(&self, vault: &Vault) -> anyhow::Result<DeviceAccount> {
        let auth_type = parse_auth(&self.auth_type)
            .ok_or_else(|| anyhow::anyhow!("unknown auth type {:?}", self.auth_type))?;
        Ok(DeviceAccount {
            client: StoredCredential {
                auth_type,
                name: self.client_name.clone(),
                secret: vault.unseal(&self.devid, "client_secret", &self.client_secret_enc)?,
            },
            client_nonce: Nonce::from_b64(&self.client_nonce)
                .map_err(|e| anyhow::anyhow!("client nonce: {e}"))?,
            server: StoredCredential {
                auth_type: server_auth(auth_type),
                name: self.server_name.clone(),
                secret: self.server_secret(vault)?,
            },
            server_nonce: Nonce::from_b64(&self.server_nonce)
                .map_err(|e| anyhow::anyhow!("server nonce: {e}"))?,
        })
    }

    /// The CLCRED and SRVCRED secrets sent to the device and not yet
    /// confirmed, if any.
    pub fn pending_secrets(&self, vault: &Vault) -> anyhow::Result<Option<(Secret, Secret)>> {
        if self.pending_client_secret_enc.is_empty() || self.pending_server_secret_enc.is_empty() {
            return Ok(None);
        }
        Ok(Some((
            vault.unseal(
                &self.devid,
                "client_secret",
                &self.pending_client_secret_enc,
            )?,
            vault.unseal(
                &self.devid,
                "server_secret",
                &self.pending_server_secret_enc,
            )?,
        )))
    }

    /// SRVCRED's secret (for package 0, A.5).
    pub fn server_secret(&self, vault: &Vault) -> anyhow::Result<Secret> {
        vault.unseal(&self.devid, "server_secret", &self.server_secret_enc)
    }
}

pub async fn get(db: &Db, devid: &str) -> Result<Option<Device>, sqlx::Error> {
    let row = sqlx::query(&db.sql(&format!(
        "SELECT {OWN_COLUMNS}, {INVENTORY_COLUMNS} FROM {WITH_INVENTORY} WHERE devid = $1"
    )))
    .bind(devid)
    .fetch_optional(db.reader())
    .await?;
    row.as_ref().map(from_row).transpose()
}

/// The device as `tx` sees it.
pub async fn get_in(db: &Db, tx: &mut Conn, devid: &str) -> Result<Option<Device>, sqlx::Error> {
    let row = sqlx::query(&db.sql(&format!(
        "SELECT {OWN_COLUMNS}, {INVENTORY_COLUMNS} FROM {WITH_INVENTORY} WHERE devid = $1"
    )))
    .bind(devid)
    .fetch_optional(&mut *tx)
    .await?;
    row.as_ref().map(from_row).transpose()
}

/// The device, read inside `tx` (from [`Db::begin_write`]) with its row
/// locked until commit, so sessions of one device run one message at a
/// time: on SQLite the transaction holds the database's write lock already;
/// on PostgreSQL `FOR UPDATE` locks the row. Without its cached tree and
/// DevDetail (left empty here): a DM message needs them only when it
/// brings results, and then reads them with [`inventory_in`].
pub async fn lock(db: &Db, tx: &mut Conn, devid: &str) -> Result<Option<Device>, sqlx::Error> {
    let row = sqlx::query(&db.sql(&lock_sql(db)))
        .bind(devid)
        .fetch_optional(&mut *tx)
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// A write transaction begun with [`lock`] (see [`Db::begin_write_with`]).
pub async fn begin_locked(db: &Db, devid: &str) -> Result<(WriteTx, Option<Device>), sqlx::Error> {
    let (tx, rows) = db
        .begin_write_with(&lock_sql(db), vec![devid.into()])
        .await?;
    let device = rows.first().map(from_row).transpose()?;
    Ok((tx, device))
}

fn lock_sql(db: &Db) -> String {
    let columns = format!("{OWN_COLUMNS}, '' AS devdetail, '' AS tree");
    match db.dialect() {
        super::Dialect::Postgres => {
            format!("SELECT {columns} FROM devices WHERE devid = $1 FOR UPDATE")
        }
        super::Dialect::Sqlite => format!("SELECT {columns} FROM devices WHERE devid = $1"),
    }
}

/// The device's DevDetail and cached tree (JSON), as `tx` sees them.
pub async fn inventory_in(
    db: &Db,
    tx: &mut Conn,
    devid: &str,
) -> Result<Option<(String, String)>, sqlx::Error> {
    let row = sqlx::query(&db.sql(&format!(
        "SELECT {INVENTORY_COLUMNS} FROM {WITH_INVENTORY} WHERE devid = $1"
    )))
    .bind(devid)
    .fetch_optional(&mut *tx)
    .await?;
    row.map(|r| Ok((r.try_get("devdetail")?, r.try_get("tree")?)))
        .transpose()
}

/// One line of an import file, checked.
#[derive(Debug)]
pub struct ImportLine {
    pub devid: String,
    pub auth: AuthType,
    pub client_name: String,
    pub client_secret: Secret,
    pub client_nonce: Nonce,
    pub server_name: String,
    pub server_secret: Secret,
    pub server_nonce: Nonce,
    pub push_address: String,
}

/// The header an import file must start with.
pub const CSV_HEADER: &str = "devid,auth,client_name,client_secret,client_nonce,server_name,server_secret,server_nonce,push_address";

/// Splits one CSV line; fields may be double-quoted (`""` for a quote).
fn csv_fields(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    let mut was_quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                cur.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => cur.push(c),
            (false, '"') if cur.is_empty() && !was_quoted => {
                quoted = true;
                was_quoted = true;
            }
            (false, ',') => {
                out.push(std::mem::take(&mut cur));
                was_quoted = false;
            }
            (false, c) => cur.push(c),
        }
    }
    if quoted {
        return Err("unterminated quote".into());
    }
    out.push(cur);
    Ok(out)
}

/// Parses a whole import file; the first bad line fails it all, named.
pub fn parse_csv(text: &str) -> Result<Vec<ImportLine>, String> {
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, h)) if h.trim().trim_start_matches('\u{feff}') == CSV_HEADER => {}
        _ => return Err(format!("line 1: the header must be exactly {CSV_HEADER}")),
    }
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, raw) in lines {
        let n = i + 1;
        let raw = raw.trim_end_matches('\r');
        if raw.trim().is_empty() {
            continue;
        }
        let f = csv_fields(raw).map_err(|e| format!("line {n}: {e}"))?;
        if f.len() != 9 {
            return Err(format!("line {n}: expected 9 fields, found {}", f.len()));
        }
        let devid = handover_dm::DevId::parse(f[0].trim())
            .map_err(|e| format!("line {n}: devid: {e}"))?
            .to_string();
        if !seen.insert(devid.clone()) {
            return Err(format!("line {n}: devid {devid} appears twice"));
        }
        let auth = parse_auth(f[1].trim())
            .ok_or_else(|| format!("line {n}: auth must be md5, hmac or basic"))?;
        let nonce = |s: &str, what: &str| {
            base64::engine::general_purpose::STANDARD
                .decode(s.trim())
                .map(Nonce::from_bytes)
                .map_err(|_| format!("line {n}: {what} is not base64"))
        };
        let nonempty = |s: &str, what: &str| {
            if s.is_empty() {
                Err(format!("line {n}: {what} is empty"))
            } else {
                Ok(s.to_owned())
            }
        };
        out.push(ImportLine {
            devid,
            auth,
            client_name: nonempty(f[2].trim(), "client_name")?,
            client_secret: Secret::new(nonempty(&f[3], "client_secret")?),
            client_nonce: nonce(&f[4], "client_nonce")?,
            server_name: nonempty(f[5].trim(), "server_name")?,
            server_secret: Secret::new(nonempty(&f[6], "server_secret")?),
            server_nonce: nonce(&f[7], "server_nonce")?,
            push_address: f[8].trim().to_owned(),
        });
    }
    Ok(out)
}

/// The stored name of an auth scheme.
pub fn auth_text(a: AuthType) -> &'static str {
    match a {
        AuthType::Md5 => "md5",
        AuthType::Hmac => "hmac",
        AuthType::Basic => "basic",
    }
}

/// Inserts or updates every line in one transaction; returns (added, updated).
/// A new device's authority is the SRVCRED name, this server's ServerID
/// (PROTOCOL A.5); an update keeps the authority a device already has (it
/// may have been handed over).
pub async fn import(
    db: &Db,
    vault: &Vault,
    lines: &[ImportLine],
) -> Result<(usize, usize), sqlx::Error> {
    let mut tx = db.pool().begin().await?;
    let (mut added, mut updated) = (0, 0);
    let now = now_ms();
    for l in lines {
        let cs = vault.seal(&l.devid, "client_secret", &l.client_secret);
        let ss = vault.seal(&l.devid, "server_secret", &l.server_secret);
        let res = sqlx::query(&db.sql(
            "UPDATE devices SET auth_type = $2, client_name = $3, client_secret_enc = $4, \
             client_nonce = $5, server_name = $6, server_secret_enc = $7, server_nonce = $8, \
             push_address = $9, authority = CASE WHEN authority = '' THEN $6 ELSE authority END \
             WHERE devid = $1",
        ))
        .bind(&l.devid)
        .bind(auth_text(l.auth))
        .bind(&l.client_name)
        .bind(&cs)
        .bind(l.client_nonce.to_b64())
        .bind(&l.server_name)
        .bind(&ss)
        .bind(l.server_nonce.to_b64())
        .bind(&l.push_address)
        .execute(&mut *tx)
        .await?;
        if res.rows_affected() > 0 {
            updated += 1;
            continue;
        }
        sqlx::query(&db.sql(
            "INSERT INTO devices (devid, auth_type, client_name, client_secret_enc, client_nonce, \
             server_name, server_secret_enc, server_nonce, push_address, created_at, authority) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $6)",
        ))
        .bind(&l.devid)
        .bind(auth_text(l.auth))
        .bind(&l.client_name)
        .bind(&cs)
        .bind(l.client_nonce.to_b64())
        .bind(&l.server_name)
        .bind(&ss)
        .bind(l.server_nonce.to_b64())
        .bind(&l.push_address)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        added += 1;
    }
    tx.commit().await?;
    Ok((added, updated))
}

/// Adds one device inside `tx` (auto-enrolment), secrets sealed and the
/// authority set as for an import.
pub async fn insert_in(
    db: &Db,
    tx: &mut Conn,
    vault: &Vault,
    l: &ImportLine,
) -> Result<(), sqlx::Error> {
    sqlx::query(&db.sql(
        "INSERT INTO devices (devid, auth_type, client_name, client_secret_enc, client_nonce, \
         server_name, server_secret_enc, server_nonce, push_address, created_at, authority) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $6)",
    ))
    .bind(&l.devid)
    .bind(auth_text(l.auth))
    .bind(&l.client_name)
    .bind(vault.seal(&l.devid, "client_secret", &l.client_secret))
    .bind(l.client_nonce.to_b64())
    .bind(&l.server_name)
    .bind(vault.seal(&l.devid, "server_secret", &l.server_secret))
    .bind(l.server_nonce.to_b64())
    .bind(&l.push_address)
    .bind(now_ms())
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Replaces one sealed secret (`client_secret` or `server_secret`).
pub async fn set_secret(
    db: &Db,
    tx: &mut Conn,
    vault: &Vault,
    devid: &str,
    field: &str,
    secret: &Secret,
) -> Result<(), sqlx::Error> {
    let column = match field {
        "client_secret" => "client_secret_enc",
        "server_secret" => "server_secret_enc",
        _ => return Err(sqlx::Error::ColumnNotFound(field.to_owned())),
    };
    sqlx::query(&db.sql(&format!(
        "UPDATE devices SET {column} = $2 WHERE devid = $1"
    )))
    .bind(devid)
    .bind(vault.seal(devid, field, secret))
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Keeps new CLCRED and SRVCRED secrets, sealed, until the device confirms
/// it has them ([`settle_pending_secrets`]).
pub async fn set_pending_secrets(
    db: &Db,
    tx: &mut Conn,
    vault: &Vault,
    devid: &str,
    client: &Secret,
    server: &Secret,
) -> Result<(), sqlx::Error> {
    sqlx::query(&db.sql(
        "UPDATE devices SET pending_client_secret_enc = $2, pending_server_secret_enc = $3 \
         WHERE devid = $1",
    ))
    .bind(devid)
    .bind(vault.seal(devid, "client_secret", client))
    .bind(vault.seal(devid, "server_secret", server))
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// The pending secrets become the device's (`confirmed`) or are dropped.
pub async fn settle_pending_secrets(
    db: &Db,
    tx: &mut Conn,
    devid: &str,
    confirmed: bool,
) -> Result<(), sqlx::Error> {
    let sql = if confirmed {
        "UPDATE devices SET client_secret_enc = pending_client_secret_enc, \
         server_secret_enc = pending_server_secret_enc, pending_client_secret_enc = '', \
         pending_server_secret_enc = '' \
         WHERE devid = $1 AND pending_client_secret_enc <> '' AND pending_server_secret_enc <> ''"
    } else {
        "UPDATE devices SET pending_client_secret_enc = '', pending_server_secret_enc = '' \
         WHERE devid = $1"
    };
    sqlx::query(&db.sql(sql))
        .bind(devid)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Changes where package 0 is pushed to (a simulator listening elsewhere
/// after a restart); true when the device exists.
pub async fn set_push_address(
    db: &Db,
    devid: &str,
    push_address: &str,
) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(&db.sql("UPDATE devices SET push_address = $2 WHERE devid = $1"))
        .bind(devid)
        .bind(push_address)
        .execute(db.pool())
        .await?;
    Ok(r.rows_affected() > 0)
}

/// A session's next nonces (when given) and, with `seen`, its device's
/// authenticated contact (first and last seen; `provisioned` becomes
/// `active`): one statement, sent with the transaction's other [`Writes`].
///
/// Only the columns that change are assigned: SQLite rewrites an index
/// entry for every assigned column it holds, changed or not, and
/// `last_seen` and `state` are in most of the table's indexes. So a message
/// without contact to record leaves them out, and `state` is only assigned
/// to a device still `provisioned` (`was_provisioned`, as the caller read it
/// under the device's lock).
pub fn set_nonces_seen(
    w: &mut Writes,
    devid: &str,
    client_next: Option<&Nonce>,
    server_next: Option<&Nonce>,
    seen: Option<i64>,
    was_provisioned: bool,
) {
    let nonces = [client_next, server_next].map(|n| Value::from(n.map(Nonce::to_b64)));
    let Some(now) = seen else {
        if client_next.is_some() || server_next.is_some() {
            w.push(
                "UPDATE devices SET client_nonce = COALESCE($2, client_nonce), \
                 server_nonce = COALESCE($3, server_nonce) WHERE devid = $1",
                [devid.into()].into_iter().chain(nonces).collect(),
            );
        }
        return;
    };
    let sql = if was_provisioned {
        "UPDATE devices SET client_nonce = COALESCE($2, client_nonce), \
         server_nonce = COALESCE($3, server_nonce), \
         first_seen = COALESCE(first_seen, $4), last_seen = $4, \
         state = CASE WHEN state = 'provisioned' THEN 'active' ELSE state END \
         WHERE devid = $1"
    } else {
        "UPDATE devices SET client_nonce = COALESCE($2, client_nonce), \
         server_nonce = COALESCE($3, server_nonce), \
         first_seen = COALESCE(first_seen, $4), last_seen = $4 WHERE devid = $1"
    };
    w.push(
        sql,
        [devid.into()]
            .into_iter()
            .chain(nonces)
            .chain([now.into()])
            .collect(),
    );
}

pub async fn set_devinfo(
    db: &Db,
    tx: &mut Conn,
    devid: &str,
    man: &str,
    model: &str,
    dmv: &str,
    lang: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        &db.sql("UPDATE devices SET man = $2, model = $3, dmv = $4, lang = $5 WHERE devid = $1"),
    )
    .bind(devid)
    .bind(man)
    .bind(model)
    .bind(dmv)
    .bind(lang)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

pub async fn set_nonces(
    db: &Db,
    tx: &mut Conn,
    devid: &str,
    client_next: Option<&Nonce>,
    server_next: Option<&Nonce>,
) -> Result<(), sqlx::Error> {
    if let Some(n) = client_next {
        sqlx::query(&db.sql("UPDATE devices SET client_nonce = $2 WHERE devid = $1"))
            .bind(devid)
            .bind(n.to_b64())
            .execute(&mut *tx)
            .await?;
    }
    if let Some(n) = server_next {
        sqlx::query(&db.sql("UPDATE devices SET server_nonce = $2 WHERE devid = $1"))
            .bind(devid)
            .bind(n.to_b64())
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}

/// Stores the inventory documents (DevDetail object and tree array).
/// The device's DevDetail and cached tree (sent with the transaction's
/// other [`Writes`]).
pub fn set_inventory(w: &mut Writes, devid: &str, devdetail: &str, tree: &str) {
    w.push(
        "INSERT INTO device_inventory (devid, devdetail, tree) VALUES ($1, $2, $3) \
         ON CONFLICT (devid) DO UPDATE SET devdetail = excluded.devdetail, tree = excluded.tree",
        vec![devid.into(), devdetail.into(), tree.into()],
    );
}

/// One filtered, paged listing of devices.
#[derive(Debug, Default, Clone)]
pub struct Query {
    pub q: Option<String>,
    pub man: Option<String>,
    pub model: Option<String>,
    pub page: i64,
    pub per_page: i64,
}

/// Devices matching `query` (DevId substring, exact man/model), by DevId,
/// with the total count.
pub async fn list(db: &Db, query: &Query) -> Result<(Vec<Device>, i64), sqlx::Error> {
    let q = query
        .q
        .as_deref()
        .map(|s| format!("%{}%", s.replace(['%', '_'], "")));
    let filter =
        "($1 IS NULL OR devid LIKE $1) AND ($2 IS NULL OR man = $2) AND ($3 IS NULL OR model = $3)";
    let total: i64 =
        sqlx::query(&db.sql(&format!("SELECT COUNT(*) AS n FROM devices WHERE {filter}")))
            .bind(q.clone())
            .bind(query.man.clone())
            .bind(query.model.clone())
            .fetch_one(db.pool())
            .await?
            .try_get("n")?;
    let rows = sqlx::query(&db.sql(&format!(
        "SELECT {OWN_COLUMNS}, {INVENTORY_COLUMNS} FROM {WITH_INVENTORY} WHERE {filter} ORDER BY devid LIMIT $4 OFFSET $5"
    )))
    .bind(q)
    .bind(query.man.clone())
    .bind(query.model.clone())
    .bind(query.per_page)
    .bind((query.page - 1).max(0) * query.per_page)
    .fetch_all(db.pool())
    .await?;
    let devices = rows.iter().map(from_row).collect::<Result<_, _>>()?;
    Ok((devices, total))
}

/// One row of `session_history`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SessionRecord {
    pub session_id: String,
    pub started_at: i64,
    pub ended_at: i64,
    pub outcome: String,
    pub messages: i64,
    pub commands: i64,
    pub source: String,
}

/// A session's history row (sent with the transaction's other [`Writes`]).
pub fn record_session(w: &mut Writes, devid: &str, rec: &SessionRecord) {
    w.push(
        "INSERT INTO session_history (devid, session_id, started_at, ended_at, outcome, messages, commands, source) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        vec![
            devid.into(),
            rec.session_id.as_str().into(),
            rec.started_at.into(),
            rec.ended_at.into(),
            rec.outcome.as_str().into(),
            rec.messages.into(),
            rec.commands.into(),
            rec.source.as_str().into(),
        ],
    );
}

/// The latest sessions of a device, newest first.
pub async fn sessions(db: &Db, devid: &str, limit: i64) -> Result<Vec<SessionRecord>, sqlx::Error> {
    let rows = sqlx::query(&db.sql(
        "SELECT session_id, started_at, ended_at, outcome, messages, commands, source \
         FROM session_history WHERE devid = $1 ORDER BY id DESC LIMIT $2",
    ))
    .bind(devid)
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(SessionRecord {
                session_id: r.try_get("session_id")?,
                started_at: r.try_get("started_at")?,
                ended_at: r.try_get("ended_at")?,
                outcome: r.try_get("outcome")?,
                messages: r.try_get("messages")?,
                commands: r.try_get("commands")?,
                source: r.try_get("source")?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_parses_and_names_bad_lines() {
        let good = format!(
            "{CSV_HEADER}\nIMEI:1,md5,dev1,\"p,w\",{n},corp.example,spw,{n},http://127.0.0.1:9/push\n",
            n = "Tm9uY2U="
        );
        let l = parse_csv(&good).unwrap();
        assert_eq!(l[0].client_secret.expose(), "p,w");
        assert_eq!(l[0].client_nonce.as_bytes(), b"Nonce");
        let bad = format!("{good}IMEI:2,sha1,a,b,Tm9uY2U=,c,d,Tm9uY2U=,\n");
        assert!(parse_csv(&bad).unwrap_err().starts_with("line 3:"));
        assert!(parse_csv("devid,auth\n")
            .unwrap_err()
            .starts_with("line 1:"));
    }
}
