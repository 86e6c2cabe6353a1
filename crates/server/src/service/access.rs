//! Just-in-time access: policies say who may request which scopes of an audience, for
//! how long, and how a request is decided (`auto`, `approval` by N distinct approvers,
//! or `deny`); requests move `pending → approved | denied | cancelled | expired`.
//!
//! Approval creates an ordinary grant with `not_before = now` and `expires_at = now +
//! duration`, so issuance needs nothing new: tokens under it never outlive it (the
//! lifetime clamp every grant gets) and stop at its end. Cancelling an approved request
//! deletes its grant, which revokes the tokens issued under it. Every step is an audit
//! event (who, when, why) and a webhook notice; break-glass self-approval is also an
//! `anomaly` event and marks the request for review.
//!
//! State changes are conditional in the store (`… WHERE state = 'pending'`): of
//! concurrent deciders exactly one moves a request. An approval's grant is created
//! before the request moves, and deleted again if another decision won meanwhile.

use mayfly_store::{
    AccessApproval, AccessPolicyRecord, AccessRequestFilter, AccessRequestRecord, AccessTransition,
    AuditEvent, Page, StoreError, Subject,
};
use serde_json::{Value, json};
use time::Duration;
use uuid::Uuid;

use super::{Actor, AdminError, GrantSpec, invalid};
use crate::audit::{self, RequestContext, kind, outcome};

pub use crate::vocab::{ACCESS_SCOPE, APPROVE_SCOPE};
/// The longest access a policy may allow.
pub const MAX_ACCESS_DURATION: Duration = Duration::days(7);
/// Most approvers a policy may require.
pub const MAX_APPROVALS: i64 = 10;
/// Longest reason or comment kept.
const MAX_TEXT: usize = 500;

/// States of a request.
pub mod state {
    /// Waiting for approvers.
    pub const PENDING: &str = "pending";
    /// Approved: its grant exists (until it ends).
    pub const APPROVED: &str = "approved";
    /// Refused by an approver.
    pub const DENIED: &str = "denied";
    /// Withdrawn by the requester (an approved one: its grant ended early).
    pub const CANCELLED: &str = "cancelled";
    /// Nobody decided in time.
    pub const EXPIRED: &str = "expired";
    /// Every state.
    pub const ALL: &[&str] = &[PENDING, APPROVED, DENIED, CANCELLED, EXPIRED];
}

/// How a policy decides the requests it covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Approved at once.
    Auto,
    /// Approved once enough distinct approvers agree.
    Approval,
    /// Refused.
    Deny,
}

impl Decision {
    /// Its stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Approval => "approval",
            Self::Deny => "deny",
        }
    }

    /// Parses a stored name.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "auto" => Some(Self::Auto),
            "approval" => Some(Self::Approval),
            "deny" => Some(Self::Deny),
            _ => None,
        }
    }
}

/// A policy to create, or a policy's new state.
#[derive(Debug, Clone)]
pub struct AccessPolicySpec {
    /// Display name.
    pub name: String,
    /// The audience URI (fixed once created).
    pub audience: String,
    /// Scopes on it that may be requested.
    pub scopes: Vec<String>,
    /// Who may request: `user:<id>`, `client:<id>`, `label:<name>` (users and clients
    /// carrying that label), `users` (every user), `clients` (every client).
    pub subjects: Vec<String>,
    /// Longest access.
    pub max_duration: Duration,
    /// How requests are decided.
    pub decision: Decision,
    /// Distinct approvers needed (`approval` only).
    pub approvals_required: i64,
    /// Whether a requester may approve their own request in an emergency.
    pub break_glass: bool,
}

/// A request for access, made by `subject` for itself.
#[derive(Debug, Clone)]
pub struct AccessRequestSpec {
    /// Who asks (the caller's own identity, from its token).
    pub subject: Subject,
    /// The audience URI.
    pub audience: String,
    /// Scope names on it.
    pub scopes: Vec<String>,
    /// For how long, from approval.
    pub duration: Duration,
    /// Why (required).
    pub reason: String,
    /// Emergency self-approval, if a policy allows it.
    pub break_glass: bool,
}

/// What access calls need besides the actor: where notices go, how long a request may
/// stay pending, and the request's context for the audit log.
#[derive(Debug, Clone, Copy)]
pub struct AccessContext<'a> {
    /// Where every step is announced, if anywhere.
    pub webhook: Option<&'a crate::webhook::Webhook>,
    /// How long a request waits for approvers.
    pub pending_timeout: Duration,
    /// The HTTP request, for the audit log.
    pub request: &'a RequestContext,
}

fn subject_ref(s: Subject) -> (&'static str, Uuid) {
    match s {
        Subject::Client(id) => ("client", id),
        Subject::User(id) => ("user", id),
    }
}

fn text(field: &'static str, value: &str, required: bool) -> Result<String, AdminError> {
    let value = value.trim();
    if required && value.is_empty() {
        return Err(invalid(field, "is required"));
    }
    super::free_text(field, value, MAX_TEXT)?;
    Ok(value.to_owned())
}

fn scope_list(scopes: &[String]) -> Result<Vec<String>, AdminError> {
    if scopes.is_empty() || scopes.len() > 64 {
        return Err(invalid("scopes", "give 1 to 64 scopes"));
    }
    let mut out = Vec::with_capacity(scopes.len());
    for name in scopes {
        let scope =
            mayfly_core::Scope::parse(name).map_err(|e| invalid("scopes", e.to_string()))?;
        out.push(scope.to_string());
    }
    out.sort();
    out.dedup();
    Ok(out)
}

fn policy_json(p: &AccessPolicyRecord) -> Value {
    json!({
        "id": p.id, "name": p.name, "audience_id": p.audience_id, "scopes": p.scopes,
        "subjects": p.subjects, "max_duration_secs": p.max_duration_secs, "decision": p.decision,
        "approvals_required": p.approvals_required, "break_glass": p.break_glass,
    })
}

/// Whether `policy` names `subject`, which carries `labels`.
pub(super) fn covers_subject(
    policy: &AccessPolicyRecord,
    subject: Subject,
    labels: &[String],
) -> bool {
    let (kind, id) = subject_ref(subject);
    let group = match subject {
        Subject::Client(_) => "clients",
        Subject::User(_) => "users",
    };
    let me = format!("{kind}:{id}");
    policy.subjects.iter().any(|s| {
        *s == me
            || s == group
            || s.strip_prefix("label:")
                .is_some_and(|label| labels.iter().any(|l| l == label))
    })
}

impl Actor<'_> {
    /// Every policy of an audience, page by page: a decision that missed one (a deny)
    /// would fail open.
    pub(super) async fn all_access_policies(
        &self,
        audience_id: Uuid,
    ) -> Result<Vec<AccessPolicyRecord>, AdminError> {
        const PAGE: u32 = 500;
        let mut out: Vec<AccessPolicyRecord> = Vec::new();
        loop {
            let page = self
                .store
                .list_access_policies(
                    Some(audience_id),
                    Page {
                        after: out.last().map(|p| p.id),
                        limit: PAGE,
                    },
                )
                .await?;
            let last = page.len() < PAGE as usize;
            out.extend(page);
            if last {
                return Ok(out);
            }
        }
    }

    /// The labels `subject` carries now (none when it is gone).
    async fn labels_of(&self, subject: Subject) -> Result<Vec<String>, AdminError> {
        Ok(match subject {
            Subject::User(id) => self.store.user(id).await?.map(|u| u.labels),
            Subject::Client(id) => self.store.client(id).await?.map(|c| c.labels),
        }
        .unwrap_or_default())
    }

    /// Checks a policy's fields, and that what it names exists.
    async fn check_policy(
        &self,
        spec: &AccessPolicySpec,
    ) -> Result<(String, Vec<String>, Vec<String>, Uuid), AdminError> {
        let name = text("name", &spec.name, true)?;
        let scopes = scope_list(&spec.scopes)?;
        let audience = self
            .store
            .audience_by_uri(&spec.audience)
            .await?
            .ok_or_else(|| invalid("audience", "no such audience"))?;
        let known = self.store.scopes_of(audience.id).await?;
        if let Some(missing) = scopes.iter().find(|s| !known.iter().any(|k| &k.name == *s)) {
            return Err(invalid(
                "scopes",
                format!("{missing} does not exist on the audience"),
            ));
        }
        if spec.subjects.is_empty() || spec.subjects.len() > 256 {
            return Err(invalid("subjects", "give 1 to 256 subjects"));
        }
        let mut subjects = Vec::with_capacity(spec.subjects.len());
        for s in &spec.subjects {
            let exists = match s.split_once(':') {
                None if s == "users" || s == "clients" => true,
                // A label need not be on anyone yet.
                Some(("label", label)) if super::is_label(label) => true,
                Some(("user", id)) => match Uuid::parse_str(id) {
                    Ok(id) => self.store.user(id).await?.is_some(),
                    Err(_) => false,
                },
                Some(("client", id)) => match Uuid::parse_str(id) {
                    Ok(id) => self.store.client(id).await?.is_some(),
                    Err(_) => false,
                },
                _ => {
                    return Err(invalid(
                        "subjects",
                        "each is user:<id>, client:<id>, label:<name> (1 to 64 of a-z 0-9 . _ -), users or clients",
                    ));
                }
            };
            if !exists {
                return Err(invalid(
                    "subjects",
                    "names a user or client that does not exist",
                ));
            }
            let s = s.to_ascii_lowercase();
            if !subjects.contains(&s) {
                subjects.push(s);
            }
        }
        if spec.max_duration < Duration::SECOND || spec.max_duration > MAX_ACCESS_DURATION {
            return Err(invalid(
                "max_duration_secs",
                format!(
                    "must be between 1 and {} seconds",
                    MAX_ACCESS_DURATION.whole_seconds()
                ),
            ));
        }
        match spec.decision {
            Decision::Approval if !(1..=MAX_APPROVALS).contains(&spec.approvals_required) => {
                return Err(invalid(
                    "approvals_required",
                    format!("an approval policy needs 1 to {MAX_APPROVALS} approvers"),
                ));
            }
            Decision::Auto | Decision::Deny if spec.approvals_required != 0 => {
                return Err(invalid(
                    "approvals_required",
                    "only an approval policy has approvers",
                ));
            }
            _ => {}
        }
        if spec.break_glass && spec.decision != Decision::Approval {
            return Err(invalid(
                "break_glass",
                "only an approval policy may allow break-glass",
            ));
        }
        Ok((name, scopes, subjects, audience.id))
    }

    /// Creates an access policy.
    ///
    /// # Errors
    /// [`AdminError::Invalid`] for a bad field or a dangling reference.
    pub async fn create_access_policy(
        &self,
        spec: AccessPolicySpec,
    ) -> Result<AccessPolicyRecord, AdminError> {
        let (name, scopes, subjects, audience_id) = self.check_policy(&spec).await?;
        self.may_hand_out(&spec.audience, &scopes, "an access policy")?;
        let policy = AccessPolicyRecord {
            id: Uuid::now_v7(),
            name,
            audience_id,
            scopes,
            subjects,
            max_duration_secs: spec.max_duration.whole_seconds(),
            decision: spec.decision.as_str().to_owned(),
            approvals_required: spec.approvals_required,
            break_glass: spec.break_glass,
            created_by: self.id.clone(),
            created_at: self.now,
            updated_at: self.now,
        };
        let event = self.change_event(
            "access_policy.create",
            policy.id.to_string(),
            Value::Null,
            policy_json(&policy),
        );
        let policy = self
            .store
            .create_access_policy(&policy, &self.effects(event, None)?)
            .await
            .map_err(|e| match e {
                StoreError::NotFound(_) => invalid("audience", "no such audience"),
                other => other.into(),
            })?;
        Ok(policy)
    }

    /// One policy.
    ///
    /// # Errors
    /// [`AdminError::NotFound`].
    pub async fn get_access_policy(&self, id: Uuid) -> Result<AccessPolicyRecord, AdminError> {
        self.store
            .access_policy(id)
            .await?
            .ok_or(AdminError::NotFound("access policy"))
    }

    /// A page of policies.
    ///
    /// # Errors
    /// The store's.
    pub async fn list_access_policies(
        &self,
        audience_id: Option<Uuid>,
        page: Page,
    ) -> Result<Vec<AccessPolicyRecord>, AdminError> {
        Ok(self.store.list_access_policies(audience_id, page).await?)
    }

    /// Replaces a policy's terms (its audience stays). Requests already decided keep
    /// their grants; pending ones keep the approvals they need.
    ///
    /// # Errors
    /// [`AdminError`] for a bad field or an unknown policy.
    pub async fn update_access_policy(
        &self,
        id: Uuid,
        change: impl FnOnce(&mut AccessPolicySpec),
    ) -> Result<AccessPolicyRecord, AdminError> {
        let before = self.get_access_policy(id).await?;
        let audience = self
            .store
            .audience(before.audience_id)
            .await?
            .ok_or(AdminError::NotFound("access policy"))?;
        let mut spec = AccessPolicySpec {
            name: before.name.clone(),
            audience: audience.uri,
            scopes: before.scopes.clone(),
            subjects: before.subjects.clone(),
            max_duration: Duration::seconds(before.max_duration_secs),
            decision: Decision::parse(&before.decision).ok_or(AdminError::Store(
                StoreError::Corrupt("access_policies.decision"),
            ))?,
            approvals_required: before.approvals_required,
            break_glass: before.break_glass,
        };
        let before_scopes = spec.scopes.clone();
        change(&mut spec);
        let (name, scopes, subjects, _) = self.check_policy(&spec).await?;
        self.may_hand_out(&spec.audience, &before_scopes, "an access policy")?;
        self.may_hand_out(&spec.audience, &scopes, "an access policy")?;
        let after = AccessPolicyRecord {
            name,
            scopes,
            subjects,
            max_duration_secs: spec.max_duration.whole_seconds(),
            decision: spec.decision.as_str().to_owned(),
            approvals_required: spec.approvals_required,
            break_glass: spec.break_glass,
            updated_at: self.now,
            ..before.clone()
        };
        let event = self.change_event(
            "access_policy.update",
            id.to_string(),
            policy_json(&before),
            policy_json(&after),
        );
        let after = self
            .store
            .update_access_policy(&after, &self.effects(event, None)?)
            .await?;
        Ok(after)
    }

    /// Deletes a policy. Its requests stay (with their grants); new ones are no longer
    /// covered by it.
    ///
    /// # Errors
    /// [`AdminError::NotFound`].
    pub async fn delete_access_policy(&self, id: Uuid) -> Result<(), AdminError> {
        let before = self.get_access_policy(id).await?;
        self.may_hand_out_on(before.audience_id, &before.scopes, "an access policy")
            .await?;
        let event = self.change_event(
            "access_policy.delete",
            id.to_string(),
            policy_json(&before),
            Value::Null,
        );
        self.store
            .delete_access_policy(id, &self.effects(event, None)?)
            .await?;
        Ok(())
    }

    /// Records an access event durably, then announces it.
    async fn access_event(
        &self,
        cx: &AccessContext<'_>,
        event_type: &str,
        result: &str,
        request: &AccessRequestRecord,
        detail: Value,
    ) -> Result<(), AdminError> {
        let (subject_kind, subject_id) = subject_ref(request.subject);
        let mut detail = detail;
        if let Value::Object(map) = &mut detail {
            map.insert("request_id".into(), json!(request.id));
            map.insert("subject_kind".into(), json!(subject_kind));
            map.insert("state".into(), json!(request.state));
            map.insert("duration_secs".into(), json!(request.duration_secs));
            map.insert("reason".into(), json!(request.reason));
        }
        let event = AuditEvent {
            actor: Some(self.id.clone()),
            subject: Some(subject_id.to_string()),
            audience: Some(request.audience.clone()),
            scopes: Some(request.scopes.join(" ")),
            detail,
            ..audit::event(event_type, result, self.now, cx.request)
        };
        self.record_and_announce(cx, event).await
    }

    async fn record_and_announce(
        &self,
        cx: &AccessContext<'_>,
        mut event: AuditEvent,
    ) -> Result<(), AdminError> {
        audit::sanitize(&mut event);
        self.store
            .append_audit_events(std::slice::from_ref(&event))
            .await?;
        if let Some(webhook) = cx.webhook {
            let body = serde_json::to_value(crate::api::AuditEventOut::from(event.clone()))
                .unwrap_or_default();
            webhook.notify(event.id.to_string(), &body);
        }
        Ok(())
    }

    /// Audits a refused request (no request is stored) and returns the error.
    async fn refuse(
        &self,
        cx: &AccessContext<'_>,
        spec: &AccessRequestSpec,
        scopes: &[String],
        error: AdminError,
    ) -> AdminError {
        let (subject_kind, subject_id) = subject_ref(spec.subject);
        let event = AuditEvent {
            actor: Some(self.id.clone()),
            subject: Some(subject_id.to_string()),
            audience: Some(spec.audience.clone()),
            scopes: Some(scopes.join(" ")),
            detail: json!({
                "subject_kind": subject_kind, "duration_secs": spec.duration.whole_seconds(),
                "reason": spec.reason, "break_glass": spec.break_glass, "refusal": error.to_string(),
            }),
            ..audit::event(kind::ACCESS_DENIED, outcome::DENIED, self.now, cx.request)
        };
        match self.record_and_announce(cx, event).await {
            Ok(()) => error,
            Err(e) => e,
        }
    }

    /// Ends the grant an access request made, revoking the tokens issued under it (kind
    /// `grant`). Whoever ends it may: ending access lifts nobody, so the ceiling, which
    /// guards handing scopes out, does not apply (a requester gives up `mayfly:*` access
    /// it could never have granted). Gone already is ended.
    async fn end_access_grant(&self, grant_id: Uuid) -> Result<(), AdminError> {
        let access = Actor::trusted(
            self.store,
            self.id.clone(),
            self.now,
            self.caller.request.clone(),
        );
        match access.delete_grant(grant_id).await {
            Ok(()) | Err(AdminError::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Creates the grant an approval gives.
    async fn access_grant(&self, request: &AccessRequestRecord) -> Result<Uuid, AdminError> {
        let grant = self
            .create_grant(GrantSpec {
                not_before: Some(self.now),
                expires_at: Some(self.now + Duration::seconds(request.duration_secs)),
                reason: format!("access request {}: {}", request.id, request.reason),
                scopes: request.scopes.clone(),
                ..GrantSpec::new(request.subject, &request.audience, &[])
            })
            .await?;
        Ok(grant.id)
    }

    /// A request for access by `spec.subject` for itself. Decided at once when the
    /// covering policy says `auto` (or on break-glass); else pending for approvers.
    ///
    /// # Errors
    /// [`AdminError::Forbidden`] when no policy covers it or a policy denies it;
    /// [`AdminError::Invalid`] for bad fields or a duration longer than policy allows.
    pub async fn create_access_request(
        &self,
        spec: AccessRequestSpec,
        cx: &AccessContext<'_>,
    ) -> Result<AccessRequestRecord, AdminError> {
        let reason = text("reason", &spec.reason, true)?;
        let scopes = scope_list(&spec.scopes)?;
        if spec.duration < Duration::SECOND || spec.duration > MAX_ACCESS_DURATION {
            return Err(invalid(
                "duration_secs",
                format!(
                    "must be between 1 and {} seconds",
                    MAX_ACCESS_DURATION.whole_seconds()
                ),
            ));
        }
        let Some(audience) = self.store.audience_by_uri(&spec.audience).await? else {
            return Err(invalid("audience", "no such audience"));
        };
        let policies = self.all_access_policies(audience.id).await?;
        // The requester's labels, read now: a label added or removed takes effect on the
        // next request. Looked up only when some policy selects by label.
        let labels = if policies
            .iter()
            .any(|p| p.subjects.iter().any(|s| s.starts_with("label:")))
        {
            self.labels_of(spec.subject).await?
        } else {
            Vec::new()
        };
        // Deny wins: a deny policy naming the requester refuses the whole request when
        // it names any requested scope, whether or not it names them all.
        let denial = policies
            .iter()
            .filter(|p| p.decision == "deny" && covers_subject(p, spec.subject, &labels))
            .find_map(|p| scopes.iter().find(|s| p.scopes.contains(s)).map(|s| (p, s)));
        if let Some((p, scope)) = denial {
            let e = AdminError::Forbidden(format!(
                "access policy {:?} denies {scope}; the request is refused whole",
                p.name
            ));
            return Err(self.refuse(cx, &spec, &scopes, e).await);
        }
        let covering: Vec<&AccessPolicyRecord> = policies
            .iter()
            .filter(|p| p.decision != "deny" && covers_subject(p, spec.subject, &labels))
            .filter(|p| scopes.iter().all(|s| p.scopes.contains(s)))
            .collect();
        if covering.is_empty() {
            let e = AdminError::Forbidden(format!(
                "no access policy lets you request {} on {}",
                scopes.join(" "),
                audience.uri
            ));
            return Err(self.refuse(cx, &spec, &scopes, e).await);
        }
        let seconds = spec.duration.whole_seconds();
        let long_enough: Vec<&&AccessPolicyRecord> = covering
            .iter()
            .filter(|p| p.max_duration_secs >= seconds)
            .collect();
        if long_enough.is_empty() {
            let longest = covering
                .iter()
                .map(|p| p.max_duration_secs)
                .max()
                .unwrap_or(0);
            let e = invalid(
                "duration_secs",
                format!("longer than policy allows (at most {longest} seconds)"),
            );
            return Err(self.refuse(cx, &spec, &scopes, e).await);
        }
        let chosen = if spec.break_glass {
            long_enough.iter().find(|p| p.break_glass).copied()
        } else {
            // Prefer `auto`, then the fewest approvers.
            long_enough
                .iter()
                .min_by_key(|p| (p.decision != "auto", p.approvals_required))
                .copied()
        };
        let Some(policy) = chosen else {
            let e = AdminError::Forbidden("no access policy allows break-glass here".into());
            return Err(self.refuse(cx, &spec, &scopes, e).await);
        };
        let immediate = spec.break_glass || policy.decision == "auto";
        let mut request = AccessRequestRecord {
            id: Uuid::now_v7(),
            subject: spec.subject,
            audience_id: audience.id,
            audience: audience.uri.clone(),
            scopes,
            duration_secs: seconds,
            reason,
            break_glass: spec.break_glass,
            state: state::PENDING.to_owned(),
            policy_id: Some(policy.id),
            approvals_required: if immediate {
                0
            } else {
                policy.approvals_required
            },
            approvals: Vec::new(),
            grant_id: None,
            needs_review: false,
            created_at: self.now,
            pending_until: self.now + cx.pending_timeout,
            decided_at: None,
            decided_by: None,
            decision_comment: String::new(),
        };
        if immediate {
            request.grant_id = Some(self.access_grant(&request).await?);
            request.state = state::APPROVED.to_owned();
            request.decided_at = Some(self.now);
            request.needs_review = spec.break_glass;
            if spec.break_glass {
                request.decided_by = Some(self.id.clone());
                request.decision_comment = "break-glass self-approval".into();
            } else {
                request.decided_by = Some(format!("policy:{}", policy.id));
                request.decision_comment = format!("approved by access policy {:?}", policy.name);
            }
        }
        if let Err(e) = self.store.create_access_request(&request).await {
            // No grant without its request.
            if let Some(grant_id) = request.grant_id {
                let _ = self.end_access_grant(grant_id).await;
            }
            return Err(e.into());
        }
        let policy_detail = json!({ "policy_id": policy.id, "policy": policy.name, "break_glass": spec.break_glass });
        self.access_event(
            cx,
            kind::ACCESS_REQUESTED,
            outcome::SUCCESS,
            &request,
            policy_detail.clone(),
        )
        .await?;
        if immediate {
            let mut detail = policy_detail;
            detail["grant_id"] = json!(request.grant_id);
            detail["comment"] = json!(request.decision_comment);
            self.access_event(
                cx,
                kind::ACCESS_APPROVED,
                outcome::SUCCESS,
                &request,
                detail.clone(),
            )
            .await?;
            if spec.break_glass {
                detail["anomaly"] = json!("break_glass");
                self.access_event(cx, kind::ANOMALY, outcome::DETECTED, &request, detail)
                    .await?;
                metrics::counter!("mayfly_anomalies_total", "anomaly" => "break_glass")
                    .increment(1);
                tracing::warn!(request_id = %request.id, "break-glass access: approved by the requester, marked for review");
            }
        }
        Ok(request)
    }

    /// Expires every pending request whose time is up (audited and announced); returns
    /// how many. Called before each read and decision, and by the background sweep.
    ///
    /// # Errors
    /// The store's.
    pub async fn expire_access_requests(
        &self,
        cx: &AccessContext<'_>,
    ) -> Result<usize, AdminError> {
        let expired = self.store.expire_access_requests(self.now).await?;
        let system = Actor {
            id: "system".into(),
            ..self.clone()
        };
        for request in &expired {
            system
                .access_event(
                    cx,
                    kind::ACCESS_EXPIRED,
                    outcome::SUCCESS,
                    request,
                    json!({ "comment": request.decision_comment }),
                )
                .await?;
        }
        Ok(expired.len())
    }

    /// One request, its expiry applied.
    ///
    /// # Errors
    /// [`AdminError::NotFound`].
    pub async fn get_access_request(
        &self,
        id: Uuid,
        cx: &AccessContext<'_>,
    ) -> Result<AccessRequestRecord, AdminError> {
        self.expire_access_requests(cx).await?;
        self.store
            .access_request(id)
            .await?
            .ok_or(AdminError::NotFound("access request"))
    }

    /// A page of requests, expiries applied.
    ///
    /// # Errors
    /// The store's.
    pub async fn list_access_requests(
        &self,
        filter: AccessRequestFilter,
        page: Page,
        cx: &AccessContext<'_>,
    ) -> Result<Vec<AccessRequestRecord>, AdminError> {
        if let Some(s) = &filter.state
            && !state::ALL.contains(&s.as_str())
        {
            return Err(invalid(
                "state",
                format!("one of {}", state::ALL.join(", ")),
            ));
        }
        self.expire_access_requests(cx).await?;
        Ok(self.store.list_access_requests(filter, page).await?)
    }

    /// A pending request, for a decision by `self` (not the requester).
    async fn decidable(
        &self,
        id: Uuid,
        cx: &AccessContext<'_>,
    ) -> Result<AccessRequestRecord, AdminError> {
        let request = self.get_access_request(id, cx).await?;
        if subject_ref(request.subject).1.to_string() == self.id {
            return Err(AdminError::Forbidden(
                "you cannot decide your own access request".into(),
            ));
        }
        if request.state != state::PENDING {
            return Err(AdminError::Conflict(format!(
                "the access request is {}",
                request.state
            )));
        }
        Ok(request)
    }

    /// One approver's approval (`self.id` is the approver). Once the policy's number of
    /// distinct approvers is reached, the grant is created and the request approved.
    ///
    /// # Errors
    /// [`AdminError::Forbidden`] for the requester; [`AdminError::Conflict`] when it is
    /// not pending or this approver approved already.
    pub async fn approve_access(
        &self,
        id: Uuid,
        comment: &str,
        cx: &AccessContext<'_>,
    ) -> Result<AccessRequestRecord, AdminError> {
        let comment = text("comment", comment, false)?;
        let request = self.decidable(id, cx).await?;
        let approval = AccessApproval {
            approver: self.id.clone(),
            comment: comment.clone(),
            at: self.now,
        };
        let count = match self.store.add_access_approval(id, &approval).await {
            Ok(Some(n)) => i64::from(n),
            Ok(None) => {
                return Err(AdminError::Conflict(
                    "the access request is no longer pending".into(),
                ));
            }
            Err(StoreError::Conflict(_)) => {
                return Err(AdminError::Conflict(
                    "you approved this access request already".into(),
                ));
            }
            Err(e) => return Err(e.into()),
        };
        self.access_event(
            cx,
            kind::ACCESS_APPROVAL,
            outcome::SUCCESS,
            &request,
            json!({ "comment": comment, "approvals": count, "approvals_required": request.approvals_required }),
        )
        .await?;
        if count < request.approvals_required {
            return self.get_access_request(id, cx).await;
        }
        let grant_id = self.access_grant(&request).await?;
        let moved = self
            .store
            .transition_access_request(&AccessTransition {
                id,
                from: state::PENDING,
                to: state::APPROVED,
                by: self.id.clone(),
                comment: comment.clone(),
                grant_id: Some(grant_id),
                needs_review: false,
                now: self.now,
            })
            .await?;
        if !moved {
            // Another decision (or expiry) won meanwhile: this grant must not stay.
            self.end_access_grant(grant_id).await?;
            let now = self.get_access_request(id, cx).await?;
            if now.state == state::APPROVED {
                return Ok(now);
            }
            return Err(AdminError::Conflict(format!(
                "the access request is {}",
                now.state
            )));
        }
        let approved = self.get_access_request(id, cx).await?;
        self.access_event(
            cx,
            kind::ACCESS_APPROVED,
            outcome::SUCCESS,
            &approved,
            json!({ "comment": comment, "grant_id": grant_id, "approvers": approved.approvals.iter().map(|a| a.approver.clone()).collect::<Vec<_>>() }),
        )
        .await?;
        Ok(approved)
    }

    /// Refuses a pending request (`self.id` is the approver).
    ///
    /// # Errors
    /// As [`Actor::approve_access`]; the comment is required.
    pub async fn deny_access(
        &self,
        id: Uuid,
        comment: &str,
        cx: &AccessContext<'_>,
    ) -> Result<AccessRequestRecord, AdminError> {
        let comment = text("comment", comment, true)?;
        self.decidable(id, cx).await?;
        let moved = self
            .store
            .transition_access_request(&AccessTransition {
                id,
                from: state::PENDING,
                to: state::DENIED,
                by: self.id.clone(),
                comment: comment.clone(),
                grant_id: None,
                needs_review: false,
                now: self.now,
            })
            .await?;
        let request = self.get_access_request(id, cx).await?;
        if !moved {
            return Err(AdminError::Conflict(format!(
                "the access request is {}",
                request.state
            )));
        }
        self.access_event(
            cx,
            kind::ACCESS_DENIED,
            outcome::DENIED,
            &request,
            json!({ "comment": comment }),
        )
        .await?;
        Ok(request)
    }

    /// Records the after-the-fact review of a request marked for it (break-glass), by
    /// someone other than the requester; clears the mark.
    ///
    /// # Errors
    /// [`AdminError::Forbidden`] for the requester; [`AdminError::Conflict`] when it is
    /// not marked for review; the comment is required.
    pub async fn review_access(
        &self,
        id: Uuid,
        comment: &str,
        cx: &AccessContext<'_>,
    ) -> Result<AccessRequestRecord, AdminError> {
        let comment = text("comment", comment, true)?;
        let request = self.get_access_request(id, cx).await?;
        if subject_ref(request.subject).1.to_string() == self.id {
            return Err(AdminError::Forbidden(
                "you cannot review your own access request".into(),
            ));
        }
        if !self.store.clear_access_review(id).await? {
            return Err(AdminError::Conflict(
                "the access request is not marked for review".into(),
            ));
        }
        let reviewed = self.get_access_request(id, cx).await?;
        self.access_event(
            cx,
            kind::ACCESS_REVIEWED,
            outcome::SUCCESS,
            &reviewed,
            json!({ "comment": comment }),
        )
        .await?;
        Ok(reviewed)
    }

    /// The requester withdraws a request: a pending one is cancelled; an approved one
    /// too, and its grant ends now, revoking every token issued under it.
    ///
    /// # Errors
    /// [`AdminError::NotFound`] when it is not `subject`'s; [`AdminError::Conflict`]
    /// when it was denied, cancelled or expired already.
    pub async fn cancel_access(
        &self,
        id: Uuid,
        subject: Subject,
        comment: &str,
        cx: &AccessContext<'_>,
    ) -> Result<AccessRequestRecord, AdminError> {
        let comment = text("comment", comment, false)?;
        let request = self.get_access_request(id, cx).await?;
        if request.subject != subject {
            return Err(AdminError::NotFound("access request"));
        }
        let from = match request.state.as_str() {
            state::PENDING => state::PENDING,
            state::APPROVED => state::APPROVED,
            other => {
                return Err(AdminError::Conflict(format!(
                    "the access request is {other}"
                )));
            }
        };
        let moved = self
            .store
            .transition_access_request(&AccessTransition {
                id,
                from,
                to: state::CANCELLED,
                by: self.id.clone(),
                comment: comment.clone(),
                grant_id: None,
                needs_review: false,
                now: self.now,
            })
            .await?;
        if !moved {
            let now = self.get_access_request(id, cx).await?;
            return Err(AdminError::Conflict(format!(
                "the access request is {}",
                now.state
            )));
        }
        if let Some(grant_id) = request.grant_id {
            self.end_access_grant(grant_id).await?;
        }
        let cancelled = self.get_access_request(id, cx).await?;
        self.access_event(
            cx,
            kind::ACCESS_CANCELLED,
            outcome::SUCCESS,
            &cancelled,
            json!({ "comment": comment, "grant_id": request.grant_id, "was": from }),
        )
        .await?;
        Ok(cancelled)
    }
}

/// How often `mayfly serve` expires pending requests whose time is up (reads and
/// decisions also expire them first, so this only makes the events timely).
pub const EXPIRY_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// The background sweep of pending requests past their time (`pending_timeout`, the
/// configured `access_pending_timeout`); anomalies go to `webhook`. Abort the handle to
/// stop it.
pub fn spawn_expiry(
    store: std::sync::Arc<dyn mayfly_store::Store>,
    clock: std::sync::Arc<dyn crate::clock::Clock>,
    webhook: Option<crate::webhook::Webhook>,
    pending_timeout: time::Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let ctx = RequestContext::default();
        loop {
            let actor = Actor::trusted(store.as_ref(), "system", clock.now(), ctx.clone());
            let cx = AccessContext {
                webhook: webhook.as_ref(),
                pending_timeout,
                request: &ctx,
            };
            if let Err(e) = actor.expire_access_requests(&cx).await {
                tracing::warn!(error = %e, "expiring access requests failed");
            }
            tokio::time::sleep(EXPIRY_INTERVAL).await;
        }
    })
}
