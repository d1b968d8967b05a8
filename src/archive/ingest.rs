//! Ingest: message lines (JSON Lines from IM servers, or XMPP stanzas turned into lines) checked,
//! their parties resolved to member identities, and stored in batches.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::grams;
use super::store::{ConversationIn, ConversationKind, GroupIn, MessageIn};
use crate::config::ArchiveConfig;

/// One message as an IM server posts it (a line of `POST /api/v1/archive/messages`).
#[derive(Debug, Clone, Deserialize)]
pub struct Line {
    pub id: String,
    pub conversation: Conversation,
    pub from: String,
    pub sent_at: DateTime<Utc>,
    #[serde(default = "text_kind")]
    pub kind: String,
    #[serde(default)]
    pub text: String,
    #[serde(default)]
    pub attachments: Vec<Attachment>,
}

fn text_kind() -> String {
    "text".into()
}

/// `{"direct":[A,B]}` or `{"group":ID}` (with the group's `owner` and `name` when known).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged, deny_unknown_fields)]
pub enum Conversation {
    Direct { direct: [String; 2] },
    Group { group: String, owner: Option<String>, name: Option<String> },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Attachment {
    pub sha256: String,
    pub mime: String,
    pub size: i64,
    #[serde(default)]
    pub name: String,
}

/// What became of one line.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Outcome {
    /// The line's number in the request, from 1.
    pub line: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub status: Status,
    /// Why a line was refused: a code, and words for people.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Stored,
    Duplicate,
    Refused,
}

impl Outcome {
    pub fn refused(
        line: usize,
        id: Option<String>,
        code: &'static str,
        reason: impl Into<String>,
    ) -> Outcome {
        Outcome { line, id, status: Status::Refused, code: Some(code), reason: Some(reason.into()) }
    }
}

/// A line that passed the checks that need no database.
pub(super) struct Checked {
    pub line: usize,
    pub msg: Line,
}

/// Checks a parsed line's own fields.
pub(super) fn check(n: usize, msg: Line, cfg: &ArchiveConfig) -> Result<Checked, Outcome> {
    let id = Some(msg.id.clone());
    let refuse = |code, reason: String| Err(Outcome::refused(n, id.clone(), code, reason));
    if msg.id.trim().is_empty() || msg.id.len() > 200 {
        return refuse("invalid_id", "id must be 1-200 characters".into());
    }
    if msg.text.len() > cfg.max_text_bytes {
        return refuse(
            "too_large",
            format!(
                "the text is {} bytes; at most {} are kept (archive.max_text_bytes)",
                msg.text.len(),
                cfg.max_text_bytes
            ),
        );
    }
    if msg.kind.is_empty()
        || msg.kind.len() > 32
        || !msg.kind.chars().all(|c| c.is_ascii_lowercase() || c == '_')
    {
        return refuse(
            "invalid_kind",
            "kind must be 1-32 lower-case letters (text, image, file, recall, ...)".into(),
        );
    }
    let parties: Vec<&String> = match &msg.conversation {
        Conversation::Direct { direct } => direct.iter().collect(),
        Conversation::Group { group, owner, .. } => {
            if group.trim().is_empty() || group.len() > 200 {
                return refuse("invalid_group", "group must be 1-200 characters".into());
            }
            owner.iter().collect()
        }
    };
    for p in parties.into_iter().chain([&msg.from]) {
        if p.trim().is_empty() || p.len() > 320 {
            return refuse("invalid_party", format!("{p:?} is not an account number, login name or address"));
        }
    }
    if msg.attachments.len() > 32 {
        return refuse("too_many_attachments", "at most 32 attachments a message".into());
    }
    for a in &msg.attachments {
        if a.sha256.len() != 64 || !a.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return refuse("invalid_attachment", format!("{:?} is not a SHA-256 in hex", a.sha256));
        }
        if !cfg.allows(&a.mime) {
            return refuse(
                "attachment_type",
                format!("attachments of type {:?} are not kept (archive.attachment_types)", a.mime),
            );
        }
        if a.size < 0 || a.size as u64 > cfg.max_blob_bytes as u64 {
            return refuse(
                "too_large",
                format!("an attachment of {} bytes is over archive.max_blob_bytes", a.size),
            );
        }
        if a.name.len() > 255 {
            return refuse("invalid_attachment", "an attachment's name is at most 255 bytes".into());
        }
    }
    Ok(Checked { line: n, msg })
}

/// How a party string is asked for: a number, a login name, an e-mail address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum Key {
    Number(i64),
    Login(String),
    Email(String),
}

/// The normal form of a party (lower case, an XMPP resource dropped) and the keys that may
/// name a member, most specific first.
pub(super) fn keys(party: &str, mail_domain: &str, im_domains: &[String]) -> (String, Vec<Key>) {
    let p = normalize(party);
    let mut keys = Vec::new();
    match p.split_once('@') {
        None => {
            if let Ok(n) = p.parse::<i64>() {
                keys.push(Key::Number(n));
            }
            keys.push(Key::Login(format!("{p}@{mail_domain}")));
        }
        Some((local, domain)) => {
            keys.push(Key::Login(p.clone()));
            keys.push(Key::Email(p.clone()));
            if domain == mail_domain || im_domains.iter().any(|d| d.eq_ignore_ascii_case(domain)) {
                if let Ok(n) = local.parse::<i64>() {
                    keys.push(Key::Number(n));
                }
                keys.push(Key::Login(format!("{local}@{mail_domain}")));
            }
        }
    }
    (p, keys)
}

/// A party's normal form: trimmed, lower case, an XMPP resource (`/...` after an address) dropped.
pub(super) fn normalize(party: &str) -> String {
    let p = party.trim().to_lowercase();
    match p.split_once('/') {
        Some((bare, _)) if bare.contains('@') => bare.to_owned(),
        _ => p,
    }
}

/// A party as stored: a member identity, or an external address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum Party {
    Member(Uuid),
    External(String),
}

impl Party {
    pub fn key(&self) -> String {
        match self {
            Party::Member(id) => format!("m:{id}"),
            Party::External(a) => format!("x:{a}"),
        }
    }
}

/// The parties a batch names, resolved.
pub(super) struct Parties {
    pub map: HashMap<String, Party>,
}

impl Parties {
    pub fn get(&self, raw: &str) -> Party {
        let norm = normalize(raw);
        self.map.get(&norm).cloned().unwrap_or_else(|| Party::External(norm))
    }
}

/// Everything a batch needs stored: groups first (their ids decide the conversations), then
/// conversations and messages.
pub(super) struct Plan {
    pub groups: Vec<GroupIn>,
    /// For each checked line: its group's index in `groups` (group lines).
    pub group_of: Vec<Option<usize>>,
}

pub(super) fn plan_groups(lines: &[Checked], parties: &Parties) -> Plan {
    let mut groups: Vec<GroupIn> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut group_of = Vec::with_capacity(lines.len());
    for c in lines {
        let Conversation::Group { group, owner, name } = &c.msg.conversation else {
            group_of.push(None);
            continue;
        };
        // Without a named owner, the first sender the archive sees is taken for the owner (the
        // creator of an XMPP room joins, and usually speaks, first); a later line naming the
        // owner replaces it.
        let (owner, explicit) = match owner {
            Some(o) => (parties.get(o), true),
            None => (parties.get(&c.msg.from), false),
        };
        let gi = GroupIn {
            ext_id: group.clone(),
            name: name.clone(),
            owner_member: match &owner {
                Party::Member(id) => Some(*id),
                Party::External(_) => None,
            },
            owner_external: match &owner {
                Party::External(a) => Some(a.clone()),
                Party::Member(_) => None,
            },
            kept: matches!(owner, Party::Member(_)),
            explicit,
        };
        let i = match index.get(group) {
            Some(&i) => {
                if explicit {
                    groups[i] = gi;
                }
                i
            }
            None => {
                index.insert(group.clone(), groups.len());
                groups.push(gi);
                groups.len() - 1
            }
        };
        group_of.push(Some(i));
    }
    Plan { groups, group_of }
}

/// Builds the conversations and messages of the lines that may be stored; the others get their
/// outcome. `groups` holds each planned group's stored `(id, kept)`.
pub(super) fn build(
    lines: Vec<Checked>,
    plan: &Plan,
    groups: &[(i64, bool)],
    parties: &Parties,
) -> (Vec<ConversationIn>, Vec<(usize, MessageIn)>, Vec<Outcome>) {
    let mut conversations: Vec<ConversationIn> = Vec::new();
    let mut index: HashMap<ConversationIn, usize> = HashMap::new();
    let mut messages = Vec::new();
    let mut refused = Vec::new();
    for (c, group) in lines.into_iter().zip(&plan.group_of) {
        let from = parties.get(&c.msg.from);
        let (conv, mut members) = match (&c.msg.conversation, group) {
            (Conversation::Direct { direct }, _) => {
                let a = parties.get(&direct[0]);
                let b = parties.get(&direct[1]);
                if from != a && from != b {
                    refused.push(Outcome::refused(
                        c.line,
                        Some(c.msg.id),
                        "not_a_party",
                        "from must be one of the two parties of a direct conversation",
                    ));
                    continue;
                }
                let mut ks = [a.key(), b.key()];
                ks.sort();
                let members: Vec<Uuid> = [a, b]
                    .iter()
                    .filter_map(|p| match p {
                        Party::Member(id) => Some(*id),
                        _ => None,
                    })
                    .collect();
                (
                    ConversationIn { kind: ConversationKind::Direct, key: ks.join(" "), group_id: None },
                    members,
                )
            }
            (Conversation::Group { .. }, Some(gi)) => {
                let (id, kept) = groups[*gi];
                if !kept {
                    refused.push(Outcome::refused(
                        c.line,
                        Some(c.msg.id),
                        "group_not_kept",
                        "the group's owner is not an employee: its records are not kept",
                    ));
                    continue;
                }
                let members = match &from {
                    Party::Member(id) => vec![*id],
                    Party::External(_) => vec![],
                };
                (
                    ConversationIn {
                        kind: ConversationKind::Group,
                        key: format!("g:{id}"),
                        group_id: Some(id),
                    },
                    members,
                )
            }
            (Conversation::Group { .. }, None) => unreachable!("every group line has a planned group"),
        };
        members.sort();
        members.dedup();
        let ci = *index.entry(conv.clone()).or_insert_with(|| {
            conversations.push(conv);
            conversations.len() - 1
        });
        let attachments = serde_json::to_string(&c.msg.attachments).unwrap_or_else(|_| "[]".into());
        messages.push((
            c.line,
            MessageIn {
                terms: grams::message_terms(&c.msg.text),
                ext_id: c.msg.id,
                conversation: ci,
                sender_member: match &from {
                    Party::Member(id) => Some(*id),
                    _ => None,
                },
                sender_external: match from {
                    Party::External(a) => Some(a),
                    _ => None,
                },
                sent_at: c.msg.sent_at.timestamp_micros(),
                kind: c.msg.kind,
                body: c.msg.text,
                attachments,
                parties: members,
            },
        ));
    }
    (conversations, messages, refused)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn party_keys_read_numbers_logins_addresses_and_jids() {
        let im = vec!["im.example.com".to_owned()];
        let (n, k) = keys("100001", "example.com", &im);
        assert_eq!(n, "100001");
        assert_eq!(k, vec![Key::Number(100001), Key::Login("100001@example.com".into())]);
        let (n, k) = keys("Alice@IM.example.com/phone", "example.com", &im);
        assert_eq!(n, "alice@im.example.com");
        assert!(k.contains(&Key::Login("alice@example.com".into())));
        let (_, k) = keys("bob@partner.org", "example.com", &im);
        assert_eq!(k, vec![Key::Login("bob@partner.org".into()), Key::Email("bob@partner.org".into())]);
    }
}
