//! Writing request records as JSON, JSONL or CSV, and reading them back.
//!
//! Reading back is part of the contract, not a test helper: `mdsa logs`
//! re-reads exports, and every format must round-trip records exactly
//! (records are compared after [`RequestRecord::normalized`], since CSV has
//! one empty cell for both `None` and `Some("")`).

use std::fmt;
use std::io::{BufRead, BufReader, Read, Write};
use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, Utc};

use crate::error::{MonitorError, ParseEnumError};
use crate::record::{LatencyBreakdown, RequestRecord, RequestStatus};

/// An export format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExportFormat {
    /// One JSON array of records.
    Json,
    /// One JSON record per line, like the sink file.
    Jsonl,
    /// CSV with the fixed header [`CSV_HEADER`]; latency is flattened into
    /// columns and `None` is an empty cell.
    Csv,
}

impl fmt::Display for ExportFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ExportFormat::Json => "JSON",
            ExportFormat::Jsonl => "JSONL",
            ExportFormat::Csv => "CSV",
        })
    }
}

impl FromStr for ExportFormat {
    type Err = ParseEnumError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "json" => Ok(ExportFormat::Json),
            "jsonl" | "ndjson" => Ok(ExportFormat::Jsonl),
            "csv" => Ok(ExportFormat::Csv),
            _ => Err(ParseEnumError {
                kind: "export format",
                value: s.to_owned(),
                expected: "json, jsonl, csv",
            }),
        }
    }
}

/// The CSV columns, in order. Latency columns are whole microseconds.
pub const CSV_HEADER: [&str; 18] = [
    "id",
    "timestamp",
    "query",
    "query_hash",
    "domain",
    "confidence",
    "model",
    "status",
    "error",
    "tokens_in",
    "tokens_out",
    "route_us",
    "queue_us",
    "load_us",
    "generate_us",
    "validate_us",
    "total_us",
    "first_token_us",
];

/// Writes `records` to `writer` in `format` and flushes it.
pub fn write_records<'a, I>(
    records: I,
    format: ExportFormat,
    writer: impl Write,
) -> Result<(), MonitorError>
where
    I: IntoIterator<Item = &'a RequestRecord>,
{
    let result = match format {
        ExportFormat::Json => write_json(records, writer),
        ExportFormat::Jsonl => write_jsonl(records, writer),
        ExportFormat::Csv => write_csv(records, writer),
    };
    result.map_err(|source| MonitorError::ExportWrite { format, source })
}

/// Reads records written by [`write_records`] in `format`.
///
/// Errors name the line (and for CSV the column) that failed.
pub fn read_records(
    reader: impl Read,
    format: ExportFormat,
) -> Result<Vec<RequestRecord>, MonitorError> {
    match format {
        ExportFormat::Json => read_json(reader),
        ExportFormat::Jsonl => read_jsonl_from(reader, "JSONL input"),
        ExportFormat::Csv => read_csv(reader),
    }
}

fn write_json<'a>(
    records: impl IntoIterator<Item = &'a RequestRecord>,
    mut writer: impl Write,
) -> std::io::Result<()> {
    // Streamed element by element so exporting the whole store does not
    // need a second copy of it.
    writer.write_all(b"[")?;
    for (i, record) in records.into_iter().enumerate() {
        if i > 0 {
            writer.write_all(b",\n")?;
        }
        serde_json::to_writer(&mut writer, record)?;
    }
    writer.write_all(b"]\n")?;
    writer.flush()
}

fn write_jsonl<'a>(
    records: impl IntoIterator<Item = &'a RequestRecord>,
    mut writer: impl Write,
) -> std::io::Result<()> {
    for record in records {
        serde_json::to_writer(&mut writer, record)?;
        writer.write_all(b"\n")?;
    }
    writer.flush()
}

fn write_csv<'a>(
    records: impl IntoIterator<Item = &'a RequestRecord>,
    writer: impl Write,
) -> std::io::Result<()> {
    let mut csv = csv::Writer::from_writer(writer);
    csv.write_record(CSV_HEADER)?;
    for record in records {
        csv.write_record(csv_row(record))?;
    }
    csv.flush()
}

fn csv_row(r: &RequestRecord) -> [String; 18] {
    fn opt<T: ToString>(value: Option<&T>) -> String {
        value.map(T::to_string).unwrap_or_default()
    }
    let l = &r.latency;
    [
        r.id.clone(),
        // AutoSi keeps exactly as many fractional digits as needed, so the
        // timestamp parses back equal to the nanosecond.
        r.timestamp.to_rfc3339_opts(SecondsFormat::AutoSi, true),
        opt(r.query.as_ref()),
        opt(r.query_hash.as_ref()),
        opt(r.domain.as_ref()),
        // `Display` for floats prints the shortest string that parses back
        // to the same value.
        opt(r.confidence.as_ref()),
        opt(r.model.as_ref()),
        r.status.as_str().to_owned(),
        opt(r.error.as_ref()),
        r.tokens_in.to_string(),
        r.tokens_out.to_string(),
        l.route_us.to_string(),
        l.queue_us.to_string(),
        l.load_us.to_string(),
        l.generate_us.to_string(),
        l.validate_us.to_string(),
        l.total_us.to_string(),
        opt(l.first_token_us.as_ref()),
    ]
}

fn read_json(reader: impl Read) -> Result<Vec<RequestRecord>, MonitorError> {
    serde_json::from_reader(BufReader::new(reader)).map_err(|source| MonitorError::Json {
        line: source.line(),
        column: source.column(),
        source,
    })
}

/// Reads JSONL records; blank lines are skipped. `origin` names the input in
/// errors (a file path, or a description of the reader).
pub(crate) fn read_jsonl_from(
    reader: impl Read,
    origin: &str,
) -> Result<Vec<RequestRecord>, MonitorError> {
    let mut records = Vec::new();
    let mut reader = BufReader::new(reader);
    let mut line = String::new();
    let mut line_no = 0;
    loop {
        line.clear();
        line_no += 1;
        let read = reader
            .read_line(&mut line)
            .map_err(|source| MonitorError::Read {
                origin: format!("{origin} (line {line_no})"),
                source,
            })?;
        if read == 0 {
            return Ok(records);
        }
        if line.trim().is_empty() {
            continue;
        }
        let record = serde_json::from_str(&line).map_err(|source| MonitorError::JsonlLine {
            origin: origin.to_owned(),
            line: line_no,
            source,
        })?;
        records.push(record);
    }
}

fn read_csv(reader: impl Read) -> Result<Vec<RequestRecord>, MonitorError> {
    let mut csv = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(reader);
    let csv_error = |source: csv::Error| MonitorError::Csv {
        line: source.position().map_or(0, csv::Position::line),
        source,
    };
    let header = csv.headers().map_err(csv_error)?;
    if !header.iter().eq(CSV_HEADER) {
        return Err(MonitorError::CsvHeader {
            expected: CSV_HEADER.join(","),
            found: header.iter().collect::<Vec<_>>().join(","),
        });
    }
    let mut records = Vec::new();
    for row in csv.records() {
        let row = row.map_err(csv_error)?;
        let line = row.position().map_or(0, csv::Position::line);
        records.push(parse_row(&row, line)?);
    }
    Ok(records)
}

/// One CSV row with the position, so every parse error names line and column.
struct Row<'a> {
    row: &'a csv::StringRecord,
    line: u64,
}

impl Row<'_> {
    fn cell(&self, index: usize) -> &str {
        // The reader rejects rows whose length differs from the header's, so
        // every index below the header length exists.
        self.row.get(index).unwrap_or_default()
    }

    fn text(&self, index: usize) -> Option<String> {
        Some(self.cell(index))
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    }

    fn parse<T>(&self, index: usize) -> Result<T, MonitorError>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        let value = self.cell(index);
        value.parse().map_err(|e: T::Err| MonitorError::CsvField {
            line: self.line,
            field: CSV_HEADER[index],
            value: value.to_owned(),
            reason: e.to_string(),
        })
    }

    fn parse_opt<T>(&self, index: usize) -> Result<Option<T>, MonitorError>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        if self.cell(index).is_empty() {
            Ok(None)
        } else {
            self.parse(index).map(Some)
        }
    }
}

fn parse_row(row: &csv::StringRecord, line: u64) -> Result<RequestRecord, MonitorError> {
    let row = Row { row, line };
    let timestamp = DateTime::parse_from_rfc3339(row.cell(1))
        .map_err(|e| MonitorError::CsvField {
            line,
            field: CSV_HEADER[1],
            value: row.cell(1).to_owned(),
            reason: e.to_string(),
        })?
        .with_timezone(&Utc);
    Ok(RequestRecord {
        id: row.cell(0).to_owned(),
        timestamp,
        query: row.text(2),
        query_hash: row.text(3),
        domain: row.text(4),
        confidence: row.parse_opt(5)?,
        model: row.text(6),
        status: row.parse::<RequestStatus>(7)?,
        error: row.text(8),
        tokens_in: row.parse(9)?,
        tokens_out: row.parse(10)?,
        latency: LatencyBreakdown {
            route_us: row.parse(11)?,
            queue_us: row.parse(12)?,
            load_us: row.parse(13)?,
            generate_us: row.parse(14)?,
            validate_us: row.parse(15)?,
            total_us: row.parse(16)?,
            first_token_us: row.parse_opt(17)?,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn sample() -> RequestRecord {
        RequestRecord::new(
            "req-1",
            "Hello, \"world\"\nsecond line\r\nthird 😀 日本語 é",
        )
        .with_timestamp(Utc.timestamp_opt(1_700_000_000, 123_456_789).unwrap())
        .with_route("fin,ance", 0.1)
        .with_model("model \"q4\"")
        .failed("boom,\n\"quoted\"")
        .with_tokens(12, 34)
        .with_latency(LatencyBreakdown {
            route_us: 1,
            queue_us: 2,
            load_us: 3,
            generate_us: 4,
            validate_us: 5,
            total_us: 15,
            first_token_us: Some(9),
        })
    }

    fn round_trip(records: &[RequestRecord], format: ExportFormat) -> Vec<RequestRecord> {
        let mut buf = Vec::new();
        write_records(records, format, &mut buf).unwrap();
        read_records(buf.as_slice(), format).unwrap()
    }

    #[test]
    fn nasty_strings_round_trip_in_every_format() {
        let records = vec![sample(), sample().with_status(RequestStatus::Abstained)];
        for format in [ExportFormat::Json, ExportFormat::Jsonl, ExportFormat::Csv] {
            assert_eq!(round_trip(&records, format), records, "{format}");
            assert_eq!(round_trip(&[], format), Vec::new(), "{format}");
        }
    }

    #[test]
    fn csv_has_fixed_header_and_empty_cells_for_none() {
        let mut record = sample();
        record.confidence = None;
        record.latency.first_token_us = None;
        let mut buf = Vec::new();
        write_records([&record], ExportFormat::Csv, &mut buf).unwrap();
        let text = String::from_utf8(buf).unwrap();
        assert!(text.starts_with(&CSV_HEADER.join(",")), "{text}");
        assert!(text.trim_end().ends_with(",15,"), "{text}");
    }

    #[test]
    fn csv_errors_name_line_and_field() {
        let mut buf = Vec::new();
        write_records([&sample(), &sample()], ExportFormat::Csv, &mut buf).unwrap();
        let text = String::from_utf8(buf)
            .unwrap()
            .replace(",12,34,", ",12,x34,");
        let err = read_records(text.as_bytes(), ExportFormat::Csv).unwrap_err();
        let msg = err.to_string();
        // Line 1 is the header; the first record spans lines 2 to 4.
        assert!(
            matches!(
                err,
                MonitorError::CsvField {
                    line: 2,
                    field: "tokens_out",
                    ..
                }
            ),
            "{msg}"
        );
        assert!(msg.contains("tokens_out") && msg.contains("x34"), "{msg}");

        let err = read_records("a,b\n1,2\n".as_bytes(), ExportFormat::Csv).unwrap_err();
        assert!(matches!(err, MonitorError::CsvHeader { .. }), "{err}");

        let header = CSV_HEADER.join(",");
        let err = read_records(
            format!("{header}\nonly,two\n").as_bytes(),
            ExportFormat::Csv,
        )
        .unwrap_err();
        assert!(matches!(err, MonitorError::Csv { line: 2, .. }), "{err}");
    }

    #[test]
    fn json_and_jsonl_errors_name_the_line() {
        let err = read_records("[\n{\"id\": 1}]".as_bytes(), ExportFormat::Json).unwrap_err();
        assert!(matches!(err, MonitorError::Json { line: 2, .. }), "{err}");

        let mut buf = Vec::new();
        write_records([&sample()], ExportFormat::Jsonl, &mut buf).unwrap();
        buf.extend_from_slice(b"\n{not json}\n");
        let err = read_records(buf.as_slice(), ExportFormat::Jsonl).unwrap_err();
        assert!(
            matches!(err, MonitorError::JsonlLine { line: 3, .. }),
            "{err}"
        );
        assert!(err.to_string().starts_with("JSONL input:3:"), "{err}");
    }

    #[test]
    fn write_errors_name_the_format() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("disk full"))
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        for format in [ExportFormat::Json, ExportFormat::Jsonl, ExportFormat::Csv] {
            let err = write_records([&sample()], format, Broken).unwrap_err();
            assert_eq!(err.to_string(), format!("cannot write {format} export"));
        }
    }

    #[test]
    fn format_names_parse() {
        assert_eq!("CSV".parse(), Ok(ExportFormat::Csv));
        assert_eq!("jsonl".parse(), Ok(ExportFormat::Jsonl));
        assert_eq!("json".parse(), Ok(ExportFormat::Json));
        assert!("xml".parse::<ExportFormat>().is_err());
    }

    /// Strings built from the characters that break naive CSV and JSON
    /// writers, mixed with arbitrary Unicode.
    fn nasty_string() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just(",".to_owned()),
            Just("\"".to_owned()),
            Just("\n".to_owned()),
            Just("\r\n".to_owned()),
            Just("\r".to_owned()),
            Just("😀".to_owned()),
            Just("日本語".to_owned()),
            Just("é".to_owned()),
            Just(" ".to_owned()),
            Just("\\".to_owned()),
            Just("#".to_owned()),
            Just("\u{2028}".to_owned()),
            Just("\t".to_owned()),
            any::<String>(),
        ];
        prop::collection::vec(piece, 0..6).prop_map(|pieces| pieces.concat())
    }

    fn status() -> impl Strategy<Value = RequestStatus> {
        prop::sample::select(RequestStatus::ALL.to_vec())
    }

    prop_compose! {
        fn latency()(
            parts in prop::array::uniform6(any::<u64>()),
            first_token_us in prop::option::of(any::<u64>()),
        ) -> LatencyBreakdown {
            LatencyBreakdown {
                route_us: parts[0],
                queue_us: parts[1],
                load_us: parts[2],
                generate_us: parts[3],
                validate_us: parts[4],
                total_us: parts[5],
                first_token_us,
            }
        }
    }

    prop_compose! {
        fn record()(
            id in nasty_string(),
            // Years 1900..2200, any nanosecond.
            secs in -2_208_988_800i64..7_258_118_400,
            nanos in 0u32..1_000_000_000,
            query in prop::option::of(nasty_string()),
            query_hash in prop::option::of("[0-9a-f]{64}"),
            domain in prop::option::of(nasty_string()),
            confidence in prop::option::of(any::<f32>().prop_filter("finite", |c| c.is_finite())),
            model in prop::option::of(nasty_string()),
            status in status(),
            error in prop::option::of(nasty_string()),
            tokens_in in any::<u32>(),
            tokens_out in any::<u32>(),
            latency in latency(),
        ) -> RequestRecord {
            RequestRecord {
                id,
                timestamp: DateTime::from_timestamp(secs, nanos).unwrap_or_default(),
                query,
                query_hash,
                domain,
                confidence,
                model,
                status,
                error,
                tokens_in,
                tokens_out,
                latency,
            }
            .normalized()
        }
    }

    proptest! {
        #[test]
        fn exports_round_trip(records in prop::collection::vec(record(), 0..8)) {
            for format in [ExportFormat::Json, ExportFormat::Jsonl, ExportFormat::Csv] {
                prop_assert_eq!(&round_trip(&records, format), &records, "{}", format);
            }
        }
    }
}
