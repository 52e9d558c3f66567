//! JetStream helpers: connect, and read a stream back to check what ferry stored.

use std::str::FromStr;

use async_nats::jetstream::Context;
use async_nats::{HeaderMap, HeaderName, HeaderValue};
use bytes::Bytes;

/// A message as stored in a stream.
#[derive(Debug, Clone)]
pub struct StoredMessage {
    pub sequence: u64,
    pub subject: String,
    /// All headers (NATS headers may repeat a name); see [`StoredMessage::header`]. Empty when the
    /// block does not follow the NATS header format (see `raw_headers`).
    pub headers: HeaderMap,
    /// The header block exactly as stored, when it was read (by [`stream_messages`], always; by
    /// `read_stream`, only for a block the client could not parse).
    pub raw_headers: Option<Vec<u8>>,
    pub payload: Bytes,
    /// When the server stored it.
    pub time: async_nats::datetime::DateTime,
}

impl StoredMessage {
    /// The first value of header `name` (exact name, as NATS headers are case-sensitive on the wire).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.as_str())
    }

    /// Every `(name, value)` pair, sorted by name then value so assertions are deterministic
    /// (`HeaderMap` iterates in hash order).
    pub fn header_pairs(&self) -> Vec<(String, String)> {
        let mut pairs: Vec<(String, String)> = self
            .headers
            .iter()
            .flat_map(|(name, values)| {
                values
                    .iter()
                    .map(move |v| (name.to_string(), v.as_str().to_string()))
            })
            .collect();
        pairs.sort();
        pairs
    }

    /// The payload as UTF-8 (panics if it is not).
    pub fn payload_str(&self) -> &str {
        std::str::from_utf8(&self.payload)
            .unwrap_or_else(|e| panic!("payload of seq {} is not UTF-8: {e}", self.sequence))
    }
}

/// Connects a client to `url` and returns it with a JetStream context on it (default domain; build
/// other contexts with `async_nats::jetstream::with_domain(client.clone(), ...)`). Panics on failure.
pub async fn js_client(url: &str) -> (async_nats::Client, Context) {
    let client = async_nats::ConnectOptions::new()
        .name("ferry-tests")
        .connect(url)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
    let js = async_nats::jetstream::new(client.clone());
    (client, js)
}

/// Number of messages currently in `stream`. Panics if the stream does not exist.
pub async fn stream_message_count(js: &Context, stream: &str) -> u64 {
    let mut s = js
        .get_stream(stream)
        .await
        .unwrap_or_else(|e| panic!("get stream {stream}: {e}"));
    s.info()
        .await
        .unwrap_or_else(|e| panic!("info of stream {stream}: {e}"))
        .state
        .messages
}

/// Every message of `stream` in sequence order, as of the call (messages added meanwhile are not
/// included). Panics if the stream does not exist.
///
/// Uses the JetStream "get message" API (`STREAM.MSG.GET` with `seq` + `next_by_subj: ">"`: the
/// first message at or after a sequence), which skips gaps left by deleted messages, needs no
/// consumer (so the stream's consumer count, which tests may assert on, is untouched), and works
/// whatever the stream's `allow_direct` setting. The response is decoded here rather than by
/// `Stream::get_raw_message` because async-nats 0.51 keeps only the last value of a repeated header
/// there, and tests must see exactly what ferry stored. One request per message, 64 in flight:
/// fine for test-sized streams; for very large ones assert on [`stream_message_count`] instead.
pub async fn stream_messages(js: &Context, stream: &str) -> Vec<StoredMessage> {
    let (_, state) = stream_with_state(js, stream).await;
    let mut out = Vec::with_capacity(state.messages as usize);
    if state.messages == 0 {
        return out;
    }
    // Requests go out PIPELINE at a time. A request for a sequence in a gap returns the next
    // message, which its own request returns too: duplicates are dropped by sequence.
    const PIPELINE: u64 = 64;
    let mut next = state.first_sequence;
    while next <= state.last_sequence {
        let end = (next + PIPELINE).min(state.last_sequence + 1);
        let batch = futures_util::future::join_all(
            (next..end).map(|seq| get_message_at_or_after(js, stream, seq)),
        )
        .await;
        let mut got: Vec<StoredMessage> = batch
            .into_iter()
            .flatten()
            .filter(|msg| msg.sequence <= state.last_sequence)
            .collect();
        got.sort_by_key(|msg| msg.sequence);
        got.dedup_by_key(|msg| msg.sequence);
        let Some(last) = got.last().map(|msg| msg.sequence) else {
            break;
        };
        next = last.max(end - 1) + 1;
        out.extend(got);
    }
    out
}

/// JetStream API error code for "no message found".
const NO_MESSAGE_FOUND: u64 = 10037;

async fn get_message_at_or_after(js: &Context, stream: &str, seq: u64) -> Option<StoredMessage> {
    let request = serde_json::json!({ "seq": seq, "next_by_subj": ">" });
    let response: serde_json::Value = js
        .request(format!("STREAM.MSG.GET.{stream}"), &request)
        .await
        .unwrap_or_else(|e| panic!("get message >= {seq} from stream {stream}: {e}"));
    if let Some(error) = response.get("error") {
        if error.get("err_code").and_then(|c| c.as_u64()) == Some(NO_MESSAGE_FOUND) {
            return None;
        }
        panic!("get message >= {seq} from stream {stream}: {error}");
    }
    let what = || format!("message >= {seq} of stream {stream}: {response}");
    let m = response
        .get("message")
        .unwrap_or_else(|| panic!("no 'message' in {}", what()));
    let field = |name: &str| m.get(name).and_then(|v| v.as_str());
    let subject = field("subject").unwrap_or_else(|| panic!("no subject in {}", what()));
    let sequence = m
        .get("seq")
        .and_then(|v| v.as_u64())
        .unwrap_or_else(|| panic!("no seq in {}", what()));
    let payload = match field("data") {
        Some(data) => base64_decode(data).unwrap_or_else(|e| panic!("{e} in data of {}", what())),
        None => Vec::new(),
    };
    // A block that does not parse is kept raw: hostile publishers can store one.
    let raw_headers = field("hdrs")
        .map(|hdrs| base64_decode(hdrs).unwrap_or_else(|e| panic!("{e} in hdrs of {}", what())));
    let headers = raw_headers
        .as_deref()
        .and_then(|raw| parse_header_block(raw).ok())
        .unwrap_or_default();
    let time = field("time")
        .map(|t| {
            async_nats::datetime::parse_rfc3339(t)
                .unwrap_or_else(|e| panic!("bad time {t:?} ({e}) in {}", what()))
        })
        .unwrap_or_else(|| panic!("no time in {}", what()));
    Some(StoredMessage {
        sequence,
        subject: subject.to_string(),
        headers,
        raw_headers,
        payload: Bytes::from(payload),
        time,
    })
}

/// Parses a NATS header block (`NATS/1.0\r\nName: value\r\n...\r\n\r\n`), keeping repeated names.
pub fn parse_header_block(raw: &[u8]) -> Result<HeaderMap, String> {
    let text = std::str::from_utf8(raw).map_err(|_| "headers are not UTF-8".to_string())?;
    let mut lines = text.split("\r\n");
    let first = lines.next().unwrap_or_default();
    if !first.starts_with("NATS/1.0") {
        return Err(format!("bad header version line {first:?}"));
    }
    let mut headers = HeaderMap::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("malformed header line {line:?}"))?;
        let name = HeaderName::from_str(name.trim())
            .map_err(|e| format!("bad header name {name:?}: {e}"))?;
        let value = HeaderValue::from_str(value.trim())
            .map_err(|e| format!("bad header value {value:?}: {e}"))?;
        headers.append(name, value);
    }
    Ok(headers)
}

/// Standard base64 (with or without padding), as the JetStream API encodes `data` and `hdrs`.
pub fn base64_decode(text: &str) -> Result<Vec<u8>, String> {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    use base64::Engine as _;
    const STANDARD_ANY_PADDING: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    STANDARD_ANY_PADDING
        .decode(text)
        .map_err(|error| format!("bad base64: {error}"))
}

/// The stream and its state as of now; panics naming the stream when either cannot be read.
pub async fn stream_with_state(
    js: &Context,
    stream: &str,
) -> (
    async_nats::jetstream::stream::Stream,
    async_nats::jetstream::stream::State,
) {
    let mut handle = js
        .get_stream(stream)
        .await
        .unwrap_or_else(|e| panic!("get stream {stream}: {e}"));
    let state = handle
        .info()
        .await
        .unwrap_or_else(|e| panic!("info of stream {stream}: {e}"))
        .state
        .clone();
    (handle, state)
}
