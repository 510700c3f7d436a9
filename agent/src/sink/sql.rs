//! What a PostgreSQL statement does, from its tokens (sqlparser's tokenizer, PostgreSQL dialect:
//! quoting, dollar quotes, comments and `;` handled as the server does; no full parse, so any
//! SQL the server accepts splits and classifies). Reads: SELECT/VALUES/TABLE/WITH without a
//! data-changing part, SHOW, EXPLAIN without ANALYZE, transaction control (not two-phase),
//! session settings (SET, RESET), cursors over reads, LOCK in ACCESS SHARE mode, PREPARE.
//! Everything else is a mutation; a SELECT calling a function the lists below do not know is
//! unclassified (a function can do anything). Also the replication protocol's commands
//! (`replication`).
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
    /// PREPARE: the statement it prepares, classified.
    pub prepared: Option<Box<Stmt>>,
}

/// Functions that change the server or other sessions (admin, via SELECT).
const SIDE_EFFECTS: &[&str] = &[
    "pg_terminate_backend", "pg_cancel_backend", "pg_reload_conf", "pg_rotate_logfile", "pg_switch_wal", "pg_promote",
    "pg_create_restore_point", "pg_drop_replication_slot", "pg_create_physical_replication_slot",
    "pg_create_logical_replication_slot", "pg_replication_slot_advance", "pg_copy_physical_replication_slot",
    "pg_copy_logical_replication_slot", "pg_stat_reset", "pg_stat_reset_shared", "pg_stat_reset_single_table_counters",
    "pg_stat_reset_single_function_counters", "pg_stat_reset_slru", "pg_stat_reset_replication_slot", "pg_backup_start",
    "pg_backup_stop", "pg_start_backup", "pg_stop_backup", "pg_wal_replay_pause", "pg_wal_replay_resume", "setval", "nextval",
    "lo_unlink", "lo_import", "lo_export", "lo_create", "lo_put", "lo_truncate", "pg_file_write", "pg_file_unlink",
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
    "operator", "collate", "only", "nulls", "some",
];

/// PostgreSQL's system information and catalog functions (the manual's "System Information
/// Functions and Operators": session information, access privilege inquiry, schema
/// visibility, catalog information, object information, comments, transaction snapshots,
/// control data) and the array and cast functions pg_dump, pg_basebackup and psql's `\d`
/// commands call. Each only reads the catalogs or the session; none changes server state.
/// Not here on purpose: `pg_current_xact_id`/`txid_current` (they assign a transaction id),
/// `nextval`/`setval`, the advisory locks (SIDE_EFFECTS).
const CATALOG_READS: &[&str] = &[
    // Session information.
    "current_catalog", "current_query", "getdatabaseencoding", "pg_client_encoding", "current_role", "inet_client_port", "pg_current_logfile", "pg_listening_channels",
    "pg_notification_queue_usage", "pg_safe_snapshot_blocking_pids", "user", "row_security_active",
    // Access privileges: acldefault(type, owner) is the default ACL, makeaclitem builds one.
    "acldefault", "aclexplode", "makeaclitem", "pg_has_role",
    // Schema visibility (the pg_*_is_visible family is matched by prefix as well).
    "pg_opfamily_is_visible", "pg_statistics_obj_is_visible",
    // Catalog information.
    "pg_char_to_encoding", "pg_typeof", "pg_indexam_has_property", "pg_identify_object", "pg_identify_object_as_address",
    "pg_sequence_last_value", "pg_sequence_parameters", "pg_filenode_relation", "pg_partition_root", "pg_partition_tree",
    "pg_partition_ancestors", "pg_relation_is_publishable", "pg_input_is_valid", "pg_input_error_info", "unicode_version",
    // Transaction ids and snapshots that assign nothing; pg_export_snapshot exports the
    // transaction's own snapshot for as long as it lasts (pg_dump -j).
    "pg_current_xact_id_if_assigned", "pg_current_snapshot", "pg_snapshot_xip", "pg_snapshot_xmax", "pg_snapshot_xmin",
    "pg_visible_in_snapshot", "pg_xact_status", "txid_snapshot_xip", "txid_snapshot_xmax", "txid_snapshot_xmin",
    "txid_visible_in_snapshot", "txid_status", "pg_xact_commit_timestamp", "pg_xact_commit_timestamp_origin", "pg_export_snapshot",
    "pg_walfile_name", "pg_walfile_name_offset", "pg_split_walfile_name",
    // Arrays and sets (the array_* family by prefix).
    "trim_array", "generate_subscripts", "string_to_array",
    // Object-identifier casts written as calls (regclass('t')), and functional casts.
    "regclass", "regtype", "regproc", "regprocedure", "regoper", "regoperator", "regnamespace", "regrole", "regconfig",
    "regdictionary", "regcollation", "oid", "text", "name", "int2", "int4", "int8", "integer", "bigint", "smallint", "bool",
    "boolean", "float4", "float8", "bpchar", "date",
    // set_config(name, value, is_local) is SET in a function's clothes: it changes the
    // session's (or the transaction's) setting only, as SET does (a read here).
    "set_config",
];

fn reads_only(f: &str) -> bool {
    READS.contains(&f)
        || CATALOG_READS.contains(&f)
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
    Stmt { text: text.into(), operation: op.into(), resource: String::new(), access: Access::Unclassified, category: None, tag: "SELECT 0".into(), columns: Vec::new(), prepared: None }
}

/// A name as the server folds it: unquoted lower-cased, quoted kept.
fn ident(t: &Token) -> Option<String> {
    match t {
        Token::Word(w) if w.quote_style.is_none() => Some(w.value.to_lowercase()),
        Token::Word(w) => Some(w.value.clone()),
        _ => None,
    }
}

/// The transaction id of PREPARE TRANSACTION / COMMIT PREPARED: its string literal.
fn prepared_gid(t: &[Token]) -> String {
    t.iter().find_map(|x| if let Token::SingleQuotedString(g) = x { Some(g.clone()) } else { None }).unwrap_or_default()
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
        prepared: None,
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
        // Transaction control goes to the server, so its transaction state stays true (a
        // pg_dump's REPEATABLE READ snapshot is the server's): by itself it changes no data,
        // and the mutations inside are judged (and captured) one by one. Two-phase commit is
        // not: a prepared transaction outlives the session and holds its locks.
        "BEGIN" | "START" => {
            s.operation = if first == "START" { "START TRANSACTION".into() } else { "BEGIN".into() };
            s.tag = if first == "START" { "START TRANSACTION".into() } else { "BEGIN".into() };
            read(s)
        }
        "COMMIT" | "END" | "ROLLBACK" | "ABORT" if word(1) == "PREPARED" => {
            // Finishes a transaction another session prepared: its writes made visible, or
            // thrown away.
            let commit = first == "COMMIT";
            s.operation = if commit { "COMMIT PREPARED".into() } else { "ROLLBACK PREPARED".into() };
            s.tag = s.operation.clone();
            s.resource = prepared_gid(t);
            s.category = Some(if commit { Category::Write } else { Category::Delete });
            s
        }
        "ROLLBACK" | "ABORT" if has("TO") => {
            s.operation = "ROLLBACK TO SAVEPOINT".into();
            s.tag = "ROLLBACK".into();
            read(s)
        }
        "COMMIT" | "END" | "ROLLBACK" | "ABORT" => {
            s.tag = if matches!(first.as_str(), "COMMIT" | "END") { "COMMIT".into() } else { "ROLLBACK".into() };
            read(s)
        }
        "SAVEPOINT" | "RELEASE" => {
            s.resource = t.iter().skip(1).filter_map(ident).find(|w| !w.eq_ignore_ascii_case("SAVEPOINT")).unwrap_or_default();
            read(s)
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
        "LOCK" => {
            // ACCESS SHARE is what every SELECT takes (pg_dump takes it explicitly, inside its
            // read-only transaction): it blocks only ACCESS EXCLUSIVE (DROP, ALTER, VACUUM
            // FULL). Any stronger mode (LOCK without a mode is ACCESS EXCLUSIVE) holds live
            // writers or readers off for as long as the transaction lasts.
            s.resource = object_after(t, &["LOCK"]);
            s.operation = "LOCK TABLE".into();
            s.tag = "LOCK TABLE".into();
            let mode: Vec<&str> = k.iter().flatten().map(String::as_str).skip_while(|w| *w != "IN").skip(1).take_while(|w| *w != "MODE").collect();
            if mode == ["ACCESS", "SHARE"] {
                return read(s);
            }
            s
        }
        "PREPARE" if word(1) == "TRANSACTION" => {
            // The transaction outlives the session, holding its locks, until someone commits it.
            s.operation = "PREPARE TRANSACTION".into();
            s.tag = "PREPARE TRANSACTION".into();
            s.resource = prepared_gid(t);
            s
        }
        "PREPARE" => {
            // A named statement of the session: parsed, not run. Its EXECUTE is judged by what
            // it prepared (the session remembers it).
            s.resource = ident(t.get(1).unwrap_or(&Token::EOF)).unwrap_or_default();
            let body = t.iter().position(|x| kw(x).as_deref() == Some("AS")).map(|i| classify(text, &t[i + 1..]));
            s.prepared = body.map(Box::new);
            read(s)
        }
        "EXECUTE" => {
            // Unknown unless the session prepared it (postgres.rs looks it up).
            s.resource = ident(t.get(1).unwrap_or(&Token::EOF)).unwrap_or_default();
            s.access = Access::Unclassified;
            s.category = None;
            s.tag = "SELECT 0".into();
            s
        }
        "GRANT" | "REVOKE" | "REINDEX" | "CLUSTER" | "VACUUM" | "ANALYZE" | "ANALYSE" | "CHECKPOINT" | "REASSIGN" | "CALL" | "DO"
        | "LOAD" | "NOTIFY" => {
            s.resource = word(1).to_lowercase();
            if matches!(first.as_str(), "CALL" | "DO") {
                s.access = Access::Unclassified;
                s.category = None;
            }
            s.tag = if first == "ANALYSE" { "ANALYZE".into() } else { first };
            s
        }
        _ => unclassified(text, &first),
    }
}

/// A command of the replication protocol (a connection with `replication=true` or
/// `replication=database`: pg_basebackup, pg_receivewal, standbys, logical subscribers).
#[derive(Clone, Debug, PartialEq)]
pub struct ReplCmd {
    /// `IDENTIFY_SYSTEM`, `BASE_BACKUP`, `START_REPLICATION`, `CREATE_REPLICATION_SLOT`...
    pub operation: String,
    pub kind: Repl,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Repl {
    /// IDENTIFY_SYSTEM, TIMELINE_HISTORY, READ_REPLICATION_SLOT, BASE_BACKUP streamed to the
    /// client, UPLOAD_MANIFEST (kept for the session): they change nothing on the server.
    Read,
    /// BASE_BACKUP ... TARGET 'server': the server writes a backup on its own host.
    BackupOnServer,
    /// CREATE_REPLICATION_SLOT: a temporary slot is dropped when its session ends; a permanent
    /// one makes the server keep WAL (and, logical, catalog rows) for it until dropped.
    CreateSlot { name: String, temporary: bool, plugin: Option<String> },
    DropSlot { name: String },
    AlterSlot { name: String },
    /// START_REPLICATION: a stream of WAL (physical) or decoded changes (logical), from a slot
    /// or not. `without_slot`: the same physical command without its `SLOT name`.
    Start { slot: Option<String>, logical: bool, without_slot: String },
}

/// The replication command `text` is, if it is one.
pub fn replication(text: &str) -> Option<ReplCmd> {
    let dialect = PostgreSqlDialect {};
    let all = Tokenizer::new(&dialect, text.trim().trim_end_matches(';')).tokenize().ok()?;
    let t: Vec<&Token> = all.iter().filter(|t| !matches!(t, Token::Whitespace(_))).collect();
    let word = |i: usize| t.get(i).and_then(|x| kw(x)).unwrap_or_default();
    let has = |w: &str| t.iter().any(|x| kw(x).as_deref() == Some(w));
    let name = |i: usize| t.get(i).and_then(|x| ident(x)).unwrap_or_default();
    let operation = word(0);
    let kind = match operation.as_str() {
        "IDENTIFY_SYSTEM" | "TIMELINE_HISTORY" | "READ_REPLICATION_SLOT" | "UPLOAD_MANIFEST" => Repl::Read,
        "BASE_BACKUP" => {
            let target = t.iter().position(|x| kw(x).as_deref() == Some("TARGET")).and_then(|i| match t.get(i + 1) {
                Some(Token::SingleQuotedString(v)) => Some(v.clone()),
                _ => None,
            });
            match target.as_deref() {
                None | Some("client") | Some("blackhole") => Repl::Read,
                Some(_) => Repl::BackupOnServer,
            }
        }
        "CREATE_REPLICATION_SLOT" => {
            let plugin = t.iter().position(|x| kw(x).as_deref() == Some("LOGICAL")).map(|i| name(i + 1));
            Repl::CreateSlot { name: name(1), temporary: word(2) == "TEMPORARY", plugin }
        }
        "DROP_REPLICATION_SLOT" => Repl::DropSlot { name: name(1) },
        "ALTER_REPLICATION_SLOT" => Repl::AlterSlot { name: name(1) },
        "START_REPLICATION" => {
            let slot = (word(1) == "SLOT").then(|| name(2));
            let mut rest: Vec<&Token> = all.iter().collect();
            if slot.is_some() {
                // Drop `SLOT name` (the words at 1 and 2 of the unspaced list).
                let at = all.iter().position(|x| kw(x).as_deref() == Some("SLOT")).unwrap_or(0);
                let after = all.iter().enumerate().skip(at + 1).find(|(_, x)| !matches!(x, Token::Whitespace(_))).map(|(i, _)| i).unwrap_or(at);
                rest = all.iter().take(at).chain(all.iter().skip(after + 1)).collect();
            }
            let without_slot = rest.iter().map(|x| x.to_string()).collect::<String>().split_whitespace().collect::<Vec<_>>().join(" ");
            Repl::Start { slot, logical: has("LOGICAL"), without_slot }
        }
        _ => return None,
    };
    Some(ReplCmd { operation, kind })
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
/// A word after `AS` or `)` is an alias with its column list (`unnest(a) AS t(x)`), not a call.
fn functions(t: &[Token]) -> Vec<String> {
    let mut out = Vec::new();
    for (i, w) in t.windows(2).enumerate() {
        let alias = i > 0 && (matches!(t[i - 1], Token::RParen) || kw(&t[i - 1]).as_deref() == Some("AS"));
        if let (Token::Word(word), Token::LParen, false) = (&w[0], &w[1], alias) {
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
        assert_eq!(one("BEGIN").access, Access::Read, "transaction control goes to the server");
        assert_eq!(one("ALTER SYSTEM SET work_mem = '1GB'").operation, "ALTER SYSTEM");
        assert_eq!(one("SELECT pg_terminate_backend(42)").operation, "SELECT pg_terminate_backend()");
        assert_eq!(one("SELECT my_cleanup()").access, Access::Unclassified, "an unknown function may do anything");
        assert_eq!(one("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d").category, Some(Category::Delete));
        assert_eq!(one("SELECT * FROM t FOR UPDATE").access, Access::Mutation);
        assert_eq!(one("TRUNCATE accounts").resource, "accounts");
    }

    #[test]
    fn what_pg_dump_and_psql_send_reads() {
        // As PostgreSQL 15's pg_dump and psql's \d commands send them (the server's log).
        for r in [
            "SELECT pg_catalog.set_config('search_path', '', false);",
            "SELECT set_config(name, 'view, foreign-table', false) FROM pg_settings WHERE name = 'restrict_nonsystem_relation_kind'",
            "BEGIN",
            "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY",
            "SELECT n.tableoid, n.oid, n.nspname, n.nspowner, n.nspacl, acldefault('n', n.nspowner) AS acldefault FROM pg_namespace n",
            "LOCK TABLE public.orders IN ACCESS SHARE MODE",
            "SELECT e.oid, array_to_string(array(select quote_literal(x) from unnest(evttags) as t(x)), ', ') as evttags, e.evtfoid::regproc FROM pg_event_trigger e",
            "SELECT c.oid FROM unnest('{}'::pg_catalog.oid[]) AS src(tbloid) JOIN pg_catalog.pg_constraint c ON (src.tbloid = c.conrelid)",
            "SELECT c.oid FROM pg_catalog.pg_class c WHERE c.relname OPERATOR(pg_catalog.~) '^(orders)$' COLLATE pg_catalog.default AND pg_catalog.pg_table_is_visible(c.oid)",
            "SELECT pg_catalog.pg_encoding_to_char(c.conforencoding), pg_catalog.getdatabaseencoding() FROM pg_catalog.pg_conversion c",
            "SELECT pg_catalog.pg_has_role('postgres', 'MEMBER'), pg_catalog.format_type('23'::pg_catalog.oid, NULL), pg_typeof(1)",
            "PREPARE dumpFunc(pg_catalog.oid) AS SELECT proretset, pg_catalog.pg_get_function_arguments(p.oid) FROM pg_catalog.pg_proc p WHERE p.oid = $1",
            "SAVEPOINT s1", "RELEASE SAVEPOINT s1", "ROLLBACK TO SAVEPOINT s1", "COMMIT", "END", "ROLLBACK", "START TRANSACTION",
        ] {
            assert_eq!(one(r).access, Access::Read, "{r}");
        }
        let p = one("PREPARE d(oid) AS SELECT oid FROM pg_enum WHERE enumtypid = $1");
        assert_eq!((p.resource.as_str(), p.prepared.as_ref().map(|x| x.access)), ("d", Some(Access::Read)));
        let p = one("PREPARE zap AS DELETE FROM orders");
        assert_eq!(p.access, Access::Read, "preparing runs nothing");
        assert_eq!(p.prepared.as_ref().and_then(|x| x.category), Some(Category::Delete), "its EXECUTE deletes");
        assert_eq!(one("EXECUTE zap").access, Access::Unclassified, "unknown without the session");
        for (m, op) in [
            ("LOCK TABLE orders", "LOCK TABLE"),
            ("LOCK orders IN SHARE ROW EXCLUSIVE MODE", "LOCK TABLE"),
            ("LOCK TABLE orders IN ROW SHARE MODE NOWAIT", "LOCK TABLE"),
            ("PREPARE TRANSACTION 'x'", "PREPARE TRANSACTION"),
            ("COMMIT PREPARED 'x'", "COMMIT PREPARED"),
            ("ROLLBACK PREPARED 'x'", "ROLLBACK PREPARED"),
        ] {
            let x = one(m);
            assert_eq!((x.access, x.operation.as_str()), (Access::Mutation, op), "{m}");
        }
        assert_eq!(one("LOCK TABLE orders").category, Some(Category::Admin));
        assert_eq!(one("LOCK TABLE orders").resource, "orders");
        assert_eq!(one("ROLLBACK PREPARED 'x'").resource, "x");
        assert_eq!(one("SELECT txid_current()").access, Access::Mutation, "it assigns a transaction id");
    }

    #[test]
    fn replication_commands() {
        let cmd = |t: &str| replication(t).map(|c| c.kind);
        assert_eq!(cmd("IDENTIFY_SYSTEM"), Some(Repl::Read));
        assert_eq!(cmd("TIMELINE_HISTORY 2"), Some(Repl::Read));
        assert_eq!(cmd("READ_REPLICATION_SLOT s"), Some(Repl::Read));
        assert_eq!(
            cmd("BASE_BACKUP ( LABEL 'pg_basebackup base backup',  PROGRESS,  CHECKPOINT 'fast',  WAIT 0,  MANIFEST 'yes',  TARGET 'client')"),
            Some(Repl::Read)
        );
        assert_eq!(cmd("BASE_BACKUP LABEL 'x' FAST WAL NOWAIT"), Some(Repl::Read), "the pre-15 syntax");
        assert_eq!(cmd("BASE_BACKUP (TARGET 'server', TARGET_DETAIL '/srv/b')"), Some(Repl::BackupOnServer));
        assert_eq!(
            cmd("CREATE_REPLICATION_SLOT \"pg_basebackup_13316\" TEMPORARY PHYSICAL ( RESERVE_WAL)"),
            Some(Repl::CreateSlot { name: "pg_basebackup_13316".into(), temporary: true, plugin: None })
        );
        assert_eq!(
            cmd("CREATE_REPLICATION_SLOT Sub LOGICAL pgoutput (SNAPSHOT 'nothing')"),
            Some(Repl::CreateSlot { name: "sub".into(), temporary: false, plugin: Some("pgoutput".into()) })
        );
        assert_eq!(cmd("DROP_REPLICATION_SLOT standby1 WAIT"), Some(Repl::DropSlot { name: "standby1".into() }));
        assert_eq!(
            cmd("START_REPLICATION SLOT \"pg_basebackup_13316\" 0/2000000 TIMELINE 1"),
            Some(Repl::Start { slot: Some("pg_basebackup_13316".into()), logical: false, without_slot: "START_REPLICATION 0/2000000 TIMELINE 1".into() })
        );
        assert_eq!(
            cmd("START_REPLICATION 0/2000000 TIMELINE 1"),
            Some(Repl::Start { slot: None, logical: false, without_slot: "START_REPLICATION 0/2000000 TIMELINE 1".into() })
        );
        assert!(matches!(cmd("START_REPLICATION SLOT sub LOGICAL 0/0 (proto_version '1')"), Some(Repl::Start { logical: true, .. })));
        assert_eq!(cmd("SHOW wal_segment_size"), None, "SQL's SHOW");
        assert_eq!(cmd("SELECT 1"), None);
    }

    #[test]
    fn splits_on_semicolons_outside_quotes() {
        let s = statements("SELECT ';'; DROP TABLE t; -- c;\n");
        assert_eq!(s.len(), 2, "{s:?}");
        assert_eq!(s[1].operation, "DROP TABLE");
        assert_eq!(statements("SELECT $$a;b$$").len(), 1);
    }
}
