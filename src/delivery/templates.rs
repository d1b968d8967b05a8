//! What each notification says, in English and Simplified Chinese.
//!
//! Built-in texts can be overridden per kind, channel and language by files in
//! `delivery.templates_dir`: `<lang>/<kind>.email.txt` (first line `Subject: ...`, a blank line,
//! then the body) and `<lang>/<kind>.sms.txt`. Placeholders are `{name}`; unknown ones are
//! left as they are, so a typo shows in the message instead of vanishing.

use std::collections::BTreeMap;
use std::path::Path;

/// Notification kinds; the names are also the template file names.
pub const KINDS: &[&str] =
    &["welcome", "suspended", "deleted", "password_code", "broadcast", "low_balance", "test"];
use crate::config::ConfigError;
pub use crate::config::LANGUAGES;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    pub subject: String,
    pub body: String,
}

/// Every template, built-in or loaded, by `(language, kind)`.
#[derive(Debug, Clone)]
pub struct Templates {
    email: BTreeMap<(String, String), Email>,
    sms: BTreeMap<(String, String), String>,
}

fn builtin(lang: &str, kind: &str) -> (Email, String) {
    let (subject, body, sms) = match (lang, kind) {
        ("zh-CN", "welcome") => (
            "欢迎加入{enterprise}",
            "{display_name}，您好：\n\n您的企业账号已开通。\n账号：{account_number}\n登录名：{login_name}\n\n请使用账号或登录名及初始密码登录企业账号中心；如需重设密码，可在登录页通过手机验证码找回。\n\n{enterprise}",
            "【{enterprise}】{display_name}，您的企业账号 {account_number}（登录名 {login_name}）已开通。",
        ),
        ("zh-CN", "suspended") => (
            "您的{enterprise}账号已停用",
            "{display_name}，您好：\n\n您的企业账号 {account_number}（{login_name}）已被停用，暂时无法登录。如有疑问请联系管理员。\n\n{enterprise}",
            "【{enterprise}】您的企业账号 {account_number} 已停用，如有疑问请联系管理员。",
        ),
        ("zh-CN", "deleted") => (
            "您的{enterprise}账号已删除",
            "{display_name}，您好：\n\n您的企业账号 {account_number}（{login_name}）已被删除。\n\n{enterprise}",
            "【{enterprise}】您的企业账号 {account_number} 已删除。",
        ),
        ("zh-CN", "password_code") => (
            "{enterprise}密码找回验证码",
            "您的验证码是 {code}，{minutes} 分钟内有效。如非本人操作，请忽略本邮件。\n\n{enterprise}",
            "【{enterprise}】您的验证码是 {code}，{minutes} 分钟内有效。如非本人操作，请忽略。",
        ),
        ("zh-CN", "broadcast") => ("{title}", "{text}\n\n{enterprise}", "【{enterprise}】{text}"),
        ("zh-CN", "low_balance") => (
            "{enterprise}短信余额不足",
            "短信余额还剩 {balance} 条，已低于提醒线。请尽快充值（rosterd sms top-up），余额为零时短信将暂停发送。\n\n{enterprise}",
            "【{enterprise}】短信余额还剩 {balance} 条，请尽快充值。",
        ),
        ("zh-CN", _) => (
            "{enterprise}测试邮件",
            "这是一封来自 rosterd 的测试邮件。",
            "【{enterprise}】rosterd 测试短信。",
        ),
        (_, "welcome") => (
            "Welcome to {enterprise}",
            "Hello {display_name},\n\nYour company account is ready.\nAccount number: {account_number}\nLogin name: {login_name}\n\nSign in to the account center with your account number or login name. If you need a new password, ask for a code on the sign-in page and it is sent to your mobile phone.\n\n{enterprise}",
            "{enterprise}: {display_name}, your account {account_number} ({login_name}) is ready.",
        ),
        (_, "suspended") => (
            "Your {enterprise} account is suspended",
            "Hello {display_name},\n\nYour company account {account_number} ({login_name}) has been suspended; you cannot sign in for now. Ask your administrator if this is unexpected.\n\n{enterprise}",
            "{enterprise}: your account {account_number} is suspended. Ask your administrator if this is unexpected.",
        ),
        (_, "deleted") => (
            "Your {enterprise} account was deleted",
            "Hello {display_name},\n\nYour company account {account_number} ({login_name}) has been deleted.\n\n{enterprise}",
            "{enterprise}: your account {account_number} has been deleted.",
        ),
        (_, "password_code") => (
            "Your {enterprise} password code",
            "Your code is {code}. It is valid for {minutes} minutes. If you did not ask for it, ignore this message.\n\n{enterprise}",
            "{enterprise}: your code is {code}, valid for {minutes} minutes. Ignore this if you did not ask for it.",
        ),
        (_, "broadcast") => ("{title}", "{text}\n\n{enterprise}", "{enterprise}: {text}"),
        (_, "low_balance") => (
            "{enterprise}: the SMS balance is low",
            "The SMS balance is down to {balance} segments, below the warning mark. Top it up (rosterd sms top-up); at zero, SMS wait until it is.\n\n{enterprise}",
            "{enterprise}: the SMS balance is down to {balance}; top it up.",
        ),
        (_, _) => (
            "{enterprise} test message",
            "This is a test message from rosterd.",
            "{enterprise}: rosterd test message.",
        ),
    };
    (Email { subject: subject.into(), body: body.into() }, sms.into())
}

impl Templates {
    pub fn builtin() -> Templates {
        let mut t = Templates { email: BTreeMap::new(), sms: BTreeMap::new() };
        for lang in LANGUAGES {
            for kind in KINDS {
                let (email, sms) = builtin(lang, kind);
                t.email.insert((lang.to_string(), kind.to_string()), email);
                t.sms.insert((lang.to_string(), kind.to_string()), sms);
            }
        }
        t
    }

    /// The built-in templates with the files of `dir` on top. A file with no subject line, or
    /// one that is not UTF-8, is an error naming the file.
    pub fn load(dir: Option<&Path>) -> Result<Templates, ConfigError> {
        let mut t = Templates::builtin();
        let Some(dir) = dir else { return Ok(t) };
        for lang in LANGUAGES {
            for kind in KINDS {
                let key = (lang.to_string(), kind.to_string());
                let email = dir.join(lang).join(format!("{kind}.email.txt"));
                if let Some(text) = read(&email)? {
                    let (first, body) = text.split_once('\n').unwrap_or((&text, ""));
                    let subject = first.strip_prefix("Subject:").ok_or_else(|| {
                        let message = format!("{}: the first line must be `Subject: ...`", email.display());
                        ConfigError::new("delivery.templates_dir", message)
                    })?;
                    t.email.insert(
                        key.clone(),
                        Email {
                            subject: subject.trim().to_owned(),
                            body: body.trim_start_matches('\n').to_owned(),
                        },
                    );
                }
                let sms = dir.join(lang).join(format!("{kind}.sms.txt"));
                if let Some(text) = read(&sms)? {
                    t.sms.insert(key, text.trim_end().to_owned());
                }
            }
        }
        Ok(t)
    }

    pub fn email(&self, lang: &str, kind: &str, params: &serde_json::Value) -> Email {
        let e = self.email.get(&key(lang, kind)).cloned().unwrap_or_else(|| builtin("en", "test").0);
        Email { subject: render(&e.subject, params), body: render(&e.body, params) }
    }

    pub fn sms(&self, lang: &str, kind: &str, params: &serde_json::Value) -> String {
        let text = self.sms.get(&key(lang, kind)).cloned().unwrap_or_else(|| builtin("en", "test").1);
        render(&text, params)
    }
}

fn key(lang: &str, kind: &str) -> (String, String) {
    let lang = if LANGUAGES.contains(&lang) { lang } else { "en" };
    (lang.to_owned(), kind.to_owned())
}

fn read(path: &Path) -> Result<Option<String>, ConfigError> {
    match std::fs::read(path) {
        Ok(bytes) => String::from_utf8(bytes).map(Some).map_err(|_| {
            ConfigError::new("delivery.templates_dir", format!("{}: not UTF-8", path.display()))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ConfigError::new("delivery.templates_dir", format!("{}: {e}", path.display()))),
    }
}

/// Replaces `{name}` with the string (or number) `params[name]`.
pub fn render(template: &str, params: &serde_json::Value) -> String {
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        match after.find('}') {
            Some(end) if after[..end].chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => {
                let name = &after[..end];
                match params.get(name) {
                    Some(serde_json::Value::String(s)) => out.push_str(s),
                    Some(serde_json::Value::Null) | None => out.push_str(&rest[start..start + end + 2]),
                    Some(v) => out.push_str(&v.to_string()),
                }
                rest = &after[end + 1..];
            }
            _ => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// How many SMS segments a text takes: GSM-7 texts 160 characters in one, 153 a segment when
/// split; anything else (UCS-2, e.g. Chinese) 70 in one, 67 a segment when split.
pub fn sms_segments(text: &str) -> i64 {
    const GSM: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
    const GSM_EXT: &str = "^{}\\[~]|€";
    let gsm = text.chars().all(|c| GSM.contains(c) || GSM_EXT.contains(c));
    let (units, single, multi) = if gsm {
        (text.chars().map(|c| if GSM_EXT.contains(c) { 2 } else { 1 }).sum::<usize>(), 160, 153)
    } else {
        (text.encode_utf16().count(), 70, 67)
    };
    if units <= single { 1 } else { units.div_ceil(multi) as i64 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn placeholders_are_filled_and_unknown_ones_kept() {
        let p = json!({"display_name": "Ann", "account_number": 1000, "gone": null});
        assert_eq!(
            render("Hi {display_name} ({account_number}) {nope} {gone} {not a name}", &p),
            "Hi Ann (1000) {nope} {gone} {not a name}"
        );
        assert_eq!(render("{", &p), "{");
        assert_eq!(render("}{display_name}{", &p), "}Ann{");
    }

    #[test]
    fn both_languages_have_every_kind() {
        let t = Templates::builtin();
        let p = json!({"enterprise": "Acme", "display_name": "王伟", "account_number": 1000, "login_name": "w@acme.cn"});
        let zh = t.email("zh-CN", "welcome", &p);
        assert!(
            zh.subject.contains("Acme") && zh.body.contains("1000") && zh.body.contains("王伟"),
            "{zh:?}"
        );
        let en = t.sms("en", "welcome", &p);
        assert!(en.contains("1000") && en.contains("w@acme.cn"), "{en}");
        assert_eq!(t.sms("fr", "welcome", &p), en, "unknown languages fall back to English");
        for lang in LANGUAGES {
            for kind in KINDS {
                assert!(!t.email(lang, kind, &p).subject.is_empty());
                assert!(!t.sms(lang, kind, &p).is_empty());
            }
        }
    }

    #[test]
    fn segments_by_alphabet() {
        assert_eq!(sms_segments(""), 1);
        assert_eq!(sms_segments(&"a".repeat(160)), 1);
        assert_eq!(sms_segments(&"a".repeat(161)), 2);
        assert_eq!(sms_segments(&"a".repeat(306)), 2);
        assert_eq!(sms_segments(&"a".repeat(307)), 3);
        assert_eq!(sms_segments(&"€".repeat(80)), 1, "extension characters count twice");
        assert_eq!(sms_segments(&"€".repeat(81)), 2);
        assert_eq!(sms_segments(&"中".repeat(70)), 1);
        assert_eq!(sms_segments(&"中".repeat(71)), 2);
        assert_eq!(sms_segments(&"中".repeat(134)), 2);
        assert_eq!(sms_segments(&"中".repeat(135)), 3);
    }

    #[test]
    fn files_override_and_bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("en")).unwrap();
        std::fs::write(
            dir.path().join("en/welcome.email.txt"),
            "Subject: Hi {display_name}\n\nBody {login_name}\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("en/welcome.sms.txt"), "Yo {display_name}\n").unwrap();
        let t = Templates::load(Some(dir.path())).unwrap();
        let p = json!({"display_name": "Ann", "login_name": "ann@x.com"});
        assert_eq!(
            t.email("en", "welcome", &p),
            Email { subject: "Hi Ann".into(), body: "Body ann@x.com\n".into() }
        );
        assert_eq!(t.sms("en", "welcome", &p), "Yo Ann");
        std::fs::write(dir.path().join("en/deleted.email.txt"), "no subject\nbody").unwrap();
        let err = Templates::load(Some(dir.path())).unwrap_err().to_string();
        assert!(err.contains("deleted.email.txt") && err.contains("Subject"), "{err}");
    }
}
