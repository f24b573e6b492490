//! The `sql` source on MariaDB (and MySQL), through the `mysql` driver's prepared statements: the query keeps
//! PostgreSQL's `$1`, `$2`, `$3` (one configuration reads alike on both engines) and each becomes a `?` bound to
//! its value, as often as the query uses it. The session's time zone is UTC, so a `TIMESTAMP` column reads as
//! the instant it stores; the update time must be one (a `DATETIME` holds no zone: refused, not guessed).

use super::{local_time, naive_time, Replica, SqlSource, Table, TextRow, Watermark};
use anyhow::{Context, Result};
use chrono::{NaiveDate, NaiveDateTime};
use mysql::consts::ColumnType;
use mysql::prelude::Queryable as _;
use mysql::{Column, Value};
use std::time::Duration;
use trigger_cad::CsvProfile;

/// A connection, its prepared query, and which of `$1`..`$3` each `?` of it stands for.
pub(super) struct MariaDb {
    conn: mysql::Conn,
    statement: mysql::Statement,
    order: Vec<u8>,
}

/// The options of `sql.connection` (a `mysql://user@host:port/database` URL), checked: the password comes from
/// the environment only.
pub(super) fn options(url: &str) -> Result<mysql::Opts> {
    let opts = mysql::Opts::from_url(url).map_err(|e| anyhow::anyhow!("sql.connection: {e}"))?;
    anyhow::ensure!(
        opts.get_pass().is_none(),
        "sql.connection holds a password: set DT_INGEST_SQL__PASSWORD instead (a URL is logged and shown)"
    );
    Ok(opts)
}

impl Replica for MariaDb {
    type Row = mysql::Row;

    fn connect(src: &SqlSource) -> Result<Self> {
        let bound = Some(Duration::from_secs(30));
        let opts = mysql::OptsBuilder::from_opts(options(&src.connection)?)
            .pass(src.password.as_ref().map(|p| p.expose().to_string()))
            // The URL's host, over TCP, always (not a local socket the driver would prefer for 127.0.0.1).
            .prefer_socket(false)
            // A database that hangs is a database that does not answer: connecting and each exchange bounded.
            .tcp_connect_timeout(Some(Duration::from_secs(10)))
            .read_timeout(bound)
            .write_timeout(bound)
            .init(vec!["SET time_zone = '+00:00'"]);
        let mut conn = mysql::Conn::new(opts).context("connecting")?;
        let (query, order) = positional(&src.query);
        let statement = conn.prep(query).context("preparing sql.query")?;
        Ok(Self { conn, statement, order })
    }

    fn fetch(&mut self, mark: &Watermark, limit: i64) -> Result<Vec<mysql::Row>> {
        let t = mark.time().naive_utc();
        let (date, time) = (t.date(), t.time());
        use chrono::{Datelike as _, Timelike as _};
        let at = Value::Date(
            date.year() as u16,
            date.month() as u8,
            date.day() as u8,
            time.hour() as u8,
            time.minute() as u8,
            time.second() as u8,
            time.nanosecond() / 1000,
        );
        let values = [at, Value::from(mark.id.as_str()), Value::Int(limit)];
        let params: Vec<Value> = self.order.iter().map(|n| values[usize::from(*n - 1)].clone()).collect();
        let params = if params.is_empty() { mysql::Params::Empty } else { mysql::Params::Positional(params) };
        self.conn.exec(&self.statement, params).context("running sql.query")
    }

    fn read(rows: &[mysql::Row], src: &SqlSource, profile: &CsvProfile) -> Result<Table> {
        let columns = rows.first().map(|r| r.columns_ref().to_vec()).unwrap_or_default();
        let names: Vec<String> = columns.iter().map(|c| c.name_str().into_owned()).collect();
        let find = |name: &str| names.iter().position(|n| n == name);
        let (Some(at), Some(id)) = (find(&src.updated_at_column), find(&src.id_column)) else {
            anyhow::bail!(
                "the result lacks column {:?} (the update time) or {:?} (the row id)",
                src.updated_at_column,
                src.id_column
            );
        };
        let ty = columns[at].column_type();
        anyhow::ensure!(
            matches!(ty, ColumnType::MYSQL_TYPE_TIMESTAMP | ColumnType::MYSQL_TYPE_TIMESTAMP2),
            "column {:?} is {ty:?}, not a TIMESTAMP: a DATETIME holds no time zone, so its instant is unknown",
            src.updated_at_column
        );
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let fields = columns_as_text(row, &columns, profile)?;
            let updated_at = date_time(row.as_ref(at).unwrap_or(&Value::NULL))
                .with_context(|| format!("column {:?} of the result", src.updated_at_column))?;
            let id = match (row.as_ref(id), &fields[id]) {
                (Some(Value::Bytes(_)), Some(text)) => text.clone(),
                _ => anyhow::bail!(
                    "column {:?} is null or not text: CAST it AS CHAR in sql.query (rows are ordered by its text)",
                    src.id_column
                ),
            };
            out.push(TextRow { updated_at_us: updated_at.and_utc().timestamp_micros(), id, fields });
        }
        Ok(Table { names, rows: out })
    }
}

/// Every column of a row as the text the profile reads: text as it is, numbers written out, a `TIMESTAMP` in the
/// profile's time zone and format, a `DATETIME` (the CAD's local time already) in its format. Anything else (a
/// `TIME`, bytes that are not UTF-8) is an error that says to cast it.
fn columns_as_text(row: &mysql::Row, columns: &[Column], profile: &CsvProfile) -> Result<Vec<Option<String>>> {
    let mut fields = Vec::with_capacity(row.len());
    for (i, col) in columns.iter().enumerate() {
        let name = col.name_str();
        let text = match row.as_ref(i).unwrap_or(&Value::NULL) {
            Value::NULL => None,
            Value::Bytes(b) => Some(
                String::from_utf8(b.clone())
                    .map_err(|_| anyhow::anyhow!("column {name:?} is not UTF-8 text: convert it in sql.query"))?,
            ),
            Value::Int(v) => Some(v.to_string()),
            Value::UInt(v) => Some(v.to_string()),
            Value::Float(v) => Some(v.to_string()),
            Value::Double(v) => Some(v.to_string()),
            v @ Value::Date(..) => {
                let t = date_time(v)?;
                let zoned =
                    matches!(col.column_type(), ColumnType::MYSQL_TYPE_TIMESTAMP | ColumnType::MYSQL_TYPE_TIMESTAMP2);
                Some(if zoned { local_time(profile, t.and_utc()) } else { naive_time(profile, t) })
            }
            Value::Time(..) => anyhow::bail!("column {name:?} is a TIME: cast it to text in sql.query"),
        };
        fields.push(text);
    }
    Ok(fields)
}

/// A `Date` value as a date and time.
fn date_time(v: &Value) -> Result<NaiveDateTime> {
    let Value::Date(y, mo, d, h, mi, s, us) = *v else { anyhow::bail!("{v:?} is not a date") };
    NaiveDate::from_ymd_opt(y.into(), mo.into(), d.into())
        .and_then(|d| d.and_hms_micro_opt(h.into(), mi.into(), s.into(), us))
        .with_context(|| format!("{v:?} is not a valid date and time"))
}

/// The query with each `$1`, `$2`, `$3` outside quotes as `?`, and which of the three each `?` is.
fn positional(query: &str) -> (String, Vec<u8>) {
    let mut out = String::with_capacity(query.len());
    let mut order = Vec::new();
    let mut quote: Option<char> = None;
    let mut chars = query.chars().peekable();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (None, '\'' | '"' | '`') => quote = Some(c),
            (None, '$') => {
                let n = chars.peek().and_then(|d| d.to_digit(10)).filter(|d| (1..=3).contains(d));
                if let Some(n) = n {
                    chars.next();
                    if !chars.peek().is_some_and(char::is_ascii_digit) {
                        out.push('?');
                        order.push(n as u8);
                        continue;
                    }
                    out.push('$');
                    out.push(char::from_digit(n, 10).expect("a digit"));
                    continue;
                }
            }
            _ => {}
        }
        out.push(c);
    }
    (out, order)
}

#[cfg(test)]
mod tests {
    use super::positional;

    #[test]
    fn each_parameter_becomes_a_placeholder_as_often_as_it_is_used() {
        let (q, order) =
            positional("SELECT '$1', `$2` FROM t WHERE (u, id) > ($1, $2) OR (u = $1 AND c = \"$3\") LIMIT $3 -- $12");
        assert_eq!(q, "SELECT '$1', `$2` FROM t WHERE (u, id) > (?, ?) OR (u = ? AND c = \"$3\") LIMIT ? -- $12");
        assert_eq!(order, [1, 2, 1, 3]);
    }
}
