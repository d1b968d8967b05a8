//! Normalisation and validation of single values (no store access).

use super::change::{DirectoryError, DirectoryResult};
use super::model::{Email, Phone};

/// A DNS domain name such as `example.com`.
pub fn valid_domain(d: &str) -> bool {
    d.len() <= 253
        && d.contains('.')
        && d.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// A required, trimmed, printable text of at most `max` characters.
pub fn text(field: &str, value: &str, max: usize) -> DirectoryResult<String> {
    let v = value.trim();
    if v.is_empty() {
        return Err(DirectoryError::invalid(field, "must not be empty"));
    }
    optional_text(field, Some(v), max).map(|v| v.unwrap_or_default())
}

/// The most characters each text field of a member holds: one table for every path that writes
/// members or compares them with a source.
const MEMBER_TEXT_MAX: [(&str, usize); 10] = [
    ("display_name", 128),
    ("given_name", 64),
    ("family_name", 64),
    ("title", 128),
    ("employee_number", 64),
    ("department", 256),
    ("organization", 128),
    ("division", 128),
    ("cost_center", 64),
    ("anchor", 256),
];

fn member_max(field: &str) -> usize {
    MEMBER_TEXT_MAX.iter().find(|(f, _)| *f == field).map(|(_, max)| *max).expect("a member text field")
}

/// A member's optional text field (`given_name`, `title`, ...), with its length limit.
pub fn member_text(field: &'static str, value: Option<&str>) -> DirectoryResult<Option<String>> {
    optional_text(field, value, member_max(field))
}

/// A member's display name: required, with its length limit.
pub fn display_name(value: &str) -> DirectoryResult<String> {
    text("display_name", value, member_max("display_name"))
}

/// An optional text: blank becomes `None`.
pub fn optional_text(field: &str, value: Option<&str>, max: usize) -> DirectoryResult<Option<String>> {
    let Some(v) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    if v.chars().count() > max {
        return Err(DirectoryError::invalid(field, format!("must be at most {max} characters")));
    }
    if v.chars().any(char::is_control) {
        return Err(DirectoryError::invalid(field, "must not contain control characters"));
    }
    Ok(Some(v.to_owned()))
}

/// An org unit name: no `/` (department paths use it as the separator).
pub fn org_unit_name(value: &str) -> DirectoryResult<String> {
    let v = text("name", value, 128)?;
    if v.contains('/') {
        return Err(DirectoryError::invalid("name", "must not contain '/'"));
    }
    Ok(v)
}

/// `alice` or `Alice@Example.com` -> `alice@example.com`; the domain must be the enterprise's.
pub fn login_name(value: &str, mail_domain: &str) -> DirectoryResult<String> {
    let v = value.trim().to_lowercase();
    let (local, domain) = match v.split_once('@') {
        Some((l, d)) => (l.to_owned(), d.to_owned()),
        None => (v.clone(), mail_domain.to_lowercase()),
    };
    if local.is_empty() || local.len() > 64 {
        return Err(DirectoryError::invalid("login_name", "the name before @ must be 1-64 characters"));
    }
    if !local.chars().all(|c| c.is_ascii_alphanumeric() || "._-+".contains(c))
        || local.starts_with('.')
        || local.ends_with('.')
    {
        return Err(DirectoryError::invalid(
            "login_name",
            "may contain only letters, digits and . _ - + (not at the ends)",
        ));
    }
    if domain != mail_domain.to_lowercase() {
        return Err(DirectoryError::invalid(
            "login_name",
            format!("must end in @{mail_domain}, the enterprise's mail domain"),
        ));
    }
    Ok(format!("{local}@{domain}"))
}

pub fn email_address(value: &str) -> DirectoryResult<String> {
    let v = value.trim().to_lowercase();
    let ok = match v.split_once('@') {
        Some((l, d)) => !l.is_empty() && l.len() <= 64 && valid_domain(d) && !l.contains(char::is_whitespace),
        None => false,
    };
    if !ok {
        return Err(DirectoryError::invalid("emails", format!("{value:?} is not an e-mail address")));
    }
    Ok(v)
}

/// Normalises addresses, drops nothing silently, and makes exactly one primary when any exist.
pub fn emails(list: &[Email]) -> DirectoryResult<Vec<Email>> {
    let mut out: Vec<Email> = Vec::with_capacity(list.len());
    for e in list {
        let address = email_address(&e.address)?;
        if out.iter().any(|o| o.address == address) {
            return Err(DirectoryError::invalid("emails", format!("{address} is listed twice")));
        }
        // work, home and other are the usual kinds; clients may send their own.
        let kind = match e.kind.trim().to_lowercase() {
            k if k.is_empty() => "work".to_owned(),
            k if k.len() <= 64 && !k.chars().any(char::is_control) => k,
            k => return Err(DirectoryError::invalid("emails", format!("kind {k:?} is not a short label"))),
        };
        out.push(Email { address, kind, primary: e.primary });
    }
    match out.iter().filter(|e| e.primary).count() {
        0 if !out.is_empty() => out[0].primary = true,
        0 | 1 => {}
        _ => {
            return Err(DirectoryError::invalid("emails", "only one e-mail can be primary"));
        }
    }
    Ok(out)
}

/// Phone numbers besides the mobile: each as written (trimmed, at most 64 characters, no control
/// characters; not reformatted: extensions and national forms stay readable), with a short kind
/// label (`work` when none), at most one primary.
pub fn phones(list: &[Phone]) -> DirectoryResult<Vec<Phone>> {
    let mut out: Vec<Phone> = Vec::with_capacity(list.len());
    for p in list {
        let number = p.number.trim();
        if number.is_empty() {
            return Err(DirectoryError::invalid("phones", "a phone number is empty"));
        }
        if number.chars().count() > 64 || number.chars().any(char::is_control) {
            return Err(DirectoryError::invalid("phones", format!("{number:?} is not a phone number")));
        }
        let kind = match p.kind.trim().to_lowercase() {
            k if k.is_empty() => "work".to_owned(),
            k if k.len() <= 64 && !k.chars().any(char::is_control) => k,
            k => return Err(DirectoryError::invalid("phones", format!("kind {k:?} is not a short label"))),
        };
        out.push(Phone { number: number.to_owned(), kind, primary: p.primary });
    }
    if out.iter().filter(|p| p.primary).count() > 1 {
        return Err(DirectoryError::invalid("phones", "only one phone number can be primary"));
    }
    if out.len() > 20 {
        return Err(DirectoryError::invalid("phones", "at most 20 phone numbers"));
    }
    Ok(out)
}

/// `+86 138-0013-8000` -> `+8613800138000`.
pub fn mobile(value: Option<&str>) -> DirectoryResult<Option<String>> {
    let Some(v) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let digits: String = v.chars().filter(|c| !" -().".contains(*c)).collect();
    let body = digits.strip_prefix('+').unwrap_or(&digits);
    if body.len() < 5 || body.len() > 20 || !body.chars().all(|c| c.is_ascii_digit()) {
        return Err(DirectoryError::invalid("mobile", format!("{v:?} is not a phone number")));
    }
    Ok(Some(digits))
}

/// A password someone chose: at least [`crate::secret::MIN_LEN`] characters, no control
/// characters.
pub fn password(password: &str) -> DirectoryResult<()> {
    let min = crate::secret::MIN_LEN;
    if password.chars().count() < min {
        return Err(DirectoryError::invalid("password", format!("must be at least {min} characters")));
    }
    if password.chars().any(char::is_control) {
        return Err(DirectoryError::invalid("password", "must not contain control characters"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_names_get_the_mail_domain() {
        assert_eq!(login_name("Alice", "example.com").unwrap(), "alice@example.com");
        assert_eq!(login_name("Bob.Li@Example.COM", "example.com").unwrap(), "bob.li@example.com");
        assert!(login_name("eve@other.org", "example.com").is_err());
        assert!(login_name("a b", "example.com").is_err());
        assert!(login_name("", "example.com").is_err());
    }

    #[test]
    fn one_primary_email() {
        let e = |a: &str, p| Email { address: a.into(), kind: String::new(), primary: p };
        let out = emails(&[e("A@x.com", false), e("b@x.com", false)]).unwrap();
        assert!(out[0].primary && !out[1].primary);
        assert_eq!(out[0].address, "a@x.com");
        assert!(emails(&[e("a@x.com", true), e("b@x.com", true)]).is_err());
        assert!(emails(&[e("a@x.com", false), e("A@x.com", false)]).is_err());
        assert!(emails(&[e("not-an-address", false)]).is_err());
    }

    #[test]
    fn mobiles_are_normalised() {
        assert_eq!(mobile(Some("+86 138-0013-8000")).unwrap().unwrap(), "+8613800138000");
        assert_eq!(mobile(Some("  ")).unwrap(), None);
        assert!(mobile(Some("call me")).is_err());
    }

    #[test]
    fn domains() {
        assert!(valid_domain("example.com"));
        assert!(!valid_domain("localhost"));
        assert!(!valid_domain("-a.com"));
    }
}
