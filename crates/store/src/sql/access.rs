//! Just-in-time access: policies, and requests with their approvals.

use std::collections::BTreeMap;

use super::*;
use crate::{
    AccessApproval, AccessPolicyRecord, AccessRequestFilter, AccessRequestRecord, AccessStore,
    AccessTransition, Page, Subject,
};

fn access_policy<R: RowExt>(row: &R) -> StoreResult<AccessPolicyRecord> {
    let Json(scopes) = row.col("scopes")?;
    let Json(subjects) = row.col("subjects")?;
    Ok(AccessPolicyRecord {
        id: row.col("id")?,
        name: row.col("name")?,
        audience_id: row.col("audience_id")?,
        scopes,
        subjects,
        max_duration_secs: row.col("max_duration_secs")?,
        decision: row.col("decision")?,
        approvals_required: row.col("approvals_required")?,
        break_glass: row.col("break_glass")?,
        created_by: row.col("created_by")?,
        created_at: row.col::<Ts>("created_at")?.0,
        updated_at: row.col::<Ts>("updated_at")?.0,
    })
}

/// Reads an access request row without its approvals.
fn access_request<R: RowExt>(row: &R) -> StoreResult<AccessRequestRecord> {
    let kind: String = row.col("subject_kind")?;
    let Json(scopes) = row.col("scopes")?;
    Ok(AccessRequestRecord {
        id: row.col("id")?,
        subject: Subject::from_parts(&kind, row.col("subject_id")?)
            .ok_or(StoreError::Corrupt("access_requests.subject_kind"))?,
        audience_id: row.col("audience_id")?,
        audience: row.col("audience")?,
        scopes,
        duration_secs: row.col("duration_secs")?,
        reason: row.col("reason")?,
        break_glass: row.col("break_glass")?,
        state: row.col("state")?,
        policy_id: row.col("policy_id")?,
        approvals_required: row.col("approvals_required")?,
        approvals: Vec::new(),
        grant_id: row.col("grant_id")?,
        needs_review: row.col("needs_review")?,
        created_at: row.col::<Ts>("created_at")?.0,
        pending_until: row.col::<Ts>("pending_until")?.0,
        decided_at: row.col::<Option<Ts>>("decided_at")?.map(|t| t.0),
        decided_by: row.col("decided_by")?,
        decision_comment: row.col("decision_comment")?,
    })
}

/// Folds `request ⟕ approval` rows (approval columns prefixed `ap_`) into requests.
fn fold_access_requests<R: RowExt>(rows: &[R]) -> StoreResult<Vec<AccessRequestRecord>> {
    let mut out: BTreeMap<Uuid, AccessRequestRecord> = BTreeMap::new();
    for row in rows {
        let id: Uuid = row.col("id")?;
        if let std::collections::btree_map::Entry::Vacant(slot) = out.entry(id) {
            slot.insert(access_request(row)?);
        }
        let approver: Option<String> = row.col("ap_approver")?;
        if let (Some(approver), Some(request)) = (approver, out.get_mut(&id)) {
            request.approvals.push(AccessApproval {
                approver,
                comment: row.col("ap_comment")?,
                at: row.col::<Ts>("ap_at")?.0,
            });
        }
    }
    Ok(out.into_values().collect())
}

#[async_trait]
impl<DB: Dialect> AccessStore for SqlStore<DB> {
    async fn create_access_policy(
        &self,
        p: &AccessPolicyRecord,
        effects: &ChangeEffects,
    ) -> StoreResult<AccessPolicyRecord> {
        let query = sqlx::query(
            "INSERT INTO access_policies (id, name, audience_id, scopes, subjects, max_duration_secs, decision, approvals_required, break_glass, created_by, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .arg(p.id)
        .arg(&p.name)
        .arg(p.audience_id)
        .arg(Json(&p.scopes))
        .arg(Json(&p.subjects))
        .arg(p.max_duration_secs)
        .arg(&p.decision)
        .arg(p.approvals_required)
        .arg(p.break_glass)
        .arg(&p.created_by)
        .arg(Ts(p.created_at))
        .arg(Ts(p.updated_at));
        self.change_row(query, effects, "access policy", false)
            .await
            .map_err(parent_missing("audience"))?;
        Ok(p.clone())
    }

    async fn access_policy(&self, id: Uuid) -> StoreResult<Option<AccessPolicyRecord>> {
        let query = sqlx::query("SELECT * FROM access_policies WHERE id = $1").arg(id);
        self.optional(query, access_policy, "access policy").await
    }

    async fn list_access_policies(
        &self,
        audience_id: Option<Uuid>,
        page: Page,
    ) -> StoreResult<Vec<AccessPolicyRecord>> {
        let query = sqlx::query(
            "SELECT * FROM access_policies
             WHERE ($1 IS NULL OR audience_id = $1) AND ($2 IS NULL OR id > $2)
             ORDER BY id LIMIT $3",
        )
        .arg(audience_id)
        .arg(page.after)
        .arg(i64::from(page.limit));
        self.all(query, access_policy, "access policy").await
    }

    async fn update_access_policy(
        &self,
        p: &AccessPolicyRecord,
        effects: &ChangeEffects,
    ) -> StoreResult<AccessPolicyRecord> {
        let query = sqlx::query(
            "UPDATE access_policies SET name = $2, scopes = $3, subjects = $4, max_duration_secs = $5,
                 decision = $6, approvals_required = $7, break_glass = $8, updated_at = $9
             WHERE id = $1",
        )
        .arg(p.id)
        .arg(&p.name)
        .arg(Json(&p.scopes))
        .arg(Json(&p.subjects))
        .arg(p.max_duration_secs)
        .arg(&p.decision)
        .arg(p.approvals_required)
        .arg(p.break_glass)
        .arg(Ts(p.updated_at));
        self.change_row(query, effects, "access policy", false)
            .await?;
        self.access_policy(p.id)
            .await?
            .ok_or(StoreError::NotFound("access policy"))
    }

    async fn delete_access_policy(&self, id: Uuid, effects: &ChangeEffects) -> StoreResult<()> {
        let query = sqlx::query("DELETE FROM access_policies WHERE id = $1").arg(id);
        self.change_row(query, effects, "access policy", false)
            .await
    }

    async fn create_access_request(&self, r: &AccessRequestRecord) -> StoreResult<()> {
        let query = sqlx::query(
            "INSERT INTO access_requests (id, subject_kind, subject_id, audience_id, audience, scopes, duration_secs, reason, break_glass, state, policy_id, approvals_required, grant_id, needs_review, created_at, pending_until, decided_at, decided_by, decision_comment)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)",
        )
        .arg(r.id)
        .arg(r.subject.kind())
        .arg(r.subject.id())
        .arg(r.audience_id)
        .arg(&r.audience)
        .arg(Json(&r.scopes))
        .arg(r.duration_secs)
        .arg(&r.reason)
        .arg(r.break_glass)
        .arg(&r.state)
        .arg(r.policy_id)
        .arg(r.approvals_required)
        .arg(r.grant_id)
        .arg(r.needs_review)
        .arg(Ts(r.created_at))
        .arg(Ts(r.pending_until))
        .arg(r.decided_at.map(Ts))
        .arg(&r.decided_by)
        .arg(&r.decision_comment);
        let inserted = self.exec(query, "access request").await;
        inserted.map(drop).map_err(parent_missing("audience"))
    }

    async fn access_request(&self, id: Uuid) -> StoreResult<Option<AccessRequestRecord>> {
        let rows = sqlx::query(
            "SELECT r.*, a.approver AS ap_approver, a.comment AS ap_comment, a.created_at AS ap_at FROM access_requests r
             LEFT JOIN access_approvals a ON a.request_id = r.id
             WHERE r.id = $1 ORDER BY a.created_at, a.approver",
        )
        .arg(id)
        .fetch_all(self.db())
        .await
        .or_store("access request")?;
        Ok(fold_access_requests(&rows)?.into_iter().next())
    }

    async fn list_access_requests(
        &self,
        filter: AccessRequestFilter,
        page: Page,
    ) -> StoreResult<Vec<AccessRequestRecord>> {
        let rows = sqlx::query(
            "SELECT r.*, a.approver AS ap_approver, a.comment AS ap_comment, a.created_at AS ap_at FROM (
                 SELECT * FROM access_requests
                 WHERE ($1 IS NULL OR subject_kind = $1) AND ($2 IS NULL OR subject_id = $2)
                   AND ($3 IS NULL OR state = $3) AND ($4 IS NULL OR needs_review = $4)
                   AND ($5 IS NULL OR id > $5)
                 ORDER BY id LIMIT $6
             ) r
             LEFT JOIN access_approvals a ON a.request_id = r.id
             ORDER BY r.id, a.created_at, a.approver",
        )
        .arg(filter.subject.map(Subject::kind))
        .arg(filter.subject.map(Subject::id))
        .arg(filter.state)
        .arg(filter.needs_review)
        .arg(page.after)
        .arg(i64::from(page.limit))
        .fetch_all(self.db())
        .await
        .or_store("access request")?;
        fold_access_requests(&rows)
    }

    async fn add_access_approval(
        &self,
        request_id: Uuid,
        approval: &AccessApproval,
    ) -> StoreResult<Option<u32>> {
        let mut tx = self.begin("access approval").await?;
        let query = sqlx::query(
            "INSERT INTO access_approvals (request_id, approver, comment, created_at)
             SELECT id, $2, $3, $4 FROM access_requests WHERE id = $1 AND state = 'pending'",
        )
        .arg(request_id)
        .arg(&approval.approver)
        .arg(&approval.comment)
        .arg(Ts(approval.at));
        if Self::run(&mut tx, query, "access approval").await? == 0 {
            return Ok(None);
        }
        let row = sqlx::query("SELECT count(*) AS n FROM access_approvals WHERE request_id = $1")
            .arg(request_id)
            .fetch_one(DB::conn(&mut tx))
            .await
            .or_store("access approval")?;
        let count: i64 = row.col("n")?;
        tx.commit().await.or_store("access approval")?;
        Ok(Some(u32::try_from(count).unwrap_or(u32::MAX)))
    }

    async fn transition_access_request(&self, t: &AccessTransition) -> StoreResult<bool> {
        let query = sqlx::query(
            "UPDATE access_requests SET state = $3, decided_at = $4, decided_by = $5, decision_comment = $6,
                 grant_id = COALESCE($7, grant_id), needs_review = (needs_review OR $8)
             WHERE id = $1 AND state = $2",
        )
        .arg(t.id)
        .arg(t.from)
        .arg(t.to)
        .arg(Ts(t.now))
        .arg(&t.by)
        .arg(&t.comment)
        .arg(t.grant_id)
        .arg(t.needs_review);
        Ok(self.exec(query, "access request").await? == 1)
    }

    async fn clear_access_review(&self, id: Uuid) -> StoreResult<bool> {
        let sql = "UPDATE access_requests SET needs_review = false WHERE id = $1 AND needs_review";
        Ok(self
            .exec(sqlx::query(sql).arg(id), "access request")
            .await?
            == 1)
    }

    async fn expire_access_requests(
        &self,
        now: OffsetDateTime,
    ) -> StoreResult<Vec<AccessRequestRecord>> {
        let query = sqlx::query(
            "UPDATE access_requests SET state = 'expired', decided_at = pending_until, decided_by = 'system',
                 decision_comment = 'nobody decided in time'
             WHERE state = 'pending' AND pending_until <= $1
             RETURNING *",
        )
        .arg(Ts(now));
        self.write_rows(query, access_request, "access request")
            .await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use time::OffsetDateTime;

    use crate::sqlite::SqliteStore;
    use crate::testing::TestDb;
    use crate::{AccessStore as _, Backend, Store as _};

    /// The periodic expiry is a write: on SQLite it waits for this process's turn like
    /// every other write. Taken out of turn, it found the file's lock held by the audit
    /// writer and slept in SQLite's busy handler, or made the audit writer sleep in it,
    /// stalling every issuance behind that batch.
    #[tokio::test]
    async fn expiring_requests_waits_for_the_turn_to_write() {
        let db = TestDb::new(Backend::Sqlite).await;
        let store = SqliteStore::connect(&db.url).await.unwrap();
        store.migrate().await.unwrap();
        let turn = store.write_turn().await;
        let expiry = store.expire_access_requests(OffsetDateTime::UNIX_EPOCH);
        let mut expiry = std::pin::pin!(expiry);
        let early = tokio::time::timeout(Duration::from_millis(200), &mut expiry).await;
        assert!(
            early.is_err(),
            "the expiry wrote while another write held the turn"
        );
        drop(turn);
        let expired = tokio::time::timeout(Duration::from_secs(10), expiry)
            .await
            .expect("the expiry runs once the turn is free")
            .unwrap();
        assert!(expired.is_empty());
    }
}
