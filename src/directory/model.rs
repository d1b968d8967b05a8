//! The directory's domain types: what the account center is made of.
//!
//! These are plain values. The store persists them (they derive `sqlx::FromRow`, so a row reads
//! straight into them); [`super::DirectoryService`] is the only code that decides how they change.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Who owns an object (`ldap:<name>`, `scim:<client>`, `console`, `import`, `system`).
///
/// A source changes only what it owns (DESIGN.md, "Sources and ownership").
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Source(String);

impl Source {
    pub const CONSOLE: &'static str = "console";
    pub const IMPORT: &'static str = "import";
    pub const SYSTEM: &'static str = "system";

    /// Parses a source name: `console`, `import`, `system`, or `ldap:<name>` / `scim:<name>` /
    /// `im:<name>` (an IM server posting message records) / `api:<name>` (an app reading through
    /// the API with a token, e.g. a compliance tool) where name is 1-64 characters of
    /// `[A-Za-z0-9._-]`.
    pub fn parse(s: &str) -> Option<Source> {
        let ok_name = |n: &str| {
            !n.is_empty()
                && n.len() <= 64
                && n.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        };
        let valid = match s.split_once(':') {
            None => [Self::CONSOLE, Self::IMPORT, Self::SYSTEM].contains(&s),
            Some((kind, name)) => ["ldap", "scim", "im", "api"].contains(&kind) && ok_name(name),
        };
        valid.then(|| Source(s.to_owned()))
    }

    pub fn console() -> Source {
        Source(Self::CONSOLE.into())
    }
    pub fn import() -> Source {
        Source(Self::IMPORT.into())
    }
    pub fn system() -> Source {
        Source(Self::SYSTEM.into())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// A source mirroring an identity system whose data Roster cannot make it fix (SCIM, LDAP
    /// sync): a mobile number or e-mail address of its member that another member already holds
    /// is kept aside ([`crate::directory::store::Quarantined`]) instead of refusing the member. People (the
    /// console, an import file) get the conflict as an error to act on.
    pub fn quarantines(&self) -> bool {
        self.0.starts_with("scim:") || self.0.starts_with("ldap:")
    }
    /// A provisioning source (SCIM, LDAP sync, import): it feeds the directory from outside
    /// and never chooses the password of, or takes over, a member who holds a role.
    pub fn provisions(&self) -> bool {
        !matches!(self.0.as_str(), Self::CONSOLE | Self::SYSTEM)
    }
}

/// A stored value that is not a valid [`Source`] or [`MemberState`].
#[derive(Debug, thiserror::Error)]
#[error("not a valid {0}: {1:?}")]
pub struct InvalidValue(&'static str, String);

impl TryFrom<String> for Source {
    type Error = InvalidValue;
    fn try_from(s: String) -> Result<Source, InvalidValue> {
        Source::parse(&s).ok_or(InvalidValue("source", s))
    }
}

impl TryFrom<String> for MemberState {
    type Error = InvalidValue;
    fn try_from(s: String) -> Result<MemberState, InvalidValue> {
        MemberState::parse(&s).ok_or(InvalidValue("member state", s))
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Who asked for a change: the source it speaks for, and the person or client behind it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub source: Source,
    /// A human-readable principal: `admin`, a token name, a sync job name.
    pub who: String,
}

impl Actor {
    pub fn new(source: Source, who: impl Into<String>) -> Actor {
        Actor { source, who: who.into() }
    }
    pub fn system() -> Actor {
        Actor::new(Source::system(), "rosterd")
    }
}

/// The company. One per deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Enterprise {
    /// The enterprise id the super admin signs in with.
    pub enterprise_id: String,
    pub name: String,
    pub logo_url: Option<String>,
    pub address: Option<String>,
    pub contact_name: Option<String>,
    pub contact_phone: Option<String>,
    pub contact_email: Option<String>,
    pub mail_domain: String,
    pub expires_at: Option<DateTime<Utc>>,
    /// True until the one-time password printed at first start has been replaced.
    pub password_must_change: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A node of the org tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct OrgUnit {
    pub id: Uuid,
    pub parent_id: Option<Uuid>,
    pub name: String,
    /// Order among siblings, ascending.
    pub position: i64,
    #[sqlx(try_from = "String")]
    pub source: Source,
    pub anchor: Option<String>,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberState {
    Active,
    Suspended,
}

impl MemberState {
    pub fn as_str(self) -> &'static str {
        match self {
            MemberState::Active => "active",
            MemberState::Suspended => "suspended",
        }
    }
    pub fn parse(s: &str) -> Option<MemberState> {
        match s {
            "active" => Some(MemberState::Active),
            "suspended" => Some(MemberState::Suspended),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Email {
    pub address: String,
    /// `work`, `home`, `other`.
    pub kind: String,
    #[sqlx(rename = "is_primary")]
    pub primary: bool,
}

/// A phone number besides the mobile (work, home, fax...), kept as the source sent it. The
/// mobile, which SMS go to, is [`Member::mobile`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Phone {
    pub number: String,
    /// `work`, `home`, `fax`, `other`, or the source's own label.
    pub kind: String,
    #[serde(default)]
    pub primary: bool,
}

/// An employee (internal contact). A deleted member is a [`Tombstone`], not a member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Member {
    pub id: Uuid,
    pub account_number: i64,
    /// `name@mail_domain`, lower case.
    pub login_name: String,
    pub display_name: String,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    /// Kept in their own table; the store fills them in.
    #[sqlx(skip)]
    pub emails: Vec<Email>,
    pub mobile: Option<String>,
    /// Further phone numbers, in order (their own table; the store fills them in).
    #[sqlx(skip)]
    #[serde(default)]
    pub phones: Vec<Phone>,
    pub title: Option<String>,
    pub employee_number: Option<String>,
    /// Department as the identity provider wrote it (the org tree is `primary_org_unit_id`).
    #[serde(default)]
    pub department: Option<String>,
    #[serde(default)]
    pub organization: Option<String>,
    #[serde(default)]
    pub division: Option<String>,
    #[serde(default)]
    pub cost_center: Option<String>,
    pub primary_org_unit_id: Option<Uuid>,
    /// Further org units besides the primary one (their own table; the store fills them in).
    #[sqlx(skip)]
    pub org_unit_ids: Vec<Uuid>,
    pub manager_id: Option<Uuid>,
    #[sqlx(try_from = "String")]
    pub state: MemberState,
    #[sqlx(try_from = "String")]
    pub source: Source,
    pub anchor: Option<String>,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The fields of a member that an outside source sets (what a sync compares), in the form the
/// directory stores them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcedFields<'a> {
    pub login_name: &'a str,
    pub display_name: &'a str,
    pub given_name: Option<&'a str>,
    pub family_name: Option<&'a str>,
    pub mobile: Option<&'a str>,
    pub title: Option<&'a str>,
    pub employee_number: Option<&'a str>,
    /// E-mail addresses, in order.
    pub emails: Vec<&'a str>,
    /// Further phone numbers, in order.
    pub phones: Vec<&'a str>,
    pub primary_org_unit_id: Option<Uuid>,
    pub manager_id: Option<Uuid>,
    pub state: MemberState,
}

impl SourcedFields<'_> {
    /// A stable 64-bit digest (SHA-256, truncated): equal fields give equal digests in every
    /// process and release. Changing what goes in means a migration that clears the stored ones.
    pub fn digest(&self) -> i64 {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        let mut text = |v: Option<&str>| match v {
            // Length-prefixed, so no two different field lists run together into one input.
            Some(v) => {
                h.update([1]);
                h.update((v.len() as u64).to_le_bytes());
                h.update(v.as_bytes());
            }
            None => h.update([0]),
        };
        text(Some(self.login_name));
        text(Some(self.display_name));
        text(self.given_name);
        text(self.family_name);
        text(self.mobile);
        text(self.title);
        text(self.employee_number);
        for e in &self.emails {
            text(Some(e));
        }
        text(None);
        // Only when there are some: the digests of members without (every stored one from
        // before phones were kept) stay what they were.
        if !self.phones.is_empty() {
            text(Some("phones"));
            for p in &self.phones {
                text(Some(p));
            }
            text(None);
        }
        let mut id = |v: Option<Uuid>| match v {
            Some(v) => {
                h.update([1]);
                h.update(v.as_bytes());
            }
            None => h.update([0]),
        };
        id(self.primary_org_unit_id);
        id(self.manager_id);
        h.update(self.state.as_str().as_bytes());
        let out = h.finalize();
        i64::from_le_bytes(out[..8].try_into().expect("SHA-256 is 32 bytes"))
    }
}

impl Member {
    pub fn sourced(&self) -> SourcedFields<'_> {
        SourcedFields {
            login_name: &self.login_name,
            display_name: &self.display_name,
            given_name: self.given_name.as_deref(),
            family_name: self.family_name.as_deref(),
            mobile: self.mobile.as_deref(),
            title: self.title.as_deref(),
            employee_number: self.employee_number.as_deref(),
            emails: self.emails.iter().map(|e| e.address.as_str()).collect(),
            phones: self.phones.iter().map(|p| p.number.as_str()).collect(),
            primary_org_unit_id: self.primary_org_unit_id,
            manager_id: self.manager_id,
            state: self.state,
        }
    }

    /// The digest of [`Member::sourced`], which the store keeps with the member.
    pub fn digest(&self) -> i64 {
        self.sourced().digest()
    }
}

/// What is left of a deleted member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Tombstone {
    /// The deleted member's identity; never given to anybody else.
    pub member_id: Uuid,
    pub account_number: i64,
    pub login_name: String,
    /// The last profile, as it was just before deletion.
    #[sqlx(json)]
    pub profile: Member,
    pub deleted_at: DateTime<Utc>,
    pub reason: String,
    #[sqlx(try_from = "String")]
    pub source: Source,
    pub deleted_by: String,
}

/// An enterprise (chat) group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Group {
    pub id: Uuid,
    pub name: String,
    pub owner_id: Option<Uuid>,
    #[sqlx(try_from = "String")]
    pub source: Source,
    pub anchor: Option<String>,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One row of the audit log: who changed what, through which source, before and after.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct AuditEntry {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    #[sqlx(try_from = "String")]
    pub source: Source,
    /// `member.create`, `org_unit.move`, ...
    pub action: String,
    /// `member`, `org_unit`, `group`, `enterprise`, `number`, `token`.
    pub object_kind: String,
    pub object_id: Option<String>,
    #[sqlx(json(nullable))]
    pub before: Option<serde_json::Value>,
    #[sqlx(json(nullable))]
    pub after: Option<serde_json::Value>,
}

/// An audit row to write: [`AuditEntry`] before it has an id, with the objects as JSON text,
/// serialised once straight from them (a first sync writes 100,000).
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    pub at: DateTime<Utc>,
    pub actor: String,
    pub source: Source,
    pub action: String,
    pub object_kind: String,
    pub object_id: Option<String>,
    pub before: Option<String>,
    pub after: Option<String>,
}

impl AuditRecord {
    /// An audit row of `actor` doing `action` to an object at `at`, with its state before and
    /// after as JSON (plain data with string keys, so serialising cannot fail).
    pub fn new<T: Serialize + ?Sized>(
        actor: &Actor,
        at: DateTime<Utc>,
        action: &str,
        object: (&str, Option<String>),
        before: Option<&T>,
        after: Option<&T>,
    ) -> AuditRecord {
        let to_json = |v: Option<&T>| v.map(|v| serde_json::to_string(v).unwrap_or_else(|_| "null".into()));
        AuditRecord {
            at,
            actor: actor.who.clone(),
            source: actor.source.clone(),
            action: action.to_owned(),
            object_kind: object.0.to_owned(),
            object_id: object.1,
            before: to_json(before),
            after: to_json(after),
        }
    }
}

/// A notification to deliver later, written in the same transaction as its cause.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct OutboxMessage {
    pub id: Uuid,
    pub created_at: DateTime<Utc>,
    /// `member.created`, `member.deleted`, ...
    pub kind: String,
    /// Delivery is at-least-once; receivers de-duplicate on this key.
    pub idempotency_key: String,
    #[sqlx(json)]
    pub payload: serde_json::Value,
    pub state: String,
    pub attempts: i64,
}

/// An outbox row to write: [`OutboxMessage`] as queued (pending, no attempts yet), its payload
/// as JSON text serialised straight from its fields.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRecord {
    pub id: Uuid,
    pub created_at: DateTime<Utc>,
    pub kind: String,
    pub idempotency_key: String,
    pub payload: String,
}

/// A number held back by an admin: never handed out automatically.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Reservation {
    pub number: i64,
    pub note: String,
    pub reserved_at: DateTime<Utc>,
    pub reserved_by: String,
}

/// How many objects the directory holds (for `/metrics`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub members: i64,
    pub org_units: i64,
    pub groups: i64,
    pub tombstones: i64,
}

/// What a role can allow. The super admin holds every permission and also manages roles and
/// the enterprise profile, which no role can grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    /// Create, rename, move and delete org units (within the grant's scope).
    ManageOrg,
    /// Create, edit, move, suspend and delete members (within the grant's scope).
    ManageMembers,
    ViewMessages,
    /// Broadcasts and the SMS account.
    SendSms,
    ManageLoginPolicy,
    ManageSync,
    ManageScim,
    ViewAudit,
}

impl Permission {
    pub const ALL: [Permission; 8] = [
        Permission::ManageOrg,
        Permission::ManageMembers,
        Permission::ViewMessages,
        Permission::SendSms,
        Permission::ManageLoginPolicy,
        Permission::ManageSync,
        Permission::ManageScim,
        Permission::ViewAudit,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::ManageOrg => "manage_org",
            Permission::ManageMembers => "manage_members",
            Permission::ViewMessages => "view_messages",
            Permission::SendSms => "send_sms",
            Permission::ManageLoginPolicy => "manage_login_policy",
            Permission::ManageSync => "manage_sync",
            Permission::ManageScim => "manage_scim",
            Permission::ViewAudit => "view_audit",
        }
    }

    pub fn parse(s: &str) -> Option<Permission> {
        Permission::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// Whether a grant scoped to an org subtree limits this permission to that subtree. The
    /// others act on the whole enterprise, so only an unscoped grant gives them.
    pub fn scopable(self) -> bool {
        matches!(
            self,
            Permission::ManageOrg
                | Permission::ManageMembers
                | Permission::ViewMessages
                | Permission::ManageLoginPolicy
        )
    }
}

/// A set of permissions, stored as sorted, comma-separated names.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Permissions(pub std::collections::BTreeSet<Permission>);

impl Permissions {
    pub fn contains(&self, p: Permission) -> bool {
        self.0.contains(&p)
    }
    pub fn to_db(&self) -> String {
        self.0.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(",")
    }
}

impl TryFrom<String> for Permissions {
    type Error = InvalidValue;
    fn try_from(s: String) -> Result<Permissions, InvalidValue> {
        s.split(',')
            .filter(|p| !p.is_empty())
            .map(|p| Permission::parse(p).ok_or_else(|| InvalidValue("permission", p.to_owned())))
            .collect::<Result<_, _>>()
            .map(Permissions)
    }
}

/// A named set of permissions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Role {
    pub id: Uuid,
    pub name: String,
    #[sqlx(try_from = "String")]
    pub permissions: Permissions,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A role granted to a member, over the whole directory or an org subtree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct RoleGrant {
    pub role_id: Uuid,
    pub member_id: Uuid,
    pub scope_unit_id: Option<Uuid>,
    pub granted_at: DateTime<Utc>,
    pub granted_by: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields() -> SourcedFields<'static> {
        SourcedFields {
            login_name: "ada@example.com",
            display_name: "Ada Lovelace",
            given_name: Some("Ada"),
            family_name: None,
            mobile: Some("+15550000001"),
            title: Some("Engineer"),
            employee_number: None,
            emails: vec!["ada@example.com", "a.l@example.com"],
            phones: vec![],
            primary_org_unit_id: Some(Uuid::from_u128(7)),
            manager_id: None,
            state: MemberState::Active,
        }
    }

    /// Digests are stored: the same fields must give the same digest in every release. A change
    /// to what goes in needs a migration that clears the stored digests (and a new value here).
    #[test]
    fn the_digest_is_stable() {
        assert_eq!(fields().digest(), fields().digest());
        // SHA-256 of the length-prefixed fields, first 8 bytes little-endian (checked with Python's hashlib).
        assert_eq!(fields().digest(), -1_516_298_293_534_858_680, "the stored digest format changed");
    }

    #[test]
    fn every_sourced_field_changes_the_digest() {
        let base = fields().digest();
        let changes: Vec<fn(&mut SourcedFields<'static>)> = vec![
            |f| f.login_name = "ada2@example.com",
            |f| f.display_name = "Ada King",
            |f| f.given_name = None,
            |f| f.family_name = Some("Lovelace"),
            |f| f.mobile = None,
            |f| f.title = Some("Engineer "),
            |f| f.employee_number = Some(""),
            |f| f.emails.reverse(),
            |f| f.emails.pop().map(|_| ()).unwrap_or(()),
            |f| f.primary_org_unit_id = None,
            |f| f.manager_id = Some(Uuid::from_u128(7)),
            |f| f.state = MemberState::Suspended,
            // Fields that run together must not collide: "Ada" + None vs None + "Ada".
            |f| {
                f.given_name = None;
                f.family_name = Some("Ada");
            },
        ];
        let mut seen = std::collections::HashSet::from([base]);
        for change in changes {
            let mut f = fields();
            change(&mut f);
            assert!(seen.insert(f.digest()), "{f:?} collides with an earlier digest");
        }
    }
}
