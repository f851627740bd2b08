//! Sync and pagination tokens as clients send them (`since`, `from`, `to`, `next_batch`): every
//! parser answers an error or a position, never panics, and what it accepts reads back the same
//! once written out again.

#![no_main]

use libfuzzer_sys::fuzz_target;
use palabre::services::{
    relations,
    search::{cursor_token, parse_cursor},
    sync::{parse_position, SyncToken},
};

fuzz_target!(|data: &[u8]| {
    // Query values reach the parsers as UTF-8 text, already percent-decoded.
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };

    if let Ok(token) = SyncToken::parse(s) {
        let again = SyncToken::parse(&token.to_string()).expect("a written sync token parses");
        assert_eq!(again, token);
        // A sync token is also a pagination position: its event part.
        assert_eq!(parse_position(s).ok(), Some(token.events));
    }
    let _ = parse_position(s);
    let _ = relations::parse_token(s);

    for rank in [true, false] {
        if let Ok(cursor) = parse_cursor(Some(s), rank, 0) {
            let written = cursor_token(cursor);
            let again = parse_cursor(Some(&written), rank, 0).expect("a written cursor parses");
            assert_eq!(cursor_token(again), written);
        }
    }
});
