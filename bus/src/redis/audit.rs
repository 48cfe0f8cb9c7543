//! The audit log (the contract's "audit" section): one stream every node appends to,
//! trimmed on every append with `XADD MAXLEN ~` (whole blocks, so about the length asked).

use super::{RedisBus, redis_err};
use crate::error::BusError;
use crate::quota::AuditFields;

impl RedisBus {
    pub(super) async fn audit_append(
        &self,
        records: Vec<AuditFields>,
        max_len: usize,
    ) -> Result<(), BusError> {
        if records.is_empty() {
            return Ok(());
        }
        let key = self.keys.audit();
        let mut pipe = redis::pipe();
        for fields in records {
            pipe.cmd("XADD")
                .arg(&key)
                .arg("MAXLEN")
                .arg("~")
                .arg(max_len.max(1))
                .arg("*")
                .arg(fields)
                .ignore();
        }
        let mut conn = self.conn();
        pipe.query_async::<()>(&mut conn).await.map_err(redis_err)
    }

    pub(super) async fn audit_tail(&self, count: usize) -> Result<Vec<AuditFields>, BusError> {
        if count == 0 {
            return Ok(Vec::new());
        }
        let mut conn = self.conn();
        // Each entry is [id, [field, value, ...]]: read as pairs to keep the fields' order.
        let entries: Vec<(String, Vec<String>)> = redis::cmd("XREVRANGE")
            .arg(self.keys.audit())
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(count)
            .query_async(&mut conn)
            .await
            .map_err(redis_err)?;
        let mut records: Vec<AuditFields> = entries
            .into_iter()
            .map(|(_, flat)| {
                flat.chunks_exact(2)
                    .map(|pair| (pair[0].clone(), pair[1].clone()))
                    .collect()
            })
            .collect();
        records.reverse();
        Ok(records)
    }
}
