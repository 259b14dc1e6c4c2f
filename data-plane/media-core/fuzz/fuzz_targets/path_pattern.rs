//! Arbitrary UTF-8 as a path name and as a path pattern: parsing never panics, whatever parses
//! displays as its input, and the two parsers agree on what a concrete name is.
#![no_main]

use libfuzzer_sys::fuzz_target;
use streamplane_media_core::{PathName, PathPattern};

fuzz_target!(|input: &str| {
    let name = PathName::parse(input.to_owned());
    if let Ok(name) = &name {
        assert_eq!(name.as_str(), input);
        assert_eq!(name.to_string().parse::<PathName>().as_ref(), Ok(name));
    }

    match input.parse::<PathPattern>() {
        Ok(pattern) => {
            assert_eq!(pattern.to_string(), input);
            assert_eq!(
                pattern.to_string().parse::<PathPattern>(),
                Ok(pattern.clone())
            );
            match &pattern {
                PathPattern::Exact(exact) => {
                    assert_eq!(name.as_ref(), Ok(exact));
                    assert!(pattern.matches(exact).is_some());
                    assert!(pattern.is_match(exact));
                }
                // '~' is not a name character, so a regex is never also a name.
                PathPattern::Regex(_) => assert!(name.is_err()),
            }
        }
        // A rejected pattern without '~' is a rejected name.
        Err(_) if !input.starts_with('~') => assert!(name.is_err()),
        Err(_) => {}
    }
});
