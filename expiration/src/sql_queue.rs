//! The delay queue in the service's own database (`expiration_jobs`): SQLite in embedded
//! mode, PostgreSQL otherwise. Durable: a restart finds every pending job, and overdue
//! ones are claimable at once.
//!
//! A claim is one `UPDATE ... WHERE order_id IN (SELECT ... LIMIT n) RETURNING`: on SQLite
//! writes are serialised, on PostgreSQL the inner select skips rows another claimer has
//! locked and the outer `available_at <= now` is rechecked on the locked row, so two
//! replicas never take the same job.

use std::sync::Arc;

use anyhow::Context;
use async_trait::async_trait;
use ticketing_contracts::{OrderId, Timestamp};
use ticketing_store::{query, Backend as StoreBackend, Query, Store, Tx};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::queue::{wait_and_claim, Backend, Claim, DelayQueue, DueJob, QueueOptions};

#[derive(Clone, Debug)]
pub struct SqlDelayQueue {
    store: Store,
    wake: Arc<Notify>,
    options: QueueOptions,
    claim_sql: Arc<str>,
}

impl SqlDelayQueue {
    /// A queue over `store`, which must have been opened with [`crate::MIGRATIONS`].
    pub fn new(store: Store, options: QueueOptions) -> SqlDelayQueue {
        let lock = match store.backend() {
            StoreBackend::Postgres => " FOR UPDATE SKIP LOCKED",
            StoreBackend::Sqlite => "",
        };
        let claim_sql = format!(
            "UPDATE expiration_jobs SET available_at = $1, claim_token = $2 \
             WHERE order_id IN (SELECT order_id FROM expiration_jobs WHERE available_at <= $3 \
                                ORDER BY available_at LIMIT $4{lock}) \
               AND available_at <= $3 \
             RETURNING order_id, due_at"
        );
        SqlDelayQueue {
            store,
            wake: Arc::new(Notify::new()),
            options,
            claim_sql: claim_sql.into(),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// How many jobs are pending or claimed.
    pub async fn len(&self) -> anyhow::Result<usize> {
        let n: i64 = query("SELECT COUNT(*) FROM expiration_jobs")
            .scalar(self.store.reader())
            .await?;
        Ok(n as usize)
    }
}

#[async_trait]
impl Backend for SqlDelayQueue {
    async fn claim(&self, claim: &Claim) -> anyhow::Result<Vec<DueJob>> {
        let rows = query(&self.claim_sql)
            .bind(claim.lease_until.as_millis())
            .bind(&claim.token)
            .bind(claim.now.as_millis())
            .bind(claim.max as i64)
            .fetch_all(self.store.writer())
            .await
            .context("claiming due expiration jobs")?;
        let mut jobs = rows
            .iter()
            .map(|row| {
                Ok(DueJob {
                    order_id: row.get("order_id")?,
                    due_at_millis: Timestamp::from_millis(row.get("due_at")?),
                    claim: claim.token.clone(),
                })
            })
            .collect::<Result<Vec<_>, ticketing_store::Error>>()?;
        jobs.sort_by_key(|j| j.due_at_millis);
        Ok(jobs)
    }

    async fn earliest(&self) -> anyhow::Result<Option<Timestamp>> {
        let at: Option<i64> = query("SELECT MIN(available_at) FROM expiration_jobs")
            .scalar(self.store.reader())
            .await?;
        Ok(at.map(Timestamp::from_millis))
    }
}

#[async_trait]
impl DelayQueue for SqlDelayQueue {
    async fn pending(&self) -> anyhow::Result<usize> {
        self.len().await
    }

    async fn schedule(&self, order_id: &OrderId, due_at: Timestamp) -> anyhow::Result<()> {
        schedule_sql(order_id, due_at)
            .execute(self.store.writer())
            .await
            .context("scheduling an expiration job")?;
        self.woken();
        Ok(())
    }

    async fn cancel(&self, order_id: &OrderId) -> anyhow::Result<()> {
        cancel_sql(order_id)
            .execute(self.store.writer())
            .await
            .context("cancelling an expiration job")?;
        Ok(())
    }

    async fn next_due(
        &self,
        max: usize,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Vec<DueJob>> {
        wait_and_claim(self, &self.wake, &self.options, max, shutdown).await
    }

    async fn complete(&self, job: &DueJob) -> anyhow::Result<()> {
        query("DELETE FROM expiration_jobs WHERE order_id = $1 AND claim_token = $2")
            .bind(&job.order_id)
            .bind(&job.claim)
            .execute(self.store.writer())
            .await
            .context("completing an expiration job")?;
        Ok(())
    }
}

impl SqlDelayQueue {
    /// [`DelayQueue::schedule`] in the caller's transaction; call [`Self::woken`] after
    /// its commit.
    pub async fn schedule_in(
        &self,
        tx: &mut Tx,
        order_id: &OrderId,
        due_at: Timestamp,
    ) -> Result<(), ticketing_store::Error> {
        schedule_sql(order_id, due_at).execute(tx).await?;
        Ok(())
    }

    /// [`DelayQueue::cancel`] in the caller's transaction.
    pub async fn cancel_in(
        &self,
        tx: &mut Tx,
        order_id: &OrderId,
    ) -> Result<(), ticketing_store::Error> {
        cancel_sql(order_id).execute(tx).await?;
        Ok(())
    }

    /// Jobs were scheduled (and committed): a waiting runner looks again, in case one is
    /// due sooner than what it waits for.
    pub fn woken(&self) {
        self.wake.notify_waiters();
    }
}

fn schedule_sql(order_id: &OrderId, due_at: Timestamp) -> Query<'static> {
    query(
        "INSERT INTO expiration_jobs (order_id, due_at, available_at, claim_token) \
         VALUES ($1, $2, $2, NULL) \
         ON CONFLICT (order_id) DO UPDATE \
           SET due_at = excluded.due_at, available_at = excluded.available_at, claim_token = NULL \
           WHERE expiration_jobs.due_at <> excluded.due_at",
    )
    .bind(order_id)
    .bind(due_at.as_millis())
}

fn cancel_sql(order_id: &OrderId) -> Query<'static> {
    query("DELETE FROM expiration_jobs WHERE order_id = $1").bind(order_id)
}
