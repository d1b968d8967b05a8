//! The console's pages, one module per menu entry. Each handler takes a [`Principal`], asks it
//! for the permission its action needs, reads through the store's readers and writes through
//! [`crate::directory::DirectoryService`].

pub mod accounts;
pub mod attendance;
pub mod audit;
pub mod delivery;
pub mod enterprise;
pub mod home;
pub mod import;
pub mod members;
pub mod org;
pub mod records;
pub mod roles;
pub mod scim;
pub mod sign_in;
pub mod sync;

use axum::response::Response;
use serde::Deserialize;

use super::Failure;
use crate::directory::{ChangeError, DirectoryError};

pub type Reply = Result<Response, Failure>;

/// Errors shown next to the fields of a form (and one for the whole form), with what the user
/// typed kept in the form.
#[derive(Debug, Default)]
pub struct Errors {
    pub fields: Vec<(String, String)>,
    pub general: Option<String>,
}

impl Errors {
    pub fn get(&self, field: &str) -> Option<&str> {
        self.fields.iter().find(|(f, _)| f == field).map(|(_, m)| m.as_str())
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty() && self.general.is_none()
    }

    pub fn field(field: &str, message: impl Into<String>) -> Errors {
        Errors { fields: vec![(field.to_owned(), message.into())], general: None }
    }

    pub fn general(message: impl Into<String>) -> Errors {
        Errors { fields: Vec::new(), general: Some(message.into()) }
    }

    /// A refused change as form errors. The store's failure is not the user's: it is a page
    /// of its own ([`Failure::Unavailable`]).
    pub fn from_directory(e: DirectoryError) -> Result<Errors, Failure> {
        Ok(match e {
            DirectoryError::Invalid { field, message } => Errors::field(&field, message),
            DirectoryError::Conflict { ref field, .. } => Errors::field(&field.clone(), e.to_string()),
            DirectoryError::Store(_) => return Err(Failure::from_directory(&e)),
            other => Errors::general(other.to_string()),
        })
    }

    pub fn from_change(e: ChangeError) -> Result<Errors, Failure> {
        Errors::from_directory(e.error)
    }
}

/// `?done=key` after a redirect: the flash message to show.
#[derive(Debug, Default, Deserialize)]
pub struct Done {
    #[serde(default)]
    pub done: Option<String>,
}

/// A value for a CSV cell that a spreadsheet would run as a formula gets a leading `'` (a
/// phone number such as +8613800000000, or a negative number, stays as it is).
pub fn defuse(v: &str) -> String {
    let number = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
    let formula = v.starts_with(['=', '@', '\t', '\r']) || (v.starts_with(['+', '-']) && !number(&v[1..]));
    if formula { format!("'{v}") } else { v.to_owned() }
}

/// A CSV file as a download.
pub fn csv_download(name: &str, body: impl Into<axum::body::Body>) -> Response {
    use axum::response::IntoResponse;
    (
        [
            (axum::http::header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (axum::http::header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}\"")),
        ],
        body.into(),
    )
        .into_response()
}

/// An optional text field: blank is none.
pub fn opt(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_owned())
}

/// Parses an id from a path or form, or answers 400/404.
pub fn uuid(s: &str) -> Result<uuid::Uuid, Failure> {
    uuid::Uuid::parse_str(s.trim()).map_err(|_| Failure::NotFound)
}
