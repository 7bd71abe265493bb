//! Interface name checks: no path is ever built from an unchecked bond name.

/// Why a name is not a valid Linux interface name.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NameError {
    /// Empty.
    #[error("interface name is empty")]
    Empty,
    /// Longer than 15 bytes.
    #[error("interface name '{0}' is longer than 15 bytes")]
    TooLong(String),
    /// `.` or `..`.
    #[error("'{0}' is not an interface name")]
    Dots(String),
    /// Contains `/`, `:`, whitespace or a control character.
    #[error("interface name '{0}' contains '/', ':', whitespace or a control character")]
    BadChar(String),
}

/// Check `name` the way the kernel's `dev_valid_name` does.
///
/// # Errors
/// [`NameError`] saying what is wrong.
pub fn validate(name: &str) -> Result<&str, NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > 15 {
        return Err(NameError::TooLong(name.to_owned()));
    }
    if name == "." || name == ".." {
        return Err(NameError::Dots(name.to_owned()));
    }
    if name.chars().any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control()) {
        return Err(NameError::BadChar(name.escape_debug().to_string()));
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_refuses() {
        assert_eq!(validate("bond0"), Ok("bond0"));
        assert_eq!(validate("a-b_c.d@15chars"), Ok("a-b_c.d@15chars"));
        assert_eq!(validate(""), Err(NameError::Empty));
        assert!(matches!(validate("sixteen-chars-xx"), Err(NameError::TooLong(_))));
        assert!(matches!(validate(".."), Err(NameError::Dots(_))));
        assert!(matches!(validate("."), Err(NameError::Dots(_))));
        for bad in ["a/b", "../etc", "a b", "a\tb", "a:1", "a\nb"] {
            assert!(matches!(validate(bad), Err(NameError::BadChar(_))), "{bad:?}");
        }
    }
}
