//! The server's database thread: SQLite work off the async runtime, with group commit.
//!
//! One thread owns the [`Database`]. Async code sends it jobs (closures over a transaction) and
//! awaits the reply. The thread takes every job waiting, runs them in one `BEGIN IMMEDIATE`
//! transaction (each in its own savepoint, so one failing job does not undo the others),
//! commits once, and only then answers: a caller that got `Ok` knows its writes are on disk
//! (`synchronous = FULL`). Under load, many sessions share one fsync.
//!
//! Audit events go through [`JobCtx::audit`], inside the same transaction as the change they
//! describe: the batch collects its jobs' events (a failed job's are dropped with its
//! savepoint) and appends them to the chain in one go before the commit (or before a job whose
//! caller waits, which may read them), so the chain's head is checked and rewritten once per
//! transaction, not once per job. If an append fails, the whole transaction is rolled back and
//! every job of the batch fails.

use std::cell::RefCell;
use std::sync::mpsc;

use rusqlite::Transaction;
use warden_core::audit::{AuditKey, ChainId, NewEvent, Outcome};
use warden_core::report::{report, Report};
use warden_core::secret::Key32;
use warden_store::audit::{AuditLog, AuditPolicy, AuditedTx};
use warden_store::ota::OtaStoreError;
use warden_store::{Database, StoreError};

/// The store failed: the message says why (never key material).
#[derive(Debug, Clone, thiserror::Error)]
#[error("store: {0}")]
pub struct StoreFailure(pub String);

impl From<OtaStoreError> for StoreFailure {
    fn from(e: OtaStoreError) -> Self {
        Self(report(&e))
    }
}

/// What a job can use besides the transaction: the batch's audit events (they commit with the
/// job's changes) and the `database` key.
pub struct JobCtx<'a> {
    events: RefCell<Vec<NewEvent>>,
    db_key: &'a Key32,
}

impl JobCtx<'_> {
    /// Records audit events in the job's transaction (`tx` is that transaction): they are
    /// appended to the chain before it commits, and dropped if the job fails.
    pub fn audit(&self, _tx: &Transaction<'_>, events: Vec<NewEvent>) -> Result<(), OtaStoreError> {
        self.events.borrow_mut().extend(events);
        Ok(())
    }

    /// The `database` purpose key, to open sealed PSKs.
    pub fn db_key(&self) -> &Key32 {
        self.db_key
    }
}

/// A job queued by [`StoreHandle::submit_before_commit`]: its result, once it has run.
pub struct Submitted<T>(tokio::sync::oneshot::Receiver<Result<T, StoreFailure>>);

impl<T> Submitted<T> {
    /// The job's result (before its transaction commits).
    pub async fn outcome(self) -> Result<T, StoreFailure> {
        self.0
            .await
            .map_err(|_| StoreFailure("the database thread stopped during a call".into()))?
    }
}

type Completion = Box<dyn FnOnce(Option<&StoreFailure>) + Send>;
type Work = Box<dyn FnOnce(&Transaction<'_>, &JobCtx<'_>) -> (bool, Completion) + Send>;

/// A job for the database thread. An urgent one has a caller waiting for its commit; a deferred
/// one (a record nobody waits on) may wait up to [`DEFER`] for company, so it shares a commit.
struct Job {
    urgent: bool,
    work: Work,
}

/// How long a batch of deferred jobs may wait for more jobs before it commits.
const DEFER: std::time::Duration = std::time::Duration::from_millis(10);

/// A handle to the database thread; cheap to clone. When the last handle is dropped, the
/// thread finishes the jobs it has, closes the database and is joined — before the process can
/// exit under it (SQLCipher's global state goes away at exit; a connection closed after that
/// crashed).
#[derive(Clone)]
pub struct StoreHandle {
    inner: std::sync::Arc<Inner>,
}

struct Inner {
    tx: Option<mpsc::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(thread) = self.thread.take() {
            // A job holding the last handle ends on the database thread itself: nothing to join.
            if thread.thread().id() != std::thread::current().id() {
                let _ = thread.join();
            }
        }
    }
}

/// An audit event for now.
pub fn audit_event(actor: &str, action: &str, subject: &str, outcome: Outcome) -> NewEvent {
    NewEvent::new(
        warden_store::audit::timestamp_now(),
        clip(actor),
        action,
        clip(subject),
        outcome,
    )
}

/// Audit text fields are at most 256 bytes.
fn clip(s: &str) -> String {
    if s.len() <= 200 {
        return s.to_string();
    }
    let mut end = 200;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// For tests on bare databases: starts an audit chain if there is none. `warden init` starts the
/// real chain and exports its initial key for the auditor; this one exports nothing. Returns
/// true if it created one.
#[doc(hidden)]
pub fn ensure_audit_chain(db: &mut Database, audit_key: &Key32) -> Result<bool, StoreError> {
    let exists: i64 = db
        .conn()
        .query_row("SELECT count(*) FROM audit_state", [], |r| r.get(0))?;
    if exists > 0 {
        return Ok(false);
    }
    AuditLog::new(audit_key.clone()).create(
        db,
        AuditKey::random(),
        ChainId::random(),
        AuditPolicy::default(),
    )?;
    Ok(true)
}

impl StoreHandle {
    /// Starts the database thread with an open database, the `database` purpose key (for
    /// sealed PSKs) and the `audit` purpose key; records are not queued for a SIEM. The audit
    /// chain must exist ([`ensure_audit_chain`]).
    pub fn start(db: Database, db_key: Key32, audit_key: Key32) -> Self {
        Self::start_with(db, db_key, AuditLog::new(audit_key))
    }

    /// [`start`](Self::start) with the audit chain as given: e.g. one that also queues every
    /// record for the SIEM ([`AuditLog::with_siem_spool`]), when a forwarder drains the queue.
    pub fn start_with(db: Database, db_key: Key32, audit: AuditLog) -> Self {
        let (tx, rx) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("warden-ota-db".into())
            .spawn(move || run(db, rx, db_key, audit))
            .expect("spawn the database thread");
        Self {
            inner: std::sync::Arc::new(Inner {
                tx: Some(tx),
                thread: Some(thread),
            }),
        }
    }

    fn send(&self, urgent: bool, work: Work) -> Result<(), StoreFailure> {
        let job = Job { urgent, work };
        self.inner
            .tx
            .as_ref()
            .expect("present until the last handle is dropped")
            .send(job)
            .map_err(|_| StoreFailure("the database thread has stopped".into()))
    }

    /// Runs `f` in the next transaction; resolves after the commit.
    pub async fn call<T, F>(&self, f: F) -> Result<T, StoreFailure>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>, &JobCtx) -> Result<T, OtaStoreError> + Send + 'static,
    {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.send(
            true,
            Box::new(move |tx, ctx| {
                let result = f(tx, ctx);
                let ok = result.is_ok();
                let completion: Completion = Box::new(move |commit| {
                    let out = match (result, commit) {
                        (Ok(v), None) => Ok(v),
                        (Ok(_), Some(e)) => Err(e.clone()),
                        (Err(e), _) => Err(StoreFailure::from(e)),
                    };
                    let _ = reply.send(out);
                });
                (ok, completion)
            }),
        )?;
        rx.await
            .map_err(|_| StoreFailure("the database thread stopped during a call".into()))?
    }

    /// Runs `f` in the open transaction and resolves as soon as it has run, before the commit
    /// (which follows within [`DEFER`]). For steps whose loss in a crash is harmless (see
    /// [`crate::plan::Durability`]); a failed commit is logged.
    pub async fn call_before_commit<T, F>(&self, f: F) -> Result<T, StoreFailure>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>, &JobCtx) -> Result<T, OtaStoreError> + Send + 'static,
    {
        self.submit_before_commit(f)?.outcome().await
    }

    /// [`call_before_commit`](Self::call_before_commit) without waiting: queues `f` and returns
    /// at once; the [`Submitted`] job's result can be awaited later (jobs run in the order they
    /// are queued, so a later job sees its writes).
    pub fn submit_before_commit<T, F>(&self, f: F) -> Result<Submitted<T>, StoreFailure>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>, &JobCtx) -> Result<T, OtaStoreError> + Send + 'static,
    {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.send(
            false,
            Box::new(move |tx, ctx| {
                let result = f(tx, ctx);
                let ok = result.is_ok();
                // Nobody waits any more (the session ended): the failure is logged here.
                if let Err(Err(e)) = reply.send(result.map_err(StoreFailure::from)) {
                    tracing::error!(error = %e, "store write failed after the response left");
                }
                let completion: Completion = Box::new(|commit| {
                    if let Some(e) = commit {
                        tracing::error!(error = %e, "store commit failed after the response left");
                    }
                });
                (ok, completion)
            }),
        )?;
        Ok(Submitted(rx))
    }

    /// Like [`StoreHandle::call`], from synchronous code (not on a runtime thread).
    pub fn call_blocking<T, F>(&self, f: F) -> Result<T, StoreFailure>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>, &JobCtx) -> Result<T, OtaStoreError> + Send + 'static,
    {
        let (reply, rx) = mpsc::channel();
        self.send(
            true,
            Box::new(move |tx, ctx| {
                let result = f(tx, ctx);
                let ok = result.is_ok();
                let completion: Completion = Box::new(move |commit| {
                    let out = match (result, commit) {
                        (Ok(v), None) => Ok(v),
                        (Ok(_), Some(e)) => Err(e.clone()),
                        (Err(e), _) => Err(StoreFailure::from(e)),
                    };
                    let _ = reply.send(out);
                });
                (ok, completion)
            }),
        )?;
        rx.recv()
            .map_err(|_| StoreFailure("the database thread stopped during a call".into()))?
    }

    /// Runs `f` without waiting (it commits with the next batch, within [`DEFER`]); a failure is
    /// logged.
    pub fn spawn<F>(&self, what: &'static str, f: F)
    where
        F: FnOnce(&Transaction<'_>, &JobCtx) -> Result<(), OtaStoreError> + Send + 'static,
    {
        let sent = self.send(
            false,
            Box::new(move |tx, ctx| {
                let result = f(tx, ctx);
                let ok = result.is_ok();
                let completion: Completion = Box::new(move |commit| {
                    if let Err(e) = result {
                        tracing::error!(what, error = %Report(&e), "store write failed");
                    } else if let Some(e) = commit {
                        tracing::error!(what, error = %e, "store commit failed");
                    }
                });
                (ok, completion)
            }),
        );
        if let Err(e) = sent {
            tracing::error!(what, error = %Report(&e), "store write dropped");
        }
    }
}

const MAX_BATCH: usize = 512;

/// A savepoint statement, prepared once per connection (one per job: parsing it each time was
/// a measurable share of the database thread).
fn savepoint(tx: &Transaction<'_>, sql: &str) -> rusqlite::Result<()> {
    tx.prepare_cached(sql)?.execute([]).map(drop)
}

fn run(mut db: Database, rx: mpsc::Receiver<Job>, db_key: Key32, audit: AuditLog) {
    let (mut jobs, mut commits) = (0u64, 0u64);
    while let Ok(first) = rx.recv() {
        let tx = match audit.begin(&mut db) {
            Ok(tx) => tx,
            Err(e) => {
                let failure = StoreFailure(format!("cannot begin a transaction: {e}"));
                tracing::error!(error = %failure, "database unavailable");
                // Dropping a job drops its reply channel: its caller gets an error.
                drop(first);
                continue;
            }
        };
        let ctx = JobCtx {
            events: RefCell::new(Vec::new()),
            db_key: &db_key,
        };
        // Jobs run as they arrive. The transaction commits as soon as a job has a caller
        // waiting for the commit (after taking what else is already queued, to share the
        // fsync), or DEFER after it opened, or at MAX_BATCH jobs.
        let deadline = std::time::Instant::now() + DEFER;
        let mut completions = Vec::new();
        let mut urgent = false;
        let mut failure = None;
        let mut next = Some(first);
        while let Some(job) = next.take() {
            urgent |= job.urgent;
            if job.urgent && failure.is_none() {
                // A waiting caller may read the chain: the records of the jobs before it go
                // in first.
                failure = append(&tx, &ctx).err();
            }
            completions.push(run_job(&tx, &ctx, job));
            if completions.len() >= MAX_BATCH {
                break;
            }
            next = match rx.try_recv() {
                Ok(job) => Some(job),
                Err(mpsc::TryRecvError::Empty) if !urgent => rx
                    .recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
                    .ok(),
                Err(_) => None,
            };
        }
        jobs += completions.len() as u64;
        commits += 1;
        let commit = match failure.or_else(|| append(&tx, &ctx).err()) {
            None => tx
                .commit()
                .err()
                .map(|e| StoreFailure(format!("commit failed: {e}"))),
            // Dropping the transaction rolls every job of the batch back.
            Some(failure) => Some(failure),
        };
        for completion in completions {
            completion(commit.as_ref());
        }
    }
    tracing::info!(jobs, commits, "database thread stopped");
}

/// Appends the audit records the batch's jobs have made so far to the chain.
fn append(tx: &AuditedTx<'_>, ctx: &JobCtx<'_>) -> Result<(), StoreFailure> {
    tx.audit(ctx.events.take()).map(drop).map_err(|e| {
        StoreFailure(format!(
            "audit append failed, nothing committed: {}",
            report(&e)
        ))
    })
}

/// Runs one job in its own savepoint (rolled back alone if the job fails).
fn run_job(tx: &Transaction<'_>, ctx: &JobCtx<'_>, job: Job) -> Completion {
    if let Err(e) = savepoint(tx, "SAVEPOINT job") {
        let failure = StoreFailure(format!("savepoint: {e}"));
        return Box::new(move |_: Option<&StoreFailure>| {
            tracing::error!(error = %failure, "store job skipped");
        });
    }
    let audited = ctx.events.borrow().len();
    let (ok, completion) = (job.work)(tx, ctx);
    let end = if ok {
        savepoint(tx, "RELEASE job")
    } else {
        ctx.events.borrow_mut().truncate(audited);
        savepoint(tx, "ROLLBACK TO job").and_then(|()| savepoint(tx, "RELEASE job"))
    };
    if let Err(e) = end {
        tracing::error!(error = %Report(&e), "store savepoint release failed");
    }
    completion
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The record of an administrator adding `card`'s key.
    fn key_added(card: &str) -> Vec<NewEvent> {
        vec![audit_event("admin", "ota.key.add", card, Outcome::Success)]
    }

    fn open() -> (tempfile::TempDir, StoreHandle) {
        let dir = tempfile::tempdir().unwrap();
        let db_key = Key32::from_bytes([1; 32]);
        let audit_key = Key32::from_bytes([2; 32]);
        let mut db = Database::create(&dir.path().join("w.db"), &db_key).unwrap();
        assert!(ensure_audit_chain(&mut db, &audit_key).unwrap());
        assert!(!ensure_audit_chain(&mut db, &audit_key).unwrap());
        (dir, StoreHandle::start(db, db_key, audit_key))
    }

    #[tokio::test]
    async fn calls_commit_and_failures_roll_back_alone() {
        let (_dir, store) = open();
        let ok = store.call(|tx, ctx| {
            warden_store::ota::add_key(tx, ctx.db_key(), "card-1", &[3; 16], false)?;
            ctx.audit(tx, key_added("card-1"))?;
            Ok(7)
        });
        let bad = store.call(|tx, ctx| {
            warden_store::ota::add_key(tx, ctx.db_key(), "card-2", &[3; 16], false)?;
            ctx.audit(tx, key_added("card-2"))?;
            // Fails after a write and its record: both must be rolled back.
            warden_store::ota::add_key(tx, ctx.db_key(), "card-1", &[3; 16], false)?;
            Ok(())
        });
        let (ok, bad) = tokio::join!(ok, bad);
        assert_eq!(ok.unwrap(), 7);
        assert!(bad.unwrap_err().0.contains("already has a key"));
        let cards = store
            .call(|tx, _| warden_store::ota::list_cards(tx))
            .await
            .unwrap();
        assert_eq!(cards.len(), 1, "card-2's insert was rolled back");
        let audited: i64 = store
            .call(|tx, _| {
                Ok(tx.query_row(
                    "SELECT count(*) FROM audit_events WHERE action = 'ota.key.add'",
                    [],
                    |r| r.get(0),
                )?)
            })
            .await
            .unwrap();
        assert_eq!(audited, 1, "the failed job's record went with it");
        let s2 = store.clone();
        let n = tokio::task::spawn_blocking(move || {
            s2.call_blocking(|tx, _| Ok(warden_store::ota::list_cards(tx)?.len()))
        })
        .await
        .unwrap()
        .unwrap();
        assert_eq!(n, 1);
    }

    #[tokio::test]
    async fn a_failed_append_rolls_back_the_whole_batch() {
        let (_dir, store) = open();
        // A head that claims rows that are not there: the next append refuses.
        store
            .call(|tx, _| {
                tx.execute("UPDATE audit_state SET next_seq = next_seq + 5", [])?;
                Ok(())
            })
            .await
            .unwrap();
        let quiet = store.call(|tx, ctx| {
            warden_store::ota::add_key(tx, ctx.db_key(), "card-1", &[3; 16], false)?;
            Ok(())
        });
        let audited = store.call(|tx, ctx| {
            warden_store::ota::add_key(tx, ctx.db_key(), "card-2", &[3; 16], false)?;
            ctx.audit(tx, key_added("card-2"))
        });
        let (quiet, audited) = tokio::join!(quiet, audited);
        let err = audited.unwrap_err().0;
        assert!(err.contains("audit append failed"), "{err}");
        let cards = store
            .call(|tx, _| warden_store::ota::list_cards(tx))
            .await
            .unwrap();
        // The job without a record shared the batch or committed before it: never card-2.
        assert!(cards.iter().all(|c| c.identity != "card-2"), "{cards:?}");
        if quiet.is_err() {
            assert!(cards.is_empty());
        }
    }
}
