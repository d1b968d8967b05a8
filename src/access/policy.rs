//! Sign-in policies ("login management"): who x where x when x which client -> allow or deny.
//!
//! Rules are ordered; the first that matches an attempt decides, and the policy's default
//! decides the rest. A rule's parts are written as short lines (what the console's form and
//! the store keep), parsed here once and checked by field:
//!
//! - where: CIDRs (`10.0.0.0/8`, `2001:db8::/32`, or one address). A rule with a where part
//!   matches only an attempt whose user address is known (the console, the sign-in API); an
//!   LDAP bind comes from the app, so such a rule never matches a bind.
//! - when: weekly windows `mon-fri 08:00-18:00`, `sat 09:00-12:00`, `sun 22:00-06:00` (an end
//!   at or before the start crosses midnight: the hours after midnight belong to the window's
//!   day), in the rule's time zone; dated exceptions `2026-10-01` (no window that day: a
//!   holiday) or `2026-10-10 09:00-12:00` (that window instead of the week's).
//! - which client: `console`, `ldap` (any LDAP service account) or `ldap:NAME`, `api` (any
//!   sign-in API caller) or `api:KIND` (the `client_kind` it sent).

use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, Timelike, Utc, Weekday};
use chrono_tz::Tz;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::directory::DirectoryError;

/// Who a rule is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "lowercase")]
pub enum Who {
    Enterprise,
    /// An org unit and everything under it.
    Unit(Uuid),
    Group(Uuid),
    Member(Uuid),
}

impl Who {
    pub fn kind(&self) -> &'static str {
        match self {
            Who::Enterprise => "enterprise",
            Who::Unit(_) => "unit",
            Who::Group(_) => "group",
            Who::Member(_) => "member",
        }
    }

    pub fn id(&self) -> Option<Uuid> {
        match *self {
            Who::Enterprise => None,
            Who::Unit(id) | Who::Group(id) | Who::Member(id) => Some(id),
        }
    }

    pub fn from_parts(kind: &str, id: Option<Uuid>) -> Result<Who, DirectoryError> {
        match (kind, id) {
            ("enterprise", _) => Ok(Who::Enterprise),
            ("unit", Some(id)) => Ok(Who::Unit(id)),
            ("group", Some(id)) => Ok(Who::Group(id)),
            ("member", Some(id)) => Ok(Who::Member(id)),
            ("unit" | "group" | "member", None) => Err(DirectoryError::invalid("who", "names no one")),
            _ => Err(DirectoryError::invalid("who", "is enterprise, unit, group or member")),
        }
    }
}

/// A rule as written: every part as its lines. [`Rule::parse`] checks it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleSpec {
    pub allow: bool,
    pub networks: Vec<String>,
    pub windows: Vec<String>,
    pub exceptions: Vec<String>,
    pub clients: Vec<String>,
    pub time_zone: String,
    pub note: String,
}

/// A checked rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub id: Uuid,
    pub position: i64,
    pub who: Who,
    pub allow: bool,
    pub networks: Vec<IpNet>,
    pub windows: Vec<Window>,
    pub exceptions: Vec<Exception>,
    pub clients: Vec<ClientMatch>,
    pub time_zone: Tz,
    pub note: String,
}

/// A weekly window: the days it starts on, from `start` to `end` (crossing midnight when
/// `end <= start`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub days: [bool; 7],
    pub start: NaiveTime,
    pub end: NaiveTime,
}

/// A dated exception: on `date`, the window is `hours` instead of the week's (none: closed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exception {
    pub date: NaiveDate,
    pub hours: Option<(NaiveTime, NaiveTime)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientMatch {
    Console,
    Ldap(Option<String>),
    Api(Option<String>),
}

/// Where an attempt comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Client {
    Console,
    /// An LDAP bind through this service account (or an anonymous connection: `""`).
    Ldap(String),
    /// The sign-in API: the token's name and the client kind the caller sent.
    Api {
        token: String,
        kind: String,
    },
}

impl Client {
    /// `console`, `ldap`, `api`: the login log's client column.
    pub fn kind(&self) -> &'static str {
        match self {
            Client::Console => "console",
            Client::Ldap(_) => "ldap",
            Client::Api { .. } => "api",
        }
    }

    /// The app: the service account's or token's name, and the API's client kind.
    pub fn app(&self) -> String {
        match self {
            Client::Console => String::new(),
            Client::Ldap(name) => name.clone(),
            Client::Api { token, kind } => format!("{token}/{kind}"),
        }
    }
}

/// What the policy knows of the member signing in.
#[derive(Debug, Clone, Default)]
pub struct Subject {
    pub member: Uuid,
    /// Every unit the member is in, and their ancestors.
    pub units: Vec<Uuid>,
    pub groups: Vec<Uuid>,
}

/// An attempt to decide.
#[derive(Debug, Clone)]
pub struct Context<'a> {
    pub subject: &'a Subject,
    /// The user's address, when the attempt carries it.
    pub ip: Option<std::net::IpAddr>,
    pub at: DateTime<Utc>,
    pub client: &'a Client,
}

/// The policy's answer, and the rule that gave it (`None`: the default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allow: bool,
    pub rule: Option<Uuid>,
}

/// The whole policy: rules in order and the default.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub rules: Vec<Rule>,
    pub default_allow: bool,
}

impl Policy {
    pub fn decide(&self, cx: &Context<'_>) -> Decision {
        self.rules
            .iter()
            .find(|r| r.matches(cx))
            .map(|r| Decision { allow: r.allow, rule: Some(r.id) })
            .unwrap_or(Decision { allow: self.default_allow, rule: None })
    }
}

impl Rule {
    /// Checks a written rule; an error names the field (`networks[1]`, `windows[0]`, ...).
    pub fn parse(id: Uuid, position: i64, who: Who, spec: &RuleSpec) -> Result<Rule, DirectoryError> {
        let lines = |v: &[String]| -> Vec<(usize, String)> {
            v.iter().map(|s| s.trim().to_owned()).enumerate().filter(|(_, s)| !s.is_empty()).collect()
        };
        let networks = lines(&spec.networks)
            .into_iter()
            .map(|(i, s)| {
                parse_network(&s).map_err(|m| DirectoryError::invalid(&format!("networks[{i}]"), &m))
            })
            .collect::<Result<_, _>>()?;
        let windows = lines(&spec.windows)
            .into_iter()
            .map(|(i, s)| parse_window(&s).map_err(|m| DirectoryError::invalid(&format!("windows[{i}]"), &m)))
            .collect::<Result<_, _>>()?;
        let exceptions = lines(&spec.exceptions)
            .into_iter()
            .map(|(i, s)| {
                parse_exception(&s).map_err(|m| DirectoryError::invalid(&format!("exceptions[{i}]"), &m))
            })
            .collect::<Result<_, _>>()?;
        let clients = lines(&spec.clients)
            .into_iter()
            .map(|(i, s)| parse_client(&s).map_err(|m| DirectoryError::invalid(&format!("clients[{i}]"), &m)))
            .collect::<Result<_, _>>()?;
        let zone = spec.time_zone.trim();
        let time_zone = if zone.is_empty() {
            Tz::UTC
        } else {
            zone.parse::<Tz>().map_err(|_| {
                DirectoryError::invalid("time_zone", "is not an IANA time zone (Asia/Shanghai)")
            })?
        };
        if spec.note.chars().count() > 200 {
            return Err(DirectoryError::invalid("note", "is longer than 200 characters"));
        }
        Ok(Rule {
            id,
            position,
            who,
            allow: spec.allow,
            networks,
            windows,
            exceptions,
            clients,
            time_zone,
            note: spec.note.trim().to_owned(),
        })
    }

    /// The rule as written (what [`Rule::parse`] reads back).
    pub fn spec(&self) -> RuleSpec {
        RuleSpec {
            allow: self.allow,
            networks: self.networks.iter().map(|n| n.to_string()).collect(),
            windows: self.windows.iter().map(Window::to_string).collect(),
            exceptions: self.exceptions.iter().map(Exception::to_string).collect(),
            clients: self.clients.iter().map(ClientMatch::to_string).collect(),
            time_zone: self.time_zone.name().to_owned(),
            note: self.note.clone(),
        }
    }

    pub fn matches(&self, cx: &Context<'_>) -> bool {
        let who = match self.who {
            Who::Enterprise => true,
            Who::Unit(u) => cx.subject.units.contains(&u),
            Who::Group(g) => cx.subject.groups.contains(&g),
            Who::Member(m) => cx.subject.member == m,
        };
        let place =
            self.networks.is_empty() || cx.ip.is_some_and(|ip| self.networks.iter().any(|n| n.contains(&ip)));
        let client = self.clients.is_empty() || self.clients.iter().any(|c| c.matches(cx.client));
        who && place && client && self.in_time(cx.at)
    }

    /// Whether `at` falls in one of the rule's windows (always, when it has none and no
    /// exceptions).
    fn in_time(&self, at: DateTime<Utc>) -> bool {
        if self.windows.is_empty() && self.exceptions.is_empty() {
            return true;
        }
        let local = at.with_timezone(&self.time_zone).naive_local();
        let (today, time) = (local.date(), local.time());
        let time = NaiveTime::from_hms_opt(time.hour(), time.minute(), time.second()).unwrap_or(time);
        // A window opened today, or one opened yesterday that crosses midnight into today.
        let yesterday = today.pred_opt().unwrap_or(today);
        self.hours_on(today).iter().any(|&(s, e)| if e <= s { time >= s } else { time >= s && time < e })
            || self.hours_on(yesterday).iter().any(|&(s, e)| e <= s && time < e)
    }

    /// The windows that open on `date`: the exception's if the date has one, else the week's.
    fn hours_on(&self, date: NaiveDate) -> Vec<(NaiveTime, NaiveTime)> {
        if let Some(x) = self.exceptions.iter().find(|x| x.date == date) {
            return x.hours.into_iter().collect();
        }
        let day = date.weekday().num_days_from_monday() as usize;
        self.windows.iter().filter(|w| w.days[day]).map(|w| (w.start, w.end)).collect()
    }
}

impl ClientMatch {
    fn matches(&self, c: &Client) -> bool {
        match (self, c) {
            (ClientMatch::Console, Client::Console) => true,
            (ClientMatch::Ldap(None), Client::Ldap(_)) => true,
            (ClientMatch::Ldap(Some(n)), Client::Ldap(name)) => n == name,
            (ClientMatch::Api(None), Client::Api { .. }) => true,
            (ClientMatch::Api(Some(k)), Client::Api { kind, .. }) => k == kind,
            _ => false,
        }
    }
}

impl std::fmt::Display for ClientMatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientMatch::Console => f.write_str("console"),
            ClientMatch::Ldap(None) => f.write_str("ldap"),
            ClientMatch::Ldap(Some(n)) => write!(f, "ldap:{n}"),
            ClientMatch::Api(None) => f.write_str("api"),
            ClientMatch::Api(Some(k)) => write!(f, "api:{k}"),
        }
    }
}

/// An end time as written: midnight is `24:00` (the end of the day, not its start).
fn end_text(t: NaiveTime) -> String {
    if t == NaiveTime::MIN { "24:00".to_owned() } else { t.format("%H:%M").to_string() }
}

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Runs of days as `mon-fri`, others by name: `mon,wed-fri`.
        let mut parts = Vec::new();
        let mut i = 0;
        while i < 7 {
            if self.days[i] {
                let mut j = i;
                while j + 1 < 7 && self.days[j + 1] {
                    j += 1;
                }
                parts.push(if j > i { format!("{}-{}", DAYS[i], DAYS[j]) } else { DAYS[i].to_owned() });
                i = j + 1;
            } else {
                i += 1;
            }
        }
        write!(f, "{} {}-{}", parts.join(","), self.start.format("%H:%M"), end_text(self.end))
    }
}

impl std::fmt::Display for Exception {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.hours {
            None => write!(f, "{}", self.date),
            Some((s, e)) => write!(f, "{} {}-{}", self.date, s.format("%H:%M"), end_text(e)),
        }
    }
}

fn parse_network(s: &str) -> Result<IpNet, String> {
    if let Ok(n) = s.parse::<IpNet>() {
        return Ok(n.trunc());
    }
    s.parse::<std::net::IpAddr>()
        .map(IpNet::from)
        .map_err(|_| format!("`{s}` is not a CIDR (10.0.0.0/8, 2001:db8::/32) or an address"))
}

fn parse_day(s: &str) -> Option<usize> {
    s.trim().parse::<Weekday>().ok().map(|d| d.num_days_from_monday() as usize)
}

fn parse_hours(s: &str) -> Result<(NaiveTime, NaiveTime), String> {
    let (a, b) = s.split_once('-').ok_or_else(|| format!("`{s}` is not hours like 08:00-18:00"))?;
    let t = |x: &str| {
        let x = x.trim();
        if x == "24:00" {
            return Ok(NaiveTime::MIN);
        }
        NaiveTime::parse_from_str(x, "%H:%M").map_err(|_| format!("`{x}` is not a time like 08:30"))
    };
    let (start, end) = (t(a)?, t(b)?);
    Ok((start, end))
}

fn parse_window(s: &str) -> Result<Window, String> {
    let (days, hours) = s
        .split_once(char::is_whitespace)
        .ok_or_else(|| format!("`{s}` is not a window like `mon-fri 08:00-18:00`"))?;
    let mut set = [false; 7];
    for part in days.split(',') {
        let bad = || format!("`{part}` is not a day or a range of days (mon, mon-fri)");
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (parse_day(a).ok_or_else(bad)?, parse_day(b).ok_or_else(bad)?);
                let mut d = a;
                loop {
                    set[d] = true;
                    if d == b {
                        break;
                    }
                    d = (d + 1) % 7;
                }
            }
            None => set[parse_day(part).ok_or_else(bad)?] = true,
        }
    }
    // Equal ends cross midnight: a whole day (00:00-24:00).
    let (start, end) = parse_hours(hours.trim())?;
    Ok(Window { days: set, start, end })
}

fn parse_exception(s: &str) -> Result<Exception, String> {
    let (date, hours) = match s.split_once(char::is_whitespace) {
        Some((d, h)) => (d, Some(h.trim())),
        None => (s, None),
    };
    let date = NaiveDate::parse_from_str(date, "%Y-%m-%d")
        .map_err(|_| format!("`{date}` is not a date like 2026-10-01"))?;
    let hours = hours.map(parse_hours).transpose()?;
    Ok(Exception { date, hours })
}

fn parse_client(s: &str) -> Result<ClientMatch, String> {
    let (kind, name) = match s.split_once(':') {
        Some((k, n)) => (k, Some(n.trim())),
        None => (s, None),
    };
    let name = name.filter(|n| !n.is_empty() && *n != "*").map(str::to_owned);
    match kind.trim() {
        "console" if name.is_none() => Ok(ClientMatch::Console),
        "ldap" => Ok(ClientMatch::Ldap(name)),
        "api" => Ok(ClientMatch::Api(name)),
        _ => Err(format!("`{s}` is not console, ldap, ldap:NAME, api or api:KIND")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn rule(spec: RuleSpec) -> Rule {
        Rule::parse(Uuid::nil(), 0, Who::Enterprise, &spec).expect("a valid rule")
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).expect("a time").with_timezone(&Utc)
    }

    fn cx<'a>(s: &'a Subject, c: &'a Client, ip: Option<&str>, t: &str) -> Context<'a> {
        Context { subject: s, ip: ip.map(|i| i.parse().expect("an address")), at: at(t), client: c }
    }

    #[test]
    fn windows_cross_midnight_in_their_zone() {
        let r = rule(RuleSpec {
            windows: vec!["mon-fri 22:00-06:00".into()],
            time_zone: "Asia/Shanghai".into(),
            ..Default::default()
        });
        let (s, c) = (Subject::default(), Client::Console);
        // Friday 23:00 in Shanghai is 15:00 UTC.
        assert!(r.matches(&cx(&s, &c, None, "2026-12-04T15:00:00Z")));
        // Saturday 05:59 in Shanghai: the Friday window still runs.
        assert!(r.matches(&cx(&s, &c, None, "2026-12-04T21:59:00Z")));
        // Saturday 06:00: over.
        assert!(!r.matches(&cx(&s, &c, None, "2026-12-04T22:00:00Z")));
        // Sunday 23:00: no window opens on Sunday.
        assert!(!r.matches(&cx(&s, &c, None, "2026-12-06T15:00:00Z")));
        // Monday 01:00 (Sunday night): no Sunday window to cross into Monday.
        assert!(!r.matches(&cx(&s, &c, None, "2026-12-06T17:00:00Z")));
    }

    #[test]
    fn exceptions_replace_the_week() {
        let r = rule(RuleSpec {
            windows: vec!["mon-fri 09:00-18:00".into()],
            exceptions: vec!["2026-12-07".into(), "2026-12-05 10:00-12:00".into()],
            ..Default::default()
        });
        let (s, c) = (Subject::default(), Client::Console);
        assert!(!r.matches(&cx(&s, &c, None, "2026-12-07T10:00:00Z")), "a holiday Monday");
        assert!(r.matches(&cx(&s, &c, None, "2026-12-08T10:00:00Z")), "an ordinary Tuesday");
        assert!(r.matches(&cx(&s, &c, None, "2026-12-05T11:00:00Z")), "a working Saturday");
        assert!(!r.matches(&cx(&s, &c, None, "2026-12-05T13:00:00Z")));
    }

    #[test]
    fn networks_need_an_address_and_clients_match_by_name() {
        let r = rule(RuleSpec {
            networks: vec!["10.0.0.0/8".into(), "2001:db8::/32".into()],
            clients: vec!["api:xmpp".into(), "console".into()],
            ..Default::default()
        });
        let s = Subject::default();
        let api = Client::Api { token: "im".into(), kind: "xmpp".into() };
        let t = "2026-12-05T11:00:00Z";
        assert!(r.matches(&cx(&s, &api, Some("10.1.2.3"), t)));
        assert!(r.matches(&cx(&s, &Client::Console, Some("2001:db8::1"), t)));
        assert!(!r.matches(&cx(&s, &api, Some("192.168.1.1"), t)));
        assert!(!r.matches(&cx(&s, &api, None, t)), "no address: a where part never matches");
        let other = Client::Api { token: "im".into(), kind: "web".into() };
        assert!(!r.matches(&cx(&s, &other, Some("10.1.2.3"), t)));
        assert!(!r.matches(&cx(&s, &Client::Ldap("im".into()), Some("10.1.2.3"), t)));
    }

    #[test]
    fn first_match_decides_then_the_default() {
        let unit = Uuid::from_u128(7);
        let deny = Rule::parse(
            Uuid::from_u128(1),
            0,
            Who::Unit(unit),
            &RuleSpec { allow: false, clients: vec!["ldap".into()], ..Default::default() },
        )
        .expect("valid");
        let allow = Rule::parse(
            Uuid::from_u128(2),
            1,
            Who::Enterprise,
            &RuleSpec { allow: true, windows: vec!["mon-sun 00:00-24:00".into()], ..Default::default() },
        )
        .expect("valid");
        let p = Policy { rules: vec![deny, allow], default_allow: false };
        let inside = Subject { member: Uuid::from_u128(9), units: vec![unit], groups: vec![] };
        let outside = Subject { member: Uuid::from_u128(9), units: vec![], groups: vec![] };
        let ldap = Client::Ldap("im".into());
        let now = Utc.with_ymd_and_hms(2026, 12, 3, 12, 0, 0).unwrap();
        let d = |s, c| p.decide(&Context { subject: s, ip: None, at: now, client: c });
        assert_eq!(d(&inside, &ldap), Decision { allow: false, rule: Some(Uuid::from_u128(1)) });
        assert_eq!(d(&outside, &ldap), Decision { allow: true, rule: Some(Uuid::from_u128(2)) });
        assert_eq!(d(&inside, &Client::Console), Decision { allow: true, rule: Some(Uuid::from_u128(2)) });
        let empty = Policy { rules: vec![], default_allow: false };
        assert_eq!(
            empty.decide(&Context { subject: &inside, ip: None, at: now, client: &ldap }),
            Decision { allow: false, rule: None }
        );
    }

    #[test]
    fn bad_parts_are_named_by_field() {
        let bad = |spec: RuleSpec| match Rule::parse(Uuid::nil(), 0, Who::Enterprise, &spec) {
            Err(DirectoryError::Invalid { field, .. }) => field,
            other => panic!("expected an invalid field, got {other:?}"),
        };
        assert_eq!(
            bad(RuleSpec { networks: vec!["10.0.0.0/8".into(), "10.0.0.0/33".into()], ..Default::default() }),
            "networks[1]"
        );
        assert_eq!(
            bad(RuleSpec { windows: vec!["someday 08:00-09:00".into()], ..Default::default() }),
            "windows[0]"
        );
        assert_eq!(
            bad(RuleSpec { windows: vec!["mon 25:00-26:00".into()], ..Default::default() }),
            "windows[0]"
        );
        assert_eq!(
            bad(RuleSpec { exceptions: vec!["2026-13-01".into()], ..Default::default() }),
            "exceptions[0]"
        );
        assert_eq!(bad(RuleSpec { clients: vec!["telnet".into()], ..Default::default() }), "clients[0]");
        assert_eq!(bad(RuleSpec { time_zone: "Mars/Olympus".into(), ..Default::default() }), "time_zone");
    }

    #[test]
    fn a_rule_reads_back_as_written() {
        let spec = RuleSpec {
            allow: true,
            networks: vec!["10.0.0.0/8".into()],
            windows: vec![
                "mon-fri 08:00-18:00".into(),
                "mon,wed-thu,sun 10:00-12:00".into(),
                "sat 22:00-24:00".into(),
            ],
            exceptions: vec!["2026-10-01".into(), "2026-10-10 09:00-12:00".into()],
            clients: vec!["console".into(), "ldap:im".into(), "api".into()],
            time_zone: "Asia/Shanghai".into(),
            note: "office".into(),
        };
        assert_eq!(rule(spec.clone()).spec(), spec);
    }
}
