//! The request log's lines, formatted without `core::fmt` where it can be avoided.
//! `tracing-subscriber` spends about 10,000 instructions on one request line (its
//! timestamp, a `Debug` call per field, a JSON round trip of the span's fields) and
//! 1,500 on the request span's fields, more than the rest of a request's decision.
//! [`AccessFast`] writes the same bytes for events of the target `marketgate::access`,
//! [`FastFields`] for span fields, in the configuration [`super::dispatch`] builds (text
//! without ANSI, or JSON flattened with the current span and no span list); everything
//! they cannot reproduce exactly goes to the subscriber's own formatters. Owns no state
//! but per-thread scratch buffers; the tests compare the output with the subscriber's
//! byte for byte.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::fmt::{self, Write as _};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// The target of the request log's lines (`server::request_log`).
pub const ACCESS_TARGET: &str = "marketgate::access";

/// The event formatter: the fast path for access lines in front of `inner`.
pub struct AccessFast<F> {
    inner: F,
    json: bool,
}

impl<F> AccessFast<F> {
    /// In front of the subscriber's text formatter (`Format<Full>`, no ANSI).
    pub fn text(inner: F) -> Self {
        AccessFast { inner, json: false }
    }

    /// In front of its JSON formatter (flattened, current span, no span list).
    pub fn json(inner: F) -> Self {
        AccessFast { inner, json: true }
    }
}

thread_local! {
    /// A span's fields being formatted, and a value for JSON escaping.
    static FIELDS: RefCell<(String, String)> = const { RefCell::new((String::new(), String::new())) };
    /// The line being built, then a value being formatted for JSON escaping.
    static SCRATCH: RefCell<(String, String)> = const { RefCell::new((String::new(), String::new())) };
    /// The timestamp's text up to the seconds, for the second it was made in.
    static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

/// The longest request id ([`crate::server`]'s formats: 24, 32 or 36 bytes).
const MAX_ID: usize = 36;

thread_local! {
    /// The id of the request being served on this thread when the request log writes
    /// its lines itself ([`request_line`]) and no request span exists: other events
    /// are written as if inside `request{request_id=…}`.
    static REQUEST_ID: Cell<(u8, [u8; MAX_ID])> = const { Cell::new((0, [0; MAX_ID])) };
}

/// While alive, events on this thread are written as inside the request span of `id`.
/// Restores the previous id when dropped (requests are polled one at a time, but a
/// guard may outlive another's).
pub struct RequestScope {
    previous: (u8, [u8; MAX_ID]),
}

impl RequestScope {
    /// Events are attributed to `id` (ignored when longer than any id format).
    pub fn enter(id: &[u8]) -> RequestScope {
        let mut now = (0u8, [0u8; MAX_ID]);
        if id.len() <= MAX_ID {
            now.0 = id.len() as u8;
            now.1[..id.len()].copy_from_slice(id);
        }
        RequestScope {
            previous: REQUEST_ID.replace(now),
        }
    }
}

impl Drop for RequestScope {
    fn drop(&mut self) {
        REQUEST_ID.set(self.previous);
    }
}

/// The request id of the current [`RequestScope`], copied out.
fn current_request_id() -> Option<(u8, [u8; MAX_ID])> {
    let id = REQUEST_ID.get();
    (id.0 > 0).then_some(id)
}

/// One line of the request log, written by [`request_line`] without a `tracing` event.
pub struct RequestLine<'a> {
    /// At `ERROR` (a 5xx answer) rather than `INFO`.
    pub error: bool,
    pub request_id: &'a str,
    pub method: &'a str,
    pub route: &'a str,
    pub status: u16,
    pub latency_us: u64,
    pub jurisdiction: Option<&'a dyn fmt::Display>,
    pub decision: Option<&'a str>,
}

/// Formats `line` into `out` as the subscriber writes the event
/// `tracing::info!(target: "marketgate::access", request_id, method = %…, route, status,
/// latency_us, jurisdiction = %…, decision, "request")` inside the span
/// `request{request_id}` (the tests compare the two byte for byte). Values are copied
/// between fixed pieces; one that needs escaping (never one of ours in practice) is
/// escaped first, as the subscriber would (checking and quoting each value on its own
/// cost as much as the rest of the line).
pub fn request_line(out: &mut String, value: &mut String, json: bool, line: &RequestLine<'_>) {
    // Quoted in both formats: escaped as JSON or `Debug` does, the quotes left to the
    // pieces.
    fn quoted(s: &str, json: bool) -> Cow<'_, str> {
        if plain(s) {
            return Cow::Borrowed(s);
        }
        let mut o = String::new();
        if json {
            json_str(&mut o, s);
        } else {
            let _ = write!(o, "{s:?}");
        }
        Cow::Owned(o[1..o.len() - 1].to_string())
    }
    // Displayed bare in the text format (`%` fields), quoted in JSON.
    fn shown(s: &str, json: bool) -> Cow<'_, str> {
        if json {
            quoted(s, json)
        } else {
            Cow::Borrowed(s)
        }
    }
    let jurisdiction = line.jurisdiction.map(|d| {
        value.clear();
        let _ = write!(value, "{d}");
        &*value
    });
    let (id, route) = (quoted(line.request_id, json), quoted(line.route, json));
    let method = shown(line.method, json);
    let decision = line.decision.map(|d| quoted(d, json));
    let jurisdiction = jurisdiction.map(|j| shown(j, json));
    let error = line.error;
    if json {
        out.push_str("{\"timestamp\":\"");
        if !timestamp(out) {
            out.push('-');
        }
        out.reserve(200);
        push_all(
            out,
            &[
                "\",\"level\":\"",
                if error { "ERROR" } else { "INFO" },
                "\",\"message\":\"request\",\"request_id\":\"",
                &id,
                "\",\"method\":\"",
                &method,
                "\",\"route\":\"",
                &route,
                "\",\"status\":",
            ],
        );
        push_u64(out, u64::from(line.status));
        out.push_str(",\"latency_us\":");
        push_u64(out, line.latency_us);
        if let Some(j) = &jurisdiction {
            push_all(out, &[",\"jurisdiction\":\"", j, "\""]);
        }
        if let Some(d) = &decision {
            push_all(out, &[",\"decision\":\"", d, "\""]);
        }
        push_all(
            out,
            &[
                ",\"target\":\"marketgate::access\",\"span\":{\"request_id\":\"",
                &id,
                "\",\"name\":\"request\"}}\n",
            ],
        );
    } else {
        if !timestamp(out) {
            out.push('-');
        }
        out.reserve(200);
        push_all(
            out,
            &[
                if error { " ERROR " } else { "  INFO " },
                "request{request_id=\"",
                &id,
                "\"}: marketgate::access: request request_id=\"",
                &id,
                "\" method=",
                &method,
                " route=\"",
                &route,
                "\" status=",
            ],
        );
        push_u64(out, u64::from(line.status));
        out.push_str(" latency_us=");
        push_u64(out, line.latency_us);
        if let Some(j) = &jurisdiction {
            push_all(out, &[" jurisdiction=", j]);
        }
        if let Some(d) = &decision {
            push_all(out, &[" decision=\"", d, "\""]);
        }
        out.push('\n');
    }
}

fn push_all(out: &mut String, parts: &[&str]) {
    for p in parts {
        out.push_str(p);
    }
}

/// A `&str` field as the text format writes it: `Debug`, quoted.
fn text_str(out: &mut String, s: &str) {
    if plain(s) {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        let _ = write!(out, "{s:?}");
    }
}

impl<S, N, F> FormatEvent<S, N> for AccessFast<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        if writer.has_ansi_escapes() {
            return self.inner.format_event(ctx, writer, event);
        }
        // Outside the request log's own lines, only an event inside a request whose
        // span was not made (see `RequestScope`) is written here, with that span.
        let scope = current_request_id();
        let scope_id = scope
            .as_ref()
            .and_then(|(n, b)| std::str::from_utf8(&b[..usize::from(*n)]).ok());
        if event.metadata().target() != ACCESS_TARGET && scope_id.is_none() {
            return self.inner.format_event(ctx, writer, event);
        }
        let done = SCRATCH.with(|s| {
            let Ok(mut s) = s.try_borrow_mut() else {
                return None;
            };
            let (line, value) = &mut *s;
            line.clear();
            let ok = if self.json {
                json_line(line, value, ctx, event, scope_id)
            } else {
                text_line(line, value, ctx, event, scope_id)
            };
            #[cfg(test)]
            if ok {
                tests::FAST.set(tests::FAST.get() + 1);
            }
            ok.then(|| writer.write_str(line))
        });
        match done {
            Some(r) => r,
            None => self.inner.format_event(ctx, writer, event),
        }
    }
}

/// The fields formatter: `DefaultFields` or `JsonFields` behind a fast path for what
/// the request span holds.
pub struct FastFields<N> {
    inner: N,
    json: bool,
}

impl<N> FastFields<N> {
    /// In front of `DefaultFields`.
    pub fn text(inner: N) -> Self {
        FastFields { inner, json: false }
    }

    /// In front of `JsonFields`.
    pub fn json(inner: N) -> Self {
        FastFields { inner, json: true }
    }
}

impl<'w, N> FormatFields<'w> for FastFields<N>
where
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'w>, fields: R) -> fmt::Result {
        let done = FIELDS.with(|s| {
            let Ok(mut s) = s.try_borrow_mut() else {
                return None;
            };
            let (out, value) = &mut *s;
            out.clear();
            let ok = if self.json {
                let mut v = OneJsonField {
                    out,
                    value,
                    fields: 0,
                    ok: true,
                };
                v.out.push('{');
                fields.record(&mut v);
                let ok = v.ok && v.fields <= 1;
                out.push('}');
                ok
            } else {
                let mut v = TextFields {
                    out,
                    value,
                    first: true,
                    ok: true,
                };
                fields.record(&mut v);
                v.ok
            };
            #[cfg(test)]
            if ok {
                tests::FAST.set(tests::FAST.get() + 1);
            }
            ok.then(|| writer.write_str(out))
        });
        match done {
            Some(r) => r,
            None => self.inner.format_fields(writer, fields),
        }
    }

    /// Fields recorded later (`Span::record`): the subscriber's own merge.
    fn add_fields(
        &self,
        current: &'w mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        let mut theirs = FormattedFields::<N>::new(std::mem::take(&mut current.fields));
        let r = self.inner.add_fields(&mut theirs, fields);
        current.fields = theirs.fields;
        r
    }
}

/// `JsonFields` collects fields in a `BTreeMap` and writes them sorted by name: one
/// field is written here as it comes, more go to it.
struct OneJsonField<'a> {
    out: &'a mut String,
    value: &'a mut String,
    fields: usize,
    ok: bool,
}

impl OneJsonField<'_> {
    fn name(&mut self, name: &str) -> bool {
        self.fields += 1;
        if self.fields > 1 {
            return false;
        }
        json_str(self.out, name);
        self.out.push(':');
        true
    }
}

impl Visit for OneJsonField<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if self.name(field.name()) {
            json_str(self.out, value);
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if self.name(field.name()) {
            push_u64(self.out, value);
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if self.name(field.name()) {
            push_i64(self.out, value);
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        if self.name(field.name()) {
            self.out.push_str(if value { "true" } else { "false" });
        }
    }

    fn record_f64(&mut self, _: &Field, _: f64) {
        self.ok = false;
    }

    fn record_bytes(&mut self, _: &Field, _: &[u8]) {
        self.ok = false;
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let name = field.name();
        if self.name(name.strip_prefix("r#").unwrap_or(name)) {
            self.value.clear();
            let _ = write!(self.value, "{value:?}");
            json_str(self.out, self.value);
        }
    }
}

/// `2026-12-02T06:39:43.933305Z` (what the subscriber's `SystemTime` timer writes).
fn timestamp(out: &mut String) -> bool {
    let Ok(now) = SystemTime::now().duration_since(UNIX_EPOCH) else {
        return false;
    };
    let secs = now.as_secs();
    let fresh = SECOND.with(|c| {
        let Ok(mut c) = c.try_borrow_mut() else {
            return false;
        };
        if c.0 != secs {
            let Some(t) = civil(secs) else {
                return false;
            };
            c.1.clear();
            c.1.extend(t.iter().map(|&b| char::from(b)));
            c.0 = secs;
        }
        out.push_str(&c.1);
        true
    });
    if !fresh {
        return false;
    }
    let mut digits = [b'0'; 6];
    let mut m = now.subsec_micros();
    for d in digits.iter_mut().rev() {
        *d = b'0' + (m % 10) as u8;
        m /= 10;
    }
    out.extend(digits.iter().map(|&b| char::from(b)));
    out.push('Z');
    true
}

/// `YYYY-MM-DDTHH:MM:SS.` of a Unix second (days to civil date: H. Hinnant's
/// algorithm); `None` past year 9999, which the subscriber writes differently.
fn civil(secs: u64) -> Option<[u8; 20]> {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    if !(0..=9999).contains(&year) {
        return None;
    }
    let mut t = *b"0000-00-00T00:00:00.";
    let mut put = |at: usize, width: usize, mut v: u64| {
        for i in (at..at + width).rev() {
            t[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, year as u64);
    put(5, 2, month as u64);
    put(8, 2, day as u64);
    put(11, 2, rem / 3600);
    put(14, 2, rem % 3600 / 60);
    put(17, 2, rem % 60);
    Some(t)
}

fn push_u64(out: &mut String, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend(buf[i..].iter().map(|&b| char::from(b)));
}

fn push_i64(out: &mut String, v: i64) {
    if v < 0 {
        out.push('-');
    }
    push_u64(out, v.unsigned_abs());
}

/// Printable ASCII without `"` and `\`: what both `Debug` and JSON copy as is.
fn plain(s: &str) -> bool {
    s.bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
}

// --- text ----------------------------------------------------------------------------

/// `{timestamp} {level:>5} {span}{{{fields}}}: {target}: {message} {name}={value} ...`
fn text_line<S, N>(
    out: &mut String,
    value: &mut String,
    ctx: &FmtContext<'_, S, N>,
    event: &Event<'_>,
    request_span: Option<&str>,
) -> bool
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    if !timestamp(out) {
        return false;
    }
    out.push_str(match *event.metadata().level() {
        Level::TRACE => " TRACE ",
        Level::DEBUG => " DEBUG ",
        Level::INFO => "  INFO ",
        Level::WARN => "  WARN ",
        Level::ERROR => " ERROR ",
    });
    let mut seen = false;
    if let Some(id) = request_span {
        out.push_str("request{request_id=");
        text_str(out, id);
        out.push_str("}:");
        seen = true;
    }
    if let Some(scope) = ctx.event_scope() {
        for span in scope.from_root() {
            out.push_str(span.metadata().name());
            seen = true;
            let ext = span.extensions();
            if let Some(fields) = ext.get::<FormattedFields<N>>() {
                if !fields.is_empty() {
                    out.push('{');
                    out.push_str(fields);
                    out.push('}');
                }
            }
            out.push(':');
        }
    }
    if seen {
        out.push(' ');
    }
    out.push_str(event.metadata().target());
    out.push_str(": ");
    let mut v = TextFields {
        out,
        value,
        first: true,
        ok: true,
    };
    event.record(&mut v);
    let ok = v.ok;
    out.push('\n');
    ok
}

/// The subscriber's `DefaultVisitor`: the message bare, then `name=value` with `Debug`.
struct TextFields<'a> {
    out: &'a mut String,
    value: &'a mut String,
    first: bool,
    ok: bool,
}

impl TextFields<'_> {
    /// The message as is; the subscriber escapes control sequences in it, so only a
    /// plain one is written here.
    fn message(&mut self, message: &str) {
        if plain(message) {
            if !std::mem::take(&mut self.first) {
                self.out.push(' ');
            }
            self.out.push_str(message);
        } else {
            self.ok = false;
        }
    }

    fn name(&mut self, field: &Field) {
        if !std::mem::take(&mut self.first) {
            self.out.push(' ');
        }
        let name = field.name();
        self.out.push_str(name.strip_prefix("r#").unwrap_or(name));
        self.out.push('=');
    }
}

impl Visit for TextFields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            return self.message(value);
        }
        self.name(field);
        if plain(value) {
            self.out.push('"');
            self.out.push_str(value);
            self.out.push('"');
        } else {
            let _ = write!(self.out, "{value:?}");
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.name(field);
        push_u64(self.out, value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.name(field);
        push_i64(self.out, value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.name(field);
        self.out.push_str(if value { "true" } else { "false" });
    }

    fn record_error(&mut self, _: &Field, _: &(dyn std::error::Error + 'static)) {
        self.ok = false;
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            // A message is `format_args!`, recorded here.
            let mut message = std::mem::take(self.value);
            message.clear();
            let _ = write!(message, "{value:?}");
            self.message(&message);
            *self.value = message;
            return;
        }
        self.name(field);
        let _ = write!(self.out, "{value:?}");
    }
}

// --- JSON ----------------------------------------------------------------------------

/// `{"timestamp":…,"level":…,<fields>,"target":…,"span":{<span fields>,"name":…}}`
fn json_line<S, N>(
    out: &mut String,
    value: &mut String,
    ctx: &FmtContext<'_, S, N>,
    event: &Event<'_>,
    request_span: Option<&str>,
) -> bool
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    out.push_str("{\"timestamp\":\"");
    if !timestamp(out) {
        return false;
    }
    out.push_str(match *event.metadata().level() {
        Level::TRACE => "\",\"level\":\"TRACE\"",
        Level::DEBUG => "\",\"level\":\"DEBUG\"",
        Level::INFO => "\",\"level\":\"INFO\"",
        Level::WARN => "\",\"level\":\"WARN\"",
        Level::ERROR => "\",\"level\":\"ERROR\"",
    });
    let mut v = JsonFields {
        out,
        value,
        ok: true,
    };
    event.record(&mut v);
    if !v.ok {
        return false;
    }
    out.push_str(",\"target\":");
    json_str(out, event.metadata().target());
    let span = event
        .parent()
        .and_then(|id| ctx.span(id))
        .or_else(|| ctx.lookup_current());
    if let Some(span) = span {
        let ext = span.extensions();
        let Some(fields) = ext.get::<FormattedFields<N>>() else {
            return false;
        };
        // The subscriber parses the stored object and writes its entries back, then the
        // name: the same bytes as the object with the name appended, for the strings
        // and integers our spans hold.
        let Some(inner) = fields.strip_prefix('{').and_then(|f| f.strip_suffix('}')) else {
            return false;
        };
        if has_float(inner) {
            return false; // which the round trip might write differently
        }
        out.push_str(",\"span\":{");
        out.push_str(inner);
        if !inner.is_empty() {
            out.push(',');
        }
        out.push_str("\"name\":");
        json_str(out, span.metadata().name());
        out.push('}');
    } else if let Some(id) = request_span {
        out.push_str(",\"span\":{\"request_id\":");
        json_str(out, id);
        out.push_str(",\"name\":\"request\"}");
    }
    out.push_str("}\n");
    true
}

/// Whether the entries of a JSON object hold a number with a fraction or an exponent.
fn has_float(entries: &str) -> bool {
    let (mut in_string, mut escaped, mut prev) = (false, false, b' ');
    for b in entries.bytes() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
        } else if b == b'"' {
            in_string = true;
        } else if b == b'.' || (matches!(b, b'e' | b'E') && prev.is_ascii_digit()) {
            return true;
        }
        prev = b;
    }
    false
}

/// tracing-serde's `SerdeMapVisitor` into serde_json.
struct JsonFields<'a> {
    out: &'a mut String,
    value: &'a mut String,
    ok: bool,
}

impl JsonFields<'_> {
    fn name(&mut self, field: &Field) {
        self.out.push(',');
        json_str(self.out, field.name());
        self.out.push(':');
    }
}

impl Visit for JsonFields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.name(field);
        json_str(self.out, value);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.name(field);
        push_u64(self.out, value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.name(field);
        push_i64(self.out, value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.name(field);
        self.out.push_str(if value { "true" } else { "false" });
    }

    fn record_f64(&mut self, _: &Field, _: f64) {
        self.ok = false;
    }

    fn record_error(&mut self, _: &Field, _: &(dyn std::error::Error + 'static)) {
        self.ok = false;
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.value.clear();
        let _ = write!(self.value, "{value:?}");
        self.name(field);
        json_str(self.out, self.value);
    }
}

/// A JSON string as serde_json writes it: `"` and `\` escaped, control characters as
/// `\b \t \n \f \r` or `\u00xx`, everything else as is.
fn json_str(out: &mut String, s: &str) {
    out.push('"');
    if plain(s) {
        out.push_str(s);
    } else {
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\u{8}' => out.push_str("\\b"),
                '\t' => out.push_str("\\t"),
                '\n' => out.push_str("\\n"),
                '\u{c}' => out.push_str("\\f"),
                '\r' => out.push_str("\\r"),
                c if (c as u32) < 0x20 => {
                    let _ = write!(out, "\\u{:04x}", c as u32);
                }
                c => out.push(c),
            }
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LogFormat;
    use std::cell::Cell;

    thread_local! {
        /// Lines the fast path wrote on this thread.
        pub(super) static FAST: Cell<usize> = const { Cell::new(0) };
    }

    use crate::telemetry::testing::Memory;

    /// Every kind of access line the request log writes, and some it might.
    fn emit() {
        let id = "29b719140000000000000000";
        let span = tracing::info_span!("request", request_id = id);
        let _g = span.enter();
        let method = actix_web::http::Method::GET;
        let jurisdiction = Some("RU");
        tracing::info!(
            target: "marketgate::access",
            parent: &span,
            request_id = id,
            method = %method,
            route = "/v1/gate",
            status = 451u16,
            latency_us = 165u64,
            jurisdiction = jurisdiction.as_ref().map(tracing::field::display),
            decision = Some("withdrawn"),
            "request"
        );
        tracing::error!(
            target: "marketgate::access",
            parent: &span,
            request_id = id,
            method = %actix_web::http::Method::POST,
            route = "-",
            status = 503u16,
            latency_us = 0u64,
            jurisdiction = None::<tracing::field::DisplayValue<&str>>,
            decision = None::<&str>,
            "request"
        );
        tracing::error!(target: "marketgate::access", parent: &span, error = %"a \"quoted\"\nerror", "request failed");
        tracing::info!(target: "marketgate::access", odd = "tab\there \u{1b}[31m ü", n = -3i64, b = true, "request");
        tracing::info!(target: "marketgate::access", x = 1.5f64, "request");
        tracing::info!(target: "marketgate::access", "message with \"quotes\"");
        let root = tracing::Span::none();
        tracing::info!(target: "marketgate::access", parent: &root, status = 200u16, "request");
        let outer = tracing::info_span!("outer");
        let _o = outer.enter();
        let nested = tracing::info_span!("nested", k = 7u64, s = "v");
        let _n = nested.enter();
        tracing::warn!(target: "marketgate::access", status = 404u16, "request");
        let odd = tracing::info_span!("odd", r#type = %"a\"b\n", later = tracing::field::Empty);
        let _d = odd.enter();
        tracing::info!(target: "marketgate::access", status = 200u16, "request");
        odd.record("later", 5u64);
        tracing::info!(target: "marketgate::access", status = 201u16, "request");
        let empty = tracing::info_span!("empty");
        let _e = empty.enter();
        tracing::info!(target: "marketgate::access", "request");
        tracing::info!(target: "marketgate::other", status = 200u16, "not an access line");
    }

    /// The lines of `emit` through the subscriber's formatter and through ours, with the
    /// timestamps cut off (they differ by construction).
    fn both(format: LogFormat) -> (Vec<String>, Vec<String>, Vec<usize>) {
        let mut fast_lines = Vec::new();
        let mut run = |fast: bool| {
            let sink = Memory::default();
            let s = sink.clone();
            let d = super::super::dispatch_with(format, "trace", move || s.clone(), fast).unwrap();
            let before = FAST.get();
            tracing::dispatcher::with_default(&d, emit);
            fast_lines.push(FAST.get() - before);
            let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
            // `2026-12-02T06:39:43.933305Z` is 27 bytes.
            text.lines()
                .map(|l| match format {
                    // A continuation of a value with a newline has no timestamp.
                    LogFormat::Text if l.len() > 27 && l.as_bytes()[26] == b'Z' => {
                        l[27..].to_string()
                    }
                    LogFormat::Text => l.to_string(),
                    LogFormat::Json => {
                        assert!(l.starts_with("{\"timestamp\":\""), "{l}");
                        assert_eq!(&l[40..42], "Z\"", "{l}");
                        l[41..].to_string()
                    }
                })
                .collect::<Vec<_>>()
        };
        let (theirs, ours) = (run(false), run(true));
        (theirs, ours, fast_lines)
    }

    #[test]
    fn text_lines_are_the_subscribers_byte_for_byte() {
        let (theirs, ours, fast) = both(LogFormat::Text);
        // Every span's fields (request, outer, nested, odd, empty) and every access line
        // but the one whose message needs escaping; the other target's fields too.
        assert_eq!(fast, [0, 5 + 10 + 1]);
        // Values with a newline continue on lines of their own.
        let events = theirs
            .iter()
            .filter(|l| {
                ["  INFO ", "  WARN ", " ERROR "]
                    .iter()
                    .any(|p| l.starts_with(p))
            })
            .count();
        assert_eq!(events, 12, "{theirs:#?}");
        assert_eq!(ours, theirs);
        assert!(
            ours[0].starts_with("  INFO request{request_id=\"29b719140000000000000000\"}: marketgate::access: request request_id=\"29b719140000000000000000\" method=GET route=\"/v1/gate\" status=451 latency_us=165 jurisdiction=RU decision=\"withdrawn\""),
            "{}",
            ours[0]
        );
    }

    #[test]
    fn json_lines_are_the_subscribers_byte_for_byte() {
        let (theirs, ours, fast) = both(LogFormat::Json);
        // The spans with one field or none (request, outer, odd, empty) and every
        // access line but the one with a float.
        assert_eq!(fast, [0, 4 + 10]);
        assert_eq!(theirs.len(), 12, "{theirs:#?}");
        assert_eq!(ours, theirs);
    }

    /// The request lines `request_line` writes, and one event of another target inside
    /// a `RequestScope`, against the subscriber's event in a real `request` span.
    fn direct_and_evented(format: LogFormat) -> (Vec<String>, Vec<String>) {
        let lines = [
            RequestLine {
                error: false,
                request_id: "29b719140000000000000000",
                method: "GET",
                route: "/v1/gate/{tail:.*}",
                status: 451,
                latency_us: 165,
                jurisdiction: Some(&"RU"),
                decision: Some("withdrawn"),
            },
            RequestLine {
                error: true,
                request_id: "3e5a4f0c-8d7b-4c2a-9f1e-6b0d2c4a8e10",
                method: "PATCH",
                route: "-",
                status: 503,
                latency_us: 0,
                jurisdiction: None,
                decision: None,
            },
            RequestLine {
                error: false,
                request_id: "8f14e45fceea167a5a36dedd4bea2543",
                method: "GET",
                route: "/odd \"route\"\\\t",
                status: 200,
                latency_us: 18_446_744_073_709_551_615,
                jurisdiction: Some(&"IN-KA"),
                decision: Some("limited"),
            },
        ];
        let cut = |text: String| -> Vec<String> {
            text.lines()
                .map(|l| match format {
                    LogFormat::Text => l[27..].to_string(),
                    LogFormat::Json => l[41..].to_string(),
                })
                .collect()
        };
        let other = |n: u64| {
            tracing::warn!(target: "marketgate::store", attempt = n, reason = "a \"quoted\" reason", "store unavailable");
        };
        // Theirs: events in a span, through the subscriber's own formatter.
        let sink = Memory::default();
        let s = sink.clone();
        let d = super::super::dispatch_with(format, "trace", move || s.clone(), false).unwrap();
        tracing::dispatcher::with_default(&d, || {
            for l in &lines {
                let span = tracing::info_span!("request", request_id = l.request_id);
                let _g = span.enter();
                other(1);
                let j = l.jurisdiction.map(tracing::field::display);
                macro_rules! ev {
                    ($lvl:ident) => {
                        tracing::$lvl!(target: "marketgate::access", parent: &span, request_id = l.request_id, method = %l.method, route = l.route, status = l.status, latency_us = l.latency_us, jurisdiction = j, decision = l.decision, "request")
                    };
                }
                if l.error {
                    ev!(error)
                } else {
                    ev!(info)
                }
            }
        });
        let theirs = cut(String::from_utf8(sink.0.lock().unwrap().clone()).unwrap());
        // Ours: `request_line`, and the other event in a scope, through our formatter.
        let sink = Memory::default();
        let s = sink.clone();
        let d = super::super::dispatch_with(format, "trace", move || s.clone(), true).unwrap();
        let mut ours = String::new();
        tracing::dispatcher::with_default(&d, || {
            for l in &lines {
                {
                    let _scope = RequestScope::enter(l.request_id.as_bytes());
                    other(1);
                }
                let text = String::from_utf8(std::mem::take(&mut *sink.0.lock().unwrap())).unwrap();
                ours.push_str(&text);
                let (mut out, mut value) = (String::new(), String::new());
                request_line(&mut out, &mut value, format == LogFormat::Json, l);
                ours.push_str(&out);
            }
        });
        // Outside a scope, an event has no request span.
        assert!(current_request_id().is_none());
        (theirs, cut(ours))
    }

    #[test]
    fn request_lines_written_directly_are_the_subscribers_events_byte_for_byte() {
        for format in [LogFormat::Text, LogFormat::Json] {
            let (theirs, ours) = direct_and_evented(format);
            assert_eq!(theirs.len(), 6, "{theirs:#?}");
            assert_eq!(ours, theirs, "{format:?}");
        }
    }

    #[test]
    fn request_scopes_nest_and_restore() {
        assert!(current_request_id().is_none());
        let a = RequestScope::enter(b"aaaa");
        {
            let _b = RequestScope::enter(b"bb");
            let (n, id) = current_request_id().unwrap();
            assert_eq!(&id[..usize::from(n)], b"bb");
        }
        let (n, id) = current_request_id().unwrap();
        assert_eq!(&id[..usize::from(n)], b"aaaa");
        drop(a);
        assert!(current_request_id().is_none());
        // Longer than any id format: no scope rather than a cut id.
        let _c = RequestScope::enter(&[b'x'; 40]);
        assert!(current_request_id().is_none());
    }

    #[test]
    fn floats_in_span_fields_are_found() {
        assert!(!has_float(r#""request_id":"a.b-1e5","n":10,"t":true"#));
        assert!(has_float(r#""x":1.5"#));
        assert!(has_float(r#""s":"\"","x":1e20"#));
    }

    #[test]
    fn timestamps_are_the_subscribers() {
        for (secs, want) in [
            (0, "1970-01-01T00:00:00."),
            (951_782_400, "2000-02-29T00:00:00."),
            (1_764_657_583, "2025-12-02T06:39:43."),
            (4_107_542_399, "2100-02-28T23:59:59."),
            (253_402_300_799, "9999-12-31T23:59:59."),
        ] {
            assert_eq!(std::str::from_utf8(&civil(secs).unwrap()).unwrap(), want);
        }
        assert!(civil(253_402_300_800).is_none());
        let mut ours = String::new();
        assert!(timestamp(&mut ours));
        let mut theirs = String::new();
        tracing_subscriber::fmt::time::FormatTime::format_time(
            &tracing_subscriber::fmt::time::SystemTime,
            &mut Writer::new(&mut theirs),
        )
        .unwrap();
        assert_eq!(ours.len(), theirs.len());
        assert_eq!(ours[..17], theirs[..17], "{ours} {theirs}");
    }
}
