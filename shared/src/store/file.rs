//! The file under a durable [`super::memory::MemoryStore`]: a redb database, one table per kind
//! of item, each value its JSON. Every commit is fsynced (redb's default durability) before the
//! change is applied in memory and acknowledged; a crash mid-commit leaves the previous state.
//!
//! After a failed write (a full disk, an I/O error) redb refuses every later transaction until
//! the file is opened again, so the journal closes it and opens it again at the next write: the
//! file holds the last commit that succeeded, which is what memory holds too (changes are applied
//! only after their commit), and `serve` takes webhooks again as soon as the disk does.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::StoreError;
use super::state::{Change, State};

const EVENTS: TableDefinition<&str, &str> = TableDefinition::new("events");
const DELIVERIES: TableDefinition<&str, &str> = TableDefinition::new("deliveries");
const TOKENS: TableDefinition<&str, &str> = TableDefinition::new("tokens");
const LINKS: TableDefinition<&str, &str> = TableDefinition::new("links");
const CACHE: TableDefinition<&str, &str> = TableDefinition::new("cache");
const USAGE: TableDefinition<&str, &str> = TableDefinition::new("usage");

pub(super) struct FileJournal {
    path: PathBuf,
    /// `None` after a failed write, until the next write opens the file again.
    db: Mutex<Option<Database>>,
}

fn failed(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("data file: {e}"))
}

fn json<T: Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v)
        .map_err(|e| StoreError::Corrupt("data file item".into(), e.to_string()))
}

/// A key made of parts that cannot run into each other (each part's length first).
fn key(parts: &[&str]) -> String {
    parts.iter().map(|p| format!("{}:{p}", p.len())).collect()
}

impl FileJournal {
    /// Opens (or creates) the file and reads back everything it holds.
    pub(super) fn open(path: &Path) -> Result<(Self, State), StoreError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| failed(format!("{}: {e}", dir.display())))?;
        }
        let db = create(path)?;
        let state = load(&db)?;
        let journal = FileJournal {
            path: path.to_owned(),
            db: Mutex::new(Some(db)),
        };
        Ok((journal, state))
    }

    /// Commits `changes` at once, with fsync; after a failed write, first opens the file again.
    pub(super) fn write(&self, changes: &[Change]) -> Result<(), StoreError> {
        let mut db = self.db.lock().unwrap_or_else(|e| e.into_inner());
        if db.is_none() {
            *db = Some(create(&self.path)?);
            tracing::info!(file = %self.path.display(), "the data file is open again after a failed write");
        }
        let result = commit(db.as_ref().expect("opened above"), changes);
        if let Err(e) = &result
            && !matches!(e, StoreError::Corrupt(..))
        {
            // Closed now: redb takes no transaction after an I/O error until reopened.
            *db = None;
        }
        result
    }

    /// Whether the file takes writes: after a failed write, whether a commit the size of an
    /// event's fits again (the disk has room). An empty commit would fit on a full disk.
    pub(super) fn writable(&self) -> Result<(), StoreError> {
        let mut db = self.db.lock().unwrap_or_else(|e| e.into_inner());
        if db.is_some() {
            return Ok(());
        }
        let opened = create(&self.path)?;
        let probe = (|| {
            let w = opened.begin_write().map_err(failed)?;
            w.open_table(PROBE)
                .map_err(failed)?
                .insert("probe", "x".repeat(PROBE_BYTES).as_str())
                .map_err(failed)?;
            w.commit().map_err(failed)
        })();
        if probe.is_ok() {
            *db = Some(opened);
        }
        probe
    }
}

/// Where [`FileJournal::writable`] writes its probe, and how much.
const PROBE: TableDefinition<&str, &str> = TableDefinition::new("probe");
const PROBE_BYTES: usize = 64 * 1024;

fn create(path: &Path) -> Result<Database, StoreError> {
    Database::create(path).map_err(|e| match e {
        redb::DatabaseError::DatabaseAlreadyOpen => StoreError::InUse(path.display().to_string()),
        e => failed(format!("{}: {e}", path.display())),
    })
}

fn load(db: &Database) -> Result<State, StoreError> {
    // Create every table once, so that a read of an empty file finds them.
    let w = db.begin_write().map_err(failed)?;
    for t in [EVENTS, DELIVERIES, TOKENS, LINKS, CACHE, USAGE] {
        w.open_table(t).map_err(failed)?;
    }
    w.commit().map_err(failed)?;
    let r = db.begin_read().map_err(failed)?;
    let mut state = State::default();
    for (k, v) in entries(&r, EVENTS)? {
        state.events.insert(k, decode(&v)?);
    }
    for (_, v) in entries(&r, DELIVERIES)? {
        let d: crate::event::Delivery = decode(&v)?;
        state.deliveries.insert(d.key(), d);
    }
    for (k, v) in entries(&r, TOKENS)? {
        state.tokens.insert(k, decode(&v)?);
    }
    for (_, v) in entries(&r, LINKS)? {
        let (connector, reference, target): (String, String, crate::event::DeliveryKey) =
            decode(&v)?;
        state.links.insert((connector, reference), target);
    }
    for (k, v) in entries(&r, CACHE)? {
        state.cache.insert(k, decode(&v)?);
    }
    for (_, v) in entries(&r, USAGE)? {
        let u: super::Usage = decode(&v)?;
        state.usage.insert((u.name.clone(), u.period.clone()), u);
    }
    Ok(state)
}

fn commit(db: &Database, changes: &[Change]) -> Result<(), StoreError> {
    let w = db.begin_write().map_err(failed)?;
    for change in changes {
        match change {
            Change::Event(e) => put(&w, EVENTS, &e.pk(), &json(e)?)?,
            Change::Delivery(d) => put(&w, DELIVERIES, &key(&[&d.pk, &d.sk]), &json(d)?)?,
            Change::Token(name, slot) => put(&w, TOKENS, name, &json(slot)?)?,
            Change::Link(connector, reference, target) => put(
                &w,
                LINKS,
                &key(&[connector, reference]),
                &json(&(connector, reference, target))?,
            )?,
            Change::Cache(name, Some(entry)) => put(&w, CACHE, name, &json(entry)?)?,
            Change::Cache(name, None) => remove(&w, CACHE, name)?,
            Change::DropEvent(pk) => remove(&w, EVENTS, pk)?,
            Change::DropDelivery(k) => remove(&w, DELIVERIES, &key(&[&k.pk, &k.sk]))?,
            Change::Usage(u) => put(&w, USAGE, &key(&[&u.name, &u.period]), &json(u)?)?,
            Change::DropLink(connector, reference) => {
                remove(&w, LINKS, &key(&[connector, reference]))?
            }
        }
    }
    w.commit().map_err(failed)
}

fn put(
    w: &redb::WriteTransaction,
    table: TableDefinition<&str, &str>,
    k: &str,
    v: &str,
) -> Result<(), StoreError> {
    w.open_table(table)
        .map_err(failed)?
        .insert(k, v)
        .map_err(failed)?;
    Ok(())
}

fn remove(
    w: &redb::WriteTransaction,
    table: TableDefinition<&str, &str>,
    k: &str,
) -> Result<(), StoreError> {
    w.open_table(table)
        .map_err(failed)?
        .remove(k)
        .map_err(failed)?;
    Ok(())
}

fn entries(
    r: &redb::ReadTransaction,
    table: TableDefinition<&str, &str>,
) -> Result<Vec<(String, String)>, StoreError> {
    let t = r.open_table(table).map_err(failed)?;
    let mut out = vec![];
    for item in t.iter().map_err(failed)? {
        let (k, v) = item.map_err(failed)?;
        out.push((k.value().to_owned(), v.value().to_owned()));
    }
    Ok(out)
}

fn decode<T: DeserializeOwned>(v: &str) -> Result<T, StoreError> {
    serde_json::from_str(v).map_err(|e| StoreError::Corrupt("data file item".into(), e.to_string()))
}
