//! `--log-format json`: one JSON object per line, for a log pipeline to index.
//!
//! ```json
//! {"timestamp":"2026-12-07T06:10:00.123456Z","level":"INFO","target":"orders",
//!  "message":"order placed","order":42,"request_id":"7f3a…","worker":0,
//!  "task":"POST /orders","span":{"name":"checkout","cart":"c-9"}}
//! ```
//!
//! Beside the event's own fields (flattened, `message` included): the request id of
//! the request being served (the access line carries it as a field of its own), its
//! trace id when it has a trace context (W3C `traceparent`), the
//! worker, the task the worker runs (for a request, its route: `POST /orders`) and the
//! current span with its fields. Formatted on the thread that logs, written by the
//! non-blocking writer as the text lines are.

use std::fmt;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// The JSON line of an event.
pub(crate) struct JsonLine;

impl<S> FormatEvent<S, JsonFields> for JsonLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut line = Map::new();
        let mut timestamp = String::new();
        SystemTime.format_time(&mut Writer::new(&mut timestamp))?;
        line.insert("timestamp".into(), Value::String(timestamp));
        line.insert("level".into(), Value::String(meta.level().to_string()));
        line.insert("target".into(), Value::String(meta.target().to_owned()));
        event.record(&mut JsonVisitor(&mut line));
        if !line.contains_key("request_id")
            && let Some(id) = nucleon_runtime::request_id::current()
        {
            line.insert("request_id".into(), Value::String(id.to_string()));
        }
        if !line.contains_key("trace_id")
            && let Some(trace) = nucleon_runtime::trace::peek()
        {
            line.insert(
                "trace_id".into(),
                Value::String(trace.trace_id().to_string()),
            );
        }
        if let Some(worker) = nucleon_runtime::current_worker() {
            line.insert("worker".into(), Value::from(worker));
        }
        if let Some(task) = nucleon_runtime::task::current_label() {
            line.insert("task".into(), Value::String(task.as_str().to_owned()));
        }
        if let Some(span) = ctx.lookup_current() {
            let mut fields = span
                .extensions()
                .get::<FormattedFields<JsonFields>>()
                .and_then(|fields| serde_json::from_str::<Map<String, Value>>(fields).ok())
                .unwrap_or_default();
            fields.insert("name".into(), Value::String(span.name().to_owned()));
            line.insert("span".into(), Value::Object(fields));
        }
        writeln!(writer, "{}", Value::Object(line))
    }
}

/// An event's fields as JSON values: numbers and booleans as such, anything else as
/// text.
struct JsonVisitor<'a>(&'a mut Map<String, Value>);

impl Visit for JsonVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0
            .insert(field.name().into(), Value::String(value.to_owned()));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), Value::from(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), Value::from(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), Value::from(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), Value::Bool(value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), Value::String(format!("{value:?}")));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_line_carries_its_fields_span_and_request_id() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .fmt_fields(JsonFields::new())
                .event_format(JsonLine)
                .with_writer(move || writer.clone()),
        );
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("checkout", cart = "c-9");
            let _entered = span.enter();
            let id = nucleon_runtime::request_id::Id::from("req-42");
            nucleon_runtime::request_id::sync_scope(&id, || {
                tracing::info!(target: "orders", order = 42_u64, paid = true, "order \"placed\"");
            });
        });
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let line: Value = serde_json::from_str(text.trim()).expect(&text);
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["target"], "orders");
        assert_eq!(line["message"], "order \"placed\"");
        assert_eq!(line["order"], 42);
        assert_eq!(line["paid"], true);
        assert_eq!(line["request_id"], "req-42");
        assert_eq!(line["span"]["name"], "checkout");
        assert_eq!(line["span"]["cart"], "c-9");
        assert!(
            line["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')),
            "{line}"
        );
    }
}
