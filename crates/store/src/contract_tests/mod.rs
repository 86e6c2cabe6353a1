//! The store contract: every test runs against SQLite and Postgres.

use std::sync::Arc;

use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::testing::TestDb;
use crate::*;

mod access;
mod audiences;
pub(crate) mod audit;
mod clients;
mod effects;
mod federation;
mod grants;
mod keys;
mod refresh;
mod replay;
mod revocations;
mod schema;
mod sightings;
mod users;

use access::*;
use audiences::*;
use audit::*;
use clients::*;
use effects::*;
use federation::*;
use grants::*;
use keys::*;
use refresh::*;
use replay::*;
use revocations::*;
use sightings::*;
use users::*;

/// A refresh key made of `n`: selector and digest alike.
fn key(n: u8) -> RefreshKey {
    RefreshKey {
        selector: Uuid::from_bytes([n; 16]),
        digest: [n; 32],
    }
}

/// Both backends store microseconds; compare at that precision.
#[allow(clippy::disallowed_methods)] // Store tests need a plausible wall-clock time.
fn now() -> OffsetDateTime {
    let t = OffsetDateTime::now_utc();
    t.replace_nanosecond(t.nanosecond() / 1000 * 1000)
        .unwrap_or(t)
}

macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test]
            async fn $name() {
                let db = super::TestDb::new(super::Backend::Sqlite).await;
                super::$name(db.store().await).await;
            })*
        }
        mod postgres {
            $(#[tokio::test]
            async fn $name() {
                let db = super::TestDb::new(super::Backend::Postgres).await;
                super::$name(db.store().await).await;
            })*
        }
    };
}

contract!(
    access_policies_and_requests_decide_once,
    audiences_and_scopes,
    clients_and_secrets,
    grant_references_must_exist,
    one_active_key,
    key_lifecycle_walks_next_active_retired_gone,
    activation_waits_for_the_publication_lead,
    emergency_rotation_revokes_the_active_key,
    concurrent_key_steps_change_once,
    rewrap_replaces_every_private_key_or_none,
    audit_batches_and_filters,
    migrate_twice_is_harmless,
    client_view_and_revision,
    paging_updates_and_deletes,
    users,
    client_keys_and_secret_deletion,
    grant_listing_and_changes,
    revocation_feed,
    audit_search_filters_and_retention,
    login_failures_lock_out_without_moving_the_revision,
    a_login_is_cleared_only_against_the_current_password,
    login_attempts_are_counted_before_the_check,
    subject_grants_of_users_and_clients,
    refresh_families_rotate_once_and_revoke_with_a_revocation,
    rotations_commit_with_their_events_in_one_batch,
    tokens_of_gone_families_are_pruned_in_slices,
    revocations_end_the_refresh_families_they_cover,
    a_change_commits_with_its_effects_or_not_at_all,
    sightings_and_anomaly_policy,
    audit_batch_larger_than_one_statement,
    one_time_ids,
    client_view_holds_public_keys,
    labels_round_trip_on_users_and_clients,
    a_create_commits_with_its_effects_or_not_at_all,
    trusted_issuers_commit_with_their_audit_events,
    federated_identities_are_unique_per_issuer,
    concurrent_identical_identities_one_wins,
    identities_go_with_their_client_or_user,
    audit_search_by_external_identity,
);

async fn audience(store: &dyn Store, uri: &str, scopes: &[&str]) -> AudienceRecord {
    let aud = store
        .create_audience(
            NewAudience {
                id: Uuid::now_v7(),
                uri: uri.into(),
                description: "d".into(),
                now: now(),
            },
            &ChangeEffects::default(),
        )
        .await
        .unwrap();
    for name in scopes {
        store
            .create_scope(
                NewScope {
                    id: Uuid::now_v7(),
                    audience_id: aud.id,
                    name: (*name).into(),
                    description: String::new(),
                    now: now(),
                },
                &ChangeEffects::default(),
            )
            .await
            .unwrap();
    }
    aud
}

async fn client(store: &dyn Store) -> ClientRecord {
    store
        .create_client(
            NewClient {
                id: Uuid::now_v7(),
                name: "svc".into(),
                enabled: true,
                default_ttl_secs: Some(120),
                max_ttl_secs: None,
                allowed_cidrs: vec!["10.0.0.0/8".into()],
                require_dpop: false,
                grant_types: vec!["client_credentials".into()],
                labels: vec![],
                anomaly_policy: AnomalyPolicy::Alert,
                now: now(),
            },
            &ChangeEffects::default(),
        )
        .await
        .unwrap()
}

fn grant(subject: Subject, audience_id: Uuid, scopes: &[&str]) -> NewGrant {
    NewGrant {
        id: Uuid::now_v7(),
        subject,
        audience_id,
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        not_before: None,
        expires_at: None,
        allowed_cidrs: vec![],
        max_ttl_secs: None,
        may_act: vec![],
        reason: "test".into(),
        created_by: "tester".into(),
        now: now(),
    }
}

fn revoke(kind: &str, value: &str, expires_at: OffsetDateTime) -> NewRevocation {
    NewRevocation {
        kind: kind.into(),
        value: value.into(),
        issued_before: now(),
        expires_at,
        reason: "test".into(),
        created_by: "tester".into(),
        now: now(),
    }
}

async fn user(store: &dyn Store, name: &str) -> UserRecord {
    store
        .create_user(
            NewUser {
                id: Uuid::now_v7(),
                username: name.into(),
                password_hash: "$argon2id$x".into(),
                enabled: true,
                labels: vec![],
                now: now(),
            },
            &ChangeEffects::default(),
        )
        .await
        .unwrap()
}
