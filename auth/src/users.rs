//! The `users` table.

use ticketing_contracts::time::now_millis;
use ticketing_contracts::UserId;
use ticketing_kit::ApiError;
use ticketing_store::{query, FromRow, OnUnique, Store, Tx};

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

pub async fn find_by_id(store: &Store, id: &UserId) -> Result<Option<User>, ApiError> {
    let row = query("SELECT id, email, password_hash FROM users WHERE id = $1")
        .bind(id)
        .fetch_optional(store.writer())
        .await?;
    Ok(row.as_ref().map(User::from_row).transpose()?)
}

/// Replace `user`'s password hash, in `tx`.
pub async fn set_password(
    tx: &mut Tx,
    user: &UserId,
    password_hash: &str,
) -> Result<(), ticketing_store::Error> {
    query("UPDATE users SET password_hash = $1 WHERE id = $2")
        .bind(password_hash)
        .bind(user)
        .execute(tx)
        .await?;
    Ok(())
}
