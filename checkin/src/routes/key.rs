use axum::extract::State;
use axum::Json;
use ticketing_contracts::api::checkin::KeyBody;

use crate::AppState;

/// The public key pass codes are signed with: gates verify codes offline with it.
#[utoipa::path(get, path = "/api/checkin/key", tag = "checkin", operation_id = "checkinKey",
    responses((status = 200, description = "The Ed25519 public key", body = KeyBody)))]
pub async fn key(State(state): State<AppState>) -> Json<KeyBody> {
    Json(KeyBody {
        alg: "Ed25519".to_owned(),
        public_key: state.signer.public_key(),
        signed: "the ASCII text `T1.<payload>` of the code".to_owned(),
    })
}
