mod current_user;
mod signin;
mod signout;
mod signup;

use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(signup::signup))
        .routes(routes!(signin::signin))
        .routes(routes!(signout::signout))
        .routes(routes!(current_user::current_user))
}

/// A signed-in account, as sign-up and sign-in return it.
#[derive(Serialize, ToSchema)]
pub struct UserBody {
    pub id: String,
    pub email: String,
}

/// Sign-up and sign-in body.
#[derive(serde::Deserialize, ToSchema)]
pub struct Credentials {
    #[schema(value_type = String, example = "buyer@example.com")]
    pub email: Option<serde_json::Value>,
    #[schema(value_type = String, example = "correct horse battery")]
    pub password: Option<serde_json::Value>,
}
