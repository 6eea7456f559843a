//! Failed sign-in bookkeeping per account and per source address: a growing
//! delay after a few failures, then a temporary lock.

use super::{Conn, Db};
use sqlx::Row;

/// How sign-in failures are throttled.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Failures allowed before any delay.
    pub free_failures: i64,
    /// Failures of one key that lock it.
    pub lock_after: i64,
    pub lock_ms: i64,
    pub max_delay_ms: i64,
}

impl Policy {
    pub const ACCOUNT: Policy = Policy {
        free_failures: 2,
        lock_after: 5,
        lock_ms: 15 * 60 * 1000,
        max_delay_ms: 60_000,
    };
    pub const SOURCE: Policy = Policy {
        free_failures: 5,
        lock_after: 20,
        lock_ms: 15 * 60 * 1000,
        max_delay_ms: 60_000,
    };

    /// The wait after `failures` failures before the next attempt is heard.
    pub fn delay_ms(&self, failures: i64) -> i64 {
        if failures <= self.free_failures {
            0
        } else {
            let exp = (failures - self.free_failures - 1).min(16) as u32;
            (1000i64 << exp).min(self.max_delay_ms)
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct State {
    pub failures: i64,
    pub last_failure: i64,
    pub locked_until: i64,
}

impl State {
    /// Milliseconds until an attempt is heard again, or `None` if now.
    pub fn wait_ms(&self, policy: &Policy, now: i64) -> Option<i64> {
        if self.locked_until > now {
            return Some(self.locked_until - now);
        }
        let free_at = self.last_failure + policy.delay_ms(self.failures);
        (self.locked_until == 0 && free_at > now).then(|| free_at - now)
    }
}

pub async fn get(db: &Db, key: &str) -> Result<State, sqlx::Error> {
    let row = sqlx::query(&db.sql(SELECT))
        .bind(key)
        .fetch_optional(db.reader())
        .await?;
    state_of(row)
}

/// [`get`] inside a transaction (or on a connection) of the caller's.
pub async fn get_in(db: &Db, conn: &mut Conn, key: &str) -> Result<State, sqlx::Error> {
    let row = sqlx::query(&db.sql(SELECT))
        .bind(key)
        .fetch_optional(&mut *conn)
        .await?;
    state_of(row)
}

const SELECT: &str =
    "SELECT failures, last_failure, locked_until FROM login_throttle WHERE key = $1";

fn state_of(row: Option<sqlx::any::AnyRow>) -> Result<State, sqlx::Error> {
    Ok(match row {
        Some(r) => State {
            failures: r.try_get("failures")?,
            last_failure: r.try_get("last_failure")?,
            locked_until: r.try_get("locked_until")?,
        },
        None => State::default(),
    })
}

/// Records a failure; returns the new state and whether it just locked.
pub async fn fail(
    db: &Db,
    key: &str,
    policy: &Policy,
    now: i64,
) -> Result<(State, bool), sqlx::Error> {
    let mut st = get(db, key).await?;
    if st.locked_until != 0 && st.locked_until <= now {
        // A lock that ran out starts the count again.
        st = State::default();
    }
    st.failures += 1;
    st.last_failure = now;
    let locked = st.failures >= policy.lock_after && st.locked_until <= now;
    if locked {
        st.locked_until = now + policy.lock_ms;
    }
    sqlx::query(&db.sql(
        "INSERT INTO login_throttle (key, failures, last_failure, locked_until) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (key) DO UPDATE SET failures = excluded.failures, last_failure = excluded.last_failure, locked_until = excluded.locked_until",
    ))
    .bind(key)
    .bind(st.failures)
    .bind(st.last_failure)
    .bind(st.locked_until)
    .execute(&mut *db.write_conn().await?)
    .await?;
    Ok((st, locked))
}

pub async fn clear(db: &Db, key: &str) -> Result<(), sqlx::Error> {
    sqlx::query(&db.sql("DELETE FROM login_throttle WHERE key = $1"))
        .bind(key)
        .execute(&mut *db.write_conn().await?)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_grows_then_caps() {
        let p = Policy::ACCOUNT;
        assert_eq!(p.delay_ms(1), 0);
        assert_eq!(p.delay_ms(2), 0);
        assert_eq!(p.delay_ms(3), 1000);
        assert_eq!(p.delay_ms(4), 2000);
        assert_eq!(p.delay_ms(40), 60_000);
    }

    #[test]
    fn wait_respects_lock() {
        let p = Policy::ACCOUNT;
        let st = State {
            failures: 5,
            last_failure: 1000,
            locked_until: 10_000,
        };
        assert_eq!(st.wait_ms(&p, 2000), Some(8000));
        assert_eq!(st.wait_ms(&p, 10_000), None);
        let st = State {
            failures: 3,
            last_failure: 1000,
            locked_until: 0,
        };
        assert_eq!(st.wait_ms(&p, 1500), Some(500));
        assert_eq!(st.wait_ms(&p, 2000), None);
    }
}
