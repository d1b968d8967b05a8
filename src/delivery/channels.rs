//! The ways a message leaves: e-mail over SMTP (`lettre`) and SMS through a provider. A new SMS
//! provider is one type implementing [`SmsProvider`], chosen in [`sms_provider`].

use std::sync::Arc;
use std::time::Duration;

use lettre::message::Mailbox;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use uuid::Uuid;

use super::templates::{self, Email};
use crate::config::{ConfigError, HttpSmsConfig, SmsConfig, SmtpConfig, TwilioConfig};

/// Why a send failed: worth retrying (the server is down, busy, or timed out) or not (the
/// recipient or the message was refused).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    Retry(String),
    Permanent(String),
}

/// Sends e-mail through the configured SMTP server (a pooled transport; cheap to clone).
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl Mailer {
    pub fn new(cfg: &SmtpConfig) -> Result<Mailer, ConfigError> {
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(&cfg.url)
            .map_err(|e| ConfigError::new("delivery.smtp.url", e.to_string()))?
            .timeout(Some(Duration::from_secs(cfg.timeout_secs)));
        if let (Some(user), Some(password)) = (&cfg.user, &cfg.password) {
            builder = builder.credentials(lettre::transport::smtp::authentication::Credentials::new(
                user.clone(),
                password.expose().to_owned(),
            ));
        }
        if let Some(ca) = &cfg.ca_file {
            let host = cfg.url.split("://").nth(1).unwrap_or("").split(['/', '?', ':']).next().unwrap_or("");
            let host = host.rsplit('@').next().unwrap_or(host).to_owned();
            let pem = std::fs::read(ca)
                .map_err(|e| ConfigError::new("delivery.smtp.ca_file", format!("{}: {e}", ca.display())))?;
            let cert = lettre::transport::smtp::client::Certificate::from_pem(&pem)
                .map_err(|e| ConfigError::new("delivery.smtp.ca_file", e.to_string()))?;
            let tls = lettre::transport::smtp::client::TlsParameters::builder(host)
                .add_root_certificate(cert)
                .build_rustls()
                .map_err(|e| ConfigError::new("delivery.smtp.ca_file", e.to_string()))?;
            let tls = if cfg.url.starts_with("smtps://") {
                lettre::transport::smtp::client::Tls::Wrapper(tls)
            } else {
                lettre::transport::smtp::client::Tls::Required(tls)
            };
            builder = builder.tls(tls);
        }
        let from: Mailbox = cfg.from.parse().map_err(|e: lettre::address::AddressError| {
            ConfigError::new("delivery.smtp.from", e.to_string())
        })?;
        Ok(Mailer { transport: builder.build(), from })
    }

    /// Sends one message. The Message-ID comes from the delivery id, so a repeat after a crash
    /// carries the same id; the idempotency key goes along as `X-Roster-Idempotency-Key`.
    pub async fn send(
        &self,
        id: Uuid,
        to: &str,
        email: &Email,
        key: &str,
    ) -> Result<Option<String>, SendError> {
        let to: Mailbox = to.parse().map_err(|e| SendError::Permanent(format!("bad address {to:?}: {e}")))?;
        let message_id = format!("<{id}@rosterd>");
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(email.subject.clone())
            .message_id(Some(message_id.clone()))
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("X-Roster-Idempotency-Key"),
                key.to_owned(),
            ))
            .header(ContentType::TEXT_PLAIN)
            .body(email.body.clone())
            .map_err(|e| SendError::Permanent(format!("cannot build the message: {e}")))?;
        match self.transport.send(message).await {
            Ok(_) => Ok(Some(message_id)),
            Err(e) if e.is_permanent() => {
                Err(SendError::Permanent(format!("the SMTP server refused it: {e}")))
            }
            Err(e) => Err(SendError::Retry(format!("SMTP: {e}"))),
        }
    }

    /// A test message to `to` (`rosterd mail test`).
    pub async fn send_test(
        &self,
        to: &str,
        t: &templates::Templates,
        lang: &str,
        enterprise: &str,
    ) -> Result<(), SendError> {
        let email = t.email(lang, "test", &serde_json::json!({"enterprise": enterprise}));
        let id = Uuid::now_v7();
        self.send(id, to, &email, &format!("test:{id}")).await.map(|_| ())
    }
}

/// An SMS gateway.
#[async_trait::async_trait]
pub trait SmsProvider: Send + Sync {
    /// Sends `text` to `to` (E.164); returns the provider's message id when it gives one.
    async fn send(&self, to: &str, text: &str, key: &str) -> Result<Option<String>, SendError>;
}

pub fn sms_provider(cfg: &SmsConfig) -> Result<Arc<dyn SmsProvider>, ConfigError> {
    // The process-wide TLS provider (main installs it too; library users may not have).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(cfg.timeout_secs))
        .build()
        .map_err(|e| ConfigError::new("delivery.sms", e.to_string()))?;
    match cfg.provider.as_str() {
        "http" => {
            let http = cfg
                .http
                .clone()
                .ok_or_else(|| ConfigError::new("delivery.sms.http", "must be set for provider http"))?;
            reqwest::Method::from_bytes(http.method.as_bytes())
                .map_err(|_| ConfigError::new("delivery.sms.http.method", "not a method"))?;
            Ok(Arc::new(HttpSms { client, cfg: http }))
        }
        "twilio" => {
            let t = cfg
                .twilio
                .clone()
                .ok_or_else(|| ConfigError::new("delivery.sms.twilio", "must be set for provider twilio"))?;
            Ok(Arc::new(Twilio { client, cfg: t }))
        }
        other => Err(ConfigError::new("delivery.sms.provider", format!("unknown provider {other:?}"))),
    }
}

/// What an HTTP answer means: 2xx sent; 408, 429 and 5xx worth retrying; other 4xx refused.
fn classify(status: reqwest::StatusCode, body: &str) -> Result<(), SendError> {
    if status.is_success() {
        return Ok(());
    }
    let text = format!("the gateway answered {status}: {}", body.chars().take(200).collect::<String>());
    if status.is_server_error() || status == 429 || status == 408 {
        Err(SendError::Retry(text))
    } else {
        Err(SendError::Permanent(text))
    }
}

fn transport_error(e: reqwest::Error) -> SendError {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "failed"
    };
    // The URL may carry an API key in its query: the text is stored and shown, so leave it out.
    SendError::Retry(format!("the gateway {what}: {}", e.without_url()))
}

/// Adds configured headers (often credentials) to a request, each marked sensitive so that no
/// HTTP layer logs or prints it.
pub(super) fn with_headers(
    mut req: reqwest::RequestBuilder,
    headers: &std::collections::BTreeMap<String, crate::secret::Secret>,
) -> Result<reqwest::RequestBuilder, SendError> {
    for (k, v) in headers {
        let mut value = reqwest::header::HeaderValue::from_str(v.expose()).map_err(|_| {
            SendError::Permanent(format!("header {k}: the configured value is not a valid header value"))
        })?;
        value.set_sensitive(true);
        req = req.header(k, value);
    }
    Ok(req)
}

/// A value for the gateway's body template, encoded for the body's content type: a JSON string's
/// inside, a form value (percent-encoded), XML text (entities), or as it is for anything else. A
/// member's name or a broadcast's text can hold `"`, `&`, `=` or `<` and must stay one value.
fn encode_field(content_type: &str, v: &str) -> String {
    let ct = content_type.to_ascii_lowercase();
    if ct.contains("json") {
        let quoted = serde_json::to_string(v).unwrap_or_default();
        quoted[1..quoted.len() - 1].to_owned()
    } else if ct.contains("x-www-form-urlencoded") {
        form_urlencoded::byte_serialize(v.as_bytes()).collect()
    } else if ct.contains("xml") {
        v.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
            .replace('\'', "&apos;")
    } else {
        v.to_owned()
    }
}

/// A generic HTTP gateway: URL, method, headers, a body template, and where the message id is.
struct HttpSms {
    client: reqwest::Client,
    cfg: HttpSmsConfig,
}

#[async_trait::async_trait]
impl SmsProvider for HttpSms {
    async fn send(&self, to: &str, text: &str, key: &str) -> Result<Option<String>, SendError> {
        let field = |v: &str| encode_field(&self.cfg.content_type, v);
        let body = templates::render(
            &self.cfg.body,
            &serde_json::json!({"to": field(to), "text": field(text), "key": field(key)}),
        );
        let method = reqwest::Method::from_bytes(self.cfg.method.as_bytes()).unwrap_or(reqwest::Method::POST);
        let req = self
            .client
            .request(method, &self.cfg.url)
            .header("content-type", &self.cfg.content_type)
            .header("idempotency-key", key)
            .body(body);
        let req = with_headers(req, &self.cfg.headers)?;
        let resp = req.send().await.map_err(transport_error)?;
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        classify(status, &body)?;
        Ok(self.cfg.id_pointer.as_deref().and_then(|p| {
            let v: serde_json::Value = serde_json::from_str(&body).ok()?;
            v.pointer(p).map(|id| id.as_str().map(str::to_owned).unwrap_or_else(|| id.to_string()))
        }))
    }
}

/// Twilio Programmable Messaging: `POST {base}/2010-04-01/Accounts/{sid}/Messages.json`, form
/// `To`, `From`, `Body`, HTTP basic auth; the answer's `sid` is the message id.
struct Twilio {
    client: reqwest::Client,
    cfg: TwilioConfig,
}

#[async_trait::async_trait]
impl SmsProvider for Twilio {
    async fn send(&self, to: &str, text: &str, key: &str) -> Result<Option<String>, SendError> {
        let url = format!(
            "{}/2010-04-01/Accounts/{}/Messages.json",
            self.cfg.base_url.trim_end_matches('/'),
            self.cfg.account_sid
        );
        let resp = self
            .client
            .post(url)
            .basic_auth(&self.cfg.account_sid, self.cfg.auth_token.as_ref().map(|t| t.expose()))
            .header("I-Twilio-Idempotency-Token", key)
            .form(&[("To", to), ("From", self.cfg.from.as_str()), ("Body", text)])
            .send()
            .await
            .map_err(transport_error)?;
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        classify(status, &body)?;
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        Ok(v["sid"].as_str().map(str::to_owned))
    }
}

#[cfg(test)]
mod tests {
    use super::encode_field;

    #[test]
    fn fields_are_encoded_for_the_body_type() {
        let v = "a&b=c+d \"q\" <x> 你好";
        assert_eq!(encode_field("application/json", v), r#"a&b=c+d \"q\" <x> 你好"#);
        assert_eq!(
            encode_field("application/x-www-form-urlencoded; charset=utf-8", v),
            "a%26b%3Dc%2Bd+%22q%22+%3Cx%3E+%E4%BD%A0%E5%A5%BD"
        );
        assert_eq!(encode_field("text/xml", v), "a&amp;b=c+d &quot;q&quot; &lt;x&gt; 你好");
        assert_eq!(encode_field("text/plain", v), v);
    }
}
