//! Feeding the line parser: from a [`BufRead`] (files, tests, the bench) or from chunks of
//! any size as a download arrives. Either holds at most one line besides the parser.

use std::io::BufRead;

use super::parse::{LineParser, MAX_LINE, UncheckedStatement};
use super::{BillError, BillErrorKind, BillRow, Statement};

/// Reads a statement from any [`BufRead`], one line at a time. Iterate for the rows, then
/// call [`Self::finish`]; the first error ends the iteration.
pub struct StatementReader<R> {
    input: R,
    parser: LineParser,
    buf: Vec<u8>,
    error: Option<BillError>,
}

impl<R: BufRead> StatementReader<R> {
    pub fn new(input: R) -> Self {
        StatementReader {
            input,
            parser: LineParser::new(),
            buf: Vec::new(),
            error: None,
        }
    }

    /// The next row, `None` once the rows are over.
    pub fn next_row(&mut self) -> Result<Option<BillRow>, BillError> {
        if let Some(error) = &self.error {
            return Err(error.clone());
        }
        let result = self.read_rows();
        if let Err(error) = &result {
            self.error = Some(error.clone());
        }
        result
    }

    fn read_rows(&mut self) -> Result<Option<BillRow>, BillError> {
        while let Some(complete) = self.read_line()? {
            let row = match complete {
                true => self.parser.line(&self.buf)?,
                false => self.parser.last_line(&self.buf)?,
            };
            if let Some(row) = row {
                return Ok(Some(row));
            }
        }
        Ok(None)
    }

    /// Reads one line into `buf`: `Some(true)` for a line ended by `\n`, `Some(false)` for a
    /// last line without one, `None` at the end of the input.
    fn read_line(&mut self) -> Result<Option<bool>, BillError> {
        self.buf.clear();
        loop {
            let available = match self.input.fill_buf() {
                Ok(available) => available,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.fail(BillErrorKind::Io(e.to_string()))),
            };
            if available.is_empty() {
                return Ok((!self.buf.is_empty()).then_some(false));
            }
            let (taken, complete) = match available.iter().position(|b| *b == b'\n') {
                Some(at) => (at, true),
                None => (available.len(), false),
            };
            self.buf.extend_from_slice(&available[..taken]);
            self.input.consume(taken + usize::from(complete));
            if self.buf.len() > MAX_LINE + 1 {
                return Err(self.fail(BillErrorKind::TooLong));
            }
            if complete {
                return Ok(Some(true));
            }
        }
    }

    fn fail(&self, kind: BillErrorKind) -> BillError {
        BillError {
            line: self.parser.lines() + 1,
            kind,
        }
    }

    /// Reads what is left (rows still count towards the sums) and checks the summary.
    pub fn finish(self) -> Result<Statement, BillError> {
        self.finish_unchecked()?.check()
    }

    /// Like [`Self::finish`] without comparing summary and rows.
    pub fn finish_unchecked(mut self) -> Result<UncheckedStatement, BillError> {
        while self.next_row()?.is_some() {}
        self.parser.finish_unchecked()
    }
}

impl<R: BufRead> Iterator for StatementReader<R> {
    type Item = Result<BillRow, BillError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.error.is_some() {
            return None;
        }
        self.next_row().transpose()
    }
}

/// Parses a statement pushed in chunks of any size (a download as it arrives): rows go to
/// the caller's closure as soon as their line is complete.
#[derive(Default)]
pub struct ChunkParser {
    parser: LineParser,
    partial: Vec<u8>,
}

impl ChunkParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the next bytes of the statement.
    pub fn push(
        &mut self,
        mut bytes: &[u8],
        on_row: &mut impl FnMut(BillRow),
    ) -> Result<(), BillError> {
        while let Some(at) = bytes.iter().position(|b| *b == b'\n') {
            let row = if self.partial.is_empty() {
                self.parser.line(&bytes[..at])?
            } else {
                self.partial.extend_from_slice(&bytes[..at]);
                let row = self.parser.line(&self.partial);
                self.partial.clear();
                row?
            };
            if let Some(row) = row {
                on_row(row);
            }
            bytes = &bytes[at + 1..];
        }
        self.partial.extend_from_slice(bytes);
        if self.partial.len() > MAX_LINE + 1 {
            return Err(BillError {
                line: self.parser.lines() + 1,
                kind: BillErrorKind::TooLong,
            });
        }
        Ok(())
    }

    /// Ends the input (a last line without line break is read) and checks the summary.
    pub fn finish(self, on_row: &mut impl FnMut(BillRow)) -> Result<Statement, BillError> {
        self.finish_unchecked(on_row)?.check()
    }

    /// Like [`Self::finish`] without comparing summary and rows.
    pub fn finish_unchecked(
        mut self,
        on_row: &mut impl FnMut(BillRow),
    ) -> Result<UncheckedStatement, BillError> {
        if !self.partial.is_empty() {
            let last = std::mem::take(&mut self.partial);
            if let Some(row) = self.parser.last_line(&last)? {
                on_row(row);
            }
        }
        self.parser.finish_unchecked()
    }
}

/// Parses a whole statement held in memory (tests, small statements).
pub fn parse_statement(bytes: &[u8]) -> Result<(Vec<BillRow>, Statement), BillError> {
    let mut reader = StatementReader::new(bytes);
    let rows = reader.by_ref().collect::<Result<Vec<_>, _>>()?;
    Ok((rows, reader.finish()?))
}
