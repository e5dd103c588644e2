//! The `users` table.

use ticketing_contracts::time::now_millis;
use ticketing_contracts::UserId;
use ticketing_kit::ApiError;
use ticketing_store::{query, FromRow, OnUnique, Store};

use crate::domain::Email;

pub struct User {
    pub id: UserId,
    pub email: String,
    pub password_hash: String,
}

ticketing_kit::from_row!(|row| User {
    id,
    email,
    password_hash,
});

/// Insert a user; a taken e-mail (any case) is the contract's `Email in use`.
pub async fn insert(store: &Store, email: &Email, password_hash: &str) -> Result<User, ApiError> {
    let id = UserId::generate();
    query("INSERT INTO users (id, email, password_hash, created_at) VALUES ($1, $2, $3, $4)")
        .bind(&id)
        .bind(email.as_str())
        .bind(password_hash)
        .bind(now_millis())
        .execute(store.writer())
        .await
        .on_unique(|| ApiError::bad_request("Email in use"))?;
    Ok(User {
        id,
        email: email.as_str().to_owned(),
        password_hash: password_hash.to_owned(),
    })
}

pub async fn find_by_email(store: &Store, email: &Email) -> Result<Option<User>, ApiError> {
    let row = query("SELECT id, email, password_hash FROM users WHERE lower(email) = lower($1)")
        .bind(email.as_str())
        .fetch_optional(store.reader())
        .await?;
    Ok(row.as_ref().map(User::from_row).transpose()?)
}
