//! Distinguished names (RFC 4514): parsed into RDNs, compared in a normal form (attribute
//! types and values lower case, spaces around separators dropped, escapes resolved), and
//! written with the escapes a value needs.

/// A parsed DN: its RDNs, leaf first, each `(type, value)` in normal form. Multi-valued RDNs
/// (`a=1+b=2`) are kept as one value with the `+` (Roster writes none).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Dn(pub Vec<(String, String)>);

impl Dn {
    /// Parses `s`; `None` when it is not a DN.
    pub fn parse(s: &str) -> Option<Dn> {
        let s = s.trim();
        if s.is_empty() {
            return Some(Dn(Vec::new()));
        }
        let mut rdns = Vec::new();
        let mut chars = s.chars().peekable();
        loop {
            // type
            let mut ty = String::new();
            while let Some(&c) = chars.peek() {
                if c == '=' {
                    break;
                }
                ty.push(c);
                chars.next();
            }
            if chars.next() != Some('=') {
                return None;
            }
            let ty = ty.trim().to_ascii_lowercase();
            if ty.is_empty() || !ty.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.') {
                return None;
            }
            // value, up to an unescaped `,` (or `;`)
            let mut value = String::new();
            let mut trailing_spaces = 0usize;
            let mut leading = true;
            loop {
                match chars.next() {
                    None | Some(',') | Some(';') => break,
                    Some('\\') => {
                        let c = chars.next()?;
                        if c.is_ascii_hexdigit() {
                            // \XX hex pairs make UTF-8 bytes.
                            let d = chars.next()?;
                            let mut bytes = vec![u8::from_str_radix(&format!("{c}{d}"), 16).ok()?];
                            while chars.peek() == Some(&'\\') {
                                let mut look = chars.clone();
                                look.next();
                                match (look.next(), look.next()) {
                                    (Some(a), Some(b)) if a.is_ascii_hexdigit() && b.is_ascii_hexdigit() => {
                                        bytes.push(u8::from_str_radix(&format!("{a}{b}"), 16).ok()?);
                                        chars = look;
                                    }
                                    _ => break,
                                }
                            }
                            value.push_str(&String::from_utf8(bytes).ok()?);
                        } else {
                            value.push(c);
                        }
                        trailing_spaces = 0;
                        leading = false;
                    }
                    Some(' ') if leading => {}
                    Some(c) => {
                        value.push(c);
                        trailing_spaces = if c == ' ' { trailing_spaces + 1 } else { 0 };
                        leading = false;
                    }
                }
                if chars.peek().is_none() {
                    break;
                }
                if matches!(chars.peek(), Some(',') | Some(';')) {
                    chars.next();
                    break;
                }
            }
            value.truncate(value.len() - trailing_spaces);
            rdns.push((ty, value.to_lowercase()));
            if chars.peek().is_none() {
                break;
            }
        }
        Some(Dn(rdns))
    }

    /// Whether `self` is `other` or under it.
    pub fn is_under(&self, other: &Dn) -> bool {
        self.0.len() >= other.0.len() && self.0[self.0.len() - other.0.len()..] == other.0[..]
    }

    /// The DN one level up.
    pub fn parent(&self) -> Dn {
        Dn(self.0.iter().skip(1).cloned().collect())
    }

    /// The leaf RDN relative to `base` when `self` is exactly one or more levels under it:
    /// the RDNs above base, leaf first.
    pub fn below<'a>(&'a self, base: &Dn) -> Option<&'a [(String, String)]> {
        self.is_under(base).then(|| &self.0[..self.0.len() - base.0.len()])
    }
}

/// Escapes an attribute value for a DN (RFC 4514 section 2.4).
pub fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let n = value.chars().count();
    for (i, c) in value.chars().enumerate() {
        match c {
            ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=' => {
                out.push('\\');
                out.push(c);
            }
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i + 1 == n => out.push_str("\\ "),
            '\0' => out.push_str("\\00"),
            c => out.push(c),
        }
    }
    out
}

/// The normal form of a DN written as text (for comparing DN-valued attributes); the text
/// lower case when it does not parse.
pub fn normal(s: &str) -> String {
    match Dn::parse(s) {
        Some(dn) => dn.0.iter().map(|(t, v)| format!("{t}={}", escape(v))).collect::<Vec<_>>().join(","),
        None => s.trim().to_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_normalizes() {
        let a = Dn::parse("UID=1001, OU=People ,dc=Example,dc=com").unwrap();
        let b = Dn::parse("uid=1001,ou=people,dc=example,dc=com").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.0[0], ("uid".into(), "1001".into()));
        assert!(a.is_under(&Dn::parse("dc=example,dc=com").unwrap()));
        assert!(!a.is_under(&Dn::parse("dc=other,dc=com").unwrap()));
        assert_eq!(a.parent(), Dn::parse("ou=people,dc=example,dc=com").unwrap());
    }

    #[test]
    fn escapes_round_trip() {
        for v in ["Sales, East", " lead", "trail ", "#1", "a+b=c", "研发部", "back\\slash", "x;y<z>\"q\""]
        {
            let dn = format!("ou={},dc=example,dc=com", escape(v));
            let parsed = Dn::parse(&dn).unwrap_or_else(|| panic!("{dn} parses"));
            assert_eq!(parsed.0[0].1, v.to_lowercase(), "{dn}");
        }
        let hex = Dn::parse("ou=\\E7\\A0\\94\\E5\\8F\\91,dc=x").unwrap();
        assert_eq!(hex.0[0].1, "研发");
    }

    #[test]
    fn rejects_what_is_not_a_dn() {
        for bad in ["nonsense", "=x", "ou", "a b=c", "ou=x,\\"] {
            assert!(Dn::parse(bad).is_none(), "{bad}");
        }
        assert_eq!(Dn::parse("").unwrap(), Dn::default());
    }
}
