//! The statement parser on arbitrary bytes: it must never panic, read the same whole or in
//! chunks of any size, and whatever it accepts must survive the writer and a second read.

#![no_main]

use libfuzzer_sys::fuzz_target;
use minipay::wechat::v2::bill::{ChunkParser, StatementWriter, parse_statement};

fuzz_target!(|data: &[u8]| {
    let whole = parse_statement(data);

    // The same bytes in chunks whose size the first byte picks.
    let size = usize::from(data.first().copied().unwrap_or(1)).max(1);
    let mut parser = ChunkParser::new();
    let mut rows = Vec::new();
    let mut chunked = Ok(());
    for chunk in data.chunks(size) {
        chunked = parser.push(chunk, &mut |row| rows.push(row));
        if chunked.is_err() {
            break;
        }
    }
    let chunked = chunked.and_then(|()| parser.finish(&mut |row| rows.push(row)));
    match (&whole, &chunked) {
        (Ok((whole_rows, a)), Ok(b)) => {
            assert_eq!(a, b, "whole and chunked statements differ");
            assert_eq!(whole_rows, &rows, "whole and chunked rows differ");
        }
        (Err(a), Err(b)) => assert_eq!(a, b, "whole and chunked errors differ"),
        _ => panic!("whole {whole:?} but chunked {chunked:?}"),
    }

    let Ok((rows, statement)) = whole else {
        return;
    };
    let Ok(mut writer) = StatementWriter::new(Vec::new(), statement.layout) else {
        return;
    };
    for row in &rows {
        // A value may hold a lone `\r`, which the writer refuses to write.
        if writer.row(row).is_err() {
            return;
        }
    }
    let Ok(bytes) = writer.finish() else {
        return;
    };
    match parse_statement(&bytes) {
        Ok((again, rewritten)) => {
            assert_eq!(again, rows, "round trip changed the rows");
            assert_eq!(rewritten.summary.count, statement.summary.count);
            assert_eq!(
                rewritten.summary.settlement_total_fee,
                statement.summary.settlement_total_fee
            );
        }
        Err(e) => panic!("the writer wrote a statement the parser refuses: {e}"),
    }
});
