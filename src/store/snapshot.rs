//! A snapshot is every state and index table, dumped in a fixed order:
//! `table-name-len u32 | name | entries u64 | (key-len u32 | key | value-len u32 | value)*`,
//! then the memory of applied proposals (`once.rs`; absent from dumps made before it
//! existed, which load with an empty memory).
//! The same bytes serve raft snapshots, backups and the determinism tests.

use redb::{
    ReadTransaction, ReadableTable, ReadableTableMetadata, TableDefinition, WriteTransaction,
};

use super::{Index, Kind, StoreError};

fn tables() -> impl Iterator<Item = &'static str> {
    Kind::ALL
        .iter()
        .map(|k| k.name())
        .chain(Index::ALL.iter().map(|i| i.name()))
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

/// Dumps the state as of `txn`.
pub fn dump(txn: &ReadTransaction) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::new();
    for name in Kind::ALL.iter().map(|k| k.name()) {
        let table = txn.open_table(TableDefinition::<&str, &[u8]>::new(name))?;
        put_bytes(&mut out, name.as_bytes());
        out.extend_from_slice(&table.len()?.to_le_bytes());
        for item in table.iter()? {
            let (k, v) = item?;
            put_bytes(&mut out, k.value().as_bytes());
            put_bytes(&mut out, v.value());
        }
    }
    for name in Index::ALL.iter().map(|i| i.name()) {
        let table = txn.open_table(TableDefinition::<&str, &str>::new(name))?;
        put_bytes(&mut out, name.as_bytes());
        out.extend_from_slice(&table.len()?.to_le_bytes());
        for item in table.iter()? {
            let (k, v) = item?;
            put_bytes(&mut out, k.value().as_bytes());
            put_bytes(&mut out, v.value().as_bytes());
        }
    }
    let applied = txn.open_table(super::once::APPLIED)?;
    put_bytes(&mut out, super::once::APPLIED_NAME.as_bytes());
    out.extend_from_slice(&applied.len()?.to_le_bytes());
    for item in applied.iter()? {
        let (k, v) = item?;
        put_bytes(&mut out, k.value().as_bytes());
        put_bytes(&mut out, v.value());
    }
    let by_seq = txn.open_table(super::once::APPLIED_BY_SEQ)?;
    put_bytes(&mut out, super::once::APPLIED_BY_SEQ_NAME.as_bytes());
    out.extend_from_slice(&by_seq.len()?.to_le_bytes());
    for item in by_seq.iter()? {
        let (k, v) = item?;
        put_bytes(&mut out, k.value().as_bytes());
        put_bytes(&mut out, v.value().as_bytes());
    }
    Ok(out)
}

struct Cursor<'a> {
    data: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], StoreError> {
        if self.data.len() < n {
            return Err(StoreError::Snapshot("truncated".into()));
        }
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        Ok(head)
    }
    fn bytes(&mut self) -> Result<&'a [u8], StoreError> {
        let n = u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes"));
        self.take(n as usize)
    }
    fn str(&mut self) -> Result<&'a str, StoreError> {
        std::str::from_utf8(self.bytes()?).map_err(|e| StoreError::Snapshot(e.to_string()))
    }
    fn count(&mut self) -> Result<u64, StoreError> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
}

/// Replaces the whole state with a dump, inside `txn`.
pub fn load(txn: &WriteTransaction, data: &[u8]) -> Result<(), StoreError> {
    let mut cur = Cursor { data };
    for (seen, expected) in tables().enumerate() {
        let name = cur.str()?;
        if name != expected {
            return Err(StoreError::Snapshot(format!(
                "expected table {expected}, found {name}"
            )));
        }
        let n = cur.count()?;
        if seen < Kind::ALL.len() {
            let def = TableDefinition::<&str, &[u8]>::new(expected);
            let mut table = txn.open_table(def)?;
            table.retain(|_, _| false)?;
            for _ in 0..n {
                let k = cur.str()?;
                let v = cur.bytes()?;
                table.insert(k, v)?;
            }
        } else {
            let def = TableDefinition::<&str, &str>::new(expected);
            let mut table = txn.open_table(def)?;
            table.retain(|_, _| false)?;
            for _ in 0..n {
                let k = cur.str()?;
                let v = cur.str()?;
                table.insert(k, v)?;
            }
        }
    }
    let mut applied = txn.open_table(super::once::APPLIED)?;
    let mut by_seq = txn.open_table(super::once::APPLIED_BY_SEQ)?;
    applied.retain(|_, _| false)?;
    by_seq.retain(|_, _| false)?;
    if !cur.data.is_empty() {
        for expected in [super::once::APPLIED_NAME, super::once::APPLIED_BY_SEQ_NAME] {
            let name = cur.str()?;
            if name != expected {
                return Err(StoreError::Snapshot(format!(
                    "expected table {expected}, found {name}"
                )));
            }
            for _ in 0..cur.count()? {
                let k = cur.str()?;
                if expected == super::once::APPLIED_NAME {
                    applied.insert(k, cur.bytes()?)?;
                } else {
                    by_seq.insert(k, cur.str()?)?;
                }
            }
        }
    }
    if !cur.data.is_empty() {
        return Err(StoreError::Snapshot("trailing bytes".into()));
    }
    Ok(())
}

/// Number of objects (not index entries) in a dump.
pub fn object_count(data: &[u8]) -> Result<u64, StoreError> {
    let mut cur = Cursor { data };
    let mut total = 0;
    for (i, _) in tables().enumerate() {
        cur.str()?;
        let n = cur.count()?;
        if i < Kind::ALL.len() {
            total += n;
        }
        for _ in 0..n {
            cur.bytes()?;
            cur.bytes()?;
        }
    }
    // The memory of applied proposals, when the dump has it: walked, not counted.
    if !cur.data.is_empty() {
        for _ in 0..2 {
            cur.str()?;
            for _ in 0..cur.count()? {
                cur.bytes()?;
                cur.bytes()?;
            }
        }
    }
    Ok(total)
}
