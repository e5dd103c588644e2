//! A seller's endpoints: where their events go, which subjects, and the secret the
//! deliveries are signed with.

use std::net::IpAddr;

use ticketing_contracts::api::webhooks::SUBJECTS;
use ticketing_contracts::events::Subject;
use ticketing_contracts::time::now_millis;
use ticketing_contracts::UserId;
use ticketing_kit::error::ApiError;
use ticketing_store::{query, On, Store, Tx};

#[derive(Debug, Clone)]
pub struct Endpoint {
    pub id: String,
    pub user_id: UserId,
    pub url: String,
    pub events: Vec<Subject>,
    pub secret: String,
    pub created_at: i64,
    pub disabled_at: Option<i64>,
}

ticketing_kit::from_row!(|row| Endpoint {
    id,
    user_id,
    url,
    events: stored_events(&row.get::<String>("events")?),
    secret,
    created_at,
    disabled_at,
});

fn stored_events(json: &str) -> Vec<Subject> {
    serde_json::from_str::<Vec<String>>(json)
        .unwrap_or_default()
        .iter()
        .filter_map(|s| Subject::parse(s))
        .collect()
}

fn events_json(events: &[Subject]) -> String {
    serde_json::to_string(&events.iter().map(|s| s.as_str()).collect::<Vec<_>>())
        .expect("strings serialize")
}

const COLUMNS: &str = "id, user_id, url, events, secret, created_at, disabled_at";

/// A URL an endpoint may have: `http(s)`, a host, at most `max` characters, and (unless
/// `allow_private`) a host that is not a loopback, private, link-local or otherwise
/// internal address, nor `localhost`.
pub fn parse_url(text: &str, allow_private: bool, max: usize) -> Result<String, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("Url is required".into());
    }
    if text.chars().count() > max {
        return Err(format!("Url must be at most {max} characters"));
    }
    let url =
        url::Url::parse(text).map_err(|_| "Url must be an absolute http(s) URL".to_owned())?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("Url must be an http(s) URL".into());
    }
    let Some(host) = url.host() else {
        return Err("Url must name a host".into());
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err("Url must not carry credentials".into());
    }
    if !allow_private {
        let internal = match host {
            url::Host::Domain(name) => {
                let name = name.trim_end_matches('.').to_ascii_lowercase();
                name == "localhost" || name.ends_with(".localhost") || name.ends_with(".local")
            }
            url::Host::Ipv4(ip) => is_internal(IpAddr::V4(ip)),
            url::Host::Ipv6(ip) => is_internal(IpAddr::V6(ip)),
        };
        if internal {
            return Err("Url must not point to a private or loopback address".into());
        }
    }
    Ok(url.to_string())
}

/// Refuse a URL whose host name resolves to internal addresses only (a literal
/// address was judged by [`parse_url`]). A name that does not resolve now passes: the
/// delivery client's resolver judges it again at every connection.
pub async fn refuse_internal_name(url: &str) -> Result<(), ApiError> {
    let parsed = url::Url::parse(url).map_err(|_| ApiError::field("url", "Url is invalid"))?;
    if let Some(url::Host::Domain(name)) = parsed.host() {
        if crate::public_dns::lookup(name).await == crate::public_dns::Lookup::InternalOnly {
            return Err(ApiError::field(
                "url",
                "Url must not point to a private or loopback address",
            ));
        }
    }
    Ok(())
}

/// Addresses a delivery must never reach from the service's network: loopback,
/// private, link-local (cloud metadata), shared, unspecified, multicast, documentation.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
                || o[0] >= 240
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_internal(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
        }
    }
}

/// The subjects of a request, each known, at least one, duplicates dropped.
pub fn parse_events(raw: &serde_json::Value) -> Result<Vec<Subject>, String> {
    let Some(items) = raw.as_array() else {
        return Err("Events must be an array of subjects".into());
    };
    if items.is_empty() {
        return Err("Events must name at least one subject".into());
    }
    let mut subjects = Vec::new();
    for item in items {
        let name = item
            .as_str()
            .ok_or_else(|| "Events must be an array of subjects".to_owned())?;
        let subject = Subject::parse(name)
            .filter(|s| SUBJECTS.contains(s))
            .ok_or_else(|| {
                let known: Vec<&str> = SUBJECTS.iter().map(|s| s.as_str()).collect();
                format!("Unknown subject {name:?}; known: {}", known.join(", "))
            })?;
        if !subjects.contains(&subject) {
            subjects.push(subject);
        }
    }
    Ok(subjects)
}

pub fn new_secret() -> String {
    ticketing_contracts::webhook::secret_from_bytes(&rand::random::<[u8; 24]>())
}

pub async fn create(
    store: &Store,
    user: &UserId,
    url: String,
    events: Vec<Subject>,
) -> Result<Endpoint, ticketing_store::Error> {
    let endpoint = Endpoint {
        id: uuid::Uuid::now_v7().to_string(),
        user_id: user.clone(),
        url,
        events,
        secret: new_secret(),
        created_at: now_millis(),
        disabled_at: None,
    };
    query(
        "INSERT INTO endpoints (id, user_id, url, events, secret, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&endpoint.id)
    .bind(&endpoint.user_id)
    .bind(&endpoint.url)
    .bind(events_json(&endpoint.events))
    .bind(&endpoint.secret)
    .bind(endpoint.created_at)
    .execute(store.writer())
    .await?;
    Ok(endpoint)
}

pub async fn list_for(
    store: &Store,
    user: &UserId,
) -> Result<Vec<Endpoint>, ticketing_store::Error> {
    query(&format!(
        "SELECT {COLUMNS} FROM endpoints WHERE user_id = $1 ORDER BY id"
    ))
    .bind(user)
    .fetch_all_as(store.reader())
    .await
}

/// The caller's endpoint `id`; None when there is none or it is another seller's.
pub async fn find_own<'a>(
    on: impl Into<On<'a>>,
    user: &UserId,
    id: &str,
) -> Result<Option<Endpoint>, ticketing_store::Error> {
    query(&format!(
        "SELECT {COLUMNS} FROM endpoints WHERE id = $1 AND user_id = $2"
    ))
    .bind(id)
    .bind(user)
    .fetch_optional_as(on)
    .await
}

/// The enabled endpoints of `user`, each with the subjects it takes.
pub async fn enabled(
    tx: &mut Tx,
    user: &UserId,
) -> Result<Vec<(String, Vec<Subject>)>, ticketing_store::Error> {
    let rows = query("SELECT id, events FROM endpoints WHERE user_id = $1 AND disabled_at IS NULL")
        .bind(user)
        .fetch_all(tx)
        .await?;
    rows.iter()
        .map(|row| Ok((row.get("id")?, stored_events(&row.get::<String>("events")?))))
        .collect()
}

/// Delete the caller's endpoint and its deliveries; false when there was none.
pub async fn delete(
    store: &Store,
    user: &UserId,
    id: &str,
) -> Result<bool, ticketing_store::Error> {
    let mut tx = store.begin().await?;
    let deleted = query("DELETE FROM endpoints WHERE id = $1 AND user_id = $2")
        .bind(id)
        .bind(user)
        .execute(&mut tx)
        .await?;
    if deleted == 0 {
        tx.rollback().await?;
        return Ok(false);
    }
    for table in ["delivery_queue", "deliveries"] {
        query(&format!("DELETE FROM {table} WHERE endpoint_id = $1"))
            .bind(id)
            .execute(&mut tx)
            .await?;
    }
    tx.commit().await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let ok = |u: &str| parse_url(u, false, 2048);
        assert!(ok("https://example.com/hook").is_ok());
        assert!(ok("http://93.184.216.34:8080/x").is_ok());
        assert!(ok("ftp://example.com").is_err());
        assert!(ok("example.com").is_err());
        assert!(ok("http://localhost:3000").is_err());
        assert!(ok("http://127.0.0.1/").is_err());
        assert!(ok("http://10.1.2.3/").is_err());
        assert!(ok("http://169.254.169.254/latest").is_err());
        assert!(ok("http://[::1]/").is_err());
        assert!(ok("http://[fd00::1]/").is_err());
        assert!(ok("http://[::ffff:127.0.0.1]/").is_err());
        assert!(ok(&format!("https://example.com/{}", "a".repeat(2048))).is_err());
        assert!(parse_url("http://127.0.0.1:9/", true, 2048).is_ok());
    }
}
