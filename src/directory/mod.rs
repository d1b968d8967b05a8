//! The directory core and its ONE write path.
//!
//! Every change to enterprise, org units, members, groups and account numbers, from any adapter
//! (SCIM, LDAP sync, console, CLI import), goes through [`DirectoryService::apply`]: it validates
//! the change set, writes it in one store transaction together with an audit-log row per change
//! and the outbox rows for later delivery, and returns typed errors. Nothing else writes these
//! tables. This module knows nothing of HTTP or LDAP.

pub mod change;
pub mod model;
mod numbers;
pub mod query;
mod service;
pub mod store;
pub mod validate;

pub use change::{
    Applied, Change, ChangeError, DirectoryError, DirectoryResult, EnterprisePatch, MemberPatch, NewGroup,
    NewMember, NewOrgUnit, NewRole,
};
pub use service::DirectoryService;
pub use validate::valid_domain;

/// The company's block of account numbers (the core's own settings; `[numbers]` in the
/// configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberBlock {
    /// First account number of the block.
    pub first: i64,
    /// Last account number of the block (inclusive).
    pub last: i64,
    /// Released numbers are never reused unless this is set; then only after this many days.
    pub reuse_after_days: Option<u32>,
}

/// The enterprise created on first start (`[enterprise]` in the configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEnterprise {
    pub name: String,
    /// Login names are `name@mail_domain`.
    pub mail_domain: String,
}
