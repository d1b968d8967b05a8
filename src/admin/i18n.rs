//! The console's two languages: English and Simplified Chinese. The user's choice is kept in a
//! cookie; without one, `Accept-Language` decides. Every text a page shows is a key in
//! [`TEXTS`] (a test checks that each key the templates use is there, in both languages).

use axum::extract::Path;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};

pub const LANG_COOKIE: &str = "roster_lang";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    #[default]
    En,
    ZhCn,
}

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::ZhCn => "zh-CN",
        }
    }

    pub fn parse(s: &str) -> Option<Lang> {
        match s.to_ascii_lowercase().as_str() {
            "en" => Some(Lang::En),
            "zh-cn" | "zh" => Some(Lang::ZhCn),
            _ => None,
        }
    }

    pub fn from_headers(headers: &HeaderMap) -> Lang {
        if let Some(l) = super::auth::cookie(headers, LANG_COOKIE).and_then(|v| Lang::parse(&v)) {
            return l;
        }
        let accept = headers.get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok()).unwrap_or("");
        match accept.split(',').next().map(|l| l.trim().to_ascii_lowercase()) {
            Some(l) if l.starts_with("zh") => Lang::ZhCn,
            _ => Lang::En,
        }
    }

    /// The text for `key` (the key itself when there is none, which a test prevents).
    pub fn t(self, key: &str) -> &'static str {
        match TEXTS.binary_search_by(|(k, _, _)| (*k).cmp(key)) {
            Ok(i) => match self {
                Lang::En => TEXTS[i].1,
                Lang::ZhCn => TEXTS[i].2,
            },
            Err(_) => {
                tracing::warn!(key, "console: no text for key");
                "?"
            }
        }
    }
}

/// Switches the language and goes back where the user was.
pub async fn switch(Path(lang): Path<String>, headers: HeaderMap) -> Response {
    let lang = Lang::parse(&lang).unwrap_or_default();
    let back = super::back(&headers, "/admin");
    let cookie = format!("{LANG_COOKIE}={}; Path=/admin; Max-Age=31536000; SameSite=Lax", lang.code());
    let mut res = super::see_other(&back);
    res.headers_mut().append(header::SET_COOKIE, cookie.parse().expect("a valid header value"));
    res.into_response()
}

/// Percent-encodes a query value.
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// `(key, English, Simplified Chinese)`, sorted by key (a test checks).
pub static TEXTS: &[(&str, &str, &str)] = &[
    ("accounts.block", "Number block", "号段"),
    ("accounts.deleted", "Deleted accounts", "已删除帐号"),
    ("accounts.deleted_at", "Deleted", "删除时间"),
    ("accounts.deleted_by", "Deleted by", "删除者"),
    ("accounts.next", "Next number", "下一个号码"),
    ("accounts.note", "Note", "备注"),
    ("accounts.number", "Number", "号码"),
    ("accounts.quarantine", "Quarantine (days)", "隔离期（天）"),
    ("accounts.reason", "Reason", "原因"),
    ("accounts.release", "Release", "释放"),
    ("accounts.reservations", "Reservations", "保留号码"),
    ("accounts.reserve", "Reserve", "保留"),
    ("accounts.reserved_by", "Reserved by", "保留者"),
    ("attendance.absent", "Absent", "旷工"),
    ("attendance.absent_after", "Absent after (minutes)", "超过几分钟算旷工"),
    ("attendance.add_shift", "Add the shift", "添加班次"),
    ("attendance.assign", "Assign", "分配"),
    ("attendance.day", "Day", "日期"),
    ("attendance.early_leave", "Early leave", "早退"),
    (
        "attendance.early_leave_before",
        "Early leave: more than N minutes before the end",
        "早于下班几分钟算早退",
    ),
    ("attendance.end", "End", "下班时间"),
    ("attendance.first", "First", "首次"),
    ("attendance.holidays", "Holidays", "节假日"),
    ("attendance.last", "Last", "末次"),
    ("attendance.late", "Late", "迟到"),
    ("attendance.late_after", "Late after (minutes)", "超过几分钟算迟到"),
    ("attendance.late_minutes", "Minutes late", "迟到分钟"),
    (
        "attendance.legend",
        "✓ normal · L late · S seriously late · A absent · E early leave · N not signed · - rest",
        "✓ 正常 · L 迟到 · S 严重迟到 · A 旷工 · E 早退 · N 缺卡 · - 休息",
    ),
    ("attendance.month", "Month", "月份"),
    ("attendance.name", "Shift name", "班次名称"),
    ("attendance.none", "(none)", "（无）"),
    ("attendance.normal", "Normal", "正常"),
    ("attendance.not_signed", "Not signed", "缺卡"),
    ("attendance.provisional", "provisional", "未定"),
    ("attendance.rest", "Rest", "休息"),
    ("attendance.rest_days", "Rest days (sat sun)", "休息日（sat sun）"),
    ("attendance.serious_after", "Seriously late after (minutes)", "超过几分钟算严重迟到"),
    ("attendance.seriously_late", "Seriously late", "严重迟到"),
    ("attendance.shift", "Shift", "班次"),
    ("attendance.shifts", "Shifts", "班次"),
    ("attendance.show", "Show", "查看"),
    ("attendance.start", "Start", "上班时间"),
    ("attendance.status", "Status", "状态"),
    ("attendance.window_after", "Punch window after the end (minutes)", "下班后打卡时段（分钟）"),
    ("attendance.window_before", "Punch window before the start (minutes)", "上班前打卡时段（分钟）"),
    ("attendance.workdays", "Make-up working days", "调休上班日"),
    ("audit.action", "Action", "操作"),
    ("audit.actor", "Who", "操作者"),
    ("audit.after", "After", "之后"),
    ("audit.before", "Before", "之前"),
    ("audit.filter", "Filter", "筛选"),
    ("audit.object", "Object", "对象"),
    ("audit.since", "From", "起始"),
    ("audit.until", "Until", "截止"),
    ("audit.when", "When", "时间"),
    ("common.apply", "Apply", "应用"),
    ("common.back", "Back", "返回"),
    ("common.cancel", "Cancel", "取消"),
    ("common.create", "Create", "创建"),
    ("common.delete", "Delete", "删除"),
    ("common.edit", "Edit", "编辑"),
    ("common.more", "More", "更多"),
    ("common.name", "Name", "名称"),
    ("common.next_page", "Next page", "下一页"),
    ("common.none", "None", "无"),
    ("common.prev_page", "Previous page", "上一页"),
    ("common.save", "Save", "保存"),
    ("common.search", "Search", "搜索"),
    ("common.source", "Source", "来源"),
    ("common.state", "State", "状态"),
    ("common.total", "Total", "合计"),
    ("delivery.amount", "Segments", "条数"),
    ("delivery.attempts", "Attempts", "尝试次数"),
    ("delivery.balance", "SMS balance", "短信余额"),
    ("delivery.broadcast", "Broadcast", "广播"),
    ("delivery.broadcast_sent", "Broadcast queued", "广播已排队"),
    ("delivery.broadcasts", "Broadcasts", "广播"),
    ("delivery.channel", "Channel", "渠道"),
    ("delivery.dead", "Dead messages", "发送失败的消息"),
    ("delivery.email", "E-mail", "邮件"),
    ("delivery.last_error", "Last error", "最后错误"),
    ("delivery.ledger", "SMS ledger", "短信账单"),
    ("delivery.mailboxes", "Mailbox bindings", "邮箱绑定"),
    ("delivery.outbox", "Outbox", "发件箱"),
    ("delivery.recipient", "Recipient", "收件人"),
    ("delivery.recipients", "Recipients", "接收人数"),
    ("delivery.retry", "Retry", "重试"),
    ("delivery.sms", "SMS", "短信"),
    ("delivery.text", "Text", "内容"),
    ("delivery.title", "Title", "标题"),
    ("delivery.top_up", "Top up", "充值"),
    ("delivery.units", "Org units (empty: everybody)", "组织（留空：全员）"),
    ("ent.address", "Address", "地址"),
    ("ent.contact_email", "Contact e-mail", "联系人邮箱"),
    ("ent.contact_name", "Contact", "联系人"),
    ("ent.contact_phone", "Contact phone", "联系电话"),
    ("ent.expires", "Expires", "到期时间"),
    ("ent.id", "Enterprise id", "企业号"),
    ("ent.logo", "Logo URL", "Logo 地址"),
    ("ent.mail_domain", "Mail domain", "邮件域名"),
    ("ent.name", "Enterprise name", "企业名称"),
    ("ent.saved", "Profile saved", "资料已保存"),
    ("error.title", "Something went wrong", "出错了"),
    ("home.attention", "Needs attention", "待处理事项"),
    ("home.dead", "dead outbox messages", "条发送失败的消息"),
    ("home.held", "held sync runs", "个被暂停的同步"),
    ("home.low_balance", "SMS balance is low", "短信余额不足"),
    ("home.nothing", "Nothing needs attention.", "没有待处理的事项。"),
    ("home.recent_runs", "Last sync runs", "最近的同步"),
    ("home.units", "Org units", "部门数"),
    ("home.welcome", "Account center", "帐号中心"),
    ("import.applied", "Imported", "已导入"),
    ("import.apply", "Import the good rows", "导入正确的行"),
    ("import.errors", "Rows with errors (not imported)", "有错误的行（不会导入）"),
    ("import.file", "CSV file", "CSV 文件"),
    (
        "import.help",
        "Columns: login_name, display_name, mobile, email, title, employee_number, org_unit (a path such as Sales/East). Nothing is written until you confirm.",
        "列：login_name、display_name、mobile、email、title、employee_number、org_unit（路径，如 销售/华东）。确认前不会写入任何数据。",
    ),
    (
        "import.help_units",
        "An org-units file (the export's columns: org_unit, id, position, source) creates the units whose paths are missing.",
        "组织文件（导出的列：org_unit、id、position、source）会创建缺少的部门。",
    ),
    ("import.plan", "Plan", "计划"),
    ("import.preview", "Check the file", "检查文件"),
    ("import.row", "Row", "行"),
    ("import.title", "Import and export", "导入与导出"),
    ("login.account", "Enterprise id, account number or login name", "企业号、帐号或登录名"),
    (
        "login.busy",
        "Too many sign-ins are being checked right now; try again in a moment.",
        "当前登录请求过多，请稍后再试。",
    ),
    (
        "login.denied",
        "The sign-in policy does not allow this sign-in from here or at this time.",
        "登录策略不允许在此地点或此时间登录。",
    ),
    (
        "login.directory_down",
        "Your directory cannot be reached to check the password right now; try again shortly.",
        "暂时无法连接目录服务器验证密码，请稍后再试。",
    ),
    ("login.expired", "The sign-in form expired; please try again.", "登录表单已过期，请重试。"),
    (
        "login.failed",
        "Wrong account or password, or the account holds no role in the account center.",
        "帐号或密码错误，或该帐号在帐号中心没有角色。",
    ),
    (
        "login.locked",
        "Too many failed sign-ins. Sign-in is locked for a while; try again later.",
        "登录失败次数过多，已暂时锁定，请稍后再试。",
    ),
    ("login.missing", "Enter your account and password.", "请输入帐号和密码。"),
    ("login.password", "Password", "密码"),
    ("login.submit", "Sign in", "登录"),
    ("login.title", "Sign in to the account center", "登录帐号中心"),
    ("member.account_number", "Account number", "帐号"),
    ("member.created", "Member created with account number", "成员已创建，帐号为"),
    ("member.delete_reason", "Reason", "删除原因"),
    ("member.deleted", "Member deleted", "成员已删除"),
    ("member.display_name", "Name", "姓名"),
    ("member.email", "E-mail", "邮箱"),
    ("member.employee_number", "Employee number", "工号"),
    ("member.login_name", "Login name", "登录名"),
    ("member.mobile", "Mobile", "手机"),
    ("member.new", "Add member", "添加成员"),
    ("member.org_unit", "Department", "部门"),
    ("member.password", "Password (optional)", "密码（可选）"),
    (
        "member.quarantined",
        "Kept aside: these values from the member's source are held by another member. Each sync or provisioning write tries them again.",
        "暂存：以下来自该成员来源的值已被其他成员占用。每次同步或开通写入都会重试。",
    ),
    ("member.quarantined_field", "Field", "字段"),
    ("member.quarantined_since", "Since", "起始时间"),
    ("member.quarantined_value", "Value", "值"),
    (
        "member.read_only",
        "This member is owned by another source; change it there.",
        "该成员由其他来源管理，请在来源处修改。",
    ),
    ("member.resume", "Resume", "恢复"),
    ("member.saved", "Member saved", "成员已保存"),
    ("member.suspend", "Suspend", "停用"),
    ("member.title", "Title", "职务"),
    ("menu.accounts", "Accounts", "帐号管理"),
    ("menu.attendance", "Attendance", "考勤"),
    ("menu.audit", "Audit log", "操作日志"),
    ("menu.delivery", "Messages and SMS", "消息与短信"),
    ("menu.enterprise", "Enterprise", "企业资料"),
    ("menu.home", "Home", "首页"),
    ("menu.import", "Import / export", "导入导出"),
    ("menu.members", "Members", "成员"),
    ("menu.my_attendance", "My attendance", "我的考勤"),
    ("menu.my_sign_ins", "My sign-ins", "我的登录记录"),
    ("menu.org", "Organization", "组织架构"),
    ("menu.password", "Change password", "修改密码"),
    ("menu.records", "Message records", "消息记录"),
    ("menu.roles", "Roles", "角色权限"),
    ("menu.scim", "SCIM clients", "SCIM 客户端"),
    ("menu.sign_in", "Login management", "登录管理"),
    ("menu.sign_in_log", "Login log", "登录日志"),
    ("menu.sign_out", "Sign out", "退出"),
    ("menu.sync", "Directory sync", "目录同步"),
    ("org.children", "Sub-units", "下级部门"),
    ("org.delete_unit", "Delete unit", "删除部门"),
    ("org.members", "Members", "成员"),
    ("org.move", "Move", "移动"),
    ("org.new_unit", "New unit", "新建部门"),
    ("org.parent", "Parent unit", "上级部门"),
    ("org.position", "Position", "排序"),
    ("org.rename", "Rename", "重命名"),
    ("org.root", "(top level)", "（顶级）"),
    ("org.select", "Choose a unit in the tree.", "请在左侧选择部门。"),
    ("org.tree", "Org tree", "组织树"),
    ("org.unit_created", "Unit created", "部门已创建"),
    ("org.unit_deleted", "Unit deleted", "部门已删除"),
    ("org.unit_saved", "Unit saved", "部门已保存"),
    ("password.changed", "Password changed", "密码已修改"),
    ("password.confirm", "New password again", "再次输入新密码"),
    ("password.current", "Current password", "当前密码"),
    (
        "password.directory",
        "Your password is your directory's (LDAP / Active Directory): change it there.",
        "您的密码由目录服务（LDAP / Active Directory）管理，请在那里修改。",
    ),
    ("password.mismatch", "The two new passwords differ.", "两次输入的新密码不一致。"),
    (
        "password.must_change",
        "Choose a new super-admin password before you go on.",
        "请先设置新的超级管理员密码。",
    ),
    ("password.new", "New password (at least 12 characters)", "新密码（至少 12 个字符）"),
    ("password.wrong", "The current password is wrong.", "当前密码错误。"),
    ("perm.manage_login_policy", "Manage login policy", "管理登录策略"),
    ("perm.manage_members", "Manage members", "管理成员"),
    ("perm.manage_org", "Manage org structure", "管理组织架构"),
    ("perm.manage_scim", "Manage SCIM clients", "管理 SCIM 客户端"),
    ("perm.manage_sync", "Manage directory sync", "管理目录同步"),
    ("perm.send_sms", "Send SMS and broadcasts", "发送短信和广播"),
    ("perm.view_audit", "View audit log", "查看操作日志"),
    ("perm.view_messages", "View message records", "查看消息记录"),
    ("records.by", "By", "操作人"),
    ("records.conversation", "Conversation", "会话"),
    ("records.counterpart", "With (number, login name or address)", "对方（帐号、登录名或地址）"),
    ("records.days", "Days kept", "保存天数"),
    ("records.deleted", "Deleted accounts", "已删除帐号"),
    ("records.deleted_badge", "deleted", "已删除"),
    (
        "records.deleted_notice",
        "This account was deleted. Its records stay here; a new holder of its account number does not see them.",
        "该帐号已删除。其消息记录保留在此；该帐号的新持有人看不到这些记录。",
    ),
    ("records.download", "Download", "下载"),
    ("records.earlier", "Earlier", "更早"),
    ("records.export", "Export", "导出"),
    ("records.export_queued", "Export queued; it is prepared in the background", "导出已排队，正在后台准备"),
    ("records.exports", "Exports", "导出"),
    ("records.format", "Format", "格式"),
    ("records.from", "From", "发送人"),
    ("records.group", "Group", "群组"),
    ("records.groups", "Groups", "群组"),
    ("records.hold", "Place hold", "设置保全"),
    ("records.holds", "Legal holds", "法律保全"),
    ("records.image", "Image", "图片"),
    ("records.kept", "Kept", "保存"),
    ("records.kind", "Kind", "类型"),
    ("records.kind_direct", "One-to-one", "单聊"),
    ("records.kind_group", "Group", "群聊"),
    ("records.last", "Last message", "最后消息"),
    ("records.later", "Later", "更晚"),
    ("records.member", "Member", "成员"),
    ("records.messages", "Messages", "消息数"),
    ("records.no_group", "Choose a group from the list", "请从列表中选择群组"),
    ("records.no_member", "No member has this account number or login name", "没有成员使用该帐号或登录名"),
    ("records.none", "No records", "没有消息记录"),
    ("records.not_kept", "Not kept (owner is not an employee)", "不保存（群主不是员工）"),
    ("records.number", "Account number", "帐号"),
    ("records.progress", "Progress", "进度"),
    ("records.reason", "Reason", "原因"),
    ("records.release", "Release", "解除"),
    ("records.released", "Released", "已解除"),
    ("records.requested", "Requested", "申请时间"),
    ("records.retention", "Retention and legal holds", "保存期限与法律保全"),
    (
        "records.retention_help",
        "Records of members under a unit are deleted after its days (the nearest rule above a member applies; none: kept for good). A legal hold keeps a member's or a unit's records whatever the rules say.",
        "单位下成员的消息记录在保存天数后删除（适用成员上方最近的规则；无规则则永久保存）。法律保全使成员或单位的记录不受规则删除。",
    ),
    ("records.save", "Save", "保存"),
    ("records.saved", "Saved", "已保存"),
    ("records.search", "Search", "搜索"),
    ("records.target", "On", "对象"),
    ("records.text", "Text", "内容"),
    ("records.unit", "Unit", "部门"),
    ("records.when", "Sent", "时间"),
    ("records.who", "Member or unit", "成员或部门"),
    ("role.grant", "Grant to member", "授予成员"),
    ("role.grants", "Granted to", "已授予"),
    ("role.member", "Member (account number or login name)", "成员（帐号或登录名）"),
    ("role.new", "New role", "新建角色"),
    ("role.permissions", "Permissions", "权限"),
    ("role.revoke", "Revoke", "撤销"),
    ("role.saved", "Role saved", "角色已保存"),
    ("role.scope", "Scope", "管理范围"),
    ("role.scope_all", "Whole enterprise", "全企业"),
    ("scim.create", "Create token", "创建令牌"),
    ("scim.created", "Created", "创建时间"),
    ("scim.last_used", "Last used", "最近使用"),
    (
        "scim.name_reserved",
        "This name is taken: a token name is never reused, even after it is revoked. Rotate its secret instead.",
        "此名称已被使用：令牌名称即使吊销后也不会重复使用。请改为轮换其密钥。",
    ),
    ("scim.once", "Copy this token now: it is shown only once.", "请立即复制此令牌：它只显示一次。"),
    ("scim.revoke", "Revoke", "吊销"),
    ("scim.revoked", "Revoked", "已吊销"),
    ("scim.rotate", "Rotate secret", "轮换密钥"),
    (
        "scim.rotate_confirm",
        "Replace this client's secret? The old one stops working at once.",
        "更换此客户端的密钥？旧密钥将立即失效。",
    ),
    ("scim.rotated", "Rotated", "轮换时间"),
    ("signin.account", "Account (number or login name)", "帐号（帐号或登录名）"),
    ("signin.allow", "Allow", "允许"),
    ("signin.allowed", "allowed", "允许"),
    ("signin.any", "Any", "全部"),
    ("signin.app", "App", "应用"),
    ("signin.at", "At", "时间"),
    (
        "signin.bad_client",
        "console, ldap, ldap:NAME, api or api:KIND",
        "console、ldap、ldap:名称、api 或 api:类型",
    ),
    ("signin.bad_ip", "Not an IPv4 or IPv6 address", "不是 IPv4 或 IPv6 地址"),
    ("signin.bad_outcome", "Not a known outcome", "未知的结果"),
    ("signin.bad_time", "A date and time such as 2026-12-03T09:30", "日期时间，如 2026-12-03T09:30"),
    ("signin.bad_who", "Choose who the rule is about", "请选择规则适用的对象"),
    ("signin.bad_zone", "Not an IANA time zone (Asia/Shanghai)", "不是 IANA 时区（如 Asia/Shanghai）"),
    ("signin.by_default", "the default", "默认设置"),
    ("signin.by_rule", "rule", "规则"),
    ("signin.client", "Client", "客户端"),
    ("signin.clients", "Clients (one a line; none: any)", "客户端（每行一个；空：任意）"),
    ("signin.col_networks", "Networks", "网络"),
    ("signin.col_when", "When", "时段"),
    ("signin.decide", "Decide", "判定"),
    ("signin.default", "When no rule matches", "无规则匹配时"),
    ("signin.delete", "Delete", "删除"),
    ("signin.denied", "denied", "拒绝"),
    ("signin.deny", "Deny", "拒绝"),
    ("signin.edit", "Edit", "编辑"),
    ("signin.edit_rule", "Edit the rule", "编辑规则"),
    ("signin.effect", "Effect", "效果"),
    ("signin.except", "except", "例外"),
    (
        "signin.exceptions",
        "Dated exceptions (2026-10-01, or 2026-10-10 09:00-12:00)",
        "日期例外（2026-10-01 或 2026-10-10 09:00-12:00）",
    ),
    (
        "signin.help",
        "Rules are checked in order; the first that matches a sign-in decides. A rule's networks apply to the console and the sign-in API (the user's address); an LDAP bind comes from the app, so a rule with networks never matches a bind.",
        "规则按顺序检查，第一条匹配的规则决定结果。网络条件适用于控制台和登录接口（用户地址）；LDAP 绑定来自应用，带网络条件的规则不匹配 LDAP 绑定。",
    ),
    ("signin.ip", "Address", "地址"),
    ("signin.line", "line", "行"),
    ("signin.networks", "Networks (CIDR, one a line; none: anywhere)", "网络（CIDR，每行一个；空：任意）"),
    ("signin.new_rule", "Add a rule", "添加规则"),
    (
        "signin.no_group",
        "No group by that name or id (or the name is not unique)",
        "没有该名称或编号的群组（或名称不唯一）",
    ),
    ("signin.no_member", "No member by that account", "没有该帐号的成员"),
    ("signin.no_unit", "Name a unit (a path such as Sales / East)", "请填写部门（路径，如 销售 / 华东）"),
    ("signin.note", "Note", "备注"),
    ("signin.outcome", "Outcome", "结果"),
    ("signin.outcome_denied", "Denied by policy", "策略拒绝"),
    ("signin.outcome_failed", "Failed", "失败"),
    ("signin.outcome_inactive", "Inactive account", "帐号已停用"),
    ("signin.outcome_locked", "Locked", "已锁定"),
    ("signin.outcome_success", "Signed in", "登录成功"),
    ("signin.outcome_unavailable", "Directory unavailable", "目录不可用"),
    ("signin.reason", "Detail", "详情"),
    ("signin.rule", "Rule", "规则"),
    ("signin.save", "Save", "保存"),
    ("signin.saved", "Saved.", "已保存。"),
    ("signin.time_zone", "Time zone", "时区"),
    ("signin.unit", "Unit", "部门"),
    ("signin.what_if", "What if", "模拟判定"),
    ("signin.who", "Who", "适用对象"),
    ("signin.who_enterprise", "Everyone", "全体成员"),
    ("signin.who_group", "Group", "群组"),
    ("signin.who_member", "Member", "成员"),
    ("signin.who_unit", "Unit and below", "部门及下级"),
    (
        "signin.windows",
        "Weekly windows (mon-fri 08:00-18:00; none: any time)",
        "每周时段（mon-fri 08:00-18:00；空：任意时间）",
    ),
    ("state.active", "Active", "正常"),
    ("state.suspended", "Suspended", "已停用"),
    ("sync.approve", "Approve and apply", "批准并应用"),
    ("sync.counts", "Counts", "统计"),
    ("sync.dry_run", "Dry run", "试运行"),
    ("sync.errors", "Errors", "错误"),
    ("sync.finished", "Finished", "结束时间"),
    ("sync.full", "Full read", "全量读取"),
    ("sync.message", "Message", "说明"),
    ("sync.no_sources", "No [[sync.ldap]] sources are configured.", "尚未配置 [[sync.ldap]] 同步源。"),
    ("sync.plan", "Plan", "计划"),
    ("sync.run", "Run", "运行"),
    ("sync.run_now", "Run now", "立即运行"),
    ("sync.runs", "Runs", "运行记录"),
    ("sync.sources", "Sources", "同步源"),
    ("sync.started", "Started", "开始时间"),
    ("sync.trigger", "Trigger", "触发方式"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_are_sorted_unique_and_translated() {
        for w in TEXTS.windows(2) {
            assert!(w[0].0 < w[1].0, "{} must come before {}", w[1].0, w[0].0);
        }
        for (k, en, zh) in TEXTS {
            assert!(!en.is_empty() && !zh.is_empty(), "{k} needs both languages");
        }
    }

    /// Every key a template or a handler asks for exists.
    #[test]
    fn every_key_used_exists() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/admin");
        let mut files = Vec::new();
        let mut stack = vec![std::path::PathBuf::from(dir)];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "html" || x == "rs") {
                    files.push(p);
                }
            }
        }
        let mut used = 0;
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            for (i, _) in text.match_indices("t(\"") {
                let rest = &text[i + 3..];
                let key = &rest[..rest.find('"').unwrap()];
                if key.contains('.') && !key.contains(' ') {
                    used += 1;
                    assert!(TEXTS.iter().any(|(k, _, _)| *k == key), "{}: no text for {key:?}", f.display());
                }
            }
        }
        assert!(used > 50, "found only {used} uses; is the scan broken?");
    }

    #[test]
    fn language_comes_from_cookie_then_accept_language() {
        let mut h = HeaderMap::new();
        assert_eq!(Lang::from_headers(&h), Lang::En);
        h.insert(header::ACCEPT_LANGUAGE, "zh-CN,zh;q=0.9".parse().unwrap());
        assert_eq!(Lang::from_headers(&h), Lang::ZhCn);
        h.insert(header::COOKIE, "a=b; roster_lang=en".parse().unwrap());
        assert_eq!(Lang::from_headers(&h), Lang::En);
        assert_eq!(Lang::ZhCn.t("menu.home"), "首页");
    }
}
