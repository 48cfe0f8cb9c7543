//! `match_template`, which matches a client's `resources/read` URI against the resource
//! templates workers serve: never panics on any template or URI, and a match is exact:
//! putting the captured values back into the template gives the URI again, each value is
//! non-empty and holds no `/`.
//!
//! Input format (text): the template, a newline, the URI.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_protocol::catalog::match_template;

fuzz_target!(|input: &[u8]| {
    let Ok(text) = std::str::from_utf8(input) else {
        return;
    };
    let (template, uri) = text.split_once('\n').unwrap_or((text, ""));
    let Some(vars) = match_template(template, uri) else {
        return;
    };
    // Rebuild the URI: literal text of the template, each `{name}` replaced by its value.
    let mut rebuilt = String::new();
    let mut names = Vec::new();
    let mut t = template;
    let mut values = vars.iter();
    while let Some(open) = t.find('{') {
        rebuilt.push_str(&t[..open]);
        let close = open
            + t[open..]
                .find('}')
                .expect("a matched template closes its braces");
        names.push(&t[open + 1..close]);
        let (_, value) = values.next().expect("one value per variable");
        rebuilt.push_str(value);
        t = &t[close + 1..];
    }
    rebuilt.push_str(t);
    assert!(values.next().is_none(), "more values than variables");
    assert_eq!(rebuilt, uri, "{template:?} {vars:?}");
    let got: Vec<&str> = vars.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(got, names);
    for (_, value) in &vars {
        assert!(!value.is_empty() && !value.contains('/'), "{vars:?}");
    }
});
