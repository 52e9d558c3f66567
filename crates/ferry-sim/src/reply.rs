//! RPC replies: the v1 and v2 transport envelopes around a reply body, as a Choria server wraps
//! its answer to a request (go-choria's `NewReply`, `NewSecureReply`, `SetReplyData`).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use crate::*;

/// The envelope of a reply: who answers which request, for which agent, and when.
#[derive(Debug, Clone, Copy)]
pub struct ReplyEnvelope<'a> {
    /// The replying node's identity.
    pub sender: &'a str,
    /// The id of the request answered.
    pub request_id: &'a str,
    pub agent: &'a str,
    /// Unix nanoseconds; v1 carries whole seconds (rounded down).
    pub time_nanos: i64,
}

/// The `hash` of a secure reply. Choria's adapters do not check it (they skip validation), so a
/// fixed value keeps this crate free of a hashing dependency.
const REPLY_HASH: &str = "bm90LWEtcmVhbC1oYXNo";

/// A reply in transport protocol v1: `choria:transport:1` whose base64 `data` holds
/// `choria:secure:reply:1`, whose `message` is `choria:reply:1` as a JSON string, whose `message`
/// is `body` as a JSON string.
pub fn reply_v1(body: &str, envelope: &ReplyEnvelope<'_>) -> String {
    let mut reply = String::with_capacity(body.len() + 256);
    reply.push_str(r#"{"protocol":"choria:reply:1","message":"#);
    push_json_string(&mut reply, body);
    reply.push_str(r#","envelope":{"#);
    let seconds = envelope.time_nanos.div_euclid(1_000_000_000);
    push_fields(
        &mut reply,
        envelope,
        ["requestid", "senderid", "agent"],
        seconds,
    );
    reply.push('}');

    let mut secure = String::with_capacity(reply.len() * 5 / 4 + 128);
    secure.push_str(r#"{"protocol":"choria:secure:reply:1","message":"#);
    push_json_string(&mut secure, &reply);
    secure.push_str(r#","hash":""#);
    secure.push_str(REPLY_HASH);
    secure.push_str(r#""}"#);
    transport("choria:transport:1", &secure, "mc_sender", envelope.sender)
}

/// A reply in transport protocol v2: `io.choria.protocol.v2.transport` whose base64 `data` holds
/// the secure reply, whose base64 `reply` holds the reply, whose base64 `message` is `body`.
pub fn reply_v2(body: &[u8], envelope: &ReplyEnvelope<'_>) -> String {
    let mut reply = String::with_capacity(body.len() * 4 / 3 + 256);
    reply.push_str(r#"{"protocol":"io.choria.protocol.v2.reply","message":""#);
    STANDARD.encode_string(body, &mut reply);
    reply.push_str(r#"","#);
    push_fields(
        &mut reply,
        envelope,
        ["request", "sender", "agent"],
        envelope.time_nanos,
    );

    let mut secure = String::with_capacity(reply.len() * 4 / 3 + 160);
    secure.push_str(r#"{"protocol":"io.choria.protocol.v2.secure_reply","reply":""#);
    STANDARD.encode_string(&reply, &mut secure);
    secure.push_str(r#"","hash":""#);
    secure.push_str(REPLY_HASH);
    secure.push_str(r#"","signature":""#);
    secure.push_str(V2_SIGNATURE);
    secure.push_str(r#""}"#);
    transport(
        "io.choria.protocol.v2.transport",
        &secure,
        "sender",
        envelope.sender,
    )
}

/// Appends the envelope's request id, sender and agent under the given names, then `time`, and
/// closes the object: the fields both generations carry, in the order Go writes them.
fn push_fields(out: &mut String, envelope: &ReplyEnvelope<'_>, names: [&str; 3], time: i64) {
    let values = [envelope.request_id, envelope.sender, envelope.agent];
    for (name, value) in names.into_iter().zip(values) {
        out.push('"');
        out.push_str(name);
        out.push_str(r#"":"#);
        push_json_string(out, value);
        out.push(',');
    }
    out.push_str(r#""time":"#);
    out.push_str(&time.to_string());
    out.push('}');
}

/// The transport around a secure reply, with the sender header each generation names its way.
fn transport(protocol: &str, secure: &str, sender_header: &str, sender: &str) -> String {
    let mut out = String::with_capacity(secure.len() * 4 / 3 + 160);
    out.push_str(r#"{"protocol":""#);
    out.push_str(protocol);
    out.push_str(r#"","data":""#);
    STANDARD.encode_string(secure, &mut out);
    out.push_str(r#"","headers":{""#);
    out.push_str(sender_header);
    out.push_str(r#"":"#);
    push_json_string(&mut out, sender);
    out.push_str("}}");
    out
}
