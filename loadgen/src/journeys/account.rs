//! Account: sign up, sign out, sign in again, ask who is signed in.

use goose::prelude::*;
use ticketing_contracts::api::users::{Credentials, CurrentUserBody, UserBody};

use super::journey;
use super::steps::{fresh_email, get, post, remember, sign_up_as, wrong, Reply, NONE, PASSWORD};

journey!(sign_up_and_in, "account", sign_up_and_in_steps);

async fn sign_up_and_in_steps(user: &mut GooseUser) -> TransactionResult {
    let email = fresh_email();
    let credentials = Credentials::new(email.clone(), PASSWORD);
    sign_up_as(user, &credentials).await?;
    let _: Reply<serde_json::Value> = post(user, "/api/users/signout", NONE).await?;
    let signed_in: Reply<UserBody> = post(user, "/api/users/signin", Some(&credentials)).await?;
    let mut me: Reply<CurrentUserBody> = get(user, "/api/users/currentuser").await?;
    let current = me
        .body
        .as_ref()
        .and_then(|m| m.current_user.as_ref())
        .map(|u| u.email.clone());
    if current.as_deref() != Some(email.as_str()) {
        let what = format!("signed in as {email}, current user {current:?}");
        return Err(wrong(user, &mut me, what));
    }
    remember(user, signed_in);
    Ok(())
}
