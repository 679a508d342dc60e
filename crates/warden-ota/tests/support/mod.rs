//! Test support: a real server on 127.0.0.1 port 0 with a real (temporary) encrypted store.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use warden_core::secret::Key32;
use warden_ota::admin::Redelivery;
use warden_ota::config::ServerConfig;
use warden_ota::events::{EventBus, EventRecord};
use warden_ota::keys::{KeyCache, Psk};
use warden_ota::script::CommandScript;
use warden_ota::server::Server;
use warden_ota::simulator::CardConfig;
use warden_ota::store::{ensure_audit_chain, StoreHandle};
use warden_store::ota as db;
use warden_store::Database;

pub struct TestServer {
    pub addr: SocketAddr,
    pub server: Server,
    pub store: StoreHandle,
    pub events: EventBus,
    pub dir: tempfile::TempDir,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

pub fn psk(byte: u8) -> Arc<Psk> {
    Arc::new(Psk::new(vec![byte; 16]).unwrap())
}

pub fn config() -> ServerConfig {
    // Generous timeouts: the test machine may be loaded.
    ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        handshake_timeout: Duration::from_secs(20),
        idle_timeout: Duration::from_secs(30),
        ..ServerConfig::default()
    }
}

pub async fn start(config: ServerConfig) -> TestServer {
    start_with(config, |_| {}).await
}

/// Starts a server; `prepare` runs on the database before the server starts.
pub async fn start_with(config: ServerConfig, prepare: impl FnOnce(&Database)) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let mut db = Database::create(&dir.path().join("warden.db"), &db_key()).unwrap();
    ensure_audit_chain(&mut db, &audit_key()).unwrap();
    prepare(&db);
    run_on(dir, db, config).await
}

fn db_key() -> Key32 {
    Key32::from_bytes([0x11; 32])
}

fn audit_key() -> Key32 {
    Key32::from_bytes([0x22; 32])
}

/// A server on `db` (in `dir`), listening on a new port.
async fn run_on(dir: tempfile::TempDir, db: Database, config: ServerConfig) -> TestServer {
    let (db_key, audit_key) = (db_key(), audit_key());
    let store = StoreHandle::start(db, db_key, audit_key);
    let events = EventBus::new(1 << 16);
    let server = Server::new(config, KeyCache::new(), store.clone(), events.clone()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let s = server.clone();
    let task = tokio::spawn(async move {
        s.run(listener, async {
            let _ = rx.await;
        })
        .await
    });
    let t = TestServer {
        addr,
        server,
        store,
        events,
        dir,
        shutdown: Some(tx),
        task: Some(task),
    };
    // run() loads the keys first; wait until it has.
    t.wait_for(|e| e.event.name() == "server_started").await;
    t
}

impl TestServer {
    pub async fn add_card(&self, identity: &str, key: &Arc<Psk>) {
        let id = identity.to_string();
        let k = key.expose_secret().to_vec();
        self.store
            .call(move |tx, ctx| db::add_key(tx, ctx.db_key(), &id, &k, false))
            .await
            .unwrap();
        self.server.reload_keys().await.unwrap();
    }

    pub async fn remove_card(&self, identity: &str) {
        let id = identity.to_string();
        self.store
            .call(move |tx, _| db::remove_key(tx, &id))
            .await
            .unwrap();
        self.server.reload_keys().await.unwrap();
    }

    pub async fn push(&self, card: &str, script: CommandScript, redelivery: Redelivery) -> u64 {
        self.push_targeted(card, script, redelivery, None).await
    }

    pub async fn push_targeted(
        &self,
        card: &str,
        script: CommandScript,
        redelivery: Redelivery,
        target: Option<String>,
    ) -> u64 {
        let new = db::NewScript {
            card: card.into(),
            label: None,
            body: script.encode(),
            targeted_application: target,
            redelivery: match redelivery {
                Redelivery::Allowed => db::StoredRedelivery::Allowed,
                Redelivery::Forbidden => db::StoredRedelivery::Forbidden,
            },
        };
        self.store
            .call(move |tx, _| db::push_script(tx, &new))
            .await
            .unwrap()
    }

    pub async fn reports(&self, card: &str) -> Vec<db::ScriptReport> {
        let c = card.to_string();
        self.store
            .call(move |tx, _| db::script_reports(tx, &c, None))
            .await
            .unwrap()
    }

    pub async fn audit_actions(&self) -> Vec<String> {
        self.store
            .call(|tx, _| {
                let mut stmt = tx.prepare("SELECT action FROM audit_events ORDER BY seq")?;
                let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await
            .unwrap()
    }

    pub fn card(&self, identity: &str, key: &Arc<Psk>) -> CardConfig {
        let mut c = CardConfig::new(self.addr, identity, key.clone());
        c.timeout = Duration::from_secs(30);
        c
    }

    /// Waits (up to 30 s) for an event among those recently emitted.
    pub async fn wait_for(&self, pred: impl Fn(&EventRecord) -> bool) -> Arc<EventRecord> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(e) = self.events.recent().into_iter().rev().find(|e| pred(e)) {
                return e;
            }
            if tokio::time::Instant::now() > deadline {
                let names: Vec<&str> = self
                    .events
                    .recent()
                    .iter()
                    .map(|e| e.event.name())
                    .collect::<Vec<_>>()
                    .into_iter()
                    .collect();
                panic!("event not seen; recent: {names:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn recent_json(&self) -> Vec<serde_json::Value> {
        self.events
            .recent()
            .iter()
            .map(|e| serde_json::from_str(&e.to_json()).unwrap())
            .collect()
    }

    pub async fn stop(mut self) {
        self.stop_in_place().await;
    }

    /// Tells the server to stop (as SIGTERM does) without waiting for it; [`stop`](Self::stop)
    /// then waits for the drain.
    pub fn begin_stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    async fn stop_in_place(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }

    /// Stops the server and starts a new one on the same database (a restart: nothing of the
    /// old one's memory is left), on a new port. Cards, keys and scripts stay in the database.
    pub async fn restart(mut self, config: ServerConfig) -> TestServer {
        self.stop_in_place().await;
        let Self {
            dir, server, store, ..
        } = self;
        drop((server, store));
        let db = Database::open(&dir.path().join("warden.db"), &db_key()).unwrap();
        run_on(dir, db, config).await
    }
}
