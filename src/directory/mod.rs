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
pub mod validate;

pub use change::{
    Applied, Change, ChangeError, DirectoryError, EnterprisePatch, MemberPatch, NewBroadcast, NewGroup,
    NewMember, NewOrgUnit, NewRole,
};
pub use service::DirectoryService;
pub use validate::valid_domain;
