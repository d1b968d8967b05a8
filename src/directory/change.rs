//! Change sets: what an adapter (SCIM, LDAP sync, console, CLI import) asks the directory to do,
//! what it got back, and why it was refused.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::model::{
    Email, Enterprise, Group, Member, MemberState, OrgUnit, Permission, Phone, Reservation, Role, RoleGrant,
    Tombstone,
};
use crate::directory::store::StoreError;
use crate::secret::Secret;

/// One change to the directory. A `Vec<Change>` is applied in order, in one transaction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Change {
    UpdateEnterprise(EnterprisePatch),
    CreateOrgUnit(NewOrgUnit),
    /// Renames a unit or changes its anchor.
    UpdateOrgUnit {
        id: Uuid,
        name: Option<String>,
        anchor: Option<Option<String>>,
    },
    /// Moves a unit under another parent (`None`: to the top) and/or to a sibling position.
    MoveOrgUnit {
        id: Uuid,
        parent_id: Option<Uuid>,
        position: Option<i64>,
    },
    /// Refused while the unit has child units or members.
    DeleteOrgUnit {
        id: Uuid,
    },
    CreateMember(NewMember),
    UpdateMember {
        id: Uuid,
        patch: MemberPatch,
    },
    /// Turns the member into a tombstone and quarantines its number.
    DeleteMember {
        id: Uuid,
        reason: String,
    },
    /// Hands a member another source owns to the acting source (an explicit, per-client
    /// setting: never done silently).
    AdoptMember {
        id: Uuid,
        anchor: Option<String>,
    },
    CreateGroup(NewGroup),
    UpdateGroup {
        id: Uuid,
        name: Option<String>,
        owner_id: Option<Option<Uuid>>,
        anchor: Option<Option<String>>,
    },
    AddGroupMembers {
        id: Uuid,
        members: Vec<Uuid>,
    },
    RemoveGroupMembers {
        id: Uuid,
        members: Vec<Uuid>,
    },
    DeleteGroup {
        id: Uuid,
    },
    /// Holds a number back from automatic allocation (an admin's reservation).
    ReserveNumber {
        number: i64,
        note: String,
    },
    ReleaseReservation {
        number: i64,
    },
    /// Where a sync source's next incremental read resumes; written with the changes it
    /// produced, so a crash never skips or repeats one.
    SetSyncCursor {
        source: String,
        cursor: String,
    },
    CreateRole(NewRole),
    UpdateRole {
        id: Uuid,
        name: Option<String>,
        permissions: Option<Vec<Permission>>,
    },
    /// Deletes the role and every grant of it.
    DeleteRole {
        id: Uuid,
    },
    /// Grants a role to a member (replacing the scope of an earlier grant of the same role).
    GrantRole {
        role_id: Uuid,
        member_id: Uuid,
        /// `None`: the whole directory; else the subtree under this unit.
        scope_unit_id: Option<Uuid>,
    },
    RevokeRole {
        role_id: Uuid,
        member_id: Uuid,
    },
    /// Refuses the change set when the object is no longer at `version` (someone else changed
    /// it since the caller read it): put it before the changes a form makes.
    ExpectVersion {
        /// `member`, `org_unit`, `group` or `role`.
        kind: String,
        id: Uuid,
        version: i64,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NewRole {
    pub id: Option<Uuid>,
    pub name: String,
    pub permissions: Vec<Permission>,
}

/// Fields of the enterprise profile to change; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EnterprisePatch {
    pub name: Option<String>,
    pub logo_url: Option<Option<String>>,
    pub address: Option<Option<String>>,
    pub contact_name: Option<Option<String>>,
    pub contact_phone: Option<Option<String>>,
    pub contact_email: Option<Option<String>>,
    pub mail_domain: Option<String>,
    pub expires_at: Option<Option<chrono::DateTime<chrono::Utc>>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NewOrgUnit {
    /// Pre-assigned id, so later changes in the same set can refer to the unit.
    pub id: Option<Uuid>,
    pub parent_id: Option<Uuid>,
    pub name: String,
    /// Position among siblings; after the last sibling when `None`.
    pub position: Option<i64>,
    pub anchor: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NewMember {
    /// Pre-assigned id; must never have been used (not even by a deleted member).
    pub id: Option<Uuid>,
    /// A specific number (for example a reserved one); the next in the block when `None`.
    pub account_number: Option<i64>,
    /// `name` or `name@mail_domain`.
    pub login_name: String,
    pub display_name: String,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub emails: Vec<Email>,
    pub mobile: Option<String>,
    /// Phone numbers besides the mobile.
    pub phones: Vec<Phone>,
    pub title: Option<String>,
    pub employee_number: Option<String>,
    pub department: Option<String>,
    pub organization: Option<String>,
    pub division: Option<String>,
    pub cost_center: Option<String>,
    pub primary_org_unit_id: Option<Uuid>,
    pub org_unit_ids: Vec<Uuid>,
    pub manager_id: Option<Uuid>,
    pub state: MemberState,
    pub anchor: Option<String>,
    /// For console sign-in; stored as an argon2 hash.
    pub password: Option<Secret>,
}

impl Default for NewMember {
    fn default() -> Self {
        NewMember {
            id: None,
            account_number: None,
            login_name: String::new(),
            display_name: String::new(),
            given_name: None,
            family_name: None,
            emails: Vec::new(),
            mobile: None,
            phones: Vec::new(),
            title: None,
            employee_number: None,
            department: None,
            organization: None,
            division: None,
            cost_center: None,
            primary_org_unit_id: None,
            org_unit_ids: Vec::new(),
            manager_id: None,
            state: MemberState::Active,
            anchor: None,
            password: None,
        }
    }
}

/// Member fields to change; `None` leaves a field as it is, `Some(None)` clears it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MemberPatch {
    pub login_name: Option<String>,
    pub display_name: Option<String>,
    pub given_name: Option<Option<String>>,
    pub family_name: Option<Option<String>>,
    pub emails: Option<Vec<Email>>,
    pub mobile: Option<Option<String>>,
    pub phones: Option<Vec<Phone>>,
    pub title: Option<Option<String>>,
    pub employee_number: Option<Option<String>>,
    pub department: Option<Option<String>>,
    pub organization: Option<Option<String>>,
    pub division: Option<Option<String>>,
    pub cost_center: Option<Option<String>>,
    pub primary_org_unit_id: Option<Option<Uuid>>,
    pub org_unit_ids: Option<Vec<Uuid>>,
    pub manager_id: Option<Option<Uuid>>,
    pub state: Option<MemberState>,
    pub anchor: Option<Option<String>>,
    pub password: Option<Secret>,
    /// With `password`: the console session (its hash) that set it, which stays signed in;
    /// every other session of the member ends. Never read from input.
    #[serde(skip)]
    pub keep_session: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NewGroup {
    pub id: Option<Uuid>,
    pub name: String,
    pub owner_id: Option<Uuid>,
    pub members: Vec<Uuid>,
    pub anchor: Option<String>,
}

/// What one change produced, in the order of the change set.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Applied {
    Enterprise(Enterprise),
    OrgUnit(OrgUnit),
    OrgUnitDeleted {
        id: Uuid,
    },
    Member(Member),
    Tombstone(Box<Tombstone>),
    Group(Group),
    GroupMembers {
        id: Uuid,
        changed: u64,
    },
    GroupDeleted {
        id: Uuid,
    },
    Reservation(Reservation),
    ReservationReleased {
        number: i64,
    },
    SyncCursor,
    Role(Role),
    RoleDeleted {
        id: Uuid,
    },
    RoleGranted(RoleGrant),
    RoleRevoked {
        role_id: Uuid,
        member_id: Uuid,
    },
    /// An [`Change::ExpectVersion`] that held.
    VersionChecked,
}

/// What the directory's operations return.
pub type DirectoryResult<T> = Result<T, DirectoryError>;

/// Why the directory refused a change. Each variant has a stable [`code`](Self::code).
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("{kind} {id} not found")]
    NotFound { kind: &'static str, id: String },
    #[error("{field} {value:?} is already in use")]
    Conflict { field: String, value: String },
    #[error("moving org unit {id} under {parent} would make a cycle")]
    Cycle { id: Uuid, parent: Uuid },
    #[error("org unit {id} still has {what}; move or delete them first")]
    NotEmpty { id: Uuid, what: &'static str },
    #[error("{kind} {id} is owned by source {owner}; {actor} may not change it")]
    NotOwner { kind: &'static str, id: Uuid, owner: String, actor: String },
    /// A provisioning source reached for what only the console may do to a member who holds a
    /// role (set the password, take the member over).
    #[error("member {id} holds a console role: {what}")]
    Protected { id: Uuid, what: &'static str },
    #[error("the account number block {first}-{last} is used up")]
    NumbersExhausted { first: i64, last: i64 },
    #[error("account number {number} is not available: {reason}")]
    NumberUnavailable { number: i64, reason: String },
    #[error("the enterprise has not been created yet")]
    NoEnterprise,
    #[error("{kind} {id} was changed by someone else (now at version {current}); reload and try again")]
    Stale { kind: String, id: Uuid, current: i64 },
    #[error("storage: {0}")]
    Store(StoreError),
}

impl From<StoreError> for DirectoryError {
    fn from(e: StoreError) -> DirectoryError {
        DirectoryError::Store(e)
    }
}

impl DirectoryError {
    /// A short, stable code that operators can search for.
    pub fn code(&self) -> &'static str {
        match self {
            DirectoryError::Invalid { .. } => "invalid",
            DirectoryError::NotFound { .. } => "not_found",
            DirectoryError::Conflict { .. } => "conflict",
            DirectoryError::Cycle { .. } => "org_cycle",
            DirectoryError::NotEmpty { .. } => "org_not_empty",
            DirectoryError::NotOwner { .. } => "not_owner",
            DirectoryError::Protected { .. } => "protected",
            DirectoryError::NumbersExhausted { .. } => "numbers_exhausted",
            DirectoryError::NumberUnavailable { .. } => "number_unavailable",
            DirectoryError::NoEnterprise => "no_enterprise",
            DirectoryError::Stale { .. } => "stale",
            DirectoryError::Store(StoreError::ReadOnly(_)) => "store_read_only",
            DirectoryError::Store(StoreError::DiskFull(_)) => "store_full",
            DirectoryError::Store(StoreError::Unavailable(_)) => "store_unavailable",
            DirectoryError::Store(_) => "store_error",
        }
    }

    pub(crate) fn invalid(field: &str, message: impl Into<String>) -> DirectoryError {
        DirectoryError::Invalid { field: field.to_owned(), message: message.into() }
    }

    /// Turns a unique-constraint violation (a lost race with another writer) into the
    /// conflict the pre-checks would have reported.
    pub(crate) fn from_store(e: StoreError) -> DirectoryError {
        match e {
            StoreError::Unique(key) => {
                let field = match key.as_str() {
                    "members_login_name" => "login_name",
                    "member_emails_address" => "email",
                    "members_mobile" => "mobile",
                    "members_account_number" => "account_number",
                    "org_units_parent_id_name" | "org_units_root_name" => "name",
                    "api_tokens_name" | "api_tokens_live_name" => "token name",
                    "roles_name" => "name",
                    k if k.ends_with("source_anchor") => "anchor",
                    _ => "value",
                };
                DirectoryError::Conflict { field: field.into(), value: format!("({key})") }
            }
            other => DirectoryError::Store(other),
        }
    }
}

/// A refused change set: which change (0-based) failed and why. Nothing of the set was written.
#[derive(Debug, thiserror::Error)]
#[error("change #{index}: {error}")]
pub struct ChangeError {
    pub index: usize,
    pub error: DirectoryError,
}
