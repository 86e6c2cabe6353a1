//! What `mayfly admin` prints: the admin API's own JSON (so `… -o json | jq -r .id`
//! reads the REST API's fields), or, on a terminal, a table of it. Bootstrap's output
//! keeps its `client_id` beside the API's `id`, as scripts read it.

use std::io::{IsTerminal as _, Write as _};

use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::api::ClientCreated;

/// How to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Columns for people (the default when standard output is a terminal).
    Table,
    /// The API's JSON (the default when standard output is not a terminal).
    Json,
}

impl Format {
    /// The format asked for, else by where the output goes.
    pub fn chosen(asked: Option<Self>) -> Self {
        asked.unwrap_or_else(|| {
            if std::io::stdout().is_terminal() {
                Self::Table
            } else {
                Self::Json
            }
        })
    }
}

/// Prints `value` as indented JSON.
///
/// # Errors
/// It could not be encoded or written.
pub fn print(value: &impl Serialize) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    write_out(&text)
}

/// Writes to standard output; a closed pipe (`| head`) is not an error.
fn write_out(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}") {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// Shows an API answer: as JSON, or as a table with `columns` for a listing (`items`
/// or an array) and as field/value lines for one object.
///
/// # Errors
/// It could not be written.
pub fn show(format: Format, value: &Value, columns: &[&str]) -> anyhow::Result<()> {
    if format == Format::Json {
        return print(value);
    }
    let rows = match value {
        Value::Array(items) => Some(items),
        Value::Object(map) => map.get("items").and_then(Value::as_array),
        _ => None,
    };
    let text = match (rows, value) {
        (Some(rows), _) => {
            let mut text = table(rows, columns);
            if let Some(cursor) = value.get("next_cursor").and_then(Value::as_str) {
                text.push_str(&format!("(more: --cursor {cursor}, or --all)"));
            }
            text
        }
        (None, Value::Object(map)) => {
            let width = map.keys().map(String::len).max().unwrap_or(0);
            map.iter()
                .map(|(k, v)| format!("{k:width$}  {}", cell(v)))
                .collect::<Vec<_>>()
                .join("\n")
        }
        (None, Value::Null) => String::new(),
        (None, other) => cell(other),
    };
    if text.is_empty() {
        return Ok(());
    }
    write_out(text.trim_end())
}

/// Rows under upper-case headers, columns padded to their widest cell.
fn table(rows: &[Value], columns: &[&str]) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| columns.iter().map(|c| cell(&row[*c])).collect())
        .collect();
    let headers: Vec<String> = columns.iter().map(|c| c.to_uppercase()).collect();
    let widths: Vec<usize> = (0..columns.len())
        .map(|i| {
            cells
                .iter()
                .map(|r| r[i].chars().count())
                .chain([headers[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |values: &[String]| {
        values
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
            + "\n"
    };
    let mut text = line(&headers);
    for row in &cells {
        text.push_str(&line(row));
    }
    if rows.is_empty() {
        text.push_str("(none)\n");
    }
    text
}

/// One value in a cell: strings bare, lists comma-separated, a subject as
/// `kind:id`, nothing as `-`.
fn cell(value: &Value) -> String {
    match value {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        Value::Array(items) if items.is_empty() => "-".to_owned(),
        Value::Array(items) => items.iter().map(cell).collect::<Vec<_>>().join(","),
        Value::Object(map) => match (map.get("kind"), map.get("id")) {
            (Some(Value::String(kind)), Some(Value::String(id))) if map.len() == 2 => {
                format!("{kind}:{id}")
            }
            _ => value.to_string(),
        },
        other => other.to_string(),
    }
}

/// `admin bootstrap`: the created client as the API shows it, and its id again as
/// `client_id`.
#[derive(Debug, Serialize)]
pub struct ClientCreatedOut {
    /// The client id (the API's `id`).
    pub client_id: Uuid,
    /// As `POST /admin/v1/clients` answers.
    #[serde(flatten)]
    pub created: ClientCreated,
}

impl ClientCreatedOut {
    /// Adds `client_id`.
    pub fn new(created: ClientCreated) -> Self {
        Self {
            client_id: created.client.id,
            created,
        }
    }
}

/// `keys rewrap`.
#[derive(Debug, Serialize)]
pub struct Rewrapped {
    /// How many private keys were re-encrypted.
    pub rewrapped: usize,
    /// The new master key file.
    pub master_key_file: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_pad_columns_and_render_subjects() {
        let rows = vec![
            serde_json::json!({"id": "a", "subject": {"kind": "client", "id": "x"}, "scopes": ["r", "w"]}),
            serde_json::json!({"id": "bbbb", "subject": null, "scopes": []}),
        ];
        assert_eq!(
            table(&rows, &["id", "subject", "scopes"]),
            "ID    SUBJECT   SCOPES\na     client:x  r,w\nbbbb  -         -\n"
        );
        assert_eq!(table(&[], &["id"]), "ID\n(none)\n");
    }
}
