//! Typed reads over one consistent read transaction.

use redb::{ReadTransaction, ReadableTableMetadata};

use super::model::Record;
use super::{Index, Kind, StoreError, prefix_end};

pub struct Reader {
    txn: ReadTransaction,
}

impl Reader {
    pub fn new(txn: ReadTransaction) -> Reader {
        Reader { txn }
    }

    pub fn get<R: Record>(&self, key: &str) -> Result<Option<R>, StoreError> {
        let table = self.txn.open_table(R::KIND.table())?;
        match table.get(key)? {
            Some(v) => Ok(Some(serde_json::from_slice(v.value()).map_err(
                |source| StoreError::Corrupt {
                    table: R::KIND.name(),
                    source,
                },
            )?)),
            None => Ok(None),
        }
    }

    /// The raw JSON of an object of any kind.
    pub fn get_json(&self, kind: Kind, key: &str) -> Result<Option<serde_json::Value>, StoreError> {
        let table = self.txn.open_table(kind.table())?;
        match table.get(key)? {
            Some(v) => Ok(Some(serde_json::from_slice(v.value()).map_err(
                |source| StoreError::Corrupt {
                    table: kind.name(),
                    source,
                },
            )?)),
            None => Ok(None),
        }
    }

    /// Objects whose key starts with `prefix`, in key order.
    /// Records that do not decode as `R` are reported and left out, as unreadable ones are.
    pub fn list<R: Record>(&self, prefix: &str) -> Result<Vec<R>, StoreError> {
        Ok(self
            .list_json(R::KIND, prefix)?
            .into_iter()
            .filter_map(|(key, v)| match serde_json::from_value(v) {
                Ok(r) => Some(r),
                Err(e) => {
                    tracing::warn!("skipping unreadable record {}/{key}: {e}", R::KIND.name());
                    None
                }
            })
            .collect())
    }

    pub fn list_json(
        &self,
        kind: Kind,
        prefix: &str,
    ) -> Result<Vec<(String, serde_json::Value)>, StoreError> {
        let table = self.txn.open_table(kind.table())?;
        super::range_json(&table, kind, prefix)
    }

    pub fn count(&self, kind: Kind) -> Result<u64, StoreError> {
        Ok(self.txn.open_table(kind.table())?.len()?)
    }

    /// The primary key a unique index entry points at.
    fn primary_key(&self, index: Index, ikey: &str) -> Result<Option<String>, StoreError> {
        let table = self.txn.open_table(index.table())?;
        Ok(table.get(ikey)?.map(|v| v.value().to_string()))
    }

    /// The object a unique index entry points at.
    pub fn lookup<R: Record>(&self, index: Index, ikey: &str) -> Result<Option<R>, StoreError> {
        match self.primary_key(index, ikey)? {
            Some(pk) => self.get(&pk),
            None => Ok(None),
        }
    }

    /// The raw JSON of the object of `kind` a unique index entry points at.
    pub fn lookup_json(
        &self,
        kind: Kind,
        index: Index,
        ikey: &str,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        match self.primary_key(index, ikey)? {
            Some(pk) => self.get_json(kind, &pk),
            None => Ok(None),
        }
    }

    /// Primary keys of the index entries starting with `prefix`.
    pub fn index_keys(&self, index: Index, prefix: &str) -> Result<Vec<String>, StoreError> {
        let table = self.txn.open_table(index.table())?;
        let end = prefix_end(prefix);
        let mut out = Vec::new();
        for item in table.range(prefix..end.as_str())? {
            out.push(item?.1.value().to_string());
        }
        Ok(out)
    }
}
