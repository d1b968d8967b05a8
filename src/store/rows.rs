//! Rows as the database returns them, and their conversion into domain values.
//!
//! The derives work for both backends: every column type here decodes from SQLite and
//! PostgreSQL alike.

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use uuid::Uuid;

use super::StoreError;
use crate::directory::model::{
    AuditEntry, Email, Enterprise, Group, Member, MemberState, OrgUnit, OutboxMessage, Reservation,
    Source, Tombstone,
};

fn source(s: String) -> Result<Source, StoreError> {
    Source::parse(&s).ok_or_else(|| StoreError::Corrupt(format!("unknown source {s:?}")))
}

#[derive(sqlx::FromRow)]
pub struct EnterpriseRow {
    pub enterprise_id: String,
    pub name: String,
    pub logo_url: Option<String>,
    pub address: Option<String>,
    pub contact_name: Option<String>,
    pub contact_phone: Option<String>,
    pub contact_email: Option<String>,
    pub mail_domain: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub password_must_change: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<EnterpriseRow> for Enterprise {
    fn from(r: EnterpriseRow) -> Enterprise {
        Enterprise {
            enterprise_id: r.enterprise_id,
            name: r.name,
            logo_url: r.logo_url,
            address: r.address,
            contact_name: r.contact_name,
            contact_phone: r.contact_phone,
            contact_email: r.contact_email,
            mail_domain: r.mail_domain,
            expires_at: r.expires_at,
            password_must_change: r.password_must_change,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

#[derive(sqlx::FromRow)]
pub struct OrgUnitRow {
    pub id: Uuid,
    pub parent_id: Option<Uuid>,
    pub name: String,
    pub position: i64,
    pub source: String,
    pub anchor: Option<String>,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl TryFrom<OrgUnitRow> for OrgUnit {
    type Error = StoreError;
    fn try_from(r: OrgUnitRow) -> Result<OrgUnit, StoreError> {
        Ok(OrgUnit {
            id: r.id,
            parent_id: r.parent_id,
            name: r.name,
            position: r.position,
            source: source(r.source)?,
            anchor: r.anchor,
            version: r.version,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub struct MemberRow {
    pub id: Uuid,
    pub account_number: i64,
    pub login_name: String,
    pub display_name: String,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub mobile: Option<String>,
    pub title: Option<String>,
    pub employee_number: Option<String>,
    pub primary_org_unit_id: Option<Uuid>,
    pub manager_id: Option<Uuid>,
    pub state: String,
    pub source: String,
    pub anchor: Option<String>,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
pub struct EmailRow {
    pub address: String,
    pub kind: String,
    pub is_primary: bool,
}

impl MemberRow {
    pub fn into_member(
        self,
        emails: Vec<EmailRow>,
        org_unit_ids: Vec<Uuid>,
    ) -> Result<Member, StoreError> {
        let state = MemberState::parse(&self.state)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown member state {:?}", self.state)))?;
        Ok(Member {
            id: self.id,
            account_number: self.account_number,
            login_name: self.login_name,
            display_name: self.display_name,
            given_name: self.given_name,
            family_name: self.family_name,
            emails: emails
                .into_iter()
                .map(|e| Email {
                    address: e.address,
                    kind: e.kind,
                    primary: e.is_primary,
                })
                .collect(),
            mobile: self.mobile,
            title: self.title,
            employee_number: self.employee_number,
            primary_org_unit_id: self.primary_org_unit_id,
            org_unit_ids,
            manager_id: self.manager_id,
            state,
            source: source(self.source)?,
            anchor: self.anchor,
            version: self.version,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub struct TombstoneRow {
    pub member_id: Uuid,
    pub account_number: i64,
    pub login_name: String,
    pub profile: Json<Member>,
    pub deleted_at: DateTime<Utc>,
    pub reason: String,
    pub source: String,
    pub deleted_by: String,
}

impl TryFrom<TombstoneRow> for Tombstone {
    type Error = StoreError;
    fn try_from(r: TombstoneRow) -> Result<Tombstone, StoreError> {
        Ok(Tombstone {
            member_id: r.member_id,
            account_number: r.account_number,
            login_name: r.login_name,
            profile: r.profile.0,
            deleted_at: r.deleted_at,
            reason: r.reason,
            source: source(r.source)?,
            deleted_by: r.deleted_by,
        })
    }
}

#[derive(sqlx::FromRow)]
pub struct GroupRow {
    pub id: Uuid,
    pub name: String,
    pub owner_id: Option<Uuid>,
    pub source: String,
    pub anchor: Option<String>,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl TryFrom<GroupRow> for Group {
    type Error = StoreError;
    fn try_from(r: GroupRow) -> Result<Group, StoreError> {
        Ok(Group {
            id: r.id,
            name: r.name,
            owner_id: r.owner_id,
            source: source(r.source)?,
            anchor: r.anchor,
            version: r.version,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub struct AuditRow {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub source: String,
    pub action: String,
    pub object_kind: String,
    pub object_id: Option<String>,
    pub before: Option<Json<serde_json::Value>>,
    pub after: Option<Json<serde_json::Value>>,
}

impl TryFrom<AuditRow> for AuditEntry {
    type Error = StoreError;
    fn try_from(r: AuditRow) -> Result<AuditEntry, StoreError> {
        Ok(AuditEntry {
            id: r.id,
            at: r.at,
            actor: r.actor,
            source: source(r.source)?,
            action: r.action,
            object_kind: r.object_kind,
            object_id: r.object_id,
            before: r.before.map(|j| j.0),
            after: r.after.map(|j| j.0),
        })
    }
}

#[derive(sqlx::FromRow)]
pub struct OutboxRow {
    pub id: Uuid,
    pub created_at: DateTime<Utc>,
    pub kind: String,
    pub idempotency_key: String,
    pub payload: Json<serde_json::Value>,
    pub state: String,
    pub attempts: i64,
}

impl From<OutboxRow> for OutboxMessage {
    fn from(r: OutboxRow) -> OutboxMessage {
        OutboxMessage {
            id: r.id,
            created_at: r.created_at,
            kind: r.kind,
            idempotency_key: r.idempotency_key,
            payload: r.payload.0,
            state: r.state,
            attempts: r.attempts,
        }
    }
}

#[derive(sqlx::FromRow)]
pub struct ReservationRow {
    pub number: i64,
    pub note: String,
    pub reserved_at: DateTime<Utc>,
    pub reserved_by: String,
}

impl From<ReservationRow> for Reservation {
    fn from(r: ReservationRow) -> Reservation {
        Reservation {
            number: r.number,
            note: r.note,
            reserved_at: r.reserved_at,
            reserved_by: r.reserved_by,
        }
    }
}

#[derive(sqlx::FromRow)]
pub struct TokenRow {
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}
