//! Fuzzing the LDAP server's request side: the codec's decoding of what clients send, and
//! what the server does with a decoded request before it reaches the store (DN parsing, filter
//! evaluation, attribute selection, paging cookies).
//!
//! Inputs are valid requests of every kind the server answers (binds, searches with every
//! filter kind and the paged results control, extended operations, writes), mutated at random
//! (bytes flipped, inserted, deleted, lengths changed, cut short, spliced together), plus
//! random filters evaluated against a full member entry. `cargo test --lib fuzz::ldap`
//! runs a few thousand; `ROSTER_FUZZ_CASES=10000000 cargo test --lib fuzz::ldap
//! -- --nocapture` runs ten million of each and prints the count.

use ldap3_proto::LdapCodec;
use ldap3_proto::control::LdapControl;
use ldap3_proto::proto::*;
use tokio_util::bytes::BytesMut;
use tokio_util::codec::{Decoder, Encoder};

use super::{Rng, cases, mutate};
use crate::ldap_server::dn::Dn;
use crate::ldap_server::entry::{Entry, Selection};

fn search(filter: LdapFilter, attrs: Vec<String>, ctrl: Vec<LdapControl>) -> LdapMsg {
    LdapMsg::new_with_ctrls(
        2,
        LdapOp::SearchRequest(LdapSearchRequest {
            base: "ou=people,dc=example,dc=com".into(),
            scope: LdapSearchScope::Subtree,
            aliases: LdapDerefAliases::Never,
            sizelimit: 10,
            timelimit: 5,
            typesonly: false,
            filter,
            attrs,
        }),
        ctrl,
    )
}

/// Valid requests of every kind, encoded.
fn seeds() -> Vec<Vec<u8>> {
    let sub =
        LdapSubstringFilter { initial: Some("zh".into()), any: vec!["a".into()], final_: Some("i".into()) };
    let msgs = vec![
        LdapMsg::new(
            1,
            LdapOp::BindRequest(LdapBindRequest {
                version: 3,
                dn: "uid=1001,ou=people,dc=example,dc=com".into(),
                cred: LdapBindCred::Simple("secret".into()),
            }),
        ),
        LdapMsg::new(
            1,
            LdapOp::BindRequest(LdapBindRequest {
                version: 3,
                dn: String::new(),
                cred: LdapBindCred::SASL(SaslCredentials {
                    mechanism: "PLAIN".into(),
                    credentials: b"\0a\0b".to_vec(),
                }),
            }),
        ),
        search(
            LdapFilter::And(vec![
                LdapFilter::Equality("objectClass".into(), "inetOrgPerson".into()),
                LdapFilter::Or(vec![
                    LdapFilter::Substring("cn".into(), sub),
                    LdapFilter::Not(Box::new(LdapFilter::Present("mail".into()))),
                ]),
                LdapFilter::GreaterOrEqual("uid".into(), "1000".into()),
                LdapFilter::LessOrEqual("uid".into(), "2000".into()),
                LdapFilter::Approx("cn".into(), "zhang wei".into()),
            ]),
            vec!["uid".into(), "+".into()],
            vec![LdapControl::SimplePagedResults {
                size: 100,
                cookie: b"r1:00000000000000ff:3:1005".to_vec(),
            }],
        ),
        search(
            LdapFilter::Extensible(LdapMatchingRuleAssertion {
                matching_rule: Some("caseIgnoreMatch".into()),
                type_: Some("cn".into()),
                match_value: "x".into(),
                dn_attributes: true,
            }),
            vec!["1.1".into()],
            vec![],
        ),
        LdapMsg::new(3, LdapOp::ExtendedRequest(LdapWhoamiRequest {}.into())),
        LdapMsg::new(
            3,
            LdapOp::ExtendedRequest(
                LdapPasswordModifyRequest {
                    user_identity: Some("uid=1,ou=people,dc=example,dc=com".into()),
                    old_password: Some("a".into()),
                    new_password: Some("b".into()),
                }
                .into(),
            ),
        ),
        LdapMsg::new(
            4,
            LdapOp::ExtendedRequest(LdapExtendedRequest {
                name: "1.3.6.1.4.1.1466.20037".into(),
                value: None,
            }),
        ),
        LdapMsg::new(5, LdapOp::DelRequest("uid=1,ou=people,dc=example,dc=com".into())),
        LdapMsg::new(6, LdapOp::AbandonRequest(2)),
        LdapMsg::new(7, LdapOp::UnbindRequest),
    ];
    msgs.into_iter()
        .map(|m| {
            let mut buf = BytesMut::new();
            LdapCodec::default().encode(m, &mut buf).expect("a valid message encodes");
            buf.to_vec()
        })
        .collect()
}

/// What the server does with a decoded request before the store: none of it may panic.
fn process(msg: &LdapMsg, entry: &Entry) {
    match &msg.op {
        LdapOp::BindRequest(b) => {
            let _ = Dn::parse(&b.dn).map(|d| d.parent());
        }
        LdapOp::SearchRequest(s) => {
            if let Some(base) = Dn::parse(&s.base) {
                let _ = Dn::parse(&entry.dn).map(|d| d.is_under(&base));
            }
            let _ = entry.matches(&s.filter);
            let _ = crate::ldap_server::entry::required_equality(&s.filter, "uid");
            let _ = entry.to_result(&Selection::new(&s.attrs), s.typesonly);
            let _ = crate::ldap_server::search_fingerprint(s);
        }
        LdapOp::ExtendedRequest(x) => {
            let _ = LdapPasswordModifyRequest::try_from(x);
        }
        _ => {}
    }
    for c in &msg.ctrl {
        if let LdapControl::SimplePagedResults { cookie, .. } = c {
            let _ = crate::ldap_server::Cursor::decode(cookie, 0xff);
        }
    }
}

fn member() -> Entry {
    let mut e = Entry::new("uid=1001,ou=people,dc=example,dc=com".into());
    e.set("objectClass", vec!["top".into(), "inetOrgPerson".into(), "rosterPerson".into()])
        .one("uid", "1001")
        .one("cn", "Zhang Wei")
        .set("mail", vec!["wei@example.com".into(), "zw@example.com".into()])
        .one("rosterOrgPath", "/Example/研发部")
        .set("memberOf", vec!["cn=x,ou=groups,dc=example,dc=com".into()])
        .one("entryUUID", "0190");
    e
}

#[test]
fn request_decoding_never_panics() {
    let seeds = seeds();
    let entry = member();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let n = cases();
    let (mut decoded, mut refused) = (0u64, 0u64);
    for _ in 0..n {
        let input = mutate(&mut rng, &seeds);
        let mut buf = BytesMut::from(&input[..]);
        let mut codec =
            LdapCodec::new(Some(crate::ldap_server::MAX_PDU), Some(crate::ldap_server::MAX_DEPTH));
        // Everything the buffer holds, as the connection loop reads it.
        for _ in 0..8 {
            match codec.decode(&mut buf) {
                Ok(Some(msg)) => {
                    decoded += 1;
                    process(&msg, &entry);
                }
                Ok(None) => break,
                Err(_) => {
                    refused += 1;
                    break;
                }
            }
        }
    }
    println!("fuzz: {n} inputs, {decoded} messages decoded and processed, {refused} refused, no panic");
    assert!(decoded > 0 && refused > 0, "the mutations reach both sides");
}

fn random_filter(rng: &mut Rng, depth: usize) -> LdapFilter {
    const ATTRS: [&str; 8] =
        ["uid", "cn", "mail", "objectClass", "memberOf", "entryDN", "rosterOrgPath", "nope"];
    const VALS: [&str; 8] = [
        "1001",
        "zhang wei",
        "",
        "*",
        "研",
        "uid=1001,ou=people,dc=example,dc=com",
        "\\",
        "-9999999999999999999999",
    ];
    let attr = ATTRS[rng.below(ATTRS.len())].to_owned();
    let val = VALS[rng.below(VALS.len())].to_owned();
    let leaf = depth == 0 || rng.below(3) == 0;
    match if leaf { 3 + rng.below(7) } else { rng.below(3) } {
        0 => LdapFilter::And((0..rng.below(4)).map(|_| random_filter(rng, depth - 1)).collect()),
        1 => LdapFilter::Or((0..rng.below(4)).map(|_| random_filter(rng, depth - 1)).collect()),
        2 => LdapFilter::Not(Box::new(random_filter(rng, depth - 1))),
        3 => LdapFilter::Equality(attr, val),
        4 => LdapFilter::GreaterOrEqual(attr, val),
        5 => LdapFilter::LessOrEqual(attr, val),
        6 => LdapFilter::Present(attr),
        7 => LdapFilter::Approx(attr, val),
        8 => LdapFilter::Substring(
            attr,
            LdapSubstringFilter {
                initial: (rng.below(2) == 0).then(|| val.clone()),
                any: (0..rng.below(3)).map(|_| VALS[rng.below(VALS.len())].to_owned()).collect(),
                final_: (rng.below(2) == 0).then_some(val),
            },
        ),
        _ => LdapFilter::Extensible(LdapMatchingRuleAssertion {
            matching_rule: None,
            type_: Some(attr),
            match_value: val,
            dn_attributes: rng.below(2) == 0,
        }),
    }
}

#[test]
fn filter_evaluation_never_panics() {
    let entry = member();
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let n = cases();
    let mut matched = 0u64;
    for _ in 0..n {
        let depth = 1 + rng.below(6);
        let f = random_filter(&mut rng, depth);
        if entry.matches(&f) {
            matched += 1;
        }
    }
    println!("fuzz: {n} filters evaluated, {matched} matched, no panic");
    assert!(matched > 0 && matched < n, "the filters reach both answers");
}
