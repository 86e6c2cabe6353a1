//! Just-in-time access: policies, requests and decisions as the API shows them.

use mayfly_store::{AccessPolicyRecord, AccessRequestFilter, AccessRequestRecord};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};
use utoipa::ToSchema;
use uuid::Uuid;

use super::SubjectRef;

/// A request for access for oneself.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAccessRequestIn {
    /// The audience URI.
    pub audience: String,
    /// Scope names on it.
    #[schema(min_items = 1, max_items = 64)]
    pub scopes: Vec<String>,
    /// How long, from approval, in seconds (at most what the policy allows).
    #[schema(minimum = 1, maximum = 604_800)]
    pub duration_secs: i64,
    /// Why (required; shown to approvers and kept in the audit log).
    #[schema(min_length = 1, max_length = 500)]
    pub reason: String,
    /// Emergency: approve it oneself, if a policy allows break-glass. Always raises an
    /// anomaly and marks the request for review.
    #[serde(default)]
    pub break_glass: bool,
}

/// How a policy decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DecisionIn {
    /// Approved at once, within the policy.
    Auto,
    /// Approved by `approvals_required` distinct approvers (never the requester).
    Approval,
    /// Refused.
    Deny,
}

fn decision_out(text: &str) -> DecisionIn {
    match text {
        "auto" => DecisionIn::Auto,
        "approval" => DecisionIn::Approval,
        // The store allows only the three; anything else refuses.
        _ => DecisionIn::Deny,
    }
}

/// An access policy.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccessPolicyOut {
    /// Id.
    pub id: Uuid,
    /// Display name.
    pub name: String,
    /// The audience it covers.
    pub audience_id: Uuid,
    /// Scopes that may be requested.
    pub scopes: Vec<String>,
    /// Who may request: `user:<id>`, `client:<id>`, `label:<name>` (every user or
    /// client carrying that label), `users` (every user), `clients` (every client).
    pub subjects: Vec<String>,
    /// Longest access, in seconds.
    pub max_duration_secs: i64,
    /// How requests are decided.
    pub decision: DecisionIn,
    /// Distinct approvers needed (`approval`).
    pub approvals_required: i64,
    /// Whether a requester may approve their own request in an emergency (always an
    /// anomaly event, and the request is marked for review).
    pub break_glass: bool,
    /// Who created it.
    pub created_by: String,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Last change.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl From<AccessPolicyRecord> for AccessPolicyOut {
    fn from(p: AccessPolicyRecord) -> Self {
        Self {
            id: p.id,
            name: p.name,
            audience_id: p.audience_id,
            scopes: p.scopes,
            subjects: p.subjects,
            max_duration_secs: p.max_duration_secs,
            decision: decision_out(&p.decision),
            approvals_required: p.approvals_required,
            break_glass: p.break_glass,
            created_by: p.created_by,
            created_at: p.created_at,
            updated_at: p.updated_at,
        }
    }
}

/// An access policy to create.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAccessPolicyIn {
    /// Display name.
    #[schema(min_length = 1, max_length = 500)]
    pub name: String,
    /// The audience URI.
    pub audience: String,
    /// Scopes on it that may be requested.
    #[schema(min_items = 1, max_items = 64)]
    pub scopes: Vec<String>,
    /// Who may request: `user:<id>`, `client:<id>`, `label:<name>` (every user or
    /// client carrying that label, read when a request is made), `users` (every user),
    /// `clients` (every client).
    #[schema(min_items = 1, max_items = 256)]
    pub subjects: Vec<String>,
    /// Longest access, in seconds (at most 7 days).
    #[schema(minimum = 1, maximum = 604_800)]
    pub max_duration_secs: i64,
    /// How requests are decided.
    pub decision: DecisionIn,
    /// Distinct approvers needed: 1 to 10 for `approval`, else 0.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 10)]
    pub approvals_required: i64,
    /// Allow emergency self-approval (`approval` policies only).
    #[serde(default)]
    pub break_glass: bool,
}

/// Changes to an access policy; absent fields stay.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccessPolicyPatch {
    /// New name.
    pub name: Option<String>,
    /// New scopes.
    pub scopes: Option<Vec<String>>,
    /// New subjects.
    pub subjects: Option<Vec<String>>,
    /// New longest access, in seconds.
    #[schema(minimum = 1, maximum = 604_800)]
    pub max_duration_secs: Option<i64>,
    /// New decision.
    pub decision: Option<DecisionIn>,
    /// New number of approvers.
    #[schema(minimum = 0, maximum = 10)]
    pub approvals_required: Option<i64>,
    /// Allow break-glass or not.
    pub break_glass: Option<bool>,
}

/// Policy listing filters.
#[derive(Debug, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PolicyParams {
    /// Only policies of this audience.
    pub audience_id: Option<Uuid>,
    /// Items per page, 1 to 500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A request's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AccessState {
    /// Waiting for approvers.
    Pending,
    /// Approved: its grant exists until `expires_at`.
    Approved,
    /// Refused by an approver.
    Denied,
    /// Withdrawn by the requester.
    Cancelled,
    /// Nobody decided in time.
    Expired,
}

impl AccessState {
    fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Denied => "denied",
            Self::Cancelled => "cancelled",
            Self::Expired => "expired",
        }
    }

    fn of(text: &str) -> Self {
        match text {
            "pending" => Self::Pending,
            "approved" => Self::Approved,
            "denied" => Self::Denied,
            "cancelled" => Self::Cancelled,
            // The store allows only these five.
            _ => Self::Expired,
        }
    }
}

/// One approval.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApprovalOut {
    /// The approver (user or client id).
    pub approver: String,
    /// Their comment.
    pub comment: String,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// A just-in-time access request.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccessRequestOut {
    /// Id.
    pub id: Uuid,
    /// Who asked.
    pub subject: SubjectRef,
    /// The audience URI.
    pub audience: String,
    /// The scopes.
    pub scopes: Vec<String>,
    /// How long the access lasts from approval, in seconds.
    pub duration_secs: i64,
    /// Why.
    pub reason: String,
    /// Whether break-glass was invoked.
    pub break_glass: bool,
    /// Where it is.
    pub state: AccessState,
    /// The policy that covered it (null once deleted).
    pub policy_id: Option<Uuid>,
    /// Distinct approvals needed.
    pub approvals_required: i64,
    /// Approvals so far.
    pub approvals: Vec<ApprovalOut>,
    /// The grant its approval created.
    pub grant_id: Option<Uuid>,
    /// When the access ends (approved requests; a cancelled one's ended then).
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    /// Marked for review (break-glass).
    pub needs_review: bool,
    /// When it was made.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// A pending request expires at this time.
    #[serde(with = "time::serde::rfc3339")]
    pub pending_until: OffsetDateTime,
    /// When it was decided, cancelled or expired.
    #[serde(with = "time::serde::rfc3339::option")]
    pub decided_at: Option<OffsetDateTime>,
    /// Who decided: an approver, the requester, `policy:<id>` or `system`.
    pub decided_by: Option<String>,
    /// The decision's comment.
    pub decision_comment: String,
}

impl From<AccessRequestRecord> for AccessRequestOut {
    fn from(r: AccessRequestRecord) -> Self {
        // The grant's window starts at the approval.
        let expires_at = (r.state == "approved")
            .then(|| r.decided_at.map(|t| t + Duration::seconds(r.duration_secs)))
            .flatten();
        Self {
            id: r.id,
            subject: r.subject.into(),
            audience: r.audience,
            scopes: r.scopes,
            duration_secs: r.duration_secs,
            reason: r.reason,
            break_glass: r.break_glass,
            state: AccessState::of(&r.state),
            policy_id: r.policy_id,
            approvals_required: r.approvals_required,
            approvals: r
                .approvals
                .into_iter()
                .map(|a| ApprovalOut {
                    approver: a.approver,
                    comment: a.comment,
                    at: a.at,
                })
                .collect(),
            grant_id: r.grant_id,
            expires_at,
            needs_review: r.needs_review,
            created_at: r.created_at,
            pending_until: r.pending_until,
            decided_at: r.decided_at,
            decided_by: r.decided_by,
            decision_comment: r.decision_comment,
        }
    }
}

/// Request listing filters.
#[derive(Debug, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AccessRequestParams {
    /// Only requests in this state (`pending`: the approvers' queue).
    pub state: Option<AccessState>,
    /// Only requests marked (or not) for review.
    pub needs_review: Option<bool>,
    /// Items per page, 1 to 500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl AccessRequestParams {
    /// The store filter, for `subject` (own requests) or everyone's.
    pub fn filter(&self, subject: Option<mayfly_store::Subject>) -> AccessRequestFilter {
        AccessRequestFilter {
            subject,
            state: self.state.map(|s| s.as_str().to_owned()),
            needs_review: self.needs_review,
        }
    }
}

/// An approver's decision.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionComment {
    /// Why (required to deny).
    #[serde(default)]
    #[schema(max_length = 500)]
    pub comment: String,
}
