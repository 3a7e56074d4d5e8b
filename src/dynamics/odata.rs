//! OData v4 URL conventions used in Dataverse queries.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Everything but the RFC 3986 unreserved characters is percent-encoded, so `+` arrives as
/// `%2B` (a raw `+` is read as a space by the server), and `&`, `#`, `%`, `'` and spaces
/// cannot end or change the query option.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// An OData string literal: `'…'` with every `'` inside doubled (OData ABNF `SQUOTE-in-string`).
pub fn string_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// Percent-encodes one query option value.
pub fn encode_query_value(value: &str) -> String {
    utf8_percent_encode(value, QUERY_VALUE).to_string()
}

/// Builds `?a=v&b=v` from system query options, each value percent-encoded.
pub fn query(options: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (i, (name, value)) in options.iter().enumerate() {
        out.push(if i == 0 { '?' } else { '&' });
        out.push_str(name);
        out.push('=');
        out.push_str(&encode_query_value(value));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_are_doubled_and_everything_risky_is_encoded() {
        assert_eq!(string_literal("o'brien"), "'o''brien'");
        assert_eq!(
            encode_query_value("emailaddress1 eq 'a+b@x.com' & #%"),
            "emailaddress1%20eq%20%27a%2Bb%40x.com%27%20%26%20%23%25"
        );
        assert_eq!(
            query(&[("$top", "2"), ("$select", "a,b")]),
            "?$top=2&$select=a%2Cb"
        );
    }
}
