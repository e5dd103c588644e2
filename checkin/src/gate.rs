//! What a scan comes to, online (`redeem`) or uploaded later (`batch`).
//!
//! - `scans`: `UNIQUE(device_id, nonce)`. A scan first claims its nonce; a nonce claimed
//!   before gets the answer stored with it, word for word.
//! - `checkins`: `UNIQUE(pass_id)`. Online, the first insert wins (`ON CONFLICT DO
//!   NOTHING`, then the winner is read). Offline, an earlier scan (`scanned_at`, then
//!   device, then nonce) replaces the row in the same statement, so the final row is the
//!   earliest scan whatever the order batches arrive in; every other admitting scan is a
//!   conflict naming it ([`conflicts`]).
//!
//! The changes feed's rows (and so, on PostgreSQL, its writers' lock: see `changes`) are
//! written last in a gate transaction, once every row it locks is locked.

use serde::{Deserialize, Serialize};
use ticketing_bus::{outbox, Envelope};
use ticketing_contracts::api::checkin::{
    BatchResult, ChangeKind, ConflictBody, ConflictWith, RedeemBody, ScanResult,
};
use ticketing_contracts::events::CheckinRecorded;
use ticketing_contracts::time::{format_millis, now_millis};
use ticketing_contracts::{PassId, TicketId};
use ticketing_store::{query, Store, Tx};

use crate::changes;
use crate::code::{Payload, Refused};
use crate::devices::Device;
use crate::passes;

/// What a scan was answered, as stored with its nonce.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Answer {
    pub result: ScanResult,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pass_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checked_in_at: Option<String>,
    /// The check-in's device and scan time, when another scan is the check-in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first: Option<ConflictWith>,
}

impl Answer {
    fn bare(result: ScanResult) -> Answer {
        Answer {
            result,
            pass_id: None,
            unit: None,
            checked_in_at: None,
            first: None,
        }
    }

    pub fn redeem_body(self) -> RedeemBody {
        RedeemBody {
            result: self.result,
            pass_id: self.pass_id,
            unit: self.unit,
            checked_in_at: self.checked_in_at,
            first_device: self.first.map(|f| f.device),
        }
    }

    pub fn batch_result(self, nonce: String) -> BatchResult {
        BatchResult {
            nonce,
            result: self.result,
            checked_in_at: self.checked_in_at,
            conflict: self.first,
        }
    }
}

/// One scan to decide.
pub struct Scan<'a> {
    /// The code's payload, or why it is not one of ours.
    pub payload: Result<Payload, Refused>,
    pub nonce: &'a str,
    /// When it was made: the server's clock online, the device's offline.
    pub scanned_at: i64,
}

/// Online or uploaded later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Online,
    Offline,
}

/// Why a gate write failed.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    /// The nonce is being answered by a request still running.
    #[error("a scan with this nonce is in progress")]
    InProgress,
    #[error(transparent)]
    Db(#[from] ticketing_store::Error),
}

/// A check-in made in a gate transaction, for the changes feed. The feed's rows are
/// written last, just before the commit: on PostgreSQL its lock is then held by a
/// transaction that waits for nothing else, so gate writes never wait in a cycle.
struct Admitted {
    ticket: TicketId,
    pass: PassId,
    epoch: i64,
}

async fn record_changes(tx: &mut Tx, admitted: &[Admitted]) -> Result<(), ticketing_store::Error> {
    for a in admitted {
        changes::record(tx, &a.ticket, ChangeKind::CheckedIn, &a.pass, a.epoch).await?;
    }
    Ok(())
}

/// A scan made online now by `device`.
pub async fn redeem(store: &Store, device: &Device, scan: Scan<'_>) -> Result<Answer, GateError> {
    let mut tx = store.begin().await?;
    let mut admitted = Vec::new();
    let answer = match decide(&mut tx, device, &scan, Mode::Online, &mut admitted).await? {
        Some(answer) => answer,
        None => {
            tx.rollback().await?;
            return replay(store, device, scan.nonce).await;
        }
    };
    record_changes(&mut tx, &admitted).await?;
    tx.commit().await?;
    Ok(answer)
}

/// Scans made offline by `device`, answered in the order given. They are decided
/// earliest first, so that within a batch no scan is answered `ok` and then displaced.
pub async fn batch(
    store: &Store,
    device: &Device,
    scans: Vec<Scan<'_>>,
) -> Result<Vec<Answer>, GateError> {
    let mut order: Vec<usize> = (0..scans.len()).collect();
    order.sort_by(|a, b| {
        (scans[*a].scanned_at, scans[*a].nonce).cmp(&(scans[*b].scanned_at, scans[*b].nonce))
    });
    let mut answers: Vec<Option<Answer>> = vec![None; scans.len()];
    let mut replays = Vec::new();
    let mut tx = store.begin().await?;
    let mut admitted = Vec::new();
    for i in order {
        match decide(&mut tx, device, &scans[i], Mode::Offline, &mut admitted).await? {
            Some(answer) => answers[i] = Some(answer),
            None => replays.push(i),
        }
    }
    record_changes(&mut tx, &admitted).await?;
    tx.commit().await?;
    for i in replays {
        // Sent before (a retried upload), or twice in this batch.
        answers[i] = Some(replay(store, device, scans[i].nonce).await?);
    }
    Ok(answers
        .into_iter()
        .map(|a| a.expect("every scan answered"))
        .collect())
}

/// The stored answer of `device`'s scan `nonce`.
async fn replay(store: &Store, device: &Device, nonce: &str) -> Result<Answer, GateError> {
    let answer: Option<String> =
        query("SELECT answer FROM scans WHERE device_id = $1 AND nonce = $2")
            .bind(&device.id)
            .bind(nonce)
            .fetch_optional(store.writer())
            .await?
            .map(|row| row.get("answer"))
            .transpose()?;
    answer
        .filter(|a| !a.is_empty())
        .and_then(|a| serde_json::from_str(&a).ok())
        .ok_or(GateError::InProgress)
}

/// Decide `scan` in `tx`: `None` when its nonce was claimed before (replay it).
async fn decide(
    tx: &mut Tx,
    device: &Device,
    scan: &Scan<'_>,
    mode: Mode,
    admitted: &mut Vec<Admitted>,
) -> Result<Option<Answer>, ticketing_store::Error> {
    let claimed = query(
        "INSERT INTO scans (device_id, nonce, scanned_at, result, admits, answer) \
         VALUES ($1, $2, $3, '', 0, '') ON CONFLICT (device_id, nonce) DO NOTHING",
    )
    .bind(&device.id)
    .bind(scan.nonce)
    .bind(scan.scanned_at)
    .execute(&mut *tx)
    .await?;
    if claimed == 0 {
        return Ok(None);
    }
    let (answer, pass) = judge(tx, device, scan, mode, admitted).await?;
    query(
        "UPDATE scans SET pass_id = $3, ticket_id = $4, result = $5, admits = $6, answer = $7 \
         WHERE device_id = $1 AND nonce = $2",
    )
    .bind(&device.id)
    .bind(scan.nonce)
    .bind(pass.as_ref().map(|(p, _)| p.as_str().to_owned()))
    .bind(pass.as_ref().map(|(_, t)| t.as_str().to_owned()))
    .bind(answer.result.as_str())
    .bind(i64::from(answer.result.admits()))
    .bind(serde_json::to_string(&answer).expect("an answer serialises"))
    .execute(&mut *tx)
    .await?;
    Ok(Some(answer))
}

/// The answer to `scan`, and the pass (and its listing) it named.
async fn judge(
    tx: &mut Tx,
    device: &Device,
    scan: &Scan<'_>,
    mode: Mode,
    admitted: &mut Vec<Admitted>,
) -> Result<(Answer, Option<(PassId, TicketId)>), ticketing_store::Error> {
    let Ok(payload) = &scan.payload else {
        return Ok((Answer::bare(ScanResult::Invalid), None));
    };
    let id = PassId::from(payload.p.as_str());
    let pass = match passes::find_in(tx, &id).await? {
        Some(pass) if pass.ticket_id == payload.t.as_str() && payload.e <= pass.epoch => pass,
        _ => return Ok((Answer::bare(ScanResult::Invalid), None)),
    };
    let named = Some((pass.id.clone(), pass.ticket_id.clone()));
    let of_pass = |result| Answer {
        result,
        pass_id: Some(pass.id.to_string()),
        unit: Some(pass.unit),
        checked_in_at: None,
        first: None,
    };
    if !device.scans(&pass.ticket_id) {
        // Nothing more about a pass of a listing the device does not scan.
        return Ok((Answer::bare(ScanResult::NotForThisDevice), None));
    }
    if pass.revoked || payload.e < pass.epoch {
        return Ok((of_pass(ScanResult::Revoked), named));
    }
    let recorded = record(tx, device, scan, &pass, payload.e, mode).await?;
    if recorded {
        outbox::enqueue(
            tx,
            &Envelope::new(&CheckinRecorded {
                pass_id: pass.id.clone(),
                ticket_id: pass.ticket_id.clone(),
                device_id: device.id.clone(),
                checked_in_at: format_millis(scan.scanned_at),
            }),
        )
        .await?;
        admitted.push(Admitted {
            ticket: pass.ticket_id.clone(),
            pass: pass.id.clone(),
            epoch: payload.e,
        });
        metrics::counter!("checkin_admitted_total").increment(1);
        let mut answer = of_pass(ScanResult::Ok);
        answer.checked_in_at = Some(format_millis(scan.scanned_at));
        return Ok((answer, named));
    }
    let row = query("SELECT device_id, scanned_at FROM checkins WHERE pass_id = $1")
        .bind(&pass.id)
        .fetch_one(&mut *tx)
        .await?;
    let first = ConflictWith {
        device: row.get("device_id")?,
        scanned_at: format_millis(row.get("scanned_at")?),
    };
    let mut answer = of_pass(ScanResult::AlreadyCheckedIn);
    answer.checked_in_at = Some(first.scanned_at.clone());
    answer.first = Some(first);
    Ok((answer, named))
}

/// Make `scan` the check-in of `pass` if it is (online: the first; offline: the
/// earliest). `true` when it is now.
async fn record(
    tx: &mut Tx,
    device: &Device,
    scan: &Scan<'_>,
    pass: &passes::Pass,
    epoch: i64,
    mode: Mode,
) -> Result<bool, ticketing_store::Error> {
    const INSERT: &str = "INSERT INTO checkins \
        (pass_id, ticket_id, device_id, nonce, epoch, scanned_at, recorded_at) \
        VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (pass_id) ";
    let sql = match mode {
        Mode::Online => format!("{INSERT} DO NOTHING"),
        Mode::Offline => format!(
            "{INSERT} DO UPDATE SET device_id = excluded.device_id, nonce = excluded.nonce, \
             epoch = excluded.epoch, scanned_at = excluded.scanned_at, \
             recorded_at = excluded.recorded_at \
             WHERE (excluded.scanned_at, excluded.device_id, excluded.nonce) \
                 < (checkins.scanned_at, checkins.device_id, checkins.nonce)"
        ),
    };
    let changed = query(&sql)
        .bind(&pass.id)
        .bind(&pass.ticket_id)
        .bind(&device.id)
        .bind(scan.nonce)
        .bind(epoch)
        .bind(scan.scanned_at)
        .bind(now_millis())
        .execute(&mut *tx)
        .await?;
    Ok(changed > 0)
}

/// Every admitting scan of listing `ticket`'s passes that is not its pass's check-in,
/// with the check-in it lost to: by pass, then scan time, device, nonce. It depends only
/// on which scans arrived, not on their order.
pub async fn conflicts(
    store: &Store,
    ticket: &TicketId,
) -> Result<Vec<ConflictBody>, ticketing_store::Error> {
    let rows = query(
        "SELECT s.pass_id, s.device_id, s.nonce, s.scanned_at, \
                c.device_id AS first_device, c.scanned_at AS first_at \
         FROM scans s JOIN checkins c ON c.pass_id = s.pass_id \
         WHERE s.ticket_id = $1 AND s.admits = 1 \
           AND NOT (s.device_id = c.device_id AND s.nonce = c.nonce) \
         ORDER BY s.pass_id, s.scanned_at, s.device_id, s.nonce",
    )
    .bind(ticket)
    .fetch_all(store.reader())
    .await?;
    rows.iter()
        .map(|row| {
            Ok(ConflictBody {
                pass_id: row.get("pass_id")?,
                device: row.get("device_id")?,
                nonce: row.get("nonce")?,
                scanned_at: format_millis(row.get("scanned_at")?),
                checked_in: ConflictWith {
                    device: row.get("first_device")?,
                    scanned_at: format_millis(row.get("first_at")?),
                },
            })
        })
        .collect()
}
