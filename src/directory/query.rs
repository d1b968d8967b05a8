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
    /// The member's primary org unit is one of these units or below one of them: the subtree
    /// is walked in the store (one recursive query), however many units it holds.
    PrimaryUnitUnder(Vec<Uuid>),
}

impl Expr {
    /// What a search box means. Digits (an account number, a mobile, an employee number) are
    /// looked up exactly, from indexes; anything else is the start of a login name or part of a
    /// display name.
    pub fn search_box(q: &str) -> Option<Expr> {
        let q = q.trim();
        if q.is_empty() {
            return None;
        }
        let or = |a, b| Expr::Or(Box::new(a), Box::new(b));
        let text = |s: &str| Val::Text(s.to_owned());
        if q.chars().all(|c| c.is_ascii_digit() || c == '+') {
            let mut e = or(
                Expr::Cmp(Field::Mobile, Op::Eq, text(q)),
                Expr::Cmp(Field::EmployeeNumber, Op::Eq, text(q)),
            );
            if let Ok(n) = q.parse::<i64>() {
                e = or(e, Expr::Cmp(Field::AccountNumber, Op::Eq, Val::Int(n)));
            }
            return Some(e);
        }
        Some(or(
            Expr::Cmp(Field::LoginName, Op::Sw, text(&q.to_lowercase())),
            Expr::Cmp(Field::DisplayName, Op::Co, text(q)),
        ))
    }
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
