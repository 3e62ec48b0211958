//! The log of an app run by [`run`](crate::run): tracing-subscriber's `fmt` lines for
//! everything, except the access log (`nucleon::access`, one line per request), which
//! has a layer of its own writing the same line for a fraction of the cost.
//!
//! The access line is `{time}  INFO nucleon::access: remote=… method=… path=… status=…
//! bytes=… duration_us=… request_id=…`, as the `fmt` layer writes it. `fmt` formats
//! every event generically (a visitor per field through `core::fmt`, the date worked
//! out anew each time): about 12,000 instructions per access line, more than the rest
//! of a small request. This layer writes the fixed shape directly: integers with
//! `itoa`, strings as they are, the date part of the time once per second.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::io::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{EnvFilter, FilterExt, LevelFilter, Targets};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

/// The access log's target.
pub(crate) const ACCESS_TARGET: &str = "nucleon::access";

/// The subscriber of an app: `filter` (an `EnvFilter` directive such as `info` or
/// `info,nucleon::access=off`) over the `fmt` layer and the access log layer, both
/// writing to `writer`.
///
/// The filter is each layer's own (with the access log's target kept to its layer),
/// not one global layer: per-layer filters that all know their most verbose level
/// give the subscriber a level hint (`info` for `info`), so a disabled `debug!` or
/// `debug_span!` (one per request in the HTTP server) is skipped by a comparison,
/// without asking the subscriber each time.
pub(crate) fn subscriber<W>(
    filter: &str,
    writer: W,
    ansi: bool,
) -> impl Subscriber + for<'a> LookupSpan<'a> + Send + Sync
where
    W: for<'a> MakeWriter<'a> + Clone + Send + Sync + 'static,
{
    let not_access = Targets::new()
        .with_default(LevelFilter::TRACE)
        .with_target(ACCESS_TARGET, LevelFilter::OFF)
        // lapin warns of every returned message, body and all; the publisher already
        // has it as `AmqpError::Returned`, named by exchange and routing key.
        .with_target("lapin::returned_messages", LevelFilter::ERROR);
    let only_access = Targets::new().with_target(ACCESS_TARGET, LevelFilter::TRACE);
    let lines = tracing_subscriber::fmt::layer()
        .with_writer(writer.clone())
        .with_ansi(ansi)
        .with_filter(EnvFilter::new(filter).and(not_access));
    let access = AccessLog { writer }.with_filter(EnvFilter::new(filter).and(only_access));
    tracing_subscriber::registry().with(lines).with(access)
}

/// The subscriber of `--log-format json`: one JSON object per line for every event, the
/// access log's included (its fields as keys), with the request id, the worker, its
/// task and the current span's fields ([`crate::json_log`]), under `filter`, written to
/// `writer`.
pub(crate) fn json_subscriber<W>(
    filter: &str,
    writer: W,
) -> impl Subscriber + for<'a> LookupSpan<'a> + Send + Sync
where
    W: for<'a> MakeWriter<'a> + Clone + Send + Sync + 'static,
{
    let quiet = Targets::new()
        .with_default(LevelFilter::TRACE)
        .with_target("lapin::returned_messages", LevelFilter::ERROR);
    let lines = tracing_subscriber::fmt::layer()
        .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
        .event_format(crate::json_log::JsonLine)
        .with_writer(writer)
        .with_filter(EnvFilter::new(filter).and(quiet));
    tracing_subscriber::registry().with(lines)
}

/// Writes `nucleon::access` events, one line each, in one write.
struct AccessLog<W> {
    writer: W,
}

thread_local! {
    /// The line being written, and the date and time of the last whole second.
    static LINE: RefCell<(String, Second)> = const { RefCell::new((String::new(), Second::NONE)) };
}

impl<S, W> Layer<S> for AccessLog<W>
where
    S: Subscriber,
    W: for<'a> MakeWriter<'a> + 'static,
{
    /// Only `nucleon::access` events get here (the layer's filter, see `subscriber`).
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        write_line(
            |line| {
                push_prefix(line, event.metadata().level());
                event.record(&mut Fields(line));
                line.push('\n');
            },
            |bytes| {
                let _ = self.writer.make_writer().write_all(bytes);
            },
        );
    }
}

/// Builds one line in the thread's buffer, its time first, with `fill`; then hands it
/// to `write`.
fn write_line(fill: impl FnOnce(&mut String), write: impl FnOnce(&[u8])) {
    LINE.with(|cell| {
        let Ok(mut cell) = cell.try_borrow_mut() else {
            return;
        };
        let (line, second) = &mut *cell;
        line.clear();
        second.write_now(line);
        fill(line);
        write(line.as_bytes());
    });
}

/// `  INFO nucleon::access:` after the time, as `fmt` writes it.
fn push_prefix(line: &mut String, level: &Level) {
    line.push(' ');
    line.push_str(level_name(level));
    line.push(' ');
    line.push_str(ACCESS_TARGET);
    line.push(':');
}

/// Where [`write_access`] writes: the log's writer, once the text log is set up.
#[cfg(feature = "http")]
static ACCESS_WRITER: std::sync::OnceLock<crate::log_writer::LogWriter> =
    std::sync::OnceLock::new();

/// Writes the access log without `tracing`'s dispatch (see
/// [`nucleon_http::set_access_sink`]), when the filter lets `nucleon::access` lines
/// through: the same line as [`AccessLog`]'s, to the same writer.
#[cfg(feature = "http")]
pub(crate) fn install_access_sink(writer: &crate::log_writer::LogWriter) {
    if tracing::enabled!(target: "nucleon::access", Level::INFO)
        && ACCESS_WRITER.set(writer.clone()).is_ok()
    {
        nucleon_http::set_access_sink(write_access);
    }
}

/// One access-log line, as [`AccessLog`] writes a `nucleon::access` event.
#[cfg(feature = "http")]
fn write_access(record: &nucleon_http::AccessRecord<'_>) {
    let Some(writer) = ACCESS_WRITER.get() else {
        return;
    };
    write_line(
        |line| access_line(line, record),
        |bytes| {
            let _ = writer.make_writer().write_all(bytes);
        },
    );
}

/// Appends the access line of `record` after its time.
#[cfg(feature = "http")]
fn access_line(line: &mut String, record: &nucleon_http::AccessRecord<'_>) {
    push_prefix(line, &Level::INFO);
    let mut itoa = itoa::Buffer::new();
    for (name, value) in [
        ("remote", Some(record.remote)),
        ("method", Some(record.method)),
        ("path", Some(record.path)),
        ("status", Some(itoa.format(record.status))),
    ] {
        push_field(line, name, value);
    }
    if let Some(bytes) = record.bytes {
        push_field(line, "bytes", Some(itoa.format(bytes)));
    }
    push_field(line, "duration_us", Some(itoa.format(record.duration_us)));
    push_field(line, "request_id", Some(record.request_id));
    push_field(line, "trace_id", record.trace_id);
    if let Some(cancelled) = record.cancelled {
        push_field(
            line,
            "cancelled",
            Some(if cancelled { "true" } else { "false" }),
        );
    }
    line.push('\n');
}

/// ` name=value`, when there is a value.
#[cfg(feature = "http")]
fn push_field(line: &mut String, name: &str, value: Option<&str>) {
    if let Some(value) = value {
        line.push(' ');
        line.push_str(name);
        line.push('=');
        line.push_str(value);
    }
}

/// A level as `fmt` writes it: right-aligned in five columns.
fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "ERROR",
        Level::WARN => " WARN",
        Level::INFO => " INFO",
        Level::DEBUG => "DEBUG",
        Level::TRACE => "TRACE",
    }
}

/// Appends ` name=value` per field: strings as they are, integers by `itoa`, anything
/// else by its `Debug`.
struct Fields<'a>(&'a mut String);

impl Fields<'_> {
    fn name(&mut self, field: &Field) {
        self.0.push(' ');
        if field.name() != "message" {
            self.0.push_str(field.name());
            self.0.push('=');
        }
    }
}

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.name(field);
        self.0.push_str(value);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.name(field);
        self.0.push_str(itoa::Buffer::new().format(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.name(field);
        self.0.push_str(itoa::Buffer::new().format(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.name(field);
        self.0.push_str(if value { "true" } else { "false" });
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.name(field);
        let _ = write!(self.0, "{value:?}");
    }
}

/// A whole second since the Unix epoch, and its `YYYY-MM-DDTHH:MM:SS` text (made once
/// per second, kept as text: a line copies it, without checking it again).
pub(crate) struct Second {
    unix: u64,
    text: String,
}

impl Second {
    pub(crate) const NONE: Second = Second {
        unix: u64::MAX,
        text: String::new(),
    };

    /// Appends the time now as `fmt` writes it: `2026-11-26T04:04:25.633855Z`.
    pub(crate) fn write_now(&mut self, line: &mut String) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        self.write(line, now.as_secs(), now.subsec_micros());
    }

    fn write(&mut self, line: &mut String, unix: u64, micros: u32) {
        if unix != self.unix {
            let text = date_time(unix);
            self.text.clear();
            self.text
                .push_str(std::str::from_utf8(&text).unwrap_or("????-??-??T??:??:??"));
            self.unix = unix;
        }
        line.push_str(&self.text);
        line.push('.');
        let micros = micros.min(999_999);
        for scale in [100_000, 10_000, 1_000, 100, 10, 1] {
            line.push(char::from(b'0' + (micros / scale % 10) as u8));
        }
        line.push('Z');
    }
}

/// `YYYY-MM-DDTHH:MM:SS` (UTC) of a Unix time: the calendar is `time`'s, the digits
/// written here in `fmt`'s fixed shape (once per second, so no format description is
/// parsed or walked per line).
fn date_time(unix: u64) -> [u8; 19] {
    let at = i64::try_from(unix)
        .ok()
        .and_then(|unix| time::OffsetDateTime::from_unix_timestamp(unix).ok())
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let (year, month, day) = at.to_calendar_date();
    let (hour, minute, second) = at.to_hms();
    let mut text = *b"0000-00-00T00:00:00";
    let mut put = |at: usize, value: u32, width: usize| {
        let mut rest = value;
        for i in (0..width).rev() {
            text[at + i] = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
    };
    put(0, year.clamp(0, 9999) as u32, 4);
    put(5, u8::from(month).into(), 2);
    put(8, day.into(), 2);
    put(11, hour.into(), 2);
    put(14, minute.into(), 2);
    put(17, second.into(), 2);
    text
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[test]
    fn dates_are_utc_civil_dates() {
        let text = |unix| String::from_utf8(date_time(unix).to_vec()).unwrap();
        assert_eq!(text(0), "1970-01-01T00:00:00");
        assert_eq!(text(951_782_400), "2000-02-29T00:00:00");
        assert_eq!(text(1_795_665_865), "2026-11-26T04:04:25");
        assert_eq!(text(4_107_542_399), "2100-02-28T23:59:59");
        assert_eq!(text(4_107_542_400), "2100-03-01T00:00:00");
    }

    #[test]
    fn the_time_has_microseconds_and_the_date_is_kept_per_second() {
        let mut second = Second::NONE;
        let mut line = String::new();
        second.write(&mut line, 1_795_665_865, 633_855);
        assert_eq!(line, "2026-11-26T04:04:25.633855Z");
        line.clear();
        second.write(&mut line, 1_795_665_865, 7);
        assert_eq!(line, "2026-11-26T04:04:25.000007Z");
        line.clear();
        second.write(&mut line, 1_795_665_866, 0);
        assert_eq!(line, "2026-11-26T04:04:26.000000Z");
    }

    /// Lines written to memory.
    #[derive(Clone, Default)]
    struct Memory(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Memory {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Memory {
        type Writer = Memory;

        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    fn log_with(filter: &str) -> String {
        let memory = Memory::default();
        let subscriber = subscriber(filter, memory.clone(), false);
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(
                target: "nucleon::access",
                remote = "127.0.0.1:38146",
                method = "GET",
                path = "/nowhere",
                status = 404_u16,
                bytes = Some(59_u64),
                duration_us = 10_u64,
                request_id = "abc",
            );
            tracing::info!(target: "nucleon::runtime", timeout = "10s", "draining");
        });
        String::from_utf8(memory.0.lock().unwrap().clone()).unwrap()
    }

    /// The line written past tracing (the access sink's) is the event's line.
    #[cfg(feature = "http")]
    #[test]
    fn the_access_sink_writes_the_events_line() {
        let text = log_with("info");
        let from_event = &text.lines().next().unwrap()[27..];
        let mut line = String::new();
        let record: nucleon_http::AccessRecord<'_> = record_of_the_event();
        access_line(&mut line, &record);
        assert_eq!(line.trim_end(), from_event);
    }

    /// The record of `log_with`'s access event.
    #[cfg(feature = "http")]
    fn record_of_the_event() -> nucleon_http::AccessRecord<'static> {
        nucleon_http::AccessRecord::new("127.0.0.1:38146", "GET", "/nowhere", 404, "abc")
            .with_bytes(59)
            .with_duration_us(10)
    }

    /// The access line has `fmt`'s shape, once; other events are `fmt`'s own lines.
    #[test]
    fn one_access_line_in_fmt_shape_and_fmt_lines_for_the_rest() {
        let text = log_with("info");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        let access = lines[0];
        let (time, rest) = access.split_at(27);
        assert!(
            time.len() == 27 && time.ends_with('Z') && time.as_bytes()[10] == b'T',
            "{access}"
        );
        assert_eq!(
            rest,
            "  INFO nucleon::access: remote=127.0.0.1:38146 method=GET path=/nowhere status=404 bytes=59 duration_us=10 request_id=abc"
        );
        assert!(
            lines[1].ends_with("  INFO nucleon::runtime: draining timeout=\"10s\""),
            "{}",
            lines[1]
        );
    }

    /// The subscriber's level hint is the filter's most verbose level, so that
    /// disabled events and spans cost a comparison at their call site.
    #[test]
    fn the_level_hint_is_the_filters() {
        use tracing::Subscriber as _;
        let hint = |filter| subscriber(filter, Memory::default(), false).max_level_hint();
        assert_eq!(hint("info"), Some(LevelFilter::INFO));
        assert_eq!(hint("warn,nucleon::http=debug"), Some(LevelFilter::DEBUG));
        assert_eq!(hint("info,nucleon::access=off"), Some(LevelFilter::INFO));
    }

    /// The filter applies to the access log as to the rest.
    #[test]
    fn the_filter_can_turn_the_access_log_off() {
        let text = log_with("info,nucleon::access=off");
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.contains("draining"), "{text}");
    }
}
