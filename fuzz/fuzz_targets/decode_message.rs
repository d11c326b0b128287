//! One WAMP message in any of the three serializers (the first byte picks it): decoding never
//! panics, and whatever decodes re-encodes to bytes that decode to the same message.
#![no_main]

use fabric_master::wamp::Serializer;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, bytes)) = data.split_first() else {
        return;
    };
    let serializer = [Serializer::Json, Serializer::MsgPack, Serializer::Cbor][usize::from(pick % 3)];
    let Ok(msg) = serializer.decode(bytes) else {
        return;
    };
    let Ok(encoded) = serializer.encode(&msg) else {
        return;
    };
    let again = serializer
        .decode(&encoded)
        .expect("a message the master encoded decodes again");
    // Compared as bytes: NaN payloads are equal as bytes, not as floats.
    assert_eq!(
        serializer.encode(&again).expect("it encodes again"),
        encoded,
        "{serializer:?} round trip changed {msg:?}"
    );
});
