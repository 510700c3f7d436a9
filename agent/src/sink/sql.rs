//! What a PostgreSQL statement does, from its tokens (sqlparser's tokenizer, PostgreSQL dialect:
//! quoting, dollar quotes, comments and `;` handled as the server does; no full parse, so any
//! SQL the server accepts splits and classifies). Reads: SELECT/VALUES/TABLE/WITH without a
//! data-changing part, SHOW, EXPLAIN without ANALYZE, BEGIN/START TRANSACTION READ ONLY, session
//! settings (SET, RESET), cursors over reads. Everything else is a mutation; a SELECT calling a
//! function the lists below do not know is unclassified (a function can do anything).
use sqlparser::{
    dialect::PostgreSqlDialect,
    tokenizer::{Token, Tokenizer},
};

use super::{Access, Category};

#[derive(Clone, Debug, PartialEq)]
pub struct Stmt {
    pub text: String,
    /// `SELECT`, `DROP TABLE`, `INSERT`, `ALTER SYSTEM`...
    pub operation: String,
    /// The table (or other object) it names first, if any.
    pub resource: String,
    pub access: Access,
    pub category: Option<Category>,
    /// CommandComplete's tag when the sink answers it (`DROP TABLE`, `INSERT 0 1`).
    pub tag: String,
    /// Columns of a captured SELECT's one made-up row (function name, value or NULL).
    pub columns: Vec<(String, Option<String>)>,
}

/// Functions that change the server or other sessions (admin, via SELECT).
const SIDE_EFFECTS: &[&str] = &[
    "pg_terminate_backend", "pg_cancel_backend", "pg_reload_conf", "pg_rotate_logfile", "pg_switch_wal", "pg_promote",
    "pg_create_restore_point", "pg_drop_replication_slot", "pg_create_physical_replication_slot",
    "pg_create_logical_replication_slot", "pg_replication_slot_advance", "pg_copy_physical_replication_slot",
    "pg_copy_logical_replication_slot", "pg_stat_reset", "pg_stat_reset_shared", "pg_stat_reset_single_table_counters",
    "pg_stat_reset_single_function_counters", "pg_stat_reset_slru", "pg_stat_reset_replication_slot", "pg_backup_start",
    "pg_backup_stop", "pg_start_backup", "pg_stop_backup", "pg_wal_replay_pause", "pg_wal_replay_resume", "setval", "nextval",
    "set_config", "lo_unlink", "lo_import", "lo_export", "lo_create", "lo_put", "lo_truncate", "pg_file_write", "pg_file_unlink",
    "pg_file_rename", "pg_advisory_lock", "pg_advisory_xact_lock", "pg_try_advisory_lock", "pg_advisory_unlock",
    "pg_advisory_unlock_all", "pg_notify", "pg_log_backend_memory_contexts", "pg_replication_origin_create",
    "pg_replication_origin_drop", "pg_logical_emit_message", "pg_import_system_collations", "dblink", "dblink_exec",
    "pg_sleep", "txid_current", "pg_current_xact_id",
];

/// Functions known to read only (plus the prefixes in `reads_only`).
const READS: &[&str] = &[
    "count", "sum", "avg", "min", "max", "now", "version", "current_setting", "current_database", "current_schema",
    "current_schemas", "current_user", "session_user", "coalesce", "nullif", "greatest", "least", "length", "lower", "upper",
    "substring", "substr", "trim", "btrim", "ltrim", "rtrim", "replace", "concat", "concat_ws", "format", "left", "right", "split_part",
    "position", "strpos", "regexp_replace", "regexp_match", "regexp_matches", "string_agg", "array_agg", "array_to_string",
    "array_length", "unnest", "generate_series", "round", "floor", "ceil", "abs", "trunc", "mod", "extract", "date_trunc", "date_part",
    "age", "clock_timestamp", "statement_timestamp", "transaction_timestamp", "timeofday", "json_agg", "jsonb_agg", "json_build_object",
    "jsonb_build_object", "row_to_json", "to_json", "to_jsonb", "jsonb_pretty", "quote_ident", "quote_literal", "obj_description",
    "col_description", "shobj_description", "format_type", "exists", "any", "all", "array", "cast", "row_number", "rank",
    "dense_rank", "lag", "lead", "first_value", "last_value", "bool_and", "bool_or", "md5", "encode", "decode", "inet_server_addr",
    "inet_server_port", "inet_client_addr", "txid_current_snapshot", "txid_current_if_assigned", "char_length", "octet_length",
    "random", "case", "in", "values", "over", "filter", "within", "lateral", "exists", "not", "and", "or", "cardinality",
    // Keywords a `(` may follow: not calls.
    "as", "on", "using", "from", "join", "where", "select", "with", "row", "cube", "rollup", "grouping", "into", "table", "window",
    "partition", "by", "when", "then", "else", "by", "set", "recursive", "materialized", "distinct", "interval", "numeric", "decimal",
    "varchar", "char", "timestamp", "time", "float", "bit", "union", "intersect", "except", "returning", "limit", "offset",
];

fn reads_only(f: &str) -> bool {
    READS.contains(&f)
        || ["pg_get_", "pg_stat_get_", "pg_size_", "pg_is_", "has_", "pg_table_", "pg_relation_", "pg_total_relation_", "pg_indexes_",
            "pg_database_", "pg_tablespace_", "pg_last_", "pg_current_wal_", "pg_wal_lsn_", "pg_ls_", "pg_postmaster_", "pg_conf_",
            "pg_backend_", "pg_blocking_", "pg_column_", "pg_encoding_", "pg_describe_", "pg_function_", "pg_type_", "pg_opclass_",
            "pg_operator_", "pg_collation_", "pg_ts_", "pg_conversion_", "pg_jit_", "pg_my_", "to_", "array_", "json_", "jsonb_", "string_",
            "regexp_", "date_", "make_", "pg_options_", "pg_visible_", "pg_index_", "pg_settings_", "pg_control_", "pg_tablespace_", "pg_trigger_"]
            .iter()
            .any(|p| f.starts_with(p))
}

/// Split a simple query's text into statements and classify each.
pub fn statements(sql: &str) -> Vec<Stmt> {
    let dialect = PostgreSqlDialect {};
    let Ok(tokens) = Tokenizer::new(&dialect, sql).tokenize() else {
        return vec![unclassified(sql, "unparsable")];
    };
    let mut out = Vec::new();
    let mut cur: Vec<Token> = Vec::new();
    for t in tokens.into_iter().chain(std::iter::once(Token::SemiColon)) {
        if t == Token::SemiColon {
            let text = cur.iter().map(|t| t.to_string()).collect::<String>().trim().to_string();
            let words: Vec<Token> = cur.drain(..).filter(|t| !matches!(t, Token::Whitespace(_))).collect();
            if !words.is_empty() {
                out.push(classify(&text, &words));
            }
            continue;
        }
        cur.push(t);
    }
    out
}

fn unclassified(text: &str, op: &str) -> Stmt {
    Stmt { text: text.into(), operation: op.into(), resource: String::new(), access: Access::Unclassified, category: None, tag: "SELECT 0".into(), columns: Vec::new() }
}

/// The keyword a token is (unquoted words only, upper-cased).
fn kw(t: &Token) -> Option<String> {
    match t {
        Token::Word(w) if w.quote_style.is_none() => Some(w.value.to_uppercase()),
        _ => None,
    }
}

fn classify(text: &str, t: &[Token]) -> Stmt {
    let k: Vec<Option<String>> = t.iter().map(kw).collect();
    let word = |i: usize| k.get(i).cloned().flatten().unwrap_or_default();
    let has = |w: &str| k.iter().any(|x| x.as_deref() == Some(w));
    let first = word(0);
    let mut s = Stmt {
        text: text.into(),
        operation: first.clone(),
        resource: String::new(),
        access: Access::Mutation,
        category: Some(Category::Admin),
        tag: first.clone(),
        columns: Vec::new(),
    };
    let read = |mut s: Stmt| {
        s.access = Access::Read;
        s.category = None;
        s
    };
    match first.as_str() {
        "SELECT" | "VALUES" | "TABLE" | "WITH" => {
            s.resource = object_after(t, &["FROM", "TABLE"]);
            s.tag = "SELECT 1".into();
            s.operation = "SELECT".into();
            if ["INSERT", "UPDATE", "DELETE", "MERGE", "TRUNCATE"].iter().any(|w| has(w)) && !for_update(&k) {
                s.category = Some(if has("DELETE") || has("TRUNCATE") { Category::Delete } else { Category::Write });
                s.operation = if first == "WITH" { "WITH (data-modifying)".into() } else { s.operation };
                return s;
            }
            if for_update(&k) || (first == "SELECT" && has("INTO")) {
                s.category = Some(Category::Write);
                s.operation = if has("INTO") { "SELECT INTO".into() } else { "SELECT FOR UPDATE".into() };
                return s;
            }
            let calls = functions(t);
            s.columns = calls.iter().map(|f| (f.clone(), None)).collect();
            if let Some(f) = calls.iter().find(|f| SIDE_EFFECTS.contains(&f.as_str())) {
                s.operation = format!("SELECT {f}()");
                s.columns = vec![(f.clone(), Some("t".into()))];
                return s;
            }
            if let Some(f) = calls.iter().find(|f| !reads_only(f)) {
                s.access = Access::Unclassified;
                s.category = None;
                s.operation = format!("SELECT {f}()");
                return s;
            }
            read(s)
        }
        "SHOW" | "LISTEN" | "UNLISTEN" | "FETCH" | "MOVE" | "CLOSE" | "DEALLOCATE" | "DISCARD" | "RESET" => {
            s.resource = word(1).to_lowercase();
            read(s)
        }
        "SET" => {
            s.resource = t.iter().skip(1).find_map(|x| kw(x).filter(|w| !["SESSION", "LOCAL"].contains(&w.as_str()))).unwrap_or_default().to_lowercase();
            read(s)
        }
        "DECLARE" => {
            let inner = t.iter().position(|x| kw(x).as_deref() == Some("FOR")).map(|i| classify(text, &t[i + 1..]));
            match inner {
                Some(i) if i.access == Access::Read => read(s),
                _ => s,
            }
        }
        "EXPLAIN" => {
            // EXPLAIN ANALYZE runs the statement.
            let analyze = k.iter().take(8).any(|w| w.as_deref() == Some("ANALYZE") || w.as_deref() == Some("ANALYSE"));
            let start = t.iter().position(|x| matches!(kw(x).as_deref(), Some("SELECT" | "INSERT" | "UPDATE" | "DELETE" | "WITH" | "VALUES" | "MERGE" | "TABLE" | "CREATE" | "EXECUTE" | "DECLARE")));
            let inner = start.map(|i| classify(text, &t[i..]));
            s.resource = inner.as_ref().map(|i| i.resource.clone()).unwrap_or_default();
            if !analyze || inner.as_ref().is_some_and(|i| i.access == Access::Read) {
                s.tag = "EXPLAIN".into();
                return read(s);
            }
            s.operation = "EXPLAIN ANALYZE".into();
            s.category = inner.and_then(|i| i.category);
            s
        }
        "BEGIN" | "START" => {
            s.operation = if first == "START" { "START TRANSACTION".into() } else { "BEGIN".into() };
            s.tag = if first == "START" { "START TRANSACTION".into() } else { "BEGIN".into() };
            let ro = k.windows(2).any(|w| w[0].as_deref() == Some("READ") && w[1].as_deref() == Some("ONLY"));
            if ro {
                return read(s);
            }
            // Transaction control changes no data by itself: its statements are judged.
            s.category = None;
            s
        }
        "COMMIT" | "END" | "ROLLBACK" | "ABORT" => {
            s.tag = if matches!(first.as_str(), "COMMIT" | "END") { "COMMIT".into() } else { "ROLLBACK".into() };
            s.category = None;
            s
        }
        "COPY" => {
            s.resource = object_after(t, &["COPY"]);
            if has("TO") && (has("STDOUT") || !text.contains('\'')) {
                s.tag = "COPY 0".into();
                return read(s);
            }
            s.category = Some(if has("FROM") { Category::Write } else { Category::Admin });
            s.operation = if has("FROM") { "COPY FROM".into() } else { "COPY TO".into() };
            s.tag = "COPY 0".into();
            s
        }
        "INSERT" => {
            s.resource = object_after(t, &["INTO"]);
            s.category = Some(Category::Write);
            s.tag = format!("INSERT 0 {}", values_rows(t).max(1));
            s
        }
        "UPDATE" | "MERGE" => {
            s.resource = object_after(t, &["UPDATE", "INTO"]);
            s.category = Some(Category::Write);
            s.tag = format!("{first} 0");
            s
        }
        "DELETE" => {
            s.resource = object_after(t, &["FROM"]);
            s.category = Some(Category::Delete);
            s.tag = "DELETE 0".into();
            s
        }
        "TRUNCATE" => {
            s.resource = object_after(t, &["TRUNCATE", "TABLE"]);
            s.category = Some(Category::Delete);
            s.tag = "TRUNCATE TABLE".into();
            s
        }
        "DROP" | "CREATE" | "ALTER" | "COMMENT" | "SECURITY" | "REFRESH" | "IMPORT" => {
            let object = t.iter().skip(1).filter_map(kw).find(|w| !["OR", "REPLACE", "UNIQUE", "TEMP", "TEMPORARY", "UNLOGGED", "GLOBAL", "LOCAL", "IF", "NOT", "EXISTS", "CONCURRENTLY", "MATERIALIZED", "DEFAULT", "RECURSIVE", "TRUSTED", "PROCEDURAL", "CONSTRAINT"].contains(&w.as_str())).unwrap_or_default();
            let materialized = has("MATERIALIZED");
            let object = if materialized && object == "VIEW" { "MATERIALIZED VIEW".into() } else { object };
            s.operation = format!("{first} {object}");
            s.tag = s.operation.clone();
            s.resource = object_after(t, &[object.rsplit(' ').next().unwrap_or("")]);
            s.category = Some(if first == "DROP" { Category::Delete } else { Category::Admin });
            s
        }
        "GRANT" | "REVOKE" | "REINDEX" | "CLUSTER" | "VACUUM" | "ANALYZE" | "ANALYSE" | "CHECKPOINT" | "LOCK" | "REASSIGN" | "CALL" | "DO"
        | "LOAD" | "NOTIFY" | "PREPARE" | "EXECUTE" => {
            s.resource = word(1).to_lowercase();
            if matches!(first.as_str(), "PREPARE" | "EXECUTE" | "CALL" | "DO") {
                s.access = Access::Unclassified;
                s.category = None;
            }
            s.tag = if first == "ANALYSE" { "ANALYZE".into() } else { first };
            s
        }
        _ => unclassified(text, &first),
    }
}

fn for_update(k: &[Option<String>]) -> bool {
    k.windows(2).any(|w| w[0].as_deref() == Some("FOR") && matches!(w[1].as_deref(), Some("UPDATE" | "SHARE" | "NO" | "KEY")))
}

/// The (possibly qualified) name after the first of `after`, skipping IF [NOT] EXISTS/ONLY.
fn object_after(t: &[Token], after: &[&str]) -> String {
    let Some(i) = t.iter().position(|x| kw(x).is_some_and(|w| after.contains(&w.as_str()))) else { return String::new() };
    let mut name = String::new();
    for x in &t[i + 1..] {
        match x {
            Token::Word(w) if name.is_empty() && w.quote_style.is_none() && ["IF", "NOT", "EXISTS", "ONLY", "TABLE"].contains(&w.value.to_uppercase().as_str()) => {}
            Token::Word(w) if name.is_empty() || name.ends_with('.') => name.push_str(&w.value),
            Token::Period if !name.is_empty() => name.push('.'),
            _ => break,
        }
    }
    name
}

/// Names of the functions a statement calls (a word followed by `(`), unqualified, lower case.
fn functions(t: &[Token]) -> Vec<String> {
    let mut out = Vec::new();
    for w in t.windows(2) {
        if let (Token::Word(word), Token::LParen) = (&w[0], &w[1]) {
            let name = word.value.to_lowercase();
            if !out.contains(&name) {
                out.push(name);
            }
        }
    }
    out
}

/// Rows of an INSERT ... VALUES (..), (..): top-level parenthesised groups after VALUES.
fn values_rows(t: &[Token]) -> usize {
    let Some(i) = t.iter().position(|x| kw(x).as_deref() == Some("VALUES")) else { return 1 };
    let (mut depth, mut rows) = (0, 0);
    for x in &t[i + 1..] {
        match x {
            Token::LParen => {
                if depth == 0 {
                    rows += 1;
                }
                depth += 1;
            }
            Token::RParen => depth -= 1,
            _ if depth == 0 && kw(x).is_some() => break,
            _ => {}
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(sql: &str) -> Stmt {
        statements(sql).remove(0)
    }

    #[test]
    fn reads_pass_and_everything_else_is_a_mutation() {
        for r in ["SELECT count(*) FROM accounts", "show max_connections", "EXPLAIN SELECT 1", "BEGIN READ ONLY", "WITH x AS (SELECT 1) SELECT * FROM x",
            "SELECT pg_size_pretty(pg_database_size('app'))", "select * from pg_stat_activity", "SET search_path TO app", "VALUES (1)",
            "SELECT n.nspname, pg_catalog.format_type(a.atttypid, a.atttypmod) FROM pg_catalog.pg_namespace n", "COPY t TO STDOUT"] {
            assert_eq!(one(r).access, Access::Read, "{r}");
        }
        let m = one("DROP TABLE IF EXISTS public.accounts");
        assert_eq!((m.operation.as_str(), m.resource.as_str(), m.category, m.tag.as_str()), ("DROP TABLE", "public.accounts", Some(Category::Delete), "DROP TABLE"));
        assert_eq!(one("insert into t values (1), (2)").tag, "INSERT 0 2");
        assert_eq!(one("DELETE FROM t WHERE id = 1").resource, "t");
        assert_eq!(one("EXPLAIN ANALYZE DELETE FROM t").access, Access::Mutation, "EXPLAIN ANALYZE runs it");
        assert_eq!(one("EXPLAIN ANALYZE SELECT 1").access, Access::Read);
        assert_eq!(one("BEGIN").access, Access::Mutation);
        assert_eq!(one("ALTER SYSTEM SET work_mem = '1GB'").operation, "ALTER SYSTEM");
        assert_eq!(one("SELECT pg_terminate_backend(42)").operation, "SELECT pg_terminate_backend()");
        assert_eq!(one("SELECT my_cleanup()").access, Access::Unclassified, "an unknown function may do anything");
        assert_eq!(one("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d").category, Some(Category::Delete));
        assert_eq!(one("SELECT * FROM t FOR UPDATE").access, Access::Mutation);
        assert_eq!(one("TRUNCATE accounts").resource, "accounts");
    }

    #[test]
    fn splits_on_semicolons_outside_quotes() {
        let s = statements("SELECT ';'; DROP TABLE t; -- c;\n");
        assert_eq!(s.len(), 2, "{s:?}");
        assert_eq!(s[1].operation, "DROP TABLE");
        assert_eq!(statements("SELECT $$a;b$$").len(), 1);
    }
}
