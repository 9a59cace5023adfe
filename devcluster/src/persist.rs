//! Persistence for `--data-dir`: a snapshot plus an append-only log of changes.
//!
//! Every change is written to the log before the client hears of it, so a process killed at
//! any point (kill -9) loses no acknowledged write; with `sync` the log is also fsynced, so a
//! machine crash loses none either. A partly written last line (the process died mid-write)
//! is ignored on open. When the log grows, the state is written to a new snapshot (atomically,
//! by rename) and the log starts over.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::store::ObjectKey;

const SNAPSHOT: &str = "snapshot.json";
const LOG: &str = "changes.jsonl";
/// Records in the log before the state is snapshotted and the log started over.
const COMPACT_AFTER: usize = 50_000;

#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: record {line} is not valid: {source}")]
    Corrupt {
        path: PathBuf,
        line: usize,
        source: serde_json::Error,
    },
}

/// One change as the log holds it.
#[derive(Debug, Serialize, Deserialize)]
pub struct Record {
    pub rv: u64,
    pub key: StoredKey,
    /// The object after the change; `None` for a deletion.
    pub object: Option<Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredKey {
    pub resource: String,
    pub namespace: String,
    pub name: String,
}

impl From<&ObjectKey> for StoredKey {
    fn from(key: &ObjectKey) -> Self {
        StoredKey {
            resource: key.resource.clone(),
            namespace: key.namespace.clone(),
            name: key.name.clone(),
        }
    }
}

impl From<StoredKey> for ObjectKey {
    fn from(key: StoredKey) -> Self {
        ObjectKey {
            resource: key.resource,
            namespace: key.namespace,
            name: key.name,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Snapshot {
    rv: u64,
    objects: Vec<(StoredKey, Value)>,
}

/// What was on disk: the state at the last snapshot, and the changes after it in order.
pub struct Recovered {
    pub snapshot_rv: u64,
    /// The state at the snapshot (the changes are not applied).
    pub snapshot: BTreeMap<ObjectKey, Arc<Value>>,
    pub changes: Vec<Record>,
}

/// The open log.
pub struct Persistence {
    dir: PathBuf,
    log: File,
    records: usize,
    sync: bool,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PersistError + '_ {
    move |source| PersistError::Io {
        path: path.to_owned(),
        source,
    }
}

impl Persistence {
    /// Opens (creating) `dir` and reads what it holds.
    pub fn open(dir: &Path, sync: bool) -> Result<(Persistence, Recovered), PersistError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let snapshot_path = dir.join(SNAPSHOT);
        let (snapshot_rv, snapshot) = match std::fs::read(&snapshot_path) {
            Ok(bytes) => {
                let snapshot: Snapshot =
                    serde_json::from_slice(&bytes).map_err(|source| PersistError::Corrupt {
                        path: snapshot_path.clone(),
                        line: 1,
                        source,
                    })?;
                let objects = snapshot
                    .objects
                    .into_iter()
                    .map(|(key, object)| (ObjectKey::from(key), Arc::new(object)))
                    .collect();
                (snapshot.rv, objects)
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => (0, BTreeMap::new()),
            Err(error) => return Err(io(&snapshot_path)(error)),
        };
        let log_path = dir.join(LOG);
        let mut changes = Vec::new();
        let mut valid_bytes = 0u64;
        if let Ok(file) = File::open(&log_path) {
            let mut reader = BufReader::new(file);
            let mut line = Vec::new();
            let mut number = 0;
            loop {
                line.clear();
                let read = reader.read_until(b'\n', &mut line).map_err(io(&log_path))?;
                if read == 0 {
                    break;
                }
                number += 1;
                if line.last() != Some(&b'\n') {
                    // The process died while writing this record: it was never acknowledged.
                    break;
                }
                let record: Record =
                    serde_json::from_slice(&line).map_err(|source| PersistError::Corrupt {
                        path: log_path.clone(),
                        line: number,
                        source,
                    })?;
                valid_bytes += read as u64;
                if record.rv > snapshot_rv {
                    changes.push(record);
                }
            }
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(io(&log_path))?;
        // Drop a torn last record so that new records follow a whole line.
        log.set_len(valid_bytes).map_err(io(&log_path))?;
        let persistence = Persistence {
            dir: dir.to_owned(),
            log,
            records: changes.len(),
            sync,
        };
        Ok((
            persistence,
            Recovered {
                snapshot_rv,
                snapshot,
                changes,
            },
        ))
    }

    /// Appends a change; returns once it is in the file (and on disk, with `sync`).
    pub fn append(
        &mut self,
        rv: u64,
        key: &ObjectKey,
        object: Option<&Value>,
    ) -> Result<(), PersistError> {
        #[derive(Serialize)]
        struct RecordRef<'a> {
            rv: u64,
            key: StoredKey,
            object: Option<&'a Value>,
        }
        let path = self.dir.join(LOG);
        let mut line = serde_json::to_vec(&RecordRef {
            rv,
            key: key.into(),
            object,
        })
        .map_err(|e| io(&path)(std::io::Error::other(e)))?;
        line.push(b'\n');
        self.log.write_all(&line).map_err(io(&path))?;
        if self.sync {
            self.log.sync_data().map_err(io(&path))?;
        }
        self.records += 1;
        Ok(())
    }

    /// Whether the log is long enough to be folded into a snapshot.
    pub fn wants_compaction(&self) -> bool {
        self.records >= COMPACT_AFTER
    }

    /// Writes the whole state as the new snapshot and starts the log over.
    pub fn compact<'a>(
        &mut self,
        rv: u64,
        objects: impl Iterator<Item = (&'a ObjectKey, &'a Arc<Value>)>,
    ) -> Result<(), PersistError> {
        let snapshot = Snapshot {
            rv,
            objects: objects
                .map(|(key, object)| (StoredKey::from(key), (**object).clone()))
                .collect(),
        };
        let path = self.dir.join(SNAPSHOT);
        let temporary = self.dir.join(format!("{SNAPSHOT}.tmp"));
        let bytes =
            serde_json::to_vec(&snapshot).map_err(|e| io(&path)(std::io::Error::other(e)))?;
        let mut file = File::create(&temporary).map_err(io(&temporary))?;
        file.write_all(&bytes).map_err(io(&temporary))?;
        file.sync_all().map_err(io(&temporary))?;
        std::fs::rename(&temporary, &path).map_err(io(&path))?;
        if let Ok(dir) = File::open(&self.dir) {
            let _ = dir.sync_all();
        }
        // Records up to `rv` are in the snapshot; a crash before this truncation only leaves
        // records that opening skips.
        let log_path = self.dir.join(LOG);
        self.log.set_len(0).map_err(io(&log_path))?;
        self.records = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(name: &str) -> ObjectKey {
        ObjectKey::new("/configmaps", "default", name)
    }

    #[test]
    fn changes_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut log, recovered) = Persistence::open(dir.path(), false).unwrap();
            assert!(recovered.snapshot.is_empty());
            log.append(2, &key("a"), Some(&json!({"n": 1}))).unwrap();
            log.append(3, &key("b"), Some(&json!({"n": 2}))).unwrap();
            log.append(4, &key("a"), None).unwrap();
        }
        let (_, recovered) = Persistence::open(dir.path(), false).unwrap();
        assert!(recovered.snapshot.is_empty());
        assert_eq!(
            recovered.changes.iter().map(|r| r.rv).collect::<Vec<_>>(),
            [2, 3, 4]
        );
        assert_eq!(recovered.changes[2].object, None);
    }

    #[test]
    fn a_torn_last_record_is_dropped_and_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut log, _) = Persistence::open(dir.path(), false).unwrap();
            log.append(2, &key("a"), Some(&json!({"n": 1}))).unwrap();
        }
        let mut file = OpenOptions::new()
            .append(true)
            .open(dir.path().join(LOG))
            .unwrap();
        file.write_all(b"{\"rv\":3,\"key\":{\"resou").unwrap();
        drop(file);
        {
            let (mut log, recovered) = Persistence::open(dir.path(), false).unwrap();
            assert_eq!(recovered.changes.len(), 1);
            log.append(3, &key("c"), Some(&json!({"n": 3}))).unwrap();
        }
        let (_, recovered) = Persistence::open(dir.path(), false).unwrap();
        assert_eq!(
            recovered.changes.iter().map(|r| r.rv).collect::<Vec<_>>(),
            [2, 3]
        );
    }

    #[test]
    fn compaction_folds_the_log_into_a_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut log, _) = Persistence::open(dir.path(), true).unwrap();
            log.append(2, &key("a"), Some(&json!({"n": 1}))).unwrap();
            let state = BTreeMap::from([(key("a"), Arc::new(json!({"n": 1})))]);
            log.compact(2, state.iter()).unwrap();
            log.append(3, &key("b"), Some(&json!({"n": 2}))).unwrap();
        }
        let (_, recovered) = Persistence::open(dir.path(), false).unwrap();
        assert_eq!(recovered.snapshot_rv, 2);
        assert_eq!(recovered.snapshot.len(), 1);
        assert_eq!(recovered.changes.len(), 1);
    }

    #[test]
    fn a_corrupt_record_in_the_middle_is_an_error_naming_the_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(LOG), "not json\n{}\n").unwrap();
        match Persistence::open(dir.path(), false) {
            Err(PersistError::Corrupt { line, .. }) => assert_eq!(line, 1),
            Err(other) => panic!("unexpected {other}"),
            Ok(_) => panic!("a corrupt log opened"),
        }
    }
}
