//! StripeProvider against a fake Stripe on 127.0.0.1:0 that answers as Stripe does.

mod fake_stripe;

use fake_stripe::{spawn_fake, SECRET};

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::http::Method;
use ticketing_contracts::money::Cents;
use ticketing_payments::provider::{
    ChargeError, ChargeRequest, PaymentProvider, StripeProvider, CURRENCY_USD,
};

fn provider(base: &str) -> StripeProvider {
    StripeProvider::new(SECRET, Some(base), Duration::from_millis(800))
        .unwrap()
        .with_retries(3, Duration::from_millis(20))
}

fn request(token: &str, key: &str) -> ChargeRequest {
    ChargeRequest::usd(Cents::new(1099), token, key).with_description("Order 42: Concert")
}

#[tokio::test]
async fn charges_with_the_expected_request() {
    let (base, fake) = spawn_fake().await;
    let charge = provider(&base)
        .charge(&request("tok_visa", "order-42"))
        .await
        .unwrap();
    assert_eq!(charge.id, "ch_3Fake0000000000000000001");

    let seen = fake.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    let s = &seen[0];
    assert_eq!(s.method, Method::POST);
    assert_eq!(s.path, "/v1/charges");
    assert_eq!(
        s.authorization.as_deref(),
        Some(&*format!("Bearer {SECRET}"))
    );
    assert_eq!(s.idempotency_key.as_deref(), Some("order-42"));
    assert_eq!(
        s.content_type.as_deref(),
        Some("application/x-www-form-urlencoded")
    );
    let want: HashMap<String, String> = [
        ("amount", "1099"),
        ("currency", CURRENCY_USD),
        ("source", "tok_visa"),
        ("description", "Order 42: Concert"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    assert_eq!(s.form, want);
}

#[tokio::test]
async fn no_description_sends_no_field() {
    let (base, fake) = spawn_fake().await;
    let req = ChargeRequest::usd(Cents::new(50), "tok_visa", "k");
    provider(&base).charge(&req).await.unwrap();
    let form = fake.seen.lock().unwrap()[0].form.clone();
    assert_eq!(form.get("amount").map(String::as_str), Some("50"));
    assert!(!form.contains_key("description"));
}

#[tokio::test]
async fn same_idempotency_key_same_charge() {
    let (base, fake) = spawn_fake().await;
    let p = provider(&base);
    let first = p.charge(&request("tok_visa", "order-7")).await.unwrap();
    let again = p.charge(&request("tok_visa", "order-7")).await.unwrap();
    assert_eq!(first, again);
    let other = p.charge(&request("tok_visa", "order-8")).await.unwrap();
    assert_ne!(first, other);
    assert_eq!(*fake.charges.lock().unwrap(), 2);
}

#[tokio::test]
async fn card_declined_is_declined_with_stripes_message() {
    let (base, fake) = spawn_fake().await;
    let p = provider(&base);
    match p
        .charge(&request("tok_chargeDeclinedInsufficientFunds", "d1"))
        .await
    {
        Err(ChargeError::Declined { message, code }) => {
            assert_eq!(message, "Your card has insufficient funds.");
            assert_eq!(code.as_deref(), Some("insufficient_funds"));
        }
        other => panic!("{other:?}"),
    }
    match p
        .charge(&request("tok_chargeDeclinedExpiredCard", "d2"))
        .await
    {
        Err(ChargeError::Declined { message, code }) => {
            assert_eq!(message, "Your card has expired.");
            assert_eq!(code.as_deref(), Some("expired_card"));
        }
        other => panic!("{other:?}"),
    }
    // A decline is final: no retry.
    assert_eq!(fake.seen.lock().unwrap().len(), 2);
    assert_eq!(*fake.charges.lock().unwrap(), 0);
}

#[tokio::test]
async fn unknown_token_is_declined_as_invalid() {
    let (base, _fake) = spawn_fake().await;
    match provider(&base).charge(&request("tok_bogus", "u1")).await {
        Err(ChargeError::Declined { message, code }) => {
            assert_eq!(message, "No such token: 'tok_bogus'");
            assert_eq!(code.as_deref(), Some("resource_missing"));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn bad_secret_key_is_not_the_buyers_fault() {
    let (base, _fake) = spawn_fake().await;
    let p = StripeProvider::new("sk_test_wrong", Some(&base), Duration::from_secs(2)).unwrap();
    let err = p.charge(&request("tok_visa", "a1")).await.unwrap_err();
    assert!(matches!(err, ChargeError::Other(_)), "{err:?}");
}

#[tokio::test]
async fn server_errors_are_retried_with_the_same_key() {
    let (base, fake) = spawn_fake().await;
    let charge = provider(&base)
        .charge(&request("tok_flaky", "f1"))
        .await
        .unwrap();
    assert!(charge.id.starts_with("ch_"));
    let seen = fake.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3, "two 503s then success");
    assert!(seen
        .iter()
        .all(|s| s.idempotency_key.as_deref() == Some("f1")));
    assert_eq!(*fake.charges.lock().unwrap(), 1);
}

#[tokio::test]
async fn persistent_server_errors_are_unavailable_after_bounded_retries() {
    let (base, fake) = spawn_fake().await;
    let err = provider(&base)
        .charge(&request("tok_always500", "e1"))
        .await
        .unwrap_err();
    match err {
        ChargeError::Unavailable(reason) => assert!(reason.contains("500"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(fake.seen.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn timeout_is_retried_without_charging_twice() {
    let (base, fake) = spawn_fake().await;
    let started = Instant::now();
    let charge = provider(&base)
        .charge(&request("tok_slow", "s1"))
        .await
        .unwrap();
    // The first attempt timed out (800 ms), the retry got the saved charge.
    assert!(started.elapsed() >= Duration::from_millis(800));
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(charge.id, "ch_3Fake0000000000000000001");
    assert_eq!(fake.seen.lock().unwrap().len(), 2);
    assert_eq!(*fake.charges.lock().unwrap(), 1);
}

#[tokio::test]
async fn timeouts_exhaust_into_unavailable() {
    // A server that accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let p = StripeProvider::new(
        SECRET,
        Some(&format!("http://{addr}")),
        Duration::from_millis(200),
    )
    .unwrap()
    .with_retries(2, Duration::from_millis(10));
    match p.charge(&request("tok_visa", "t1")).await {
        Err(ChargeError::Unavailable(reason)) => assert!(reason.contains("timed out"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn unreachable_stripe_is_unavailable() {
    // Bind then drop: nothing listens on the port any more.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let p = StripeProvider::new(
        SECRET,
        Some(&format!("http://127.0.0.1:{port}")),
        Duration::from_secs(1),
    )
    .unwrap()
    .with_retries(2, Duration::from_millis(10));
    assert!(matches!(
        p.charge(&request("tok_visa", "c1")).await,
        Err(ChargeError::Unavailable(_))
    ));
}

#[tokio::test]
async fn refunds_a_charge_once() {
    let (base, fake) = spawn_fake().await;
    let p = provider(&base);
    let charge = p.charge(&request("tok_visa", "r1")).await.unwrap();
    p.refund(&charge.id, None, "refund-1").await.unwrap();
    // Retried with the same key, and refunded again under another key: no second refund.
    p.refund(&charge.id, None, "refund-1").await.unwrap();
    p.refund(&charge.id, None, "refund-2").await.unwrap();
    assert_eq!(*fake.refunds.lock().unwrap(), vec![charge.id]);
}
