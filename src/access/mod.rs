//! Access to the account center: the super-admin password and API tokens.

pub mod password;
pub mod tokens;
