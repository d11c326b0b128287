//! The WAMP conformance vectors (tests/vectors, copied from the WAMP specification repository):
//! every listed encoding decodes to the listed attributes, and what we write equals a listed variant.

use std::path::Path;

use fabric_master::wamp::options::validate;
use fabric_master::wamp::{Message, Serializer, Value};
use serde_json::{Value as Json, json};

fn vector_files() -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for group in ["basic", "advanced"] {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/vectors/singlemessage")
            .join(group);
        for e in std::fs::read_dir(dir).expect("vector dir") {
            out.push(e.unwrap().path());
        }
    }
    out.sort();
    assert!(
        out.len() >= 25,
        "expected the whole vector set, found {}",
        out.len()
    );
    out
}

fn to_json(v: &Value) -> Json {
    match v {
        Value::Null => Json::Null,
        Value::Bool(b) => json!(b),
        Value::Int(i) => json!(i),
        Value::UInt(u) => json!(u),
        Value::Float(f) => json!(f),
        Value::Str(s) => json!(s),
        Value::Bytes(b) => json!(hex::encode(b)),
        Value::List(l) => Json::Array(l.iter().map(to_json).collect()),
        Value::Dict(d) => Json::Object(d.iter().map(|(k, v)| (k.clone(), to_json(v))).collect()),
    }
}

/// The message's attributes under the names the vectors use.
fn attributes(m: &Message) -> serde_json::Map<String, Json> {
    let d = |d: &fabric_master::wamp::Dict| to_json(&Value::Dict(d.clone()));
    let payload = |p: &fabric_master::wamp::Payload| {
        let (args, payload) = match &p.args {
            Some(Value::Bytes(b)) => (Json::Null, json!(hex::encode(b))),
            Some(a) => (to_json(a), Json::Null),
            None => (Json::Null, Json::Null),
        };
        let kwargs = p.kwargs.as_ref().map_or(Json::Null, d);
        (args, kwargs, payload)
    };
    let mut a = serde_json::Map::new();
    a.insert("message_type".into(), json!(m.code()));
    let mut put = |k: &str, v: Json| {
        a.insert(k.into(), v);
    };
    match m {
        Message::Hello { realm, details } => {
            put("realm", json!(realm));
            put("roles", details.get("roles").map_or(Json::Null, to_json));
        }
        Message::Welcome { session, details } => {
            put("session_id", json!(session));
            put("roles", details.get("roles").map_or(Json::Null, to_json));
        }
        Message::Abort { details, reason } | Message::Goodbye { details, reason } => {
            put("details", d(details));
            put("reason", json!(reason));
        }
        Message::Challenge { authmethod, extra } => {
            put("method", json!(authmethod));
            put("extra", d(extra));
        }
        Message::Authenticate { signature, extra } => {
            put("signature", json!(signature));
            put("extra", d(extra));
        }
        Message::Error {
            request_type,
            request,
            details,
            error,
            ..
        } => {
            put("request_type", json!(request_type));
            put("request_id", json!(request));
            put("details", d(details));
            put("error", json!(error));
        }
        Message::Publish {
            request,
            options,
            topic,
            payload: p,
        } => {
            put("request_id", json!(request));
            put("options", d(options));
            put("topic", json!(topic));
            let (args, kwargs, pl) = payload(p);
            put("args", args);
            put("kwargs", kwargs);
            put("payload", pl);
        }
        Message::Published {
            request,
            publication,
        } => {
            put("request_id", json!(request));
            put("publication_id", json!(publication));
        }
        Message::Subscribe {
            request,
            options,
            topic,
        } => {
            put("request_id", json!(request));
            put("options", d(options));
            put("topic", json!(topic));
        }
        Message::Subscribed {
            request,
            subscription,
        }
        | Message::Unsubscribe {
            request,
            subscription,
        } => {
            put("request_id", json!(request));
            put("subscription_id", json!(subscription));
        }
        Message::Unsubscribed { request, .. } | Message::Unregistered { request, .. } => {
            put("request_id", json!(request));
        }
        Message::Event {
            subscription,
            publication,
            details,
            payload: p,
        } => {
            put("subscription", json!(subscription));
            put("publication", json!(publication));
            put("details", d(details));
            let (args, kwargs, pl) = payload(p);
            put("args", args);
            put("kwargs", kwargs);
            put("payload", pl);
        }
        Message::EventReceived { publication, .. } => put("publication_id", json!(publication)),
        Message::Call {
            request,
            options,
            procedure,
            payload: p,
        } => {
            put("request_id", json!(request));
            put("options", d(options));
            put("procedure", json!(procedure));
            let (args, kwargs, _) = payload(p);
            put("args", args);
            put("kwargs", kwargs);
        }
        Message::Cancel { request, options } | Message::Interrupt { request, options } => {
            put("request_id", json!(request));
            put("options", d(options));
        }
        Message::Result {
            request,
            details,
            payload: p,
        } => {
            put("request_id", json!(request));
            put("details", d(details));
            let (args, kwargs, _) = payload(p);
            put("args", args);
            put("kwargs", kwargs);
        }
        Message::Register {
            request,
            options,
            procedure,
        } => {
            put("request_id", json!(request));
            put("options", d(options));
            put("procedure", json!(procedure));
        }
        Message::Registered {
            request,
            registration,
        }
        | Message::Unregister {
            request,
            registration,
        } => {
            put("request_id", json!(request));
            put("registration_id", json!(registration));
        }
        Message::Invocation {
            request,
            registration,
            details,
            ..
        } => {
            put("request_id", json!(request));
            put("registration_id", json!(registration));
            put("details", d(details));
        }
        Message::Yield {
            request, options, ..
        } => {
            put("request_id", json!(request));
            put("options", d(options));
        }
    }
    a
}

#[test]
fn every_vector_decodes_to_its_attributes_and_reencodes_to_a_listed_variant() {
    let mut checked = 0;
    for file in vector_files() {
        let doc: Json = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        let code = doc["wamp_message_code"].as_u64().unwrap();
        for sample in doc["samples"].as_array().unwrap() {
            let Some(sers) = sample.get("serializers") else {
                continue;
            };
            for (name, ser) in [
                ("json", Serializer::Json),
                ("msgpack", Serializer::MsgPack),
                ("cbor", Serializer::Cbor),
            ] {
                let Some(variants) = sers.get(name).and_then(Json::as_array) else {
                    continue;
                };
                let listed: Vec<Vec<u8>> = variants
                    .iter()
                    .map(|v| hex::decode(v["bytes_hex"].as_str().unwrap()).unwrap())
                    .collect();
                for bytes in &listed {
                    let ctx = format!("{} / {} / {name}", file.display(), sample["description"]);
                    let msg = ser.decode(bytes).unwrap_or_else(|e| panic!("{ctx}: {e}"));
                    assert_eq!(msg.code(), code, "{ctx}");
                    let got = attributes(&msg);
                    for (k, want) in sample["expected_attributes"].as_object().unwrap() {
                        let have = got
                            .get(k)
                            .unwrap_or_else(|| panic!("{ctx}: attribute {k} not mapped"));
                        assert_eq!(have, want, "{ctx}: attribute {k}");
                    }
                    let encoded = ser.encode(&msg).unwrap();
                    assert!(
                        listed.contains(&encoded),
                        "{ctx}: our encoding {} is not a listed variant",
                        String::from_utf8_lossy(&encoded)
                    );
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 100, "only {checked} encodings checked");
}

/// `wmsg` samples check option and detail types; the expected error names the offending key.
#[test]
fn option_type_vectors_are_accepted_or_refused_as_listed() {
    let mut checked = 0;
    for file in vector_files() {
        let doc: Json = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        for sample in doc["samples"].as_array().unwrap() {
            let Some(wmsg) = sample.get("wmsg") else {
                continue;
            };
            let mut items = wmsg.as_array().unwrap().clone();
            // The vectors write passthru payloads as hex strings; on the wire they are bytes.
            if let Some(Json::String(s)) = items.last()
                && let Ok(b) = hex::decode(s)
            {
                let n = items.len();
                items[n - 1] = json!(format!("\0{}", base64_of(&b)));
            }
            let bytes = serde_json::to_vec(&items).unwrap();
            let result = Serializer::Json
                .decode(&bytes)
                .map_err(|e| e.to_string())
                .and_then(|m| validate(&m).map_err(|e| e.to_string()));
            match sample.get("expected_error") {
                None => assert!(result.is_ok(), "{}: {:?}", sample["description"], result),
                Some(err) => {
                    let e = result.expect_err(sample["description"].as_str().unwrap());
                    assert!(e.contains(err["contains"].as_str().unwrap()), "{e}");
                }
            }
            checked += 1;
        }
    }
    assert!(checked > 50, "only {checked} samples checked");
}

fn base64_of(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}
