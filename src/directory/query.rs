//! Searching the directory: a small expression language over member and group fields that the
//! store runs as SQL (with indexes), so adapters (SCIM filters, console search) never touch
//! tables. Adapters translate their own syntax into an [`Expr`].

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// A searchable field. Text fields compare case-insensitively unless noted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Id,
    /// The owning source (exact).
    Source,
    /// The anchor in the owning source (exact).
    Anchor,
    LoginName,
    DisplayName,
    GivenName,
    FamilyName,
    Title,
    /// Exact.
    EmployeeNumber,
    Mobile,
    /// `state = active`; compare with a boolean.
    Active,
    AccountNumber,
    ManagerId,
    PrimaryOrgUnitId,
    Created,
    Modified,
    /// Inside [`Expr::AnyEmail`] only.
    EmailAddress,
    EmailKind,
    EmailPrimary,
    /// Groups: the name.
    GroupName,
    /// Groups: has this member (inside [`Expr::AnyGroupMember`]).
    GroupMemberId,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    /// Contains.
    Co,
    /// Starts with.
    Sw,
    /// Ends with.
    Ew,
    Gt,
    Ge,
    Lt,
    Le,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Text(String),
    Int(i64),
    Bool(bool),
    Time(DateTime<Utc>),
    Uuid(Uuid),
    Null,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Cmp(Field, Op, Val),
    Present(Field),
    /// Some e-mail of the member matches (fields `Email*`).
    AnyEmail(Box<Expr>),
    /// Some member of the group matches (field `GroupMemberId`).
    AnyGroupMember(Box<Expr>),
    /// Always true or always false (e.g. `id eq "not-a-uuid"`).
    Const(bool),
}

/// A page of a search: filter, order (`(field, descending)`, then id for a stable order), and
/// a window.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub filter: Option<Expr>,
    pub sort: Option<(Field, bool)>,
    pub offset: i64,
    pub limit: i64,
}

/// What a search found: the total matching and the requested window of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub total: i64,
    pub items: Vec<T>,
}
