//! Optional trace export over OTLP/HTTP (the JSON encoding of OTLP, which every OTLP
//! receiver accepts on `/v1/traces`): one server span per request, made by
//! `server::front`, batched and sent by a thread of its own to `otlp_endpoint`. A
//! request never waits for the export: a full queue drops the span and counts it.
//!
//! A span carries only what the service itself decided or chose: the method (a
//! standard one by name, `OTHER` otherwise), the handler class, the status code, the
//! market status and the jurisdiction from the answer's own headers, and the request
//! id. Never a client address, header, path or query, and never a phone number. A
//! `traceparent` is continued only from a trusted proxy, as the request id is: its hex
//! digits could spell anything a client chose.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use prometheus::{IntCounter, IntCounterVec, Opts};

/// Spans held for the exporter at most; beyond, new spans are dropped.
const QUEUE: usize = 8192;
/// Spans per request to the receiver at most.
const BATCH: usize = 512;
/// How long a span waits for its batch at most.
const LINGER: Duration = Duration::from_millis(500);

/// One finished request's span.
#[derive(Clone, Debug)]
pub struct SpanRecord {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    /// The gateway's span, from a trusted proxy's `traceparent`.
    pub parent_span_id: Option<[u8; 8]>,
    pub start_unix_nanos: u64,
    pub end_unix_nanos: u64,
    /// A standard method or `OTHER`.
    pub method: &'static str,
    /// The handler class (`gate`, `decision`, ...).
    pub handler: &'static str,
    pub status_code: u16,
    /// `served`, `limited`, `withdrawn`, from the answer's `X-Marketgate-Status`.
    pub market_status: Option<&'static str>,
    /// From the answer's `X-Marketgate-Jurisdiction`: a code this service wrote.
    pub jurisdiction: Option<String>,
    pub request_id: Option<String>,
}

/// The exporter of this process, once `install`ed.
pub struct Exporter {
    tx: SyncSender<SpanRecord>,
    next: AtomicU64,
    seed: u64,
    stats: ExportStats,
}

/// `marketgate_otlp_spans_total{result}`: spans sent, dropped (queue full) or failed
/// (the receiver refused or could not be reached).
#[derive(Clone)]
pub struct ExportStats {
    family: IntCounterVec,
    sent: IntCounter,
    dropped: IntCounter,
    failed: IntCounter,
}

impl ExportStats {
    fn new() -> ExportStats {
        let family = IntCounterVec::new(
            Opts::new(
                "marketgate_otlp_spans_total",
                "Request spans for the OTLP exporter: sent (accepted by the receiver), dropped (the queue was full; the request did not wait), failed (refused or unreachable receiver)",
            ),
            &["result"],
        )
        .expect("static metric definition");
        ExportStats {
            sent: family.with_label_values(&["sent"]),
            dropped: family.with_label_values(&["dropped"]),
            failed: family.with_label_values(&["failed"]),
            family,
        }
    }

    /// For the metrics registry.
    pub fn collector(&self) -> IntCounterVec {
        self.family.clone()
    }
}

static EXPORTER: OnceLock<Exporter> = OnceLock::new();

/// The exporter, when `serve` was configured with `otlp_endpoint`.
#[inline]
pub fn exporter() -> Option<&'static Exporter> {
    EXPORTER.get()
}

/// Starts exporting to `endpoint` (`http://collector:4318`) for the rest of the
/// process. A second call keeps the first exporter.
pub fn install(endpoint: &str) -> &'static Exporter {
    EXPORTER.get_or_init(|| {
        let (tx, rx) = sync_channel(QUEUE);
        let stats = ExportStats::new();
        let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
        let thread_stats = stats.clone();
        let spawned = std::thread::Builder::new()
            .name("marketgate-otlp".into())
            .spawn(move || export_loop(&rx, &url, &thread_stats));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the OTLP exporter: no traces are sent");
        }
        Exporter {
            tx,
            next: AtomicU64::new(1),
            seed: seed(),
            stats,
        }
    })
}

fn seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    xxhash_rust::xxh3::xxh3_64(
        &[t.to_le_bytes(), u64::from(std::process::id()).to_le_bytes()].concat(),
    )
}

impl Exporter {
    /// Queues a finished span; drops it (and counts it) when the queue is full.
    pub fn send(&self, span: SpanRecord) {
        match self.tx.try_send(span) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => self.stats.dropped.inc(),
        }
    }

    /// A new span id (and a trace id for a request that starts its trace here).
    pub fn new_ids(&self) -> ([u8; 16], [u8; 8]) {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let a = xxhash_rust::xxh3::xxh3_64_with_seed(&n.to_le_bytes(), self.seed);
        let b = xxhash_rust::xxh3::xxh3_64_with_seed(
            &n.to_le_bytes(),
            self.seed ^ 0x9e37_79b9_7f4a_7c15,
        );
        let mut trace = [0u8; 16];
        trace[..8].copy_from_slice(&a.to_be_bytes());
        trace[8..].copy_from_slice(&b.to_be_bytes());
        // Zero ids are invalid in W3C trace context.
        trace[15] |= 1;
        let span = (a ^ b.rotate_left(17) | 1).to_be_bytes();
        (trace, span)
    }

    pub fn stats(&self) -> &ExportStats {
        &self.stats
    }
}

/// A W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`): the trace id and the parent
/// span id, or `None` for anything else (all-zero ids included).
pub fn parse_traceparent(v: &[u8]) -> Option<([u8; 16], [u8; 8])> {
    if v.len() != 55 || v[2] != b'-' || v[35] != b'-' || v[52] != b'-' || &v[..2] != b"00" {
        return None;
    }
    fn hex<const N: usize>(s: &[u8]) -> Option<[u8; N]> {
        let mut out = [0u8; N];
        for (i, pair) in s.chunks(2).enumerate() {
            let d = |c: u8| match c {
                b'0'..=b'9' => Some(c - b'0'),
                b'a'..=b'f' => Some(c - b'a' + 10),
                _ => None,
            };
            out[i] = d(pair[0])? << 4 | d(pair[1])?;
        }
        Some(out)
    }
    let trace: [u8; 16] = hex(&v[3..35])?;
    let span: [u8; 8] = hex(&v[36..52])?;
    hex::<1>(&v[53..55])?;
    (trace != [0; 16] && span != [0; 8]).then_some((trace, span))
}

fn hex_string(b: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    b.iter()
        .flat_map(|x| {
            [
                HEX[(x >> 4) as usize] as char,
                HEX[(x & 0xf) as usize] as char,
            ]
        })
        .collect()
}

/// An OTLP JSON `KeyValue`.
fn attr(key: &str, value: serde_json::Value) -> serde_json::Value {
    serde_json::json!({"key": key, "value": value})
}

/// The OTLP/HTTP JSON body (`ExportTraceServiceRequest`) of `spans`.
pub fn encode(spans: &[SpanRecord]) -> serde_json::Value {
    use serde_json::json;
    let spans: Vec<_> = spans
        .iter()
        .map(|s| {
            let mut attributes = vec![
                attr("http.request.method", json!({"stringValue": s.method})),
                attr("marketgate.handler", json!({"stringValue": s.handler})),
                attr(
                    "http.response.status_code",
                    json!({"intValue": s.status_code.to_string()}),
                ),
            ];
            if let Some(m) = s.market_status {
                attributes.push(attr("marketgate.status", json!({"stringValue": m})));
            }
            if let Some(j) = &s.jurisdiction {
                attributes.push(attr("marketgate.jurisdiction", json!({"stringValue": j})));
            }
            if let Some(id) = &s.request_id {
                attributes.push(attr("marketgate.request_id", json!({"stringValue": id})));
            }
            json!({
                "traceId": hex_string(&s.trace_id),
                "spanId": hex_string(&s.span_id),
                "parentSpanId": s.parent_span_id.map(|p| hex_string(&p)).unwrap_or_default(),
                "name": format!("{} {}", s.method, s.handler),
                // SPAN_KIND_SERVER
                "kind": 2,
                "startTimeUnixNano": s.start_unix_nanos.to_string(),
                "endTimeUnixNano": s.end_unix_nanos.to_string(),
                "attributes": attributes,
                // STATUS_CODE_ERROR for a 5xx (the server failed), else unset.
                "status": if s.status_code >= 500 { json!({"code": 2}) } else { json!({}) },
            })
        })
        .collect();
    json!({
        "resourceSpans": [{
            "resource": {"attributes": [
                attr("service.name", json!({"stringValue": "marketgate"})),
                attr("service.version", json!({"stringValue": env!("CARGO_PKG_VERSION")})),
            ]},
            "scopeSpans": [{
                "scope": {"name": "marketgate", "version": env!("CARGO_PKG_VERSION")},
                "spans": spans,
            }],
        }]
    })
}

/// Gathers spans into batches and posts them until every sender is gone.
fn export_loop(rx: &Receiver<SpanRecord>, url: &str, stats: &ExportStats) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let mut batch = Vec::with_capacity(BATCH);
    let mut warned = false;
    loop {
        let first = match rx.recv() {
            Ok(s) => s,
            Err(_) => return,
        };
        batch.push(first);
        let deadline = Instant::now() + LINGER;
        while batch.len() < BATCH {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(s) => batch.push(s),
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        let body = encode(&batch).to_string();
        let n = batch.len() as u64;
        batch.clear();
        let result = agent
            .post(url)
            .header("Content-Type", "application/json")
            .send(body.as_bytes());
        match result {
            Ok(r) if r.status().is_success() => {
                stats.sent.inc_by(n);
                warned = false;
            }
            other => {
                stats.failed.inc_by(n);
                if !warned {
                    // Once per outage; the count goes on in the metric.
                    let why = match other {
                        Ok(r) => format!("status {}", r.status().as_u16()),
                        Err(e) => e.to_string(),
                    };
                    tracing::warn!(endpoint = url, error = %why, "OTLP receiver refused or unreachable: spans are dropped until it answers");
                    warned = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_is_read_strictly() {
        let ok = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let (t, s) = parse_traceparent(ok).unwrap();
        assert_eq!(hex_string(&t), "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(hex_string(&s), "b7ad6b7169203331");
        for bad in [
            &b"00-00000000000000000000000000000000-b7ad6b7169203331-01"[..],
            b"00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            b"01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            b"00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
            b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0",
            b"00-0af7651916cd43dd8448eb211c80319c_b7ad6b7169203331-01",
            b"00-194.67.1.1",
            b"",
        ] {
            assert!(
                parse_traceparent(bad).is_none(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn spans_encode_as_otlp_json() {
        let span = SpanRecord {
            trace_id: [1; 16],
            span_id: [2; 8],
            parent_span_id: Some([3; 8]),
            start_unix_nanos: 10,
            end_unix_nanos: 20,
            method: "GET",
            handler: "gate",
            status_code: 451,
            market_status: Some("withdrawn"),
            jurisdiction: Some("RU".into()),
            request_id: None,
        };
        let v = encode(&[span]);
        let s = &v["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
        assert_eq!(s["traceId"], "01010101010101010101010101010101");
        assert_eq!(s["parentSpanId"], "0303030303030303");
        assert_eq!(s["name"], "GET gate");
        assert_eq!(s["startTimeUnixNano"], "10");
        assert_eq!(s["attributes"][2]["value"]["intValue"], "451");
        assert_eq!(s["attributes"][4]["value"]["stringValue"], "RU");
    }
}
