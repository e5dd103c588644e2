//! `/api/passes` and `/api/checkin`: a buyer's QR passes, a seller's gate devices, and
//! what the devices send (online redeems, offline batches) and read (the changes feed).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// The version prefix of a pass code: `T1.<payload>.<signature>`.
pub const CODE_PREFIX: &str = "T1";
/// Longest code accepted, in characters (a real one is about 150).
pub const MAX_CODE_CHARS: usize = 512;
/// A scan's nonce: 1 to this many characters.
pub const MAX_NONCE_CHARS: usize = 64;
/// Scans in one offline batch, at most.
pub const MAX_BATCH: usize = 1000;
/// Listings one device may scan, at most.
pub const MAX_DEVICE_TICKETS: usize = 50;
/// A device's name: 1 to this many characters.
pub const MAX_DEVICE_NAME_CHARS: usize = 100;
/// The longest long poll of `GET /api/checkin/changes`, in seconds.
pub const MAX_WAIT_SECONDS: u64 = 30;
/// Changes in one answer of the feed, at most.
pub const CHANGES_PAGE: i64 = 500;

/// Where a pass stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum PassStatus {
    Valid,
    /// Its order was refunded or cancelled: no code of it admits.
    Revoked,
    CheckedIn,
}

impl PassStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PassStatus::Valid => "valid",
            PassStatus::Revoked => "revoked",
            PassStatus::CheckedIn => "checked-in",
        }
    }
}

/// One unit of a paid order, with the code a gate scans.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PassBody {
    pub id: String,
    pub order_id: String,
    pub ticket_id: String,
    /// 1-based unit of the order.
    pub unit: i64,
    /// `T1.<base64url payload>.<base64url Ed25519 signature>`; the payload is
    /// `{"p": passId, "t": ticketId, "e": epoch}`. Only the newest epoch's code admits.
    pub code: String,
    pub status: PassStatus,
    /// ISO-8601 UTC: when the scan that admitted it was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checked_in_at: Option<String>,
}

/// `GET /api/checkin/key`: what a gate verifies codes with, offline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyBody {
    /// `Ed25519`.
    pub alg: String,
    /// The 32-byte public key, base64url without padding.
    pub public_key: String,
    /// What is signed: the ASCII text `T1.<payload>` of the code.
    pub signed: String,
}

/// `POST /api/checkin/devices` body.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateDevice {
    /// 1 to 100 characters.
    #[schema(value_type = String, required = true)]
    pub name: Option<Value>,
    /// The listings it scans (1 to 50), all the caller's.
    #[schema(value_type = Vec<String>, required = true)]
    pub ticket_ids: Option<Value>,
}

impl CreateDevice {
    pub fn new(name: &str, ticket_ids: &[&str]) -> CreateDevice {
        CreateDevice {
            name: Some(Value::String(name.to_owned())),
            ticket_ids: Some(Value::Array(
                ticket_ids
                    .iter()
                    .map(|t| Value::String((*t).to_owned()))
                    .collect(),
            )),
        }
    }
}

/// A gate device. `token` (sent as `Authorization: Device <token>`) is shown once, in
/// the answer to its creation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeviceBody {
    pub id: String,
    pub name: String,
    pub ticket_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// ISO-8601 UTC.
    pub created_at: String,
}

/// What a scan came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ScanResult {
    /// Admit: this scan is the pass's check-in.
    Ok,
    /// Refuse: the pass was checked in already (`checkedInAt`, `firstDevice`).
    AlreadyCheckedIn,
    /// Refuse: a newer code replaced this one, or the order was refunded.
    Revoked,
    /// Refuse: the signature does not verify, or no such pass.
    Invalid,
    /// Refuse: a pass of a listing this device does not scan.
    NotForThisDevice,
}

impl ScanResult {
    pub fn as_str(self) -> &'static str {
        match self {
            ScanResult::Ok => "ok",
            ScanResult::AlreadyCheckedIn => "already-checked-in",
            ScanResult::Revoked => "revoked",
            ScanResult::Invalid => "invalid",
            ScanResult::NotForThisDevice => "not-for-this-device",
        }
    }

    /// Did the scan show a code that admits (whether first or not)?
    pub fn admits(self) -> bool {
        matches!(self, ScanResult::Ok | ScanResult::AlreadyCheckedIn)
    }
}

/// `POST /api/checkin/redeem` body.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct Redeem {
    /// The scanned code.
    #[schema(value_type = String, required = true)]
    pub code: Option<Value>,
    /// The device's id of this scan (1 to 64 characters): the same nonce sent again gets
    /// the first answer again.
    #[schema(value_type = String, required = true)]
    pub nonce: Option<Value>,
}

impl Redeem {
    pub fn new(code: &str, nonce: &str) -> Redeem {
        Redeem {
            code: Some(Value::String(code.to_owned())),
            nonce: Some(Value::String(nonce.to_owned())),
        }
    }
}

/// The answer to a redeem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RedeemBody {
    pub result: ScanResult,
    /// Absent when the code names no pass (`invalid`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pass_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<i64>,
    /// ISO-8601 UTC: the check-in's time (this scan's when `ok`, the first one's when
    /// `already-checked-in`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checked_in_at: Option<String>,
    /// The device that checked the pass in, when `already-checked-in`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_device: Option<String>,
}

/// One scan of an offline batch.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OfflineScan {
    #[schema(value_type = String, required = true)]
    pub code: Option<Value>,
    #[schema(value_type = String, required = true)]
    pub nonce: Option<Value>,
    /// ISO-8601 UTC: when the device scanned it.
    #[schema(value_type = String, required = true)]
    pub scanned_at: Option<Value>,
}

impl OfflineScan {
    pub fn new(code: &str, nonce: &str, scanned_at: &str) -> OfflineScan {
        OfflineScan {
            code: Some(Value::String(code.to_owned())),
            nonce: Some(Value::String(nonce.to_owned())),
            scanned_at: Some(Value::String(scanned_at.to_owned())),
        }
    }
}

/// `POST /api/checkin/batch` body.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct Batch {
    /// 1 to 1,000 scans.
    #[schema(value_type = Vec<OfflineScan>, required = true)]
    pub scans: Option<Value>,
}

/// The scan a pass's check-in is, named in a conflict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConflictWith {
    /// The device of the scan that checked the pass in.
    pub device: String,
    /// ISO-8601 UTC.
    pub scanned_at: String,
}

/// The answer to one scan of a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BatchResult {
    pub nonce: String,
    pub result: ScanResult,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checked_in_at: Option<String>,
    /// Another scan of the same pass is its check-in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conflict: Option<ConflictWith>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BatchBody {
    /// One per scan, in the order sent.
    pub results: Vec<BatchResult>,
}

/// A scan that showed an admitting code of a pass checked in by another scan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConflictBody {
    pub pass_id: String,
    pub device: String,
    pub nonce: String,
    /// ISO-8601 UTC.
    pub scanned_at: String,
    /// The pass's check-in.
    pub checked_in: ConflictWith,
}

/// What changed for a device's listings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ChangeKind {
    /// Codes of the pass up to `epoch` admit no more.
    Revoked,
    /// The pass was checked in (with a code of `epoch`).
    CheckedIn,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Revoked => "revoked",
            ChangeKind::CheckedIn => "checked-in",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    pub kind: ChangeKind,
    pub pass_id: String,
    pub epoch: i64,
    /// ISO-8601 UTC.
    pub at: String,
}

/// `GET /api/checkin/changes`: changes after `cursor`, oldest first, and the cursor to
/// ask from next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ChangesBody {
    pub changes: Vec<Change>,
    pub cursor: String,
}
