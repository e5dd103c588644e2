//! `ticketing events`: follow and feed the event bus, JetStream or the embedded log.

use std::time::Duration;

use anyhow::Context;
use async_nats::jetstream::consumer::{pull, DeliverPolicy};
use futures::StreamExt;
use ticketing_bus::{Envelope, EventBus, InProcessBus, NatsBus};
use ticketing_contracts::events::Subject;
use ticketing_contracts::time::format_millis;

use crate::config::{EventsCommand, ServeArgs};

pub async fn run(args: &ServeArgs, command: EventsCommand) -> anyhow::Result<()> {
    match command {
        EventsCommand::Tail { subject, all } => {
            let subjects = subject
                .iter()
                .map(|name| parse_subject(name))
                .collect::<anyhow::Result<Vec<_>>>()?;
            match &args.nats_url {
                Some(url) => {
                    tail_nats(
                        &NatsBus::connect(url, &args.nats_prefix).await?,
                        &subjects,
                        all,
                    )
                    .await
                }
                None => tail_log(&open_log(args).await?, &subjects, all).await,
            }
        }
        EventsCommand::Publish { subject, json } => {
            let subject = parse_subject(&subject)?;
            let payload: serde_json::Value =
                serde_json::from_str(&json).context("the payload is not JSON")?;
            let event = Envelope::raw(subject, serde_json::to_vec(&payload)?);
            match &args.nats_url {
                Some(url) => {
                    NatsBus::connect(url, &args.nats_prefix)
                        .await?
                        .publish(&event)
                        .await?
                }
                // The serving process picks it up on its next poll of the log.
                None => open_log(args).await?.publish(&event).await?,
            }
            println!("published {} on {}", event.id, subject);
            Ok(())
        }
    }
}

fn parse_subject(name: &str) -> anyhow::Result<Subject> {
    Subject::parse(name).with_context(|| {
        let known: Vec<_> = Subject::ALL.iter().map(|s| s.as_str()).collect();
        format!("unknown subject {name:?} (one of {})", known.join(", "))
    })
}

async fn open_log(args: &ServeArgs) -> anyhow::Result<InProcessBus> {
    InProcessBus::open(&args.data_dir.join("bus.db")).await
}

/// Follow the embedded log: it is another process's SQLite file, so poll it.
async fn tail_log(bus: &InProcessBus, subjects: &[Subject], all: bool) -> anyhow::Result<()> {
    eprintln!("following {}", bus.path().display());
    let mut after = if all { 0 } else { bus.last_seq().await? };
    loop {
        let batch = bus.read_log(after, None, 500).await?;
        for logged in &batch {
            after = logged.seq;
            if subjects.is_empty() || subjects.contains(&logged.event.subject) {
                let mut headers = vec![
                    ("seq".to_owned(), logged.seq.to_string()),
                    (
                        "published-at".to_owned(),
                        format_millis(logged.published_at),
                    ),
                ];
                let event = &logged.event;
                headers.push(("id".to_owned(), event.id.clone()));
                headers.extend(
                    event
                        .traceparent
                        .clone()
                        .map(|v| ("traceparent".to_owned(), v)),
                );
                headers.extend(
                    event
                        .tracestate
                        .clone()
                        .map(|v| ("tracestate".to_owned(), v)),
                );
                headers.push(("produced-at".to_owned(), format_millis(event.produced_at)));
                print_event(event.subject.as_str(), &event.payload, headers);
            }
        }
        if batch.is_empty() {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => return Ok(()),
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
    }
}

/// Follow the stream with an ordered (ephemeral) consumer: dead letters included.
async fn tail_nats(bus: &NatsBus, subjects: &[Subject], all: bool) -> anyhow::Result<()> {
    let js = async_nats::jetstream::new(bus.client().clone());
    let stream = js.get_stream(bus.stream_name()).await?;
    let filter_subjects = subjects.iter().map(|s| bus.subject_name(*s)).collect();
    let consumer = stream
        .create_consumer(pull::OrderedConfig {
            filter_subjects,
            deliver_policy: if all {
                DeliverPolicy::All
            } else {
                DeliverPolicy::New
            },
            ..Default::default()
        })
        .await?;
    eprintln!("following stream {}", bus.stream_name());
    let mut messages = consumer.messages().await?;
    loop {
        let message = tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            message = messages.next() => message,
        };
        let Some(message) = message else {
            return Ok(());
        };
        let message = message.map_err(|e| anyhow::anyhow!(e))?;
        let subject = message.subject.to_string();
        let mut headers = Vec::new();
        if let Ok(info) = message.info() {
            headers.push(("stream-seq".to_owned(), info.stream_sequence.to_string()));
        }
        if let Some(map) = &message.headers {
            for (name, values) in map.iter() {
                for value in values {
                    headers.push((name.to_string(), value.to_string()));
                }
            }
        }
        print_event(&subject, &message.payload, headers);
    }
}

fn print_event(subject: &str, payload: &[u8], headers: Vec<(String, String)>) {
    println!("── {subject}");
    for (name, value) in headers {
        println!("   {name}: {value}");
    }
    let body = serde_json::from_slice::<serde_json::Value>(payload)
        .and_then(|v| serde_json::to_string_pretty(&v))
        .unwrap_or_else(|_| String::from_utf8_lossy(payload).into_owned());
    for line in body.lines() {
        println!("   {line}");
    }
}
