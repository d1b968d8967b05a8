//! Closed sets of values kept as text in the database ([`text_enum!`]): a delivery's state and
//! channel, a mailbox binding's state, a sync run's status. Code matches on the variants; the
//! text is what the database, JSON and the console show.

/// A stored value that is not one of its type's variants (a row written by a newer rosterd, or
/// edited by hand).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a known {kind}")]
pub struct UnknownValue {
    pub kind: &'static str,
    pub value: String,
}

/// Defines an enum whose variants are stored as the given texts: `as_str`, `parse`, `Display`,
/// serde as the text, `TryFrom<String>` (for `#[sqlx(try_from = "String")]`), and comparison
/// with `&str`.
macro_rules! text_enum {
    ($(#[$meta:meta])* $vis:vis enum $name:ident as $kind:literal {
        $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)?
    }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        $vis enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            pub fn parse(s: &str) -> Option<$name> {
                match s {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                // `pad`, not `write_str`: column widths (`{:<8}`) apply.
                f.pad(self.as_str())
            }
        }

        impl TryFrom<String> for $name {
            type Error = $crate::text::UnknownValue;
            fn try_from(value: String) -> Result<$name, Self::Error> {
                $name::parse(&value).ok_or($crate::text::UnknownValue { kind: $kind, value })
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.as_str() == other
            }
        }
    };
}

#[cfg(test)]
mod tests {
    text_enum! {
        enum Colour as "colour" {
            Red = "red",
        }
    }

    #[test]
    fn text_values_parse_compare_and_pad() {
        assert_eq!(Colour::parse("red"), Some(Colour::Red));
        assert_eq!(
            Colour::try_from("blue".to_owned()).unwrap_err().to_string(),
            "\"blue\" is not a known colour"
        );
        assert!(Colour::Red == "red");
        assert_eq!(format!("[{:<5}]", Colour::Red), "[red  ]");
        assert_eq!(serde_json::to_string(&Colour::Red).unwrap(), "\"red\"");
    }
}
