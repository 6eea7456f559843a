//! Device work of a delegation (B.5, B.6): the jobs a machine's
//! `DeviceWork` becomes, and what their outcomes feed back.

use super::device_work::{self, tree_from_cache};
use super::{utc, After, Current, Engine, EngineError};
use crate::audit::Event;
use crate::store::jobs::{self, Job};
use crate::store::{devices, now_ms};
use handover_delegation::machine::{DeviceWork, Output};
use handover_delegation::plan::{
    self, AclChange, AtomicVerdict, BootstrapAccount, OneTimeCredential, Rotation,
};
use handover_delegation::wire::{AclEntry, BootstrapCredentials, DevInfo, OneTime, Scope};
use handover_dm::{Acl, AuthType, DevId, Nonce, Secret, ServerId, TreeUri};

/// What the device work of one delegation is doing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Phase {
    #[default]
    Idle,
    /// DMS-1: the bootstrap Atomic (B.5 step 1).
    Preparing,
    /// DMS-2: the bootstrap session's rotation (B.5 step 3).
    Bootstrapping,
    /// DMS-1: reading the ACLs before step 6 (B.6).
    ReadingAcls,
    /// DMS-1: the step 6 Atomic.
    WritingAcls,
    /// DMS-1: restoring the stored ACLs and deleting DMS-2's account.
    Reverting,
    /// DMS-1, full + permanent: deleting its own account.
    DeletingOwnAccount,
}

/// One node's ACL of step 6 as stored (B.6).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoredAcl {
    pub uri: String,
    pub stored: String,
    pub inherited: String,
    pub new: String,
}

/// The engine's own progress on a delegation's device work. Sealed at rest:
/// it holds one-time credentials until they are purged.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Work {
    pub phase: Phase,
    /// The device job waited for.
    pub job: Option<i64>,
    /// DMS-1: DMS-2's account node on the device, once added.
    pub account: Option<String>,
    /// DMS-1: the grant's one-time credentials, until purged.
    pub credentials: Option<BootstrapCredentials>,
    /// DMS-1: the ACL values read before step 6, and those written.
    pub acls: Vec<StoredAcl>,
    /// DMS-1: nodes whose empty stored value the client refused; they get
    /// their inherited value instead (B.6).
    pub use_inherited: Vec<String>,
    /// DMS-2: the rotated secrets (client, server), until confirmed.
    pub rotated: Option<(OneTime, OneTime)>,
    /// Failed attempts of the current work (revert, own account deletion).
    pub attempts: u32,
    /// When to try the current work again.
    pub retry_at: Option<i64>,
}

impl Work {
    /// B.5/B.6: forget one-time secrets and nonces.
    pub fn purge(&mut self) {
        self.credentials = None;
    }
}

fn one_time(len_bytes: usize) -> String {
    crate::secrets::random_token(len_bytes)
}

fn nonce_b64() -> (Nonce, String) {
    let n = Nonce::generate(&mut rand::rngs::OsRng);
    let b64 = n.to_b64();
    (n, b64)
}

fn job_children(job: &Job) -> Vec<Option<u16>> {
    job.results
        .as_ref()
        .and_then(|r| r.get("children"))
        .and_then(|c| c.as_array())
        .map(|a| {
            a.iter()
                .map(|x| x.get("status").and_then(|s| s.as_u64()).map(|s| s as u16))
                .collect()
        })
        .unwrap_or_default()
}

fn restore_ops(work: &Work) -> Vec<handover_dm::Op> {
    let changes: Vec<AclChange> = work
        .acls
        .iter()
        .filter_map(|a| {
            Some(AclChange {
                uri: TreeUri::parse(&a.uri).ok()?,
                stored: Acl::parse(&a.stored).ok()?,
                inherited: Acl::parse(&a.inherited).ok()?,
                new: Acl::parse(&a.new).ok()?,
            })
        })
        .collect();
    let account = work.account.as_deref().and_then(|a| TreeUri::parse(a).ok());
    let mut ops = plan::revert_ops(&changes, account.as_ref());
    for (i, c) in changes.iter().enumerate() {
        if work.use_inherited.contains(&c.uri.as_str().to_owned()) {
            ops[i] = c.restore_inherited_op();
        }
    }
    ops
}

impl Engine {
    async fn queue_job(
        &self,
        tx: &mut crate::store::Conn,
        cur: &mut Current,
        command: jobs::JobCommand,
        phase: Phase,
        actor: &str,
        after: &mut After,
    ) -> Result<(), EngineError> {
        let who = format!("delegation:{}", cur.row.delegation_id);
        let id = jobs::enqueue(self.db(), &mut *tx, &cur.row.devid, &command, &who, true).await?;
        cur.work.phase = phase;
        cur.work.job = Some(id);
        after.notify.push(cur.row.devid.clone());
        after
            .live
            .push(self.live(cur, "device", format!("{phase:?}")));
        self.audit(
            tx,
            cur,
            Event::DelegationDeviceWork,
            actor,
            serde_json::json!({ "work": format!("{phase:?}"), "job": id, "commands": command.targets().len() }),
        )
        .await?;
        Ok(())
    }

    /// Turns a machine's `DeviceWork` into jobs (or does it at once);
    /// returns outputs of machine calls made immediately.
    pub(super) async fn start_work(
        &self,
        tx: &mut crate::store::Conn,
        cur: &mut Current,
        w: DeviceWork,
        actor: &str,
        after: &mut After,
    ) -> Result<Vec<Output>, EngineError> {
        let devid = cur.row.devid.clone();
        match w {
            DeviceWork::PrepareClient => {
                let device = devices::get_in(self.db(), tx, &devid)
                    .await?
                    .ok_or_else(|| anyhow::anyhow!("device {devid} is gone"))?;
                let tree = tree_from_cache(&device.tree);
                let dms2 = ServerId::parse(cur.row.peer.clone()).expect("stored peers are valid");
                let node = plan::account_node_for(&tree, &dms2);
                let dm_url = cur
                    .peer
                    .as_ref()
                    .map(|p| p.dm_url.as_str().to_owned())
                    .ok_or_else(|| anyhow::anyhow!("peer {} is not configured", cur.row.peer))?;
                let auth_type = match devices::parse_auth(&device.auth_type) {
                    Some(AuthType::Hmac) => AuthType::Hmac,
                    // Basic needs TLS (A.4); the one-time account uses MD5.
                    _ => AuthType::Md5,
                };
                let (client_nonce, client_nonce_b64) = nonce_b64();
                let (server_nonce, server_nonce_b64) = nonce_b64();
                let client_name = format!("hv-{}", one_time(9));
                let client_secret = one_time(18);
                let server_secret = one_time(18);
                let account = BootstrapAccount {
                    node: node.clone(),
                    dms1: self.0.me.clone(),
                    dms2: dms2.clone(),
                    dm_url,
                    auth_type,
                    client: OneTimeCredential {
                        name: client_name.clone(),
                        secret: Secret::new(client_secret.clone()),
                        nonce: client_nonce,
                    },
                    server: OneTimeCredential {
                        name: dms2.as_str().to_owned(),
                        secret: Secret::new(server_secret.clone()),
                        nonce: server_nonce,
                    },
                };
                cur.work.account = Some(node.as_str().to_owned());
                cur.work.credentials = Some(BootstrapCredentials {
                    account_node: node.as_str().to_owned(),
                    auth_type,
                    client_name,
                    client_secret: OneTime::new(client_secret),
                    client_nonce: OneTime::new(client_nonce_b64),
                    server_name: dms2.as_str().to_owned(),
                    server_secret: OneTime::new(server_secret),
                    server_nonce: OneTime::new(server_nonce_b64),
                    push_address: (!device.push_address.is_empty())
                        .then(|| device.push_address.clone()),
                });
                let cmd = device_work::atomic(&account.ops());
                self.queue_job(tx, cur, cmd, Phase::Preparing, actor, after)
                    .await?;
                Ok(Vec::new())
            }
            DeviceWork::Bootstrap(grant) => {
                let creds = &grant.credentials;
                device_work::provision_bootstrap(
                    self.db(),
                    tx,
                    &self.0.rt.vault,
                    &devid,
                    creds,
                    &cur.row.peer,
                )
                .await?;
                let account = TreeUri::parse(&creds.account_node)
                    .map_err(|e| anyhow::anyhow!("AccountNode: {e}"))?;
                let client_secret = one_time(18);
                let server_secret = one_time(18);
                let rotation = Rotation {
                    client_secret: Secret::new(client_secret.clone()),
                    server_secret: Secret::new(server_secret.clone()),
                    client_nonce: Nonce::generate(&mut rand::rngs::OsRng),
                };
                cur.work.rotated = Some((OneTime::new(client_secret), OneTime::new(server_secret)));
                let cmd = device_work::sequence(&plan::rotation_ops(&account, &rotation));
                self.queue_job(tx, cur, cmd, Phase::Bootstrapping, actor, after)
                    .await?;
                Ok(Vec::new())
            }
            DeviceWork::UpdateAcls => {
                // B.6: read the ACL of every node step 6 changes, and of
                // their ancestors, in one Sequence; the results refresh the
                // cached tree that step 6 is planned on.
                let (tree, account, scope) = self.step6_inputs(tx, cur).await?;
                match plan::acl_reads(&tree, &self.0.me, &scope, account.as_ref()) {
                    Ok(reads) if !reads.is_empty() => {
                        let cmd = device_work::sequence(&reads);
                        self.queue_job(tx, cur, cmd, Phase::ReadingAcls, actor, after)
                            .await?;
                        Ok(Vec::new())
                    }
                    Ok(_) => Ok(cur
                        .dms1()?
                        .acl_update_failed("nothing to change")
                        .unwrap_or_default()),
                    Err(e) => Ok(cur
                        .dms1()?
                        .acl_update_failed(&e.to_string())
                        .unwrap_or_default()),
                }
            }
            DeviceWork::Revert => {
                cur.work.attempts = 0;
                self.queue_revert(tx, cur, actor, after).await
            }
            DeviceWork::DeleteOwnAccount => {
                cur.work.attempts = 0;
                self.queue_delete_own(tx, cur, actor, after).await?;
                Ok(Vec::new())
            }
            DeviceWork::ForgetClient => {
                device_work::forget_device(self.db(), tx, &self.0.rt.vault, &devid).await?;
                cur.work.phase = Phase::Idle;
                cur.work.job = None;
                cur.work.rotated = None;
                after
                    .live
                    .push(self.live(cur, "device", "the device's credentials are forgotten"));
                Ok(Vec::new())
            }
        }
    }

    /// What step 6 is planned on (B.6): the device's tree as last read,
    /// DMS-2's account node on it and the delegated scope.
    async fn step6_inputs(
        &self,
        tx: &mut crate::store::Conn,
        cur: &Current,
    ) -> Result<(handover_dm::Tree, Option<TreeUri>, Scope), EngineError> {
        let device = devices::get_in(self.db(), tx, &cur.row.devid).await?;
        let tree = tree_from_cache(device.as_ref().map_or("[]", |d| d.tree.as_str()));
        let account = cur
            .work
            .account
            .as_deref()
            .and_then(|a| TreeUri::parse(a).ok());
        Ok((tree, account, cur.terms().scope.clone()))
    }

    async fn queue_revert(
        &self,
        tx: &mut crate::store::Conn,
        cur: &mut Current,
        actor: &str,
        after: &mut After,
    ) -> Result<Vec<Output>, EngineError> {
        let ops = restore_ops(&cur.work);
        if ops.is_empty() {
            cur.work.phase = Phase::Idle;
            cur.work.job = None;
            let m = cur.dms1()?;
            return Ok(m.revert_done().unwrap_or_default());
        }
        let cmd = device_work::sequence(&ops);
        self.queue_job(tx, cur, cmd, Phase::Reverting, actor, after)
            .await?;
        Ok(Vec::new())
    }

    async fn queue_delete_own(
        &self,
        tx: &mut crate::store::Conn,
        cur: &mut Current,
        actor: &str,
        after: &mut After,
    ) -> Result<(), EngineError> {
        let device = devices::get_in(self.db(), tx, &cur.row.devid).await?;
        let tree = tree_from_cache(device.as_ref().map_or("[]", |d| d.tree.as_str()));
        match plan::own_account(&tree, &self.0.me) {
            Some(acc) => {
                let cmd = jobs::JobCommand::Delete {
                    target: acc.as_str().to_owned(),
                };
                self.queue_job(tx, cur, cmd, Phase::DeletingOwnAccount, actor, after)
                    .await
            }
            None => {
                self.handed_over(tx, cur).await?;
                Ok(())
            }
        }
    }

    async fn handed_over(
        &self,
        tx: &mut crate::store::Conn,
        cur: &mut Current,
    ) -> Result<(), EngineError> {
        cur.work.phase = Phase::Idle;
        cur.work.job = None;
        sqlx::query(
            &self
                .db()
                .sql("UPDATE devices SET state = 'handed-over', authority = $2 WHERE devid = $1"),
        )
        .bind(&cur.row.devid)
        .bind(&cur.row.peer)
        .execute(&mut *tx)
        .await?;
        Ok(())
    }

    /// Queues the current work again after a failed attempt.
    pub(super) async fn retry_work(&self, id: i64) -> Result<(), EngineError> {
        let mut tx = self.db().begin_write().await?;
        let mut cur = self.load(&mut *tx, id).await?;
        let mut after = After::default();
        let outputs = match cur.work.phase {
            Phase::Reverting => {
                self.queue_revert(&mut *tx, &mut cur, "system", &mut after)
                    .await?
            }
            Phase::DeletingOwnAccount => {
                self.queue_delete_own(&mut *tx, &mut cur, "system", &mut after)
                    .await?;
                Vec::new()
            }
            _ => Vec::new(),
        };
        self.apply(&mut *tx, &mut cur, outputs, "system", &mut after)
            .await?;
        self.save(&mut *tx, &cur).await?;
        tx.commit().await?;
        self.after_commit(after).await;
        Ok(())
    }

    fn schedule_retry(&self, cur: &mut Current) {
        cur.work.attempts += 1;
        cur.work.job = None;
        // A minute, doubling, at most an hour: the device is reached at
        // one of its next sessions (B.6 "retried until it confirms").
        let first = self.0.settings.device_retry_first.as_millis() as i64;
        let delay = first
            .saturating_mul(1 << cur.work.attempts.min(6))
            .min(3_600_000);
        cur.work.retry_at = Some(now_ms() + delay);
    }

    /// A device job the delegation waited for finished.
    pub(super) async fn job_done(&self, id: i64) -> Result<(), EngineError> {
        let mut tx = self.db().begin_write().await?;
        let mut cur = self.load(&mut *tx, id).await?;
        let Some(job_id) = cur.work.job else {
            return Ok(());
        };
        let Some(job) = jobs::lock_one(self.db(), &mut *tx, job_id).await? else {
            return Ok(());
        };
        if job.state != "succeeded" && job.state != "failed" {
            return Ok(());
        }
        let ok = job.state == "succeeded";
        let status = job.status.unwrap_or(500) as u16;
        let now = now_ms();
        let mut after = After::default();
        cur.work.job = None;
        let phase = cur.work.phase;
        cur.work.phase = Phase::Idle;
        let mut outputs = Vec::new();
        match phase {
            Phase::Idle => {}
            Phase::Preparing => {
                redact_job(self.db(), &mut *tx, job_id).await?;
                let creds = cur.work.credentials.clone();
                let m = cur.dms1()?;
                outputs = match (ok, creds) {
                    (true, Some(c)) => m.client_prepared(utc(now), c),
                    (true, None) => m.client_preparation_failed(500),
                    (false, _) => m.client_preparation_failed(status),
                }
                .unwrap_or_default();
            }
            Phase::Bootstrapping => {
                redact_job(self.db(), &mut *tx, job_id).await?;
                // The rotation is a Sequence: answered 200 even when the
                // client refused a Replace in it (B.5 step 3).
                let children = job_children(&job);
                let refused = children
                    .iter()
                    .find(|s| !matches!(s, Some(c) if (200..300).contains(c)));
                let status = match refused {
                    Some(s) => s.unwrap_or(500),
                    None => status,
                };
                let ok = ok && !children.is_empty() && refused.is_none();
                if ok {
                    if let Some((client, server)) = cur.work.rotated.take() {
                        let vault = &self.0.rt.vault;
                        let devid = cur.row.devid.clone();
                        devices::set_secret(
                            self.db(),
                            &mut *tx,
                            vault,
                            &devid,
                            "client_secret",
                            &Secret::new(client.expose()),
                        )
                        .await?;
                        devices::set_secret(
                            self.db(),
                            &mut *tx,
                            vault,
                            &devid,
                            "server_secret",
                            &Secret::new(server.expose()),
                        )
                        .await?;
                    }
                    let d = devices::get_in(self.db(), &mut *tx, &cur.row.devid).await?;
                    let info = d.map(|d| DevInfo {
                        dev_id: DevId::parse(d.devid.clone()).expect("stored DevIds are valid"),
                        man: d.man,
                        model: d.model,
                        dmv: d.dmv,
                        lang: d.lang,
                    });
                    let m = cur.dms2()?;
                    outputs = match info {
                        Some(info) => m.bootstrapped(utc(now), info),
                        None => m.bootstrap_failed("the device record is gone"),
                    }
                    .unwrap_or_default();
                } else {
                    let m = cur.dms2()?;
                    outputs = m
                        .bootstrap_failed(&format!("the device answered {status}"))
                        .unwrap_or_default();
                }
            }
            Phase::ReadingAcls => {
                // A Sequence is answered 200 even when a Get in it failed.
                let children = job_children(&job);
                let refused = children
                    .iter()
                    .find(|s| !matches!(s, Some(c) if (200..300).contains(c)));
                if !ok || children.is_empty() || refused.is_some() {
                    let status = match refused {
                        Some(s) => s.unwrap_or(500),
                        None => status,
                    };
                    let m = cur.dms1()?;
                    outputs = m
                        .acl_update_failed(&format!("reading the ACLs failed with status {status}"))
                        .unwrap_or_default();
                } else {
                    let (tree, account, scope) = self.step6_inputs(&mut *tx, &cur).await?;
                    let dms2 =
                        ServerId::parse(cur.row.peer.clone()).expect("stored peers are valid");
                    match plan::acl_update(&tree, &self.0.me, &dms2, &scope, account.as_ref()) {
                        Err(e) => {
                            let m = cur.dms1()?;
                            outputs = m.acl_update_failed(&e.to_string()).unwrap_or_default();
                        }
                        Ok(changes) if changes.is_empty() => {
                            let m = cur.dms1()?;
                            outputs = m.acls_updated(utc(now), Vec::new()).unwrap_or_default();
                        }
                        Ok(changes) => {
                            cur.work.acls = changes
                                .iter()
                                .map(|c| StoredAcl {
                                    uri: c.uri.as_str().to_owned(),
                                    stored: c.stored.to_string(),
                                    inherited: c.inherited.to_string(),
                                    new: c.new.to_string(),
                                })
                                .collect();
                            let ops: Vec<_> = changes.iter().map(AclChange::apply_op).collect();
                            let cmd = device_work::atomic(&ops);
                            self.queue_job(
                                &mut *tx,
                                &mut cur,
                                cmd,
                                Phase::WritingAcls,
                                "system",
                                &mut after,
                            )
                            .await?;
                        }
                    }
                }
            }
            Phase::WritingAcls => {
                let verdict = plan::judge_atomic(job.status.map(|s| s as u16), &job_children(&job));
                let acls: Vec<AclEntry> = cur
                    .work
                    .acls
                    .iter()
                    .map(|a| AclEntry {
                        uri: a.uri.clone(),
                        value: a.new.clone(),
                    })
                    .collect();
                let m = cur.dms1()?;
                outputs = match verdict {
                    AtomicVerdict::Succeeded => m.acls_updated(utc(now), acls),
                    AtomicVerdict::Failed { status, .. } => {
                        m.acl_update_failed(&format!("the device answered {status}"))
                    }
                }
                .unwrap_or_default();
            }
            Phase::Reverting => {
                let children = job_children(&job);
                let ops = restore_ops(&cur.work);
                // Done only when every command of the Sequence succeeded: a
                // Sequence is answered 200 even when commands in it were
                // refused. A Delete of an account already gone (404) is done.
                let done = ok
                    && children.len() == ops.len()
                    && children.iter().enumerate().all(|(i, s)| match s {
                        Some(c) if (200..300).contains(c) => true,
                        Some(404) => matches!(ops.get(i), Some(handover_dm::Op::Delete(_))),
                        _ => false,
                    });
                if done {
                    let m = cur.dms1()?;
                    outputs = m.revert_done().unwrap_or_default();
                } else {
                    // A client that refuses an empty ACL gets the inherited
                    // value next time (B.6).
                    // A refusal for lack of rights (425) or no answer says
                    // nothing about the value: the same value is retried.
                    if let Some((i, Some(code))) = children
                        .iter()
                        .enumerate()
                        .find(|(_, s)| !matches!(s, Some(c) if (200..300).contains(c)))
                    {
                        let value_refused = (400..500).contains(code) && *code != 425;
                        if let Some(a) = cur.work.acls.get(i).filter(|_| value_refused) {
                            if a.stored.is_empty() && !cur.work.use_inherited.contains(&a.uri) {
                                cur.work.use_inherited.push(a.uri.clone());
                            }
                        }
                    }
                    cur.work.phase = Phase::Reverting;
                    self.schedule_retry(&mut cur);
                    after.live.push(self.live(
                        &cur,
                        "device",
                        format!("the device refused the revert ({status}); trying again"),
                    ));
                }
            }
            Phase::DeletingOwnAccount => {
                if ok || status == 404 {
                    self.handed_over(&mut *tx, &mut cur).await?;
                    after.live.push(self.live(
                        &cur,
                        "device",
                        "this server's account is deleted: the device is handed over",
                    ));
                } else {
                    cur.work.phase = Phase::DeletingOwnAccount;
                    self.schedule_retry(&mut cur);
                }
            }
        }
        self.apply(&mut *tx, &mut cur, outputs, "system", &mut after)
            .await?;
        self.save(&mut *tx, &cur).await?;
        tx.commit().await?;
        self.after_commit(after).await;
        Ok(())
    }
}

/// One-time values left the server in this job; its stored command keeps
/// only the targets.
async fn redact_job(
    db: &crate::store::Db,
    tx: &mut crate::store::Conn,
    job_id: i64,
) -> Result<(), sqlx::Error> {
    use sqlx::Row as _;
    let Some(row) = sqlx::query(&db.sql("SELECT command FROM jobs WHERE id = $1"))
        .bind(job_id)
        .fetch_optional(&mut *tx)
        .await?
    else {
        return Ok(());
    };
    let command: String = row.try_get("command")?;
    let Ok(mut v) = serde_json::from_str::<serde_json::Value>(&command) else {
        return Ok(());
    };
    fn scrub(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(o) => {
                let secret = o
                    .get("target")
                    .and_then(|t| t.as_str())
                    .is_some_and(|t| t.ends_with("/AAuthSecret") || t.ends_with("/AAuthData"));
                if secret {
                    for k in ["data", "data_b64"] {
                        if o.contains_key(k) {
                            o.insert(k.into(), "***".into());
                        }
                    }
                }
                for (_, x) in o.iter_mut() {
                    scrub(x);
                }
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(scrub),
            _ => {}
        }
    }
    scrub(&mut v);
    sqlx::query(&db.sql("UPDATE jobs SET command = $2 WHERE id = $1"))
        .bind(job_id)
        .bind(v.to_string())
        .execute(&mut *tx)
        .await?;
    Ok(())
}
