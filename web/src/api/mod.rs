//! The public HTTP API, as the pages use it: over HTTP to a gateway (`--target web`), or
//! in-process through the API's own router (`--target all`). Either way a request is the
//! same HTTP request the browser-side seed client would send, with the visitor's session
//! cookie, and the API's `Set-Cookie` headers come back to be relayed.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::Body;
use axum::Router;
use bytes::Bytes;
use http::header::{HeaderName, CONTENT_TYPE, COOKIE, SET_COOKIE};
use http::{HeaderValue, Method, Request, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use ticketing_contracts::api::checkin::{CreateDevice, DeviceBody, PassBody};

use ticketing_contracts::api::orders::{CancellationBody, CreateOrder, OrderBody};
use ticketing_contracts::api::payments::{CreatePayment, PaymentBody};
use ticketing_contracts::api::queue::QueueBody;
use ticketing_contracts::api::tickets::{TicketBody, TicketInput, NEXT_CURSOR_HEADER};
use ticketing_contracts::api::users::{
    ChangePassword, Credentials, CurrentUserBody, SessionUser, SignOut, UserBody,
};
use ticketing_contracts::api::waitlist::{JoinWaitlist, WaitlistEntryBody};
use ticketing_contracts::api::webhooks::{
    CreateWebhook, DeliveryBody, ReplayAccepted, ReplayWebhook, WebhookBody,
};
use ticketing_contracts::{ErrorBody, ErrorItem};
use tower::ServiceExt;
use tracing::Instrument;

use crate::trace::{route_of, CallContext, Propagation};

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The largest API answer read: a page of tickets is a few KiB.
const MAX_REPLY_BYTES: usize = 4 << 20;

/// Over HTTP a payment may take several Stripe attempts; nothing else comes close.
const HTTP_TIMEOUT: Duration = Duration::from_secs(90);

pub const SIGN_UP: &str = "/api/users/signup";
pub const SIGN_IN: &str = "/api/users/signin";
pub const CHANGE_PASSWORD: &str = "/api/users/password";

#[derive(Clone)]
pub struct ApiClient {
    transport: Arc<Transport>,
    tracing: Option<Arc<dyn Propagation>>,
}

enum Transport {
    Http {
        client: reqwest::Client,
        base: String,
    },
    /// Set once the API's router exists: it is built around the pages' router.
    InProcess(Arc<OnceLock<Router>>),
}

/// Hands the API's router to an in-process client once it has been composed.
pub struct InProcessSlot(Arc<OnceLock<Router>>);

impl InProcessSlot {
    pub fn set(self, api: Router) {
        let _ = self.0.set(api);
    }
}

#[derive(Debug, thiserror::Error)]
#[error("invalid API URL {0}")]
pub struct InvalidApiUrl(String);

/// Why the API did not give what a page asked for.
#[derive(Debug, thiserror::Error)]
pub enum ApiFailure {
    /// The API answered with an error status and the contract's error body.
    #[error("API refused with {status}")]
    Refused {
        status: StatusCode,
        errors: Vec<ErrorItem>,
    },
    /// No answer, or one that is not the contract's.
    #[error("API unavailable: {0}")]
    Unavailable(String),
}

impl ApiFailure {
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            ApiFailure::Refused { status, .. } => Some(*status),
            ApiFailure::Unavailable(_) => None,
        }
    }

    /// A 400's entries: validation errors and business-rule refusals, for the form.
    pub fn into_bad_request(self) -> Result<Vec<ErrorItem>, ApiFailure> {
        match self {
            ApiFailure::Refused { status, errors } if status == StatusCode::BAD_REQUEST => {
                Ok(errors)
            }
            other => Err(other),
        }
    }
}

/// A successful answer and the cookies the API set with it.
pub struct Reply<T> {
    pub body: T,
    pub set_cookies: Vec<HeaderValue>,
    /// `X-Next-Cursor` of a ticket page.
    pub next_cursor: Option<String>,
}

struct Raw {
    status: StatusCode,
    set_cookies: Vec<HeaderValue>,
    next_cursor: Option<String>,
    body: Bytes,
}

/// A page of available tickets.
pub struct TicketPage {
    pub tickets: Vec<TicketBody>,
    pub next_cursor: Option<String>,
}

impl ApiClient {
    /// The API at `base` (e.g. `http://gateway`), over HTTP.
    pub fn http(base: &str) -> Result<ApiClient, InvalidApiUrl> {
        let base = base.trim_end_matches('/').to_owned();
        let parsed = url::Url::parse(&base).map_err(|e| InvalidApiUrl(format!("{base}: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.path() != "/" {
            return Err(InvalidApiUrl(format!(
                "{base}: expected http(s)://host[:port], the gateway serving /api"
            )));
        }
        let client = reqwest::Client::builder()
            .timeout(HTTP_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| InvalidApiUrl(e.to_string()))?;
        Ok(ApiClient {
            transport: Arc::new(Transport::Http { client, base }),
            tracing: None,
        })
    }

    /// A client calling the API's router directly; the router is given later, through
    /// the slot, because it contains the pages.
    pub fn in_process() -> (ApiClient, InProcessSlot) {
        let cell = Arc::new(OnceLock::new());
        let client = ApiClient {
            transport: Arc::new(Transport::InProcess(cell.clone())),
            tracing: None,
        };
        (client, InProcessSlot(cell))
    }

    /// This client, its calls joining the page request's trace through `tracing`.
    pub fn traced(self, tracing: Option<Arc<dyn Propagation>>) -> ApiClient {
        ApiClient { tracing, ..self }
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        session: Option<&str>,
        json: Option<Vec<u8>>,
    ) -> Result<Raw, ApiFailure> {
        match &self.tracing {
            Some(tracing) => {
                let call = tracing.call(&method, &route_of(path));
                let span = call.span.clone();
                self.send_traced(method, path, session, json, Some(call))
                    .instrument(span)
                    .await
            }
            None => self.send_traced(method, path, session, json, None).await,
        }
    }

    async fn send_traced(
        &self,
        method: Method,
        path: &str,
        session: Option<&str>,
        json: Option<Vec<u8>>,
        call: Option<CallContext>,
    ) -> Result<Raw, ApiFailure> {
        let mut headers = http::HeaderMap::new();
        if let Some(cookie) = session.and_then(|c| HeaderValue::from_str(c).ok()) {
            headers.insert(COOKIE, cookie);
        }
        if let Some(call) = call {
            if let Ok(value) = HeaderValue::from_str(&call.traceparent) {
                headers.insert("traceparent", value);
            }
            if let Some(value) = call
                .tracestate
                .as_deref()
                .and_then(|s| HeaderValue::from_str(s).ok())
            {
                headers.insert("tracestate", value);
            }
        }
        let visitor = crate::forwarded::visitor();
        match &*self.transport {
            Transport::Http { client, base } => {
                let mut request = client
                    .request(method, format!("{base}{path}"))
                    .headers(headers);
                if let Some(chain) = visitor.forwarded_for_http() {
                    request = request.header(X_FORWARDED_FOR, chain);
                }
                if let Some(body) = json {
                    request = request.header(CONTENT_TYPE, "application/json").body(body);
                }
                let response = request
                    .send()
                    .await
                    .map_err(|e| ApiFailure::Unavailable(e.to_string()))?;
                let status = response.status();
                let headers = response.headers().clone();
                let body = response
                    .bytes()
                    .await
                    .map_err(|e| ApiFailure::Unavailable(e.to_string()))?;
                Ok(raw(status, &headers, body))
            }
            Transport::InProcess(cell) => {
                let router = cell
                    .get()
                    .ok_or_else(|| ApiFailure::Unavailable("API not mounted".into()))?
                    .clone();
                let mut request = Request::builder().method(method).uri(path);
                if let Some(map) = request.headers_mut() {
                    map.extend(headers);
                }
                if let Some(chain) = visitor.forwarded_for_in_process() {
                    request = request.header(X_FORWARDED_FOR, chain);
                }
                if let Some(peer) = visitor.peer {
                    request = request.extension(axum::extract::ConnectInfo(peer));
                }
                let body = match json {
                    Some(body) => {
                        request = request.header(CONTENT_TYPE, "application/json");
                        Body::from(body)
                    }
                    None => Body::empty(),
                };
                let request = request
                    .body(body)
                    .map_err(|e| ApiFailure::Unavailable(e.to_string()))?;
                let response = router
                    .oneshot(request)
                    .await
                    .unwrap_or_else(|never| match never {});
                let (parts, body) = response.into_parts();
                let body = axum::body::to_bytes(body, MAX_REPLY_BYTES)
                    .await
                    .map_err(|e| ApiFailure::Unavailable(e.to_string()))?;
                Ok(raw(parts.status, &parts.headers, body))
            }
        }
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        session: Option<&str>,
        body: Option<&impl Serialize>,
    ) -> Result<Reply<T>, ApiFailure> {
        let json = body
            .map(serde_json::to_vec)
            .transpose()
            .map_err(|e| ApiFailure::Unavailable(e.to_string()))?;
        let raw = self.send(method, path, session, json).await?;
        if !raw.status.is_success() {
            return Err(refused(raw));
        }
        // 204 and `{}` answers decode into `()` from `null`.
        let body = if raw.body.is_empty() {
            serde_json::from_slice(b"null")
        } else {
            serde_json::from_slice(&raw.body)
        }
        .map_err(|e| ApiFailure::Unavailable(format!("unexpected API answer: {e}")))?;
        Ok(Reply {
            body,
            set_cookies: raw.set_cookies,
            next_cursor: raw.next_cursor,
        })
    }

    async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        session: Option<&str>,
    ) -> Result<T, ApiFailure> {
        Ok(self
            .call::<T>(Method::GET, path, session, None::<&()>)
            .await?
            .body)
    }

    /// The API answers (readiness of `--target web`): an anonymous current-user query
    /// goes through the gateway to the auth service and touches no database.
    pub async fn ping(&self) -> Result<(), ApiFailure> {
        self.get::<CurrentUserBody>("/api/users/currentuser", None)
            .await
            .map(|_| ())
    }

    pub async fn current_user(
        &self,
        session: Option<&str>,
    ) -> Result<Option<SessionUser>, ApiFailure> {
        // Without a session cookie the answer is known: skip the round trip.
        if session.is_none() {
            return Ok(None);
        }
        Ok(self
            .get::<CurrentUserBody>("/api/users/currentuser", session)
            .await?
            .current_user)
    }

    /// Sign up or sign in (`path`: [`SIGN_UP`] or [`SIGN_IN`]) with the credentials.
    pub async fn authenticate(
        &self,
        path: &'static str,
        email: &str,
        password: &str,
    ) -> Result<Reply<UserBody>, ApiFailure> {
        let body = Credentials::new(email, password);
        self.call(Method::POST, path, None, Some(&body)).await
    }

    pub async fn sign_out(
        &self,
        session: Option<&str>,
    ) -> Result<Reply<serde_json::Value>, ApiFailure> {
        self.call(Method::POST, "/api/users/signout", session, None::<&()>)
            .await
    }

    /// Sign out of every session of the account (this one included).
    pub async fn sign_out_everywhere(
        &self,
        session: Option<&str>,
    ) -> Result<Reply<serde_json::Value>, ApiFailure> {
        let body = SignOut { everywhere: true };
        self.call(Method::POST, "/api/users/signout", session, Some(&body))
            .await
    }

    /// Change the password: the answer carries the new session's cookie.
    pub async fn change_password(
        &self,
        session: Option<&str>,
        current: &str,
        new: &str,
    ) -> Result<Reply<UserBody>, ApiFailure> {
        let body = ChangePassword::new(current, new);
        self.call(Method::PUT, CHANGE_PASSWORD, session, Some(&body))
            .await
    }

    pub async fn tickets(
        &self,
        session: Option<&str>,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<TicketPage, ApiFailure> {
        let mut path = format!("/api/tickets?limit={limit}");
        if let Some(cursor) = cursor {
            path.push_str("&cursor=");
            path.extend(url::form_urlencoded::byte_serialize(cursor.as_bytes()));
        }
        let reply = self
            .call::<Vec<TicketBody>>(Method::GET, &path, session, None::<&()>)
            .await?;
        Ok(TicketPage {
            tickets: reply.body,
            next_cursor: reply.next_cursor,
        })
    }

    pub async fn ticket(&self, session: Option<&str>, id: &Id) -> Result<TicketBody, ApiFailure> {
        self.get(&format!("/api/tickets/{id}"), session).await
    }

    pub async fn create_ticket(
        &self,
        session: Option<&str>,
        input: &TicketInput,
    ) -> Result<TicketBody, ApiFailure> {
        Ok(self
            .call(Method::POST, "/api/tickets", session, Some(input))
            .await?
            .body)
    }

    pub async fn update_ticket(
        &self,
        session: Option<&str>,
        id: &Id,
        input: &TicketInput,
    ) -> Result<TicketBody, ApiFailure> {
        Ok(self
            .call(
                Method::PUT,
                &format!("/api/tickets/{id}"),
                session,
                Some(input),
            )
            .await?
            .body)
    }

    pub async fn orders(&self, session: Option<&str>) -> Result<Vec<OrderBody>, ApiFailure> {
        self.get("/api/orders", session).await
    }

    pub async fn order(&self, session: Option<&str>, id: &Id) -> Result<OrderBody, ApiFailure> {
        self.get(&format!("/api/orders/{id}"), session).await
    }

    /// Order `ticket`; `quantity` on a listing of several units (`None`: the seed's body).
    pub async fn create_order(
        &self,
        session: Option<&str>,
        ticket: &Id,
        quantity: Option<serde_json::Value>,
    ) -> Result<OrderBody, ApiFailure> {
        let body = CreateOrder {
            quantity,
            ..CreateOrder::new(ticket.as_str())
        };
        Ok(self
            .call(Method::POST, "/api/orders", session, Some(&body))
            .await?
            .body)
    }

    pub async fn cancel_order(&self, session: Option<&str>, id: &Id) -> Result<(), ApiFailure> {
        self.call::<Option<serde_json::Value>>(
            Method::DELETE,
            &format!("/api/orders/{id}"),
            session,
            None::<&()>,
        )
        .await?;
        Ok(())
    }

    /// The cancellation of order `id` for a refund, `None` when there is none.
    pub async fn cancellation(
        &self,
        session: Option<&str>,
        id: &Id,
    ) -> Result<Option<CancellationBody>, ApiFailure> {
        match self
            .get(&format!("/api/orders/{id}/cancellation"), session)
            .await
        {
            Ok(cancellation) => Ok(Some(cancellation)),
            Err(failure) if failure.status() == Some(StatusCode::NOT_FOUND) => Ok(None),
            Err(failure) => Err(failure),
        }
    }

    /// Cancel paid order `id` for a refund (or see the cancellation made before).
    pub async fn cancel_for_refund(
        &self,
        session: Option<&str>,
        id: &Id,
    ) -> Result<CancellationBody, ApiFailure> {
        Ok(self
            .call(
                Method::POST,
                &format!("/api/orders/{id}/cancellation"),
                session,
                None::<&()>,
            )
            .await?
            .body)
    }

    pub async fn pay(
        &self,
        session: Option<&str>,
        order: &Id,
        token: &str,
    ) -> Result<PaymentBody, ApiFailure> {
        let body = CreatePayment::new(order.as_str(), token);
        Ok(self
            .call(Method::POST, "/api/payments", session, Some(&body))
            .await?
            .body)
    }
}

impl ApiClient {
    /// The caller's waiting-list entries.
    pub async fn waitlist(
        &self,
        session: Option<&str>,
    ) -> Result<Vec<WaitlistEntryBody>, ApiFailure> {
        self.get("/api/waitlist", session).await
    }

    pub async fn waitlist_entry(
        &self,
        session: Option<&str>,
        id: &Id,
    ) -> Result<WaitlistEntryBody, ApiFailure> {
        self.get(&format!("/api/waitlist/{id}"), session).await
    }

    /// Join `ticket`'s waiting list for `quantity` units (as typed: the API checks it).
    pub async fn join_waitlist(
        &self,
        session: Option<&str>,
        ticket: &Id,
        quantity: Option<serde_json::Value>,
    ) -> Result<WaitlistEntryBody, ApiFailure> {
        let body = JoinWaitlist {
            ticket_id: Some(ticket.as_str().into()),
            quantity,
        };
        Ok(self
            .call(Method::POST, "/api/waitlist", session, Some(&body))
            .await?
            .body)
    }

    /// Leave the line, or decline an offer (its order is cancelled).
    pub async fn leave_waitlist(&self, session: Option<&str>, id: &Id) -> Result<(), ApiFailure> {
        self.call::<Option<serde_json::Value>>(
            Method::DELETE,
            &format!("/api/waitlist/{id}"),
            session,
            None::<&()>,
        )
        .await?;
        Ok(())
    }

    /// Where the caller stands in `ticket`'s on-sale queue (404: not in it).
    pub async fn queue(&self, session: Option<&str>, ticket: &Id) -> Result<QueueBody, ApiFailure> {
        self.get(&format!("/api/queue/{ticket}"), session).await
    }

    /// Join `ticket`'s on-sale queue (idempotent per account).
    pub async fn join_queue(
        &self,
        session: Option<&str>,
        ticket: &Id,
    ) -> Result<QueueBody, ApiFailure> {
        Ok(self
            .call(
                Method::POST,
                &format!("/api/queue/{ticket}"),
                session,
                None::<&()>,
            )
            .await?
            .body)
    }
}

impl ApiClient {
    /// The caller's webhook endpoints.
    pub async fn webhooks(&self, session: Option<&str>) -> Result<Vec<WebhookBody>, ApiFailure> {
        self.get("/api/webhooks", session).await
    }

    /// Register an endpoint: the answer holds its secret, shown this once.
    pub async fn create_webhook(
        &self,
        session: Option<&str>,
        url: &str,
        events: &[String],
    ) -> Result<WebhookBody, ApiFailure> {
        let events: Vec<&str> = events.iter().map(String::as_str).collect();
        let body = CreateWebhook::new(url, &events);
        Ok(self
            .call(Method::POST, "/api/webhooks", session, Some(&body))
            .await?
            .body)
    }

    pub async fn delete_webhook(&self, session: Option<&str>, id: &Id) -> Result<(), ApiFailure> {
        self.call::<Option<serde_json::Value>>(
            Method::DELETE,
            &format!("/api/webhooks/{id}"),
            session,
            None::<&()>,
        )
        .await?;
        Ok(())
    }

    /// A page of an endpoint's deliveries after `cursor`.
    pub async fn webhook_deliveries(
        &self,
        session: Option<&str>,
        id: &Id,
        cursor: i64,
    ) -> Result<Vec<DeliveryBody>, ApiFailure> {
        self.get(
            &format!("/api/webhooks/{id}/deliveries?cursor={cursor}"),
            session,
        )
        .await
    }

    pub async fn replay_webhook(
        &self,
        session: Option<&str>,
        id: &Id,
        from_seq: serde_json::Value,
    ) -> Result<ReplayAccepted, ApiFailure> {
        let body = ReplayWebhook {
            from_seq: Some(from_seq),
        };
        Ok(self
            .call(
                Method::POST,
                &format!("/api/webhooks/{id}/replay"),
                session,
                Some(&body),
            )
            .await?
            .body)
    }
}

/// The check-in service: a buyer's passes, a seller's gate devices.
impl ApiClient {
    /// The caller's passes of order `order` (none until it is paid).
    pub async fn passes(
        &self,
        session: Option<&str>,
        order: &Id,
    ) -> Result<Vec<PassBody>, ApiFailure> {
        self.get(&format!("/api/passes?orderId={order}"), session)
            .await
    }

    /// A new code for pass `id`; the old one is revoked.
    pub async fn reissue_pass(
        &self,
        session: Option<&str>,
        id: &Id,
    ) -> Result<PassBody, ApiFailure> {
        Ok(self
            .call(
                Method::POST,
                &format!("/api/passes/{id}/reissue"),
                session,
                Some(&serde_json::json!({})),
            )
            .await?
            .body)
    }

    pub async fn devices(&self, session: Option<&str>) -> Result<Vec<DeviceBody>, ApiFailure> {
        self.get("/api/checkin/devices", session).await
    }

    /// Register a gate device: the answer holds its token, shown this once.
    pub async fn create_device(
        &self,
        session: Option<&str>,
        name: &str,
        tickets: &[&str],
    ) -> Result<DeviceBody, ApiFailure> {
        let body = CreateDevice::new(name, tickets);
        Ok(self
            .call(Method::POST, "/api/checkin/devices", session, Some(&body))
            .await?
            .body)
    }

    pub async fn delete_device(&self, session: Option<&str>, id: &Id) -> Result<(), ApiFailure> {
        self.call::<Option<serde_json::Value>>(
            Method::DELETE,
            &format!("/api/checkin/devices/{id}"),
            session,
            None::<&()>,
        )
        .await?;
        Ok(())
    }
}

fn raw(status: StatusCode, headers: &http::HeaderMap, body: Bytes) -> Raw {
    Raw {
        status,
        set_cookies: headers.get_all(SET_COOKIE).iter().cloned().collect(),
        next_cursor: headers
            .get(NEXT_CURSOR_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        body,
    }
}

fn refused(raw: Raw) -> ApiFailure {
    match serde_json::from_slice::<ErrorBody>(&raw.body) {
        Ok(body) => ApiFailure::Refused {
            status: raw.status,
            errors: body.errors,
        },
        // A proxy's HTML 502, say: not the contract's answer.
        Err(_) if raw.status.is_server_error() => {
            ApiFailure::Unavailable(format!("API answered {}", raw.status))
        }
        Err(_) => ApiFailure::Refused {
            status: raw.status,
            errors: Vec::new(),
        },
    }
}

/// An object id taken from a page's path, checked before it goes into an API path, so a
/// crafted one (`..%2Fusers`) cannot name another API route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Id(String);

impl Id {
    /// The API's ids: 1–64 characters of `[A-Za-z0-9_-]`.
    pub fn parse(raw: &str) -> Option<Id> {
        let ok = (1..=64).contains(&raw.len())
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        ok.then(|| Id(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Id {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
