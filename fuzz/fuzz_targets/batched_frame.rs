//! One WebSocket message of a batched (or plain) subprotocol: splitting it into WAMP messages
//! never panics, and the messages framed again split into the same messages.
#![no_main]

use fabric_master::wamp::Protocol;
use libfuzzer_sys::fuzz_target;

const PROTOCOLS: [&str; 6] = [
    "wamp.2.json.batched",
    "wamp.2.msgpack.batched",
    "wamp.2.cbor.batched",
    "wamp.2.json",
    "wamp.2.msgpack",
    "wamp.2.cbor",
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, frame)) = data.split_first() else {
        return;
    };
    let protocol = Protocol::parse(PROTOCOLS[usize::from(pick) % PROTOCOLS.len()]).expect("known");
    let Ok(messages) = protocol.decode_frame(frame) else {
        return;
    };
    if !protocol.batched {
        return;
    }
    let mut again = Vec::new();
    for m in &messages {
        if protocol.encode_into_frame(m, &mut again).is_err() {
            return;
        }
    }
    let split = protocol
        .decode_frame(&again)
        .expect("a frame the master built splits again");
    assert_eq!(split.len(), messages.len());
});
