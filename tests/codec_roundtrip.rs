//! Any message survives encode → decode unchanged, in every serializer and batched framing.

use fabric_master::wamp::{Dict, Message, Payload, Protocol, Serializer, Value};
use proptest::prelude::*;

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::Int),
        (i64::MAX as u64 + 1..=u64::MAX).prop_map(Value::UInt),
        (-1e12f64..1e12).prop_map(Value::Float),
        "[^\u{0}][a-zA-Z0-9 äöü€._-]{0,12}".prop_map(Value::Str),
        proptest::collection::vec(any::<u8>(), 0..24).prop_map(Value::Bytes),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::List),
            proptest::collection::vec(("[a-z_]{1,8}", inner), 0..4)
                .prop_map(|kv| Value::Dict(kv.into_iter().collect())),
        ]
    })
}

fn dict() -> impl Strategy<Value = Dict> {
    proptest::collection::vec(("[a-z_]{1,8}", value()), 0..4)
        .prop_map(|kv| kv.into_iter().collect())
}

fn payload() -> impl Strategy<Value = Payload> {
    (
        proptest::option::of(prop_oneof![
            proptest::collection::vec(value(), 0..4).prop_map(Value::List),
            proptest::collection::vec(any::<u8>(), 0..16).prop_map(Value::Bytes),
        ]),
        proptest::option::of(dict()),
    )
        // kwargs without args cannot be written: the wire then carries an empty args list.
        .prop_map(|(args, kwargs)| {
            let args = if kwargs.is_some() {
                Some(args.unwrap_or(Value::List(Vec::new())))
            } else {
                args
            };
            Payload { args, kwargs }
        })
}

fn id() -> impl Strategy<Value = u64> {
    1u64..=(1u64 << 53)
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        (proptest::option::of("[a-z.]{1,12}"), dict())
            .prop_map(|(realm, details)| Message::Hello { realm, details }),
        (id(), dict(), "[a-z.]{1,12}", payload()).prop_map(
            |(request, options, procedure, payload)| Message::Call {
                request,
                options,
                procedure,
                payload
            }
        ),
        (id(), id(), dict(), payload()).prop_map(
            |(subscription, publication, details, payload)| Message::Event {
                subscription,
                publication,
                details,
                payload
            }
        ),
        (id(), dict(), "[a-z.]{1,12}", payload()).prop_map(|(request, options, error, payload)| {
            Message::Error {
                request_type: 48,
                request,
                details: options,
                error,
                payload,
            }
        }),
        (id(), dict(), payload()).prop_map(|(request, options, payload)| Message::Yield {
            request,
            options,
            payload
        }),
        (id(), dict()).prop_map(|(request, options)| Message::Cancel { request, options }),
        (dict(), "[a-z.]{1,12}").prop_map(|(details, reason)| Message::Abort { details, reason }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn roundtrip_every_serializer(msg in message()) {
        for ser in [Serializer::Json, Serializer::MsgPack, Serializer::Cbor] {
            let bytes = ser.encode(&msg).unwrap();
            let back = ser.decode(&bytes).unwrap();
            prop_assert_eq!(&back, &msg, "{:?}", ser);
        }
    }

    #[test]
    fn roundtrip_batched(msgs in proptest::collection::vec(message(), 1..5)) {
        for ser in [Serializer::Json, Serializer::MsgPack, Serializer::Cbor] {
            let proto = Protocol { serializer: ser, batched: true };
            let mut frame = Vec::new();
            for m in &msgs {
                proto.encode_into_frame(m, &mut frame).unwrap();
            }
            prop_assert_eq!(proto.decode_frame(&frame).unwrap(), msgs.clone());
        }
    }

    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        for ser in [Serializer::Json, Serializer::MsgPack, Serializer::Cbor] {
            let _ = Protocol { serializer: ser, batched: true }.decode_frame(&bytes);
            let _ = ser.decode(&bytes);
        }
    }
}

#[test]
fn truncated_batch_is_an_error() {
    let proto = Protocol {
        serializer: Serializer::Cbor,
        batched: true,
    };
    let mut frame = Vec::new();
    proto
        .encode_into_frame(
            &Message::Cancel {
                request: 1,
                options: Dict::new(),
            },
            &mut frame,
        )
        .unwrap();
    frame.truncate(frame.len() - 1);
    assert!(proto.decode_frame(&frame).is_err());
}
