//! The reconciliation console: server-rendered HTML pages on the HTTP listener, for the operator
//! who must see and fix what is stuck. One file per page, thin handlers over the [`Store`];
//! `layout` draws the frame, `auth` decides who may look and who may act.
//!
//! Pages work without JavaScript: filters are GET forms, actions are POST forms carrying a
//! CSRF token, and every action answers with a redirect (or an error page) so a reload never
//! repeats it.

mod auth;
mod charts;
mod dead_letters;
mod layout;
mod message;
mod messages;
mod overview;
mod subscriptions;
mod unresolved;

use std::sync::Arc;

use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};

use crate::callbacks::Keyring;
use crate::config::Config;
use crate::domain::FieldViolation;
use crate::security::Authenticator;
use crate::store::{Store, StoreError};
use crate::telemetry::ErrorChain;

use auth::{Sessions, Viewer};

/// What the callback signing key signs to make the console's CSRF key.
const CSRF_KEY_LABEL: &[u8] = b"courier console: CSRF key, v1";

/// Largest form a POST may carry.
const MAX_FORM_BYTES: usize = 64 * 1024;

/// The console: what its pages read and who may see them.
pub struct Console {
    store: Arc<dyn Store>,
    config: Arc<Config>,
    sessions: Sessions,
}

impl Console {
    /// A console over `store`. `access` says whether it asks for tokens, is open (no auth
    /// configured, loopback listener) or closed (no auth configured, listener reachable from
    /// elsewhere).
    /// `keyring` holds the callback signing key the CSRF key is derived from.
    pub fn new(
        store: Arc<dyn Store>,
        config: Arc<Config>,
        authenticator: Arc<Authenticator>,
        loopback: bool,
        keyring: &Keyring,
    ) -> Self {
        // Ed25519 signatures are deterministic: a signature of a fixed text is a secret every
        // holder of the key derives alike.
        let csrf_secret = keyring.current().sign(CSRF_KEY_LABEL);
        Self {
            store,
            config,
            sessions: Sessions::new(authenticator, loopback, &csrf_secret),
        }
    }

    /// Answers one request for a console path.
    pub async fn answer(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let call = match Call::read(request).await {
            Ok(call) => call,
            Err(page) => return page.into_response(),
        };
        match self.route(&call).await {
            Ok(response) => response,
            Err(page) => page.into_response(),
        }
    }

    async fn route(&self, call: &Call) -> Result<Response<Full<Bytes>>, ErrorPage> {
        let path = call.path.as_str();
        match (&call.method, path) {
            (&Method::GET, "/login") => return Ok(self.sessions.login_page(None)),
            (&Method::POST, "/login") => return self.sessions.log_in(call),
            (&Method::POST, "/logout") => return Ok(self.sessions.log_out()),
            _ => {}
        }
        let viewer = match self.sessions.viewer(call) {
            Ok(viewer) => viewer,
            Err(response) => return Ok(*response),
        };
        if call.method == Method::POST {
            self.sessions.check_csrf(call, &viewer)?;
            viewer.must_act()?;
        }
        let pages = Pages {
            store: self.store.as_ref(),
            config: &self.config,
            viewer: &viewer,
            csrf: self.sessions.csrf(&viewer),
        };
        match (&call.method, path) {
            (&Method::GET, "/") => overview::page(&pages, call).await,
            (&Method::GET, "/messages") => messages::page(&pages, call).await,
            (&Method::GET, "/unresolved") => unresolved::page(&pages, call).await,
            (&Method::POST, "/unresolved/resolve") => unresolved::resolve(&pages, call).await,
            (&Method::GET, "/dead-letters") => dead_letters::page(&pages, call).await,
            (&Method::POST, "/dead-letters") => dead_letters::act(&pages, call).await,
            (&Method::GET, "/subscriptions") => subscriptions::list(&pages, call).await,
            (&Method::GET, "/subscriptions/edit") => subscriptions::form(&pages, call).await,
            (&Method::POST, "/subscriptions") => subscriptions::save(&pages, call).await,
            (&Method::GET, _) if path.starts_with("/messages/") => {
                message::page(&pages, &path["/messages/".len()..]).await
            }
            (_, _) => Err(ErrorPage::new(
                StatusCode::NOT_FOUND,
                "No such page",
                format!("The console has no page at {path}."),
            )),
        }
    }
}

/// What every page handler gets.
struct Pages<'a> {
    store: &'a dyn Store,
    config: &'a Config,
    viewer: &'a Viewer,
    /// The CSRF token every form of this session carries.
    csrf: String,
}

/// One request, read: its method, path, query parameters, form fields (POST) and cookies.
struct Call {
    method: Method,
    path: String,
    query: Vec<(String, String)>,
    form: Vec<(String, String)>,
    cookies: Vec<(String, String)>,
}

impl Call {
    async fn read(request: Request<Incoming>) -> Result<Self, ErrorPage> {
        let (parts, body) = request.into_parts();
        let query = parts
            .uri
            .query()
            .map(|q| pairs(q.as_bytes()))
            .unwrap_or_default();
        let cookies = parts
            .headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect();
        let form = match parts.method {
            Method::POST => {
                let bytes = Limited::new(body, MAX_FORM_BYTES)
                    .collect()
                    .await
                    .map_err(|_| {
                        ErrorPage::new(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            "Form too large",
                            format!("A console form is at most {MAX_FORM_BYTES} bytes."),
                        )
                    })?
                    .to_bytes();
                pairs(&bytes)
            }
            _ => Vec::new(),
        };
        Ok(Self {
            // A HEAD is answered as a GET (hyper sends no body for it).
            method: match parts.method {
                Method::HEAD => Method::GET,
                method => method,
            },
            path: parts.uri.path().to_owned(),
            query,
            form,
            cookies,
        })
    }

    /// A query parameter, if given and not blank.
    fn param(&self, name: &str) -> Option<&str> {
        first(&self.query, name)
    }

    /// A form field, if given and not blank.
    fn field(&self, name: &str) -> Option<&str> {
        first(&self.form, name)
    }

    /// Every value of a repeated form field.
    fn fields(&self, name: &str) -> Vec<&str> {
        self.form
            .iter()
            .filter(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
            .collect()
    }

    fn cookie(&self, name: &str) -> Option<&str> {
        first(&self.cookies, name)
    }
}

fn pairs(bytes: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(bytes).into_owned().collect()
}

fn first<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(key, value)| key == name && !value.trim().is_empty())
        .map(|(_, value)| value.trim())
}

/// The problems of a form, gathered so the page names them all at once.
#[derive(Default)]
struct Problems(Vec<FieldViolation>);

impl Problems {
    /// Keeps the value, or the problem.
    fn take<T>(&mut self, result: Result<T, FieldViolation>) -> Option<T> {
        result.map_err(|problem| self.0.push(problem)).ok()
    }

    /// An optional field: `None` when blank, else parsed by `parse`.
    fn optional<T>(
        &mut self,
        value: Option<&str>,
        parse: impl FnOnce(&str) -> Result<T, FieldViolation>,
    ) -> Option<T> {
        value.and_then(|value| self.take(parse(value)))
    }

    /// An optional UTC time field (`2026-01-31T08:00`).
    fn time(&mut self, field: &str, value: Option<&str>) -> Option<crate::domain::Timestamp> {
        self.optional(value, |text| {
            layout::parse_time(text).ok_or_else(|| {
                FieldViolation::new(field, "is not a time like 2026-01-31T08:00 (UTC)")
            })
        })
    }

    fn finish(self) -> Result<(), ErrorPage> {
        match self.0.is_empty() {
            true => Ok(()),
            false => Err(ErrorPage::invalid(&self.0)),
        }
    }
}

/// A page that explains what went wrong, in the console's words.
#[derive(Debug)]
struct ErrorPage {
    status: StatusCode,
    title: &'static str,
    text: String,
}

impl ErrorPage {
    fn new(status: StatusCode, title: &'static str, text: impl Into<String>) -> Self {
        Self {
            status,
            title,
            text: text.into(),
        }
    }

    /// A form with fields the console cannot use.
    fn invalid(violations: &[FieldViolation]) -> Self {
        let text = violations
            .iter()
            .map(|v| format!("{} {}", v.field, v.description))
            .collect::<Vec<_>>()
            .join("; ");
        Self::new(StatusCode::BAD_REQUEST, "Please check the form", text)
    }

    fn into_response(self) -> Response<Full<Bytes>> {
        layout::error_page(self.status, self.title, &self.text)
    }
}

impl From<StoreError> for ErrorPage {
    fn from(error: StoreError) -> Self {
        match &error {
            StoreError::NotFound(_) => {
                Self::new(StatusCode::NOT_FOUND, "Not found", error.to_string())
            }
            StoreError::AlreadyExists(_)
            | StoreError::MessageConflict { .. }
            | StoreError::LeaseLost { .. }
            | StoreError::FailedPrecondition(_) => {
                Self::new(StatusCode::CONFLICT, "Not possible now", error.to_string())
            }
            StoreError::Unavailable(_) => {
                tracing::warn!(error = %ErrorChain(&error), "console: the store is unavailable");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The database is not answering",
                    "Courier cannot reach its database right now. Reload in a moment.",
                )
            }
            StoreError::InvalidConfig(_) | StoreError::Internal(_) => {
                tracing::error!(error = %ErrorChain(&error), "console: store failure");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong",
                    "The request failed inside Courier; the server log has the details.",
                )
            }
        }
    }
}

impl From<crate::convert::RequestError> for ErrorPage {
    fn from(error: crate::convert::RequestError) -> Self {
        match error {
            crate::convert::RequestError::Invalid(violations) => Self::invalid(&violations),
            crate::convert::RequestError::OverLimit(limits) => Self::new(
                StatusCode::BAD_REQUEST,
                "Over a limit",
                limits
                    .iter()
                    .map(|l| l.description.clone())
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
        }
    }
}

/// A 303 redirect to `location` (after a POST, so a reload does not repeat it).
fn see_other(location: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(value) = location.parse() {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}
