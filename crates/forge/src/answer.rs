//! Reading what a forge answered: the fields its API promises (or which one was missing), and
//! path segments encoded the way its routes expect.

use serde_json::Value;

use crate::{ForgeError, Result};

/// Reads a field the forge's API promises, or says which one was missing.
pub(crate) fn field<'a>(
    value: &'a Value,
    pointer: &str,
    forge: &'static str,
    operation: &str,
) -> Result<&'a Value> {
    value
        .pointer(pointer)
        .filter(|v| !v.is_null())
        .ok_or_else(|| ForgeError::Protocol {
            forge,
            operation: operation.to_string(),
            detail: format!("the answer has no {pointer}"),
        })
}

pub(crate) fn field_u64(
    value: &Value,
    pointer: &str,
    forge: &'static str,
    operation: &str,
) -> Result<u64> {
    field(value, pointer, forge, operation)?
        .as_u64()
        .ok_or_else(|| ForgeError::Protocol {
            forge,
            operation: operation.to_string(),
            detail: format!("{pointer} is not a number"),
        })
}

pub(crate) fn field_str(value: &Value, pointer: &str) -> String {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// Percent-encodes one path segment (RFC 3986 unreserved characters stay as they are).
pub(crate) fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_encoded() {
        assert_eq!(encode_segment("group/sub project"), "group%2Fsub%20project");
    }
}
