//! Query building for [`crate::directory::query::Query`]: filters, order and paging as SQL, values
//! bound, never pasted.

macro_rules! sql_search {
    ($db:ty, $Store:ident, $Tx:ident, $err:path, $children:expr, $keys:expr, $memberships:expr) => {
        /// Appends `e` as SQL over the `members` (or `groups`) table, values bound, never pasted.
        fn push_expr(qb: &mut sqlx::QueryBuilder<$db>, e: &$crate::directory::query::Expr) {
            use $crate::directory::query::{Expr, Field as F, Op, Val};
            match e {
                Expr::And(a, b) | Expr::Or(a, b) => {
                    qb.push("(");
                    push_expr(qb, a);
                    qb.push(if matches!(e, Expr::And(..)) { " AND " } else { " OR " });
                    push_expr(qb, b);
                    qb.push(")");
                }
                Expr::Not(a) => {
                    qb.push("NOT (");
                    push_expr(qb, a);
                    qb.push(")");
                }
                Expr::Const(b) => {
                    qb.push(if *b { "(1 = 1)" } else { "(1 = 0)" });
                }
                Expr::PrimaryUnitUnder(roots) if roots.is_empty() => {
                    qb.push("(1 = 0)");
                }
                Expr::PrimaryUnitUnder(roots) => {
                    qb.push("(primary_org_unit_id IN (WITH RECURSIVE sub (id, depth) AS (SELECT id, 0 FROM org_units WHERE id IN (");
                    let mut list = qb.separated(", ");
                    for r in roots {
                        list.push_bind(*r);
                    }
                    // Bounded depth: a corrupt cycle in stored data cannot loop forever.
                    qb.push(") UNION ALL SELECT o.id, sub.depth + 1 FROM org_units o JOIN sub ON o.parent_id = sub.id \
                             WHERE sub.depth < 10000) SELECT id FROM sub))");
                }
                Expr::AnyEmail(inner) => {
                    qb.push("EXISTS (SELECT 1 FROM member_emails e WHERE e.member_id = members.id AND ");
                    push_expr(qb, inner);
                    qb.push(")");
                }
                Expr::AnyGroupMember(inner) => {
                    qb.push("EXISTS (SELECT 1 FROM group_members gm WHERE gm.group_id = groups.id AND ");
                    push_expr(qb, inner);
                    qb.push(")");
                }
                Expr::Present(f) => {
                    let (col, text) = column(*f);
                    qb.push(format!("({col} IS NOT NULL"));
                    if text {
                        qb.push(format!(" AND {col} <> ''"));
                    }
                    qb.push(")");
                }
                Expr::Cmp(F::Active, op, Val::Bool(b)) if matches!(op, Op::Eq | Op::Ne) => {
                    let want_active = *b == (*op == Op::Eq);
                    qb.push(if want_active { "(state = 'active')" } else { "(state <> 'active')" });
                }
                Expr::Cmp(f, op, val) => {
                    let (col, _) = column(*f);
                    // Lower-case-stored columns compare as they are (their indexes apply); other
                    // case-insensitive text compares lower-cased.
                    let folded = matches!(f, F::DisplayName | F::GivenName | F::FamilyName | F::Title | F::EmailKind | F::GroupName);
                    let lowered = folded || matches!(f, F::LoginName | F::EmailAddress | F::Mobile);
                    let lhs = if folded { format!("LOWER({col})") } else { col.to_owned() };
                    let sql_op = match op {
                        Op::Eq => "=",
                        Op::Ne => "<>",
                        Op::Gt => ">",
                        Op::Ge => ">=",
                        Op::Lt => "<",
                        Op::Le => "<=",
                        Op::Co | Op::Sw | Op::Ew => "LIKE",
                    };
                    if let Val::Null = val {
                        qb.push(match op {
                            Op::Eq => format!("({col} IS NULL)"),
                            Op::Ne => format!("({col} IS NOT NULL)"),
                            _ => "(1 = 0)".to_owned(),
                        });
                        return;
                    }
                    if *op == Op::Ne {
                        qb.push(format!("({col} IS NULL OR {lhs} <> "));
                    } else {
                        qb.push(format!("({lhs} {sql_op} "));
                    }
                    match val {
                        Val::Text(t) => {
                            let t = if lowered { t.to_lowercase() } else { t.clone() };
                            let t = match op {
                                Op::Co | Op::Sw | Op::Ew => {
                                    let esc = t.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
                                    match op {
                                        Op::Co => format!("%{esc}%"),
                                        Op::Sw => format!("{esc}%"),
                                        _ => format!("%{esc}"),
                                    }
                                }
                                _ => t,
                            };
                            qb.push_bind(t);
                        }
                        Val::Int(i) => {
                            qb.push_bind(*i);
                        }
                        Val::Bool(b) => {
                            qb.push_bind(*b);
                        }
                        Val::Time(t) => {
                            qb.push_bind(*t);
                        }
                        Val::Uuid(u) => {
                            qb.push_bind(*u);
                        }
                        Val::Null => unreachable!("handled above"),
                    }
                    if matches!(op, Op::Co | Op::Sw | Op::Ew) {
                        qb.push(" ESCAPE '\\'");
                    }
                    qb.push(")");
                }
            }
        }

        /// The column of a field, and whether it holds text.
        fn column(f: $crate::directory::query::Field) -> (&'static str, bool) {
            use $crate::directory::query::Field as F;
            match f {
                F::Id => ("id", false),
                F::Source => ("source", true),
                F::Anchor => ("anchor", true),
                F::LoginName => ("login_name", true),
                F::DisplayName => ("display_name", true),
                F::GivenName => ("given_name", true),
                F::FamilyName => ("family_name", true),
                F::Title => ("title", true),
                F::EmployeeNumber => ("employee_number", true),
                F::Mobile => ("mobile", true),
                F::Active => ("state", true),
                F::AccountNumber => ("account_number", false),
                F::ManagerId => ("manager_id", false),
                F::PrimaryOrgUnitId => ("primary_org_unit_id", false),
                F::Created => ("created_at", false),
                F::Modified => ("updated_at", false),
                F::EmailAddress => ("e.address", true),
                F::EmailKind => ("e.kind", true),
                F::EmailPrimary => ("e.is_primary", false),
                F::GroupName => ("name", true),
                F::GroupMemberId => ("gm.member_id", false),
            }
        }

        fn push_where(qb: &mut sqlx::QueryBuilder<$db>, q: &$crate::directory::query::Query) {
            if let Some(f) = &q.filter {
                qb.push(" WHERE ");
                push_expr(qb, f);
            }
        }

        /// The total a page tells without counting: a page that is not full is the last one
        /// (unless it is empty past the first, when the total may be anything below its offset).
        fn known_total(q: &$crate::directory::query::Query, got: usize) -> Option<i64> {
            let got = got as i64;
            (q.limit > 0 && got < q.limit && (got > 0 || q.offset == 0)).then_some(q.offset + got)
        }

        fn push_order(qb: &mut sqlx::QueryBuilder<$db>, q: &$crate::directory::query::Query, default: &str) {
            match q.sort {
                Some((f, desc)) => {
                    let (col, _) = column(f);
                    let dir = if desc { "DESC" } else { "ASC" };
                    if f == $crate::directory::query::Field::AccountNumber {
                        // Unique already: no tie-breaker, so an index on (unit, number) serves
                        // the order without a sort.
                        qb.push(format!(" ORDER BY {col} {dir}"));
                    } else {
                        qb.push(format!(" ORDER BY {col} {dir}, id {dir}"));
                    }
                }
                None if default.is_empty() => {}
                None => {
                    qb.push(format!(" ORDER BY {default}"));
                }
            }
            qb.push(" LIMIT ");
            qb.push_bind(q.limit);
            qb.push(" OFFSET ");
            qb.push_bind(q.offset);
        }
    };
}
