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

/// Longest e-mail address accepted.
pub const MAX_EMAIL_LEN: usize = 254;
/// Shortest new password, in characters.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Longest password, in characters.
pub const MAX_PASSWORD_CHARS: usize = 128;

/// Sign-up and sign-in body (the document describes it as `SignIn`; sign-up's stricter
/// password rule is `SignUp`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[schema(as = SignIn)]
pub struct Credentials {
    /// An e-mail address (surrounding white space is ignored).
    #[schema(value_type = String, required = true, format = Email, max_length = 254, example = "buyer@example.com")]
    pub email: Option<Value>,
    /// Any password up to 128 characters.
    #[schema(value_type = String, required = true, min_length = 1, max_length = 128, example = "correct horse battery")]
    pub password: Option<Value>,
}

/// The sign-up body as the document describes it; the server reads it as
/// [`Credentials`].
#[derive(Debug, Clone, ToSchema)]
#[schema(as = SignUp)]
pub struct SignUpSchema {
    /// An e-mail address (surrounding white space is ignored); compared
    /// case-insensitively with those in use.
    #[schema(format = Email, max_length = 254, example = "buyer@example.com")]
    pub email: String,
    /// 8 to 128 characters, kept exactly as given.
    #[schema(min_length = 8, max_length = 128, example = "correct horse battery")]
    pub password: String,
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

/// `PUT /api/users/password`: the password now, and the one to replace it with. Other
/// sessions of the account end; the caller gets a new one.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChangePassword {
    /// The account's password now.
    #[schema(value_type = String, required = true, min_length = 1, max_length = 128)]
    pub current_password: Option<Value>,
    /// 8 to 128 characters, kept exactly as given.
    #[schema(value_type = String, required = true, min_length = 8, max_length = 128)]
    pub new_password: Option<Value>,
}

impl ChangePassword {
    pub fn new(current: impl Into<String>, new: impl Into<String>) -> ChangePassword {
        ChangePassword {
            current_password: Some(Value::String(current.into())),
            new_password: Some(Value::String(new.into())),
        }
    }
}

/// `POST /api/users/signout`'s optional body.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct SignOut {
    /// End every session of the account, not only this one.
    #[serde(default)]
    pub everywhere: bool,
}
