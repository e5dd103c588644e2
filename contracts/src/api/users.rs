//! `/api/users`: sign-up, sign-in, sign-out, the current user.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// A signed-in account, as sign-up and sign-in return it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UserBody {
    pub id: String,
    pub email: String,
}

/// Sign-up and sign-in body.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct Credentials {
    #[schema(value_type = String, example = "buyer@example.com")]
    pub email: Option<Value>,
    #[schema(value_type = String, example = "correct horse battery")]
    pub password: Option<Value>,
}

impl Credentials {
    pub fn new(email: impl Into<String>, password: impl Into<String>) -> Credentials {
        Credentials {
            email: Some(Value::String(email.into())),
            password: Some(Value::String(password.into())),
        }
    }
}

/// The signed-in user as the token describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SessionUser {
    pub id: String,
    pub email: String,
    pub iat: i64,
}

/// `GET /api/users/currentuser`: `null` when nobody is signed in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CurrentUserBody {
    pub current_user: Option<SessionUser>,
}
