//! SQLite's one writer connection, shared by the hot write paths, and the
//! group commit that lets transactions queued behind each other share one
//! `COMMIT`.
//!
//! Every commit appends each page it changed to the write-ahead log, whole:
//! a transaction of the hot paths changes 15–25 pages (the row, every index
//! it is in, the audit entry and its four indexes…), and most of them are the
//! same few pages from one transaction to the next (the tail of the audit
//! log, of the jobs, of the outgoing documents; the upper levels of every
//! index). So when other tasks are waiting for the writer, a transaction
//! that commits does not `COMMIT` yet: it releases its savepoint into the
//! open SQLite transaction and waits, and the next ones add theirs. The
//! group commits once, writing each page once, when one of them finds
//! nobody waiting behind it, or when it is [`MAX_GROUP`] strong. Nobody is
//! told "committed" before the `COMMIT` is done, so a crash loses only
//! transactions whose callers were never answered.
//!
//! A transaction that fails inside a group rolls back to its own savepoint
//! and leaves the others alone; one that SQLite rolls back as a whole (a
//! full disk, an I/O error) fails every member of its group.

use super::inline::Inline;
use super::Conn;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::{oneshot, Mutex, OwnedMutexGuard};

/// The most transactions one `COMMIT` carries.
pub const MAX_GROUP: usize = 64;

/// What a waiting member learns about its group's `COMMIT`.
type Outcome = Result<(), String>;

/// SQLite's writer connection and the group of transactions released into
/// its open transaction, if any.
pub struct Writer {
    conn: Inline,
    group: Option<Group>,
}

struct Group {
    members: Vec<oneshot::Sender<Outcome>>,
}

impl Writer {
    pub fn new(conn: Inline) -> Writer {
        Writer { conn, group: None }
    }

    /// Before a new transaction or a single statement: a group whose SQLite
    /// transaction is gone (rolled back by SQLite as a whole) has failed;
    /// with no group, nothing is left open.
    fn settle(&mut self) -> Result<(), sqlx::Error> {
        if self.group.is_some() && !self.conn.in_transaction() {
            self.fail_group("SQLite rolled the transaction back");
        }
        if self.group.is_none() {
            self.conn.roll_back()?;
        }
        Ok(())
    }

    fn fail_group(&mut self, why: &str) {
        if let Some(g) = self.group.take() {
            for m in g.members {
                let _ = m.send(Err(why.to_owned()));
            }
        }
    }

    /// Commits the open transaction with every member released into it,
    /// and tells each of them. (In WAL mode a `COMMIT` that holds the write
    /// lock waits for nobody.)
    fn commit_all(&mut self) -> Result<(), sqlx::Error> {
        let done = if self.conn.in_transaction() {
            self.conn.execute_batch("COMMIT")
        } else {
            Err(sqlx::Error::Protocol(
                "SQLite rolled the transaction back".into(),
            ))
        };
        if done.is_err() {
            // Not committed: nothing of it stays.
            if let Err(e) = self.conn.roll_back() {
                tracing::error!(error = %e, "rolling back a failed commit failed");
            }
        }
        if let Some(g) = self.group.take() {
            let told = done.as_ref().map(|_| ()).map_err(|e| e.to_string());
            for m in g.members {
                let _ = m.send(told.clone());
            }
        }
        done
    }

    /// Adds a member, whose work is released into the open transaction, to
    /// the group (begun if there is none).
    fn join(&mut self, member: oneshot::Sender<Outcome>) {
        self.group
            .get_or_insert_with(|| Group {
                members: Vec::new(),
            })
            .members
            .push(member);
    }

    fn group_len(&self) -> usize {
        self.group.as_ref().map_or(0, |g| g.members.len())
    }
}

/// The writer behind its first-come, first-served lock, and how many tasks
/// wait for it.
#[derive(Clone)]
pub struct Shared {
    lock: Arc<Mutex<Writer>>,
    waiting: Arc<AtomicUsize>,
}

/// Counts a task as waiting for the writer until it has it. The last one to
/// give up waiting without getting it (its task was cancelled) sees that a
/// group it leaves open still commits.
struct Waiting<'a> {
    shared: &'a Shared,
    got_it: bool,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let before = self.shared.waiting.fetch_sub(1, Ordering::Relaxed);
        if !self.got_it && before == 1 {
            self.shared.flush_soon();
        }
    }
}

impl Shared {
    pub fn new(conn: Inline) -> Shared {
        Shared {
            lock: Arc::new(Mutex::new(Writer::new(conn))),
            waiting: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// For the checkpointer: ends with the database.
    pub fn downgrade(&self) -> std::sync::Weak<Mutex<Writer>> {
        Arc::downgrade(&self.lock)
    }

    async fn lock(&self) -> OwnedMutexGuard<Writer> {
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let mut counted = Waiting {
            shared: self,
            got_it: false,
        };
        let w = self.lock.clone().lock_owned().await;
        counted.got_it = true;
        w
    }

    /// True when another task waits for the writer: a transaction that
    /// commits now leaves its work to the group's `COMMIT`.
    fn others_waiting(&self) -> bool {
        self.waiting.load(Ordering::Relaxed) > 0
    }

    /// Lets the writer go after a transaction that did not commit: a group
    /// left open commits now unless another transaction will join it.
    fn hand_on(&self, mut w: OwnedMutexGuard<Writer>) {
        if w.group.is_some() && !self.others_waiting() {
            let _ = w.commit_all();
        }
    }

    /// Commits an open group without waiting for a next transaction.
    fn flush_soon(&self) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let shared = self.clone();
        rt.spawn(async move {
            let mut w = shared.lock().await;
            if w.group.is_some() {
                let _ = w.commit_all();
            }
        });
    }

    /// A transaction: `BEGIN IMMEDIATE`, or, with a group open, a savepoint
    /// in its transaction.
    pub async fn begin(&self) -> Result<SharedTx, sqlx::Error> {
        let mut w = self.lock().await;
        w.settle()?;
        let savepoint = w.group.is_some();
        if savepoint {
            if let Err(e) = w.conn.execute_batch("SAVEPOINT member") {
                self.hand_on(w);
                return Err(e);
            }
        } else {
            sqlx::query("BEGIN IMMEDIATE")
                .execute(&mut w.conn as &mut Conn)
                .await?;
        }
        Ok(SharedTx {
            w: Some(w),
            savepoint,
            shared: self.clone(),
        })
    }

    /// The connection for single statements, each its own transaction: an
    /// open group commits first.
    pub async fn conn(&self) -> Result<OwnedMutexGuard<Writer>, sqlx::Error> {
        let mut w = self.lock().await;
        if w.group.is_some() {
            // Its members learn the outcome; the statement goes on anyway.
            let _ = w.commit_all();
        }
        w.settle()?;
        Ok(w)
    }
}

impl std::ops::Deref for Writer {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        &self.conn
    }
}

impl std::ops::DerefMut for Writer {
    fn deref_mut(&mut self) -> &mut Conn {
        &mut self.conn
    }
}

/// One transaction on the shared writer (see [`super::Db::begin_write`]).
pub struct SharedTx {
    w: Option<OwnedMutexGuard<Writer>>,
    /// Begun inside a group's transaction, as a savepoint.
    savepoint: bool,
    shared: Shared,
}

impl SharedTx {
    pub fn conn(&mut self) -> &mut Conn {
        &mut self.w.as_mut().expect("held until the end").conn
    }

    pub fn conn_ref(&self) -> &Conn {
        &self.w.as_ref().expect("held until the end").conn
    }

    /// Commits: at once when nobody waits for the writer (or the group is
    /// full), else with the transactions that follow (see the module's
    /// documentation). Returns once the `COMMIT` is done.
    pub async fn commit(mut self) -> Result<(), sqlx::Error> {
        let mut w = self.w.take().expect("held until the end");
        if self.savepoint {
            if let Err(e) = w.conn.execute_batch("RELEASE member") {
                rollback_member(&mut w, true);
                self.shared.hand_on(w);
                return Err(e);
            }
        }
        if self.shared.others_waiting() && w.group_len() < MAX_GROUP {
            let (tell, told) = oneshot::channel();
            w.join(tell);
            drop(w);
            return committed(told).await;
        }
        let done = w.commit_all();
        drop(w);
        // The writer goes to the next task waiting for it, woken on this
        // thread: let it run now rather than after this task has answered
        // its request (the writer would sit idle meanwhile).
        tokio::task::yield_now().await;
        done
    }
}

/// Undoes one transaction: to its savepoint inside a group, else all of it.
fn rollback_member(w: &mut Writer, savepoint: bool) {
    if savepoint {
        if w.conn
            .execute_batch("ROLLBACK TO member; RELEASE member")
            .is_ok()
        {
            return;
        }
        // The savepoint is gone with the whole transaction: the group failed.
        w.fail_group("SQLite rolled the transaction back");
    }
    if let Err(e) = w.conn.roll_back() {
        tracing::error!(error = %e, "rolling back a write transaction failed");
    }
}

impl Drop for SharedTx {
    fn drop(&mut self) {
        // Not committed: undone before the writer is handed on.
        if let Some(mut w) = self.w.take() {
            rollback_member(&mut w, self.savepoint);
            self.shared.hand_on(w);
        }
    }
}

/// Waits for the `COMMIT` of the group this transaction was released into.
async fn committed(told: oneshot::Receiver<Outcome>) -> Result<(), sqlx::Error> {
    match told.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(why)) => Err(sqlx::Error::Protocol(format!(
            "the transaction was not committed: {why}"
        ))),
        Err(_) => Err(sqlx::Error::Protocol(
            "the transaction was not committed: the writer closed".into(),
        )),
    }
}
