//! Mailbox bindings: each member's company mailbox (`login@mail_domain`), pushed to the mail
//! system through a provider. Bindings are written when the dispatcher turns directory events
//! into messages (same transaction); a push sends what changed since the last one, a full
//! reconcile pushes everything again. A suspended or deleted member's mailbox is pushed disabled.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::channels::SendError;
use crate::config::{ConfigError, MailboxConfig, MailboxHttpConfig, MailboxScimConfig};
use crate::delivery::store::MailboxBinding;

/// A mail system that accepts mailbox bindings.
#[async_trait::async_trait]
pub trait MailboxProvider: Send + Sync {
    /// Makes the mail system hold `b` as it is (creating, updating or disabling it); returns
    /// the mail system's id for it when it gives one.
    async fn push(&self, b: &MailboxBinding) -> Result<Option<String>, SendError>;
}

pub fn provider(cfg: &MailboxConfig) -> Result<Option<Arc<dyn MailboxProvider>>, ConfigError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(cfg.timeout_secs))
        .build()
        .map_err(|e| ConfigError::new("mailbox", e.to_string()))?;
    match cfg.provider.as_str() {
        "none" => Ok(None),
        "scim" => {
            let scim = cfg
                .scim
                .clone()
                .ok_or_else(|| ConfigError::new("mailbox.scim", "must be set for provider scim"))?;
            Ok(Some(Arc::new(Scim { client, cfg: scim })))
        }
        "http" => {
            let http = cfg
                .http
                .clone()
                .ok_or_else(|| ConfigError::new("mailbox.http", "must be set for provider http"))?;
            Ok(Some(Arc::new(Http { client, cfg: http })))
        }
        other => Err(ConfigError::new("mailbox.provider", format!("unknown provider {other:?}"))),
    }
}

fn status_error(what: &str, status: reqwest::StatusCode, body: &str) -> SendError {
    let text =
        format!("{what}: the mail system answered {status}: {}", body.chars().take(200).collect::<String>());
    if status.is_server_error() || status == 429 || status == 408 {
        SendError::Retry(text)
    } else {
        SendError::Permanent(text)
    }
}

fn transport_error(e: reqwest::Error) -> SendError {
    SendError::Retry(format!("the mail system cannot be reached: {}", e.without_url()))
}

/// An outbound SCIM 2.0 client: a binding is a User (`userName` = the address, `externalId` =
/// the member id, `active`). Created with POST (found by `externalId` when it already exists),
/// then replaced with PUT.
struct Scim {
    client: reqwest::Client,
    cfg: MailboxScimConfig,
}

const SCIM_JSON: &str = "application/scim+json";

impl Scim {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.cfg.url.trim_end_matches('/'))
    }

    fn user(b: &MailboxBinding) -> serde_json::Value {
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": b.address,
            "externalId": b.member_id.to_string(),
            "displayName": b.display_name,
            "emails": [{"value": b.address, "type": "work", "primary": true}],
            "active": b.active,
        })
    }

    async fn send(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<(reqwest::StatusCode, serde_json::Value, String), SendError> {
        let resp = req
            .bearer_auth(self.cfg.token.as_ref().map_or("", |t| t.expose()))
            .header("content-type", SCIM_JSON)
            .header("accept", SCIM_JSON)
            .send()
            .await
            .map_err(transport_error)?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        Ok((status, serde_json::from_str(&text).unwrap_or_default(), text))
    }

    async fn find(&self, b: &MailboxBinding) -> Result<Option<String>, SendError> {
        let filter = format!("externalId eq \"{}\"", b.member_id);
        let url = reqwest::Url::parse_with_params(&self.url("/Users"), &[("filter", filter.as_str())])
            .map_err(|e| SendError::Permanent(format!("mailbox.scim.url: {e}")))?;
        let req = self.client.get(url);
        let (status, body, text) = self.send(req).await?;
        if !status.is_success() {
            return Err(status_error("search", status, &text));
        }
        Ok(body["Resources"][0]["id"].as_str().map(str::to_owned))
    }

    async fn put(&self, id: &str, b: &MailboxBinding) -> Result<Option<String>, SendError> {
        let req = self.client.put(self.url(&format!("/Users/{id}"))).json(&Scim::user(b));
        let (status, _, text) = self.send(req).await?;
        match status {
            s if s.is_success() => Ok(Some(id.to_owned())),
            reqwest::StatusCode::NOT_FOUND => Ok(None),
            s => Err(status_error("PUT", s, &text)),
        }
    }
}

#[async_trait::async_trait]
impl MailboxProvider for Scim {
    async fn push(&self, b: &MailboxBinding) -> Result<Option<String>, SendError> {
        if let Some(id) = &b.remote_id
            && let Some(id) = self.put(id, b).await?
        {
            return Ok(Some(id));
        }
        // Gone from the mail system: created again below.
        let req = self.client.post(self.url("/Users")).json(&Scim::user(b));
        let (status, body, text) = self.send(req).await?;
        if status.is_success() {
            return Ok(body["id"].as_str().map(str::to_owned));
        }
        if status == reqwest::StatusCode::CONFLICT {
            // Created before (a push whose answer was lost): find it and replace it.
            if let Some(id) = self.find(b).await? {
                return self.put(&id, b).await?.map(Some).ok_or_else(|| {
                    SendError::Retry(format!("the mail system's user {id} vanished during the push"))
                });
            }
        }
        Err(status_error("POST", status, &text))
    }
}

/// A generic HTTP endpoint: `POST {url}` with the binding as JSON, 2xx accepted.
struct Http {
    client: reqwest::Client,
    cfg: MailboxHttpConfig,
}

#[async_trait::async_trait]
impl MailboxProvider for Http {
    async fn push(&self, b: &MailboxBinding) -> Result<Option<String>, SendError> {
        let req = self.client.post(&self.cfg.url).json(&json!({
            "member_id": b.member_id,
            "address": b.address,
            "display_name": b.display_name,
            "active": b.active,
        }));
        let req = super::channels::with_headers(req, &self.cfg.headers)?;
        let resp = req.send().await.map_err(transport_error)?;
        let status = resp.status();
        if status.is_success() {
            return Ok(None);
        }
        Err(status_error("POST", status, &resp.text().await.unwrap_or_default()))
    }
}
