//! Who may see the console and who may act in it: the same principals as the gRPC API.
//!
//! With `auth.tokens_file` or `auth.jwks_file` the login page takes a token (one from the
//! tokens file, or a JWT); it is kept in an HttpOnly, SameSite=Strict cookie and checked on
//! every request exactly as a gRPC call's bearer token. Scope `read` sees every page, `admin`
//! may also act. Without auth the console is served only on a loopback listener, to anyone
//! who can reach it. Every action is a POST carrying a CSRF token: an HMAC of the session
//! under a key a page of another site cannot read. The key is derived from the callback signing
//! key, which every replica shares (from the database, or the same key file), so a form from
//! one replica's page is good on another and after a restart.

use std::sync::Arc;

use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Bytes;
use ring::hmac;

use super::{Call, ErrorPage, layout, see_other};
use crate::security::principal::Scope;
use crate::security::{Authenticated, Authenticator};

const COOKIE: &str = "courier_console";

/// Who is looking, and whether they may act.
pub struct Viewer {
    name: String,
    can_act: bool,
    /// The token of the session (empty when the console is open).
    session: String,
}

impl Viewer {
    /// The principal's name, as the audit log writes it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What the audit log names as the call.
    pub fn rpc(&self) -> &'static str {
        "console"
    }

    pub fn can_act(&self) -> bool {
        self.can_act
    }

    pub fn must_act(&self) -> Result<(), ErrorPage> {
        match self.can_act {
            true => Ok(()),
            false => Err(ErrorPage::new(
                StatusCode::FORBIDDEN,
                "Read-only access",
                format!(
                    "{} may look but not act: actions need a token with scope admin.",
                    self.name
                ),
            )),
        }
    }
}

/// How the console lets people in.
pub enum Access {
    /// Tokens or JWTs, as the gRPC API checks them.
    Tokens(Arc<Authenticator>),
    /// No auth configured and a loopback listener: everyone who reaches it may act.
    Open,
    /// No auth configured and a listener others can reach: nobody.
    Closed,
}

pub struct Sessions {
    access: Access,
    key: hmac::Key,
}

impl Sessions {
    /// `csrf_secret`: bytes every replica derives alike and no one else can (see the module).
    pub fn new(authenticator: Arc<Authenticator>, loopback: bool, csrf_secret: &[u8]) -> Self {
        let access = match (authenticator.required(), loopback) {
            (true, _) => Access::Tokens(authenticator),
            (false, true) => Access::Open,
            (false, false) => Access::Closed,
        };
        let key = hmac::Key::new(hmac::HMAC_SHA256, csrf_secret);
        Self { access, key }
    }

    /// The viewer of `call`, or the answer for one who may not look (the login page, or a
    /// page that says why the console is closed).
    pub fn viewer(&self, call: &Call) -> Result<Viewer, Box<Response<Full<Bytes>>>> {
        match &self.access {
            Access::Open => Ok(Viewer {
                name: "local operator".to_owned(),
                can_act: true,
                session: String::new(),
            }),
            Access::Closed => Err(Box::new(closed())),
            Access::Tokens(authenticator) => {
                let Some(token) = call.cookie(COOKIE) else {
                    return Err(Box::new(see_other("/login")));
                };
                match principal(authenticator, token) {
                    Ok(viewer) => Ok(viewer),
                    Err(problem) => Err(Box::new(self.login_page(Some(&problem)))),
                }
            }
        }
    }

    pub fn login_page(&self, problem: Option<&str>) -> Response<Full<Bytes>> {
        match self.access {
            Access::Tokens(_) => layout::login_page(problem),
            Access::Open => see_other("/"),
            Access::Closed => closed(),
        }
    }

    /// Checks the token of the login form and keeps it in the session cookie.
    pub fn log_in(&self, call: &Call) -> Result<Response<Full<Bytes>>, ErrorPage> {
        let Access::Tokens(authenticator) = &self.access else {
            return Ok(self.login_page(None));
        };
        let Some(token) = call.field("token") else {
            return Ok(layout::login_page(Some("Paste a token to log in.")));
        };
        if let Err(problem) = principal(authenticator, token) {
            return Ok(layout::login_page(Some(&problem)));
        }
        let mut response = see_other("/");
        let cookie = format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict");
        match HeaderValue::from_str(&cookie) {
            Ok(value) => {
                response.headers_mut().insert(header::SET_COOKIE, value);
                Ok(response)
            }
            Err(_) => Ok(layout::login_page(Some(
                "That token has characters a cookie cannot hold.",
            ))),
        }
    }

    pub fn log_out(&self) -> Response<Full<Bytes>> {
        let mut response = see_other("/login");
        let expired = format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
        if let Ok(value) = HeaderValue::from_str(&expired) {
            response.headers_mut().insert(header::SET_COOKIE, value);
        }
        response
    }

    /// The CSRF token of `viewer`'s session.
    pub fn csrf(&self, viewer: &Viewer) -> String {
        hex::encode(hmac::sign(&self.key, viewer.session.as_bytes()).as_ref())
    }

    /// Refuses a POST whose CSRF token is not the session's.
    pub fn check_csrf(&self, call: &Call, viewer: &Viewer) -> Result<(), ErrorPage> {
        let given = call.field("csrf").and_then(|text| hex::decode(text).ok());
        match given {
            Some(tag) if hmac::verify(&self.key, viewer.session.as_bytes(), &tag).is_ok() => Ok(()),
            _ => Err(ErrorPage::new(
                StatusCode::FORBIDDEN,
                "Form expired",
                "The form did not come from this console session (or the callback signing \
                 key changed). Go back, reload the page and try again.",
            )),
        }
    }
}

/// The viewer a token names, or why it cannot look.
fn principal(authenticator: &Authenticator, token: &str) -> Result<Viewer, String> {
    let header = HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| "That is not a token.".to_owned())?;
    match authenticator.authenticate(Some(&header)) {
        Ok(Authenticated::Anyone) => Ok(Viewer {
            name: "anyone".to_owned(),
            can_act: true,
            session: token.to_owned(),
        }),
        Ok(Authenticated::Principal(principal)) => {
            let can_act = principal.scopes.contains(&Scope::Admin);
            if !can_act && !principal.scopes.contains(&Scope::Read) {
                return Err(format!(
                    "{} has neither scope read nor admin; the console needs one of them.",
                    principal.name
                ));
            }
            Ok(Viewer {
                name: principal.name.clone(),
                can_act,
                session: token.to_owned(),
            })
        }
        Err(_) => Err("That token is not valid (unknown, expired, or not for this server).".into()),
    }
}

fn closed() -> Response<Full<Bytes>> {
    layout::error_page(
        StatusCode::FORBIDDEN,
        "The console is off",
        "This server has no authentication configured and its HTTP listener is reachable from \
         other machines, so the console is not served. Set auth.tokens_file (or auth.jwks_file) \
         to log in with a token of scope read or admin, or bind metrics_listen to 127.0.0.1.",
    )
}
