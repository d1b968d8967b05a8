//! XMPP stanzas as ejabberd's `mod_post_log` posts them (one `<message/>` a request, with the
//! sender's full JID in `X-Message-From` and the recipient in `X-Message-To`), turned into
//! archive lines. Parsed with `quick-xml`.

use chrono::{DateTime, Utc};
use quick_xml::events::Event;
use quick_xml::reader::Reader;

use super::ingest::{Conversation, Line};

/// Why a post is not a message to keep.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Not an XMPP `<message/>` stanza (the text says what is wrong).
    NotAStanza(String),
    /// A message with nothing to keep (a chat state, a receipt, an error): answered, not stored.
    Nothing(&'static str),
}

/// The parts of a `<message/>` the archive keeps.
#[derive(Debug, Default, PartialEq, Eq)]
struct Stanza {
    from: Option<String>,
    to: Option<String>,
    kind: String,
    id: Option<String>,
    origin_id: Option<String>,
    body: Option<String>,
    stamp: Option<String>,
}

fn parse(xml: &str) -> Result<Stanza, String> {
    let mut r = Reader::from_str(xml);
    r.config_mut().trim_text(false);
    let mut st = Stanza::default();
    let mut depth = 0usize;
    let mut in_body = false;
    let mut seen_root = false;
    loop {
        let ev = r.read_event().map_err(|e| format!("not well-formed XML: {e}"))?;
        match ev {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let empty = matches!(ev, Event::Empty(_));
                let name = e.local_name();
                let attr = |key: &[u8]| -> Result<Option<String>, String> {
                    for a in e.attributes() {
                        let a = a.map_err(|e| format!("bad attribute: {e}"))?;
                        if a.key.as_ref() == key {
                            return a
                                .unescape_value()
                                .map(|v| Some(v.into_owned()))
                                .map_err(|e| format!("bad attribute value: {e}"));
                        }
                    }
                    Ok(None)
                };
                if depth == 0 {
                    if seen_root {
                        return Err("more than one stanza".into());
                    }
                    seen_root = true;
                    if name.as_ref() != b"message" {
                        return Err(format!(
                            "the stanza is <{}>, not <message>",
                            String::from_utf8_lossy(name.as_ref())
                        ));
                    }
                    st.from = attr(b"from")?;
                    st.to = attr(b"to")?;
                    st.id = attr(b"id")?;
                    st.kind = attr(b"type")?.unwrap_or_else(|| "normal".into());
                } else if depth == 1 {
                    match name.as_ref() {
                        b"body" if st.body.is_none() => {
                            st.body = Some(String::new());
                            in_body = !empty;
                        }
                        b"origin-id" => st.origin_id = attr(b"id")?,
                        b"delay" => st.stamp = attr(b"stamp")?,
                        _ => {}
                    }
                }
                if !empty {
                    depth += 1;
                }
            }
            Event::End(_) => {
                depth = depth.saturating_sub(1);
                if depth == 1 {
                    in_body = false;
                }
            }
            Event::Text(t) if in_body => {
                let text = t.decode().map_err(|e| format!("bad text: {e}"))?;
                let text = quick_xml::escape::unescape(&text).map_err(|e| format!("bad text: {e}"))?;
                st.body.get_or_insert_default().push_str(&text);
            }
            Event::GeneralRef(g) if in_body => {
                let name = g.decode().map_err(|e| format!("bad reference: {e}"))?;
                let reference = format!("&{name};");
                let text =
                    quick_xml::escape::unescape(&reference).map_err(|e| format!("bad reference: {e}"))?;
                st.body.get_or_insert_default().push_str(&text);
            }
            Event::CData(t) if in_body => {
                st.body.get_or_insert_default().push_str(&String::from_utf8_lossy(&t));
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !seen_root {
        return Err("the body holds no stanza".into());
    }
    if depth != 0 {
        return Err("the stanza is not closed".into());
    }
    Ok(st)
}

/// The archive line a posted stanza makes. `from_header`/`to_header` are mod_post_log's
/// headers (used when the stanza has no `from`/`to`); `now` stamps a message without `<delay/>`.
pub fn line(
    xml: &str,
    from_header: Option<&str>,
    to_header: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Line, Refusal> {
    let st = parse(xml).map_err(Refusal::NotAStanza)?;
    let from = from_header.or(st.from.as_deref()).map(str::trim).filter(|s| !s.is_empty());
    let to = to_header.or(st.to.as_deref()).map(str::trim).filter(|s| !s.is_empty());
    let (Some(from), Some(to)) = (from, to) else {
        return Err(Refusal::NotAStanza("the message names no sender or no recipient".into()));
    };
    let Some(body) = st.body else {
        return Err(Refusal::Nothing("a message without a body (a chat state or a receipt)"));
    };
    let bare = |jid: &str| jid.split('/').next().unwrap_or(jid).to_lowercase();
    let conversation = match st.kind.as_str() {
        "chat" | "normal" => Conversation::Direct { direct: [bare(from), bare(to)] },
        "groupchat" => Conversation::Group { group: bare(to), owner: None, name: None },
        "error" => return Err(Refusal::Nothing("an error message")),
        "headline" => return Err(Refusal::Nothing("a headline")),
        other => return Err(Refusal::NotAStanza(format!("unknown message type {other:?}"))),
    };
    let sent_at = st
        .stamp
        .as_deref()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or(now);
    // The id is unique per sender at best: qualify it with the sender (a retried post of the
    // same stanza is then a duplicate). Without one, the content and the second stand in.
    let id = match st.origin_id.or(st.id).filter(|i| !i.is_empty()) {
        Some(id) => format!("{}/{id}", bare(from)),
        None => {
            use sha2::Digest;
            let h = sha2::Sha256::digest(format!(
                "{}\n{}\n{}\n{}",
                bare(from),
                bare(to),
                sent_at.timestamp(),
                body
            ));
            format!("{}/h:{}", bare(from), &hex::encode(h)[..32])
        }
    };
    Ok(Line {
        id,
        conversation,
        from: bare(from),
        sent_at,
        kind: "text".into(),
        text: body,
        attachments: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_and_groupchat_stanzas_become_lines() {
        let now = Utc::now();
        let l = line(
            r#"<message xmlns="jabber:client" from="alice@localhost/x" to="bob@localhost" type="chat" id="m1"><body>新用户 &lt;b&gt; ok</body></message>"#,
            Some("alice@localhost/x"),
            Some("bob@localhost"),
            now,
        )
        .unwrap();
        assert_eq!(l.text, "新用户 <b> ok");
        assert_eq!(l.id, "alice@localhost/m1");
        assert!(matches!(l.conversation, Conversation::Direct { .. }));
        let g = line(
            r#"<message to="room@conference.localhost" type="groupchat"><body>hi</body></message>"#,
            Some("carol@localhost/r"),
            None,
            now,
        )
        .unwrap();
        assert!(
            matches!(g.conversation, Conversation::Group { ref group, .. } if group == "room@conference.localhost")
        );
        assert_eq!(
            line("<iq type='get'/>", Some("a@b"), Some("c@d"), now).unwrap_err(),
            Refusal::NotAStanza("the stanza is <iq>, not <message>".into())
        );
        assert!(matches!(line("not xml <", Some("a@b"), Some("c@d"), now), Err(Refusal::NotAStanza(_))));
        assert!(matches!(
            line("<message type='chat'><composing/></message>", Some("a@b"), Some("c@d"), now),
            Err(Refusal::Nothing(_))
        ));
    }
}
