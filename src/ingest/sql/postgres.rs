//! The `sql` source on PostgreSQL (rust-postgres): `$1`, `$2`, `$3` as the server's own parameters, every
//! connection bounded (10 s to connect, 30 s a statement), the update time a `timestamptz`.

use super::{local_time, naive_time, Replica, SqlSource, Table, TextRow, Watermark};
use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use postgres::types::Type;
use std::time::Duration;
use trigger_cad::CsvProfile;

/// A connection and its prepared query.
pub(super) struct Postgres {
    client: postgres::Client,
    statement: postgres::Statement,
}

impl Replica for Postgres {
    type Row = postgres::Row;

    fn connect(src: &SqlSource) -> Result<Self> {
        let mut config: postgres::Config = src.connection.parse().context("sql.connection")?;
        if let Some(p) = &src.password {
            config.password(p.expose());
        }
        // A database that hangs is a database that does not answer: connecting and each query are bounded.
        config.connect_timeout(Duration::from_secs(10)).keepalives(true).options("-c statement_timeout=30000");
        let mut client = config.connect(postgres::NoTls).context("connecting")?;
        let statement = client.prepare(&src.query).context("preparing sql.query")?;
        Ok(Self { client, statement })
    }

    fn fetch(&mut self, mark: &Watermark, limit: i64) -> Result<Vec<postgres::Row>> {
        let (time, id) = (mark.time(), mark.id.clone());
        self.client.query(&self.statement, &[&time, &id, &limit]).context("running sql.query")
    }

    fn read(rows: &[postgres::Row], src: &SqlSource, profile: &CsvProfile) -> Result<Table> {
        let names =
            rows.first().map(|r| r.columns().iter().map(|c| c.name().to_string()).collect()).unwrap_or_default();
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let updated_at: DateTime<Utc> = row
                .try_get(src.updated_at_column.as_str())
                .with_context(|| format!("column {:?} (timestamptz) of the result", src.updated_at_column))?;
            let id: String = row
                .try_get(src.id_column.as_str())
                .with_context(|| format!("column {:?} (text) of the result", src.id_column))?;
            let fields = columns_as_text(row, profile)?;
            out.push(TextRow { updated_at_us: updated_at.timestamp_micros(), id, fields });
        }
        Ok(Table { names, rows: out })
    }
}

/// Every column of a row as the text the profile reads: text as it is, numbers and booleans written out,
/// timestamps in the profile's `timestamp_format` and time zone. Any other type is an error that says to cast it.
fn columns_as_text(row: &postgres::Row, profile: &CsvProfile) -> Result<Vec<Option<String>>> {
    let mut fields = Vec::with_capacity(row.len());
    for (i, col) in row.columns().iter().enumerate() {
        let t = col.type_();
        let text: Option<String> = if [Type::TEXT, Type::VARCHAR, Type::BPCHAR, Type::NAME].contains(t) {
            row.try_get(i)?
        } else if *t == Type::INT2 {
            row.try_get::<_, Option<i16>>(i)?.map(|v| v.to_string())
        } else if *t == Type::INT4 {
            row.try_get::<_, Option<i32>>(i)?.map(|v| v.to_string())
        } else if *t == Type::INT8 {
            row.try_get::<_, Option<i64>>(i)?.map(|v| v.to_string())
        } else if *t == Type::FLOAT4 {
            row.try_get::<_, Option<f32>>(i)?.map(|v| v.to_string())
        } else if *t == Type::FLOAT8 {
            row.try_get::<_, Option<f64>>(i)?.map(|v| v.to_string())
        } else if *t == Type::BOOL {
            row.try_get::<_, Option<bool>>(i)?.map(|v| v.to_string())
        } else if *t == Type::TIMESTAMPTZ {
            row.try_get::<_, Option<DateTime<Utc>>>(i)?.map(|v| local_time(profile, v))
        } else if *t == Type::TIMESTAMP {
            row.try_get::<_, Option<chrono::NaiveDateTime>>(i)?.map(|v| naive_time(profile, v))
        } else {
            anyhow::bail!("column {:?} is of type {t}: cast it to text in sql.query", col.name());
        };
        fields.push(text);
    }
    Ok(fields)
}
