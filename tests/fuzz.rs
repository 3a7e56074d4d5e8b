//! Property-based fuzzing (proptest) of what the bridge reads from strangers: the webhook
//! envelope, the Standard Webhooks signature headers, and the OData literals built from
//! visitor emails. Each property runs `PROPTEST_CASES` cases (256 by default; CI sets a
//! bounded number). To run it longer:
//!
//! ```text
//! PROPTEST_CASES=200000 cargo test --release --test fuzz
//! ```

use handoff_bridge::domain::{OrgId, QueuedHandoff, QUEUED_PAYLOAD_VERSION};
use handoff_bridge::dynamics::odata;
use handoff_bridge::sandbox::odata::{parse_filter, Expr, Operand};
use handoff_bridge::webhook::envelope::parse_json;
use handoff_bridge::webhook::signature::{SignatureError, SignatureHeaders};
use handoff_bridge::webhook::{Envelope, WebhookSecret};
use proptest::prelude::*;
use serde_json::{json, Value};

/// JSON values of any shape, a few levels deep, with hostile strings in them.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,40}".prop_map(Value::from),
        "[\\x00-\\x1f'\"\\\\/@+%&#]{0,10}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::btree_map(
                prop_oneof![
                    Just("id".to_owned()),
                    Just("channel".to_owned()),
                    Just("type".to_owned()),
                    Just("contact".to_owned()),
                    Just("email".to_owned()),
                    Just("verified".to_owned()),
                    Just("handoff".to_owned()),
                    Just("summary".to_owned()),
                    Just("history".to_owned()),
                    "[a-z_]{1,8}",
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A session whose fields are mostly the right kind, sometimes not.
fn session() -> impl Strategy<Value = Value> {
    (
        prop_oneof![
            3 => "[ -~]{1,70}".prop_map(Value::from),
            1 => ".{0,110}".prop_map(Value::from),
            1 => json_value(),
        ],
        prop_oneof![
            3 => prop::sample::select(vec!["web", "sms", "whatsapp", "email", "phone_voice", "x"]).prop_map(Value::from),
            1 => ".{0,60}".prop_map(Value::from),
            1 => json_value(),
        ],
        prop_oneof![
            2 => ("[a-z'+.]{1,20}@[a-z.]{1,20}", prop::option::of(any::<bool>()))
                .prop_map(|(email, verified)| json!({ "email": email, "verified": verified })),
            1 => json_value(),
        ],
        prop_oneof![3 => ".{0,300}".prop_map(Value::from), 1 => json_value()],
        json_value(),
    )
        .prop_map(|(id, channel, contact, summary, history)| {
            json!({
                "id": id,
                "channel": { "type": channel },
                "contact": contact,
                "handoff": { "summary": summary },
                "history": history,
            })
        })
}

proptest! {
    /// Any bytes: parsing answers Ok or an error with a JSON Pointer, never panics.
    #[test]
    fn envelope_parsing_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Err(e) = parse_json::<Envelope>(&bytes) {
            prop_assert!(e.pointer.is_empty() || e.pointer.starts_with('/'));
        }
    }

    /// Any JSON shaped roughly like a session: validation accepts it or names fields under
    /// `/data/session`, and an accepted session obeys the column limits.
    #[test]
    fn envelope_validation_names_fields_and_keeps_limits(session in session()) {
        let body = serde_json::to_vec(&json!({
            "event": "conversation.handoff_to_human",
            "organization_id": "acme",
            "data": { "session": session },
        })).unwrap();
        let org = OrgId::parse("acme").unwrap();
        match parse_json::<Envelope>(&body) {
            Err(e) => prop_assert!(e.pointer.starts_with("/data") || e.pointer.is_empty(), "{}", e.pointer),
            Ok(envelope) => match envelope.validate(&org) {
                Err(errors) => {
                    prop_assert!(!errors.is_empty());
                    for e in errors {
                        prop_assert!(e.pointer.starts_with("/data/session/"), "{}", e.pointer);
                    }
                }
                Ok(request) => {
                    let id = request.session_id.as_str();
                    prop_assert!(!id.is_empty() && id.len() <= 100);
                    prop_assert!(id.bytes().all(|b| (0x20..=0x7e).contains(&b)));
                    let channel = request.channel.as_str();
                    prop_assert!(!channel.is_empty() && channel.len() <= 50);
                    prop_assert!(!channel.chars().any(char::is_control));
                    prop_assert_eq!(request.payload_version, QUEUED_PAYLOAD_VERSION);
                    let queued: QueuedHandoff = serde_json::from_str(&request.payload).unwrap();
                    prop_assert!(!queued.summary.trim().is_empty());
                    if let Some(email) = queued.customer.email.as_deref().filter(|_| queued.customer.email_verified) {
                        prop_assert!(email.contains('@'));
                    }
                }
            },
        }
    }

    /// Any header values: the check answers, never panics, and never accepts a header
    /// over its bounds.
    #[test]
    fn signature_headers_never_panic(
        id in prop_oneof![Just(None), ".{0,300}".prop_map(Some)],
        timestamp in prop_oneof![Just(None), "[0-9+ -]{0,25}".prop_map(Some), ".{0,20}".prop_map(Some)],
        signature in prop_oneof![Just(None), "(v1,[A-Za-z0-9+/=]{0,50} ?){0,12}".prop_map(Some), ".{0,1100}".prop_map(Some)],
        now in any::<i64>(),
    ) {
        let headers = SignatureHeaders {
            id: id.as_deref(),
            timestamp: timestamp.as_deref(),
            signature: signature.as_deref(),
        };
        if let Ok(checked) = headers.check(now) {
            let signature = signature.as_deref().unwrap();
            prop_assert!(signature.len() <= 1024);
            prop_assert!(signature.split_whitespace().count() <= 8);
            let secret = WebhookSecret::generate();
            prop_assert_eq!(checked.verify(&[secret], b"{}"), Err(SignatureError::Mismatch));
        }
    }

    /// A signature verifies over exactly the bytes it was made for.
    #[test]
    fn signatures_verify_only_their_own_body(
        body in prop::collection::vec(any::<u8>(), 0..256),
        flip in any::<prop::sample::Index>(),
        id in "[a-zA-Z0-9_]{1,40}",
        timestamp in 1_000_000_000i64..9_999_999_999,
    ) {
        let secret = WebhookSecret::generate();
        let signature = secret.sign(&id, timestamp, &body);
        let ts = timestamp.to_string();
        let headers = SignatureHeaders { id: Some(&id), timestamp: Some(&ts), signature: Some(&signature) };
        prop_assert_eq!(headers.check(timestamp).unwrap().verify(std::slice::from_ref(&secret), &body), Ok(id.as_str()));
        if !body.is_empty() {
            let mut tampered = body.clone();
            tampered[flip.index(body.len())] ^= 0x01;
            prop_assert_eq!(
                headers.check(timestamp).unwrap().verify(&[secret], &tampered),
                Err(SignatureError::Mismatch)
            );
        }
    }

    /// Any email text becomes exactly one string literal in the `$filter` Dataverse reads,
    /// equal to the text: no quote or metacharacter ends it or adds a clause.
    #[test]
    fn odata_literals_hold_exactly_their_text(email in prop_oneof![".{0,60}", "[' \"&#%+=;()@a]{0,30}"]) {
        let filter = format!("emailaddress1 eq {} and statecode eq 0", odata::string_literal(&email));
        let query = odata::query(&[("$filter", &filter), ("$top", "2")]);
        let decoded: Vec<(String, String)> = form_urlencoded::parse(query.trim_start_matches('?').as_bytes())
            .into_owned()
            .collect();
        prop_assert_eq!(decoded.len(), 2);
        prop_assert_eq!(&decoded[0], &("$filter".to_owned(), filter.clone()));
        let parsed = parse_filter(&decoded[0].1).map_err(TestCaseError::fail)?;
        let expected = Expr::And(
            Box::new(Expr::Eq(Operand::Property("emailaddress1".into()), Operand::Literal(Value::from(email.clone())))),
            Box::new(Expr::Eq(Operand::Property("statecode".into()), Operand::Literal(Value::from(0)))),
        );
        prop_assert_eq!(parsed, expected);
    }
}
