//! File effects under `pilot trace -- effects ...`: opens with write intent, aggregated writes
//! through every write syscall, and each path syscall, with their results and absolute paths
//! (relative, dirfd-relative, after chdir/fchdir, under chroot).
mod common;

use common::*;

const WCT: &str = "O_WRONLY|O_CREAT|O_TRUNC";
const O_WRONLY: u64 = 0o1;
const O_RDWR: u64 = 0o2;
const O_CREAT: u64 = 0o100;
const O_TRUNC: u64 = 0o1000;
const O_APPEND: u64 = 0o2000;

// ---- opens ----------------------------------------------------------------------------------

#[test]
fn open_with_write_intent_records_flags_mode_and_fd() {
    let d = Scratch::new();
    let f = d.join("new.txt");
    let run = trace_effects(&d, &["open", &f, WCT, "640"]);
    let e = run.at("open", &f);
    let fd = run.fact("open", "ret");
    assert!(fd >= 0, "{}", run.dump());
    check!(run, e, syscall, Some("open".into()));
    check!(run, e, ret, Some(fd));
    check!(run, e, error, None);
    check!(run, e, fd, Some(fd));
    check!(run, e, flags, Some(O_WRONLY | O_CREAT | O_TRUNC));
    check!(run, e, flag_names, Some(WCT.into()));
    check!(run, e, mode, Some(0o640));
    assert_eq!(e.pid, run.pid_of_exec(effects()), "{}", run.dump());
}

#[test]
fn open_append_and_rdwr_are_write_intent_without_mode() {
    let d = Scratch::new();
    let a = d.file("append.log", "x");
    let b = d.file("rdwr.db", "y");
    let run = trace_effects(&d, &["open", &a, "O_WRONLY|O_APPEND", "+", "open", &b, "O_RDWR"]);
    let ea = run.at("open", &a);
    check!(run, ea, flags, Some(O_WRONLY | O_APPEND));
    check!(run, ea, flag_names, Some("O_WRONLY|O_APPEND".into()));
    check!(run, ea, mode, None);
    let eb = run.at("open", &b);
    check!(run, eb, flags, Some(O_RDWR));
    check!(run, eb, flag_names, Some("O_RDWR".into()));
    check!(run, eb, mode, None);
}

#[test]
fn read_only_opens_are_not_events() {
    let d = Scratch::new();
    let f = d.file("input.txt", "data");
    let sub = d.mkdir("sub");
    let run = trace_effects(
        &d,
        &["open", &f, "O_RDONLY", "+", "openat", &d.s(), "input.txt", "O_RDONLY", "+", "open", &sub, "O_RDONLY|O_DIRECTORY"],
    );
    run.pid_of_exec(effects()); // the trace did see the program
    run.none("an open event for a read-only open", |e| e.kind == "open" && (e.mentions("input.txt") || e.path() == sub));
}

#[test]
fn creat_is_an_open_that_creates_and_truncates() {
    let d = Scratch::new();
    let f = d.join("created");
    let run = trace_effects(&d, &["creat", &f, "600"]);
    let e = run.at("open", &f);
    check!(run, e, syscall, Some("creat".into()));
    check!(run, e, flag_names, Some(WCT.into()));
    check!(run, e, mode, Some(0o600));
    assert!(e.ret.unwrap() >= 0, "{}", run.dump());
}

#[test]
fn failed_open_reports_the_errno_and_no_fd() {
    let d = Scratch::new();
    let f = d.join("no-such-dir/file");
    let run = trace_effects(&d, &["open", &f, WCT, "644"]);
    let e = run.at("open", &f);
    check!(run, e, ret, Some(-2));
    check!(run, e, error, Some("ENOENT".into()));
    check!(run, e, fd, None);
}

#[test]
fn open_of_a_relative_path_is_made_absolute_against_the_cwd() {
    let d = Scratch::new();
    d.mkdir("sub");
    let run = trace_effects_rel(&d, &["open", "rel.txt", "O_WRONLY|O_CREAT", "644", "+", "open", "./sub/../sub//x.txt", "O_WRONLY|O_CREAT", "644"]);
    run.at("open", &d.join("rel.txt"));
    run.at("open", &d.join("sub/x.txt"));
}

/// The root command is started by pilot in pilot's cwd; a root that exits at once must not have
/// its relative paths resolved against "/" (pilot learns the root's cwd from /proc, racing with
/// it). Several short traces in parallel make the race likely.
#[test]
fn relative_paths_of_a_short_lived_root_resolve_against_its_cwd() {
    let d = Scratch::new();
    let runs: Vec<Run> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8).map(|_| s.spawn(|| trace_effects(&d, &["unlink", "rel"]))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let want = d.join("rel");
    let wrong: Vec<String> = runs
        .iter()
        .flat_map(|r| r.of_kind("unlink"))
        .filter(|e| e.path() != want)
        .map(|e| e.path().to_string())
        .collect();
    assert!(wrong.is_empty(), "unlink of `rel` run in {} reported as {wrong:?}\n{}", d.s(), runs[0].dump());
    assert_eq!(runs.iter().map(|r| r.of_kind("unlink").len()).sum::<usize>(), 8);
}

#[test]
fn openat_is_resolved_against_its_dirfd() {
    let d = Scratch::new();
    let sub = d.mkdir("a/b");
    let run = trace_effects(&d, &["openat", &sub, "c.txt", "O_WRONLY|O_CREAT", "600"]);
    let e = run.at("open", &d.join("a/b/c.txt"));
    check!(run, e, syscall, Some("openat".into()));
    check!(run, e, mode, Some(0o600));
    check!(run, e, resolved_via, None);
}

#[test]
fn openat2_is_recorded_with_flags_and_mode() {
    let d = Scratch::new();
    let sub = d.mkdir("sub");
    let run = trace_effects(&d, &["openat2", &sub, "two.txt", WCT, "640"]);
    let e = run.at("open", &d.join("sub/two.txt"));
    check!(run, e, syscall, Some("openat2".into()));
    check!(run, e, flags, Some(O_WRONLY | O_CREAT | O_TRUNC));
    check!(run, e, flag_names, Some(WCT.into()));
    check!(run, e, mode, Some(0o640));
    assert!(e.ret.unwrap() >= 0 && e.fd == e.ret, "{}", run.dump());
}

// ---- writes ---------------------------------------------------------------------------------

#[test]
fn writes_are_aggregated_per_fd_into_one_event() {
    let d = Scratch::new();
    let f = d.join("out.bin");
    let run = trace_effects(&d, &["write", &f, "10", "100"]);
    let fd = run.fact("write", "fd");
    let (w, bytes, calls) = run.writes_to(&f);
    assert_eq!(w.len(), 1, "one write event for 10 writes to one fd\n{}", run.dump());
    assert_eq!((bytes, calls), (1000, 10), "{}", run.dump());
    check!(run, w[0], fd, Some(fd));
    check!(run, w[0], failed, None);
    check!(run, w[0], error, None);
    assert!(w[0].first_ts_ns.unwrap() <= w[0].ts_ns, "{}", run.dump());
}

/// `effects OP FILE...` writes `want` bytes to `dst` in one call of the syscall under test.
fn assert_one_write(ops: &[&str], dst: &str, want: u64, d: &Scratch) {
    let run = trace_effects(d, ops);
    let (w, bytes, calls) = run.writes_to(dst);
    assert!(!w.is_empty(), "no write event for {:?}\n{}", ops, run.dump());
    assert_eq!((bytes, calls), (want, 1), "bytes and calls written by {:?}\n{}", ops, run.dump());
}

#[test]
fn pwrite64_is_a_write() {
    let d = Scratch::new();
    let f = d.join("p");
    assert_one_write(&["pwrite", &f, "7", "100"], &f, 7, &d);
}

#[test]
fn writev_is_a_write() {
    let d = Scratch::new();
    let f = d.join("v");
    assert_one_write(&["writev", &f], &f, 8, &d);
}

#[test]
fn pwritev_is_a_write() {
    let d = Scratch::new();
    let f = d.join("pv");
    assert_one_write(&["pwritev", &f], &f, 8, &d);
}

#[test]
fn pwritev2_is_a_write() {
    let d = Scratch::new();
    let f = d.join("pv2");
    assert_one_write(&["pwritev2", &f], &f, 8, &d);
}

#[test]
fn sendfile_is_a_write_to_the_destination() {
    let d = Scratch::new();
    let src = d.file("src", "thirteen byte");
    let dst = d.join("dst");
    assert_one_write(&["sendfile", &src, &dst], &dst, 13, &d);
}

#[test]
fn copy_file_range_is_a_write_to_the_destination() {
    let d = Scratch::new();
    let src = d.file("src", "thirteen byte");
    let dst = d.join("dst");
    assert_one_write(&["copy-file-range", &src, &dst], &dst, 13, &d);
}

#[test]
fn splice_is_a_write_to_the_destination() {
    let d = Scratch::new();
    let dst = d.join("spliced");
    assert_one_write(&["splice", &dst], &dst, 11, &d);
}

#[test]
fn failed_writes_are_counted_with_their_errno() {
    let d = Scratch::new();
    let f = d.file("ro", "read only");
    let run = trace_effects(&d, &["write-rdonly", &f]);
    let (w, bytes, calls) = run.writes_to(&f);
    assert!(!w.is_empty(), "{}", run.dump());
    assert_eq!((bytes, calls), (0, 2), "{}", run.dump());
    let failed: u64 = w.iter().map(|e| e.failed.unwrap_or(0)).sum();
    assert_eq!(failed, 2, "both writes failed (EBADF)\n{}", run.dump());
    assert!(w.iter().all(|e| e.error.as_deref() == Some("EBADF")), "{}", run.dump());
}

#[test]
fn writes_to_an_fd_held_open_add_up_across_flushes() {
    let d = Scratch::new();
    let f = d.join("slow");
    // 10 bytes, a pause longer than the 1 s flush period, then 2 x 20 bytes.
    let run = trace_effects(&d, &["write-pause", &f, "1300"]);
    let (w, bytes, calls) = run.writes_to(&f);
    assert!(!w.is_empty(), "{}", run.dump());
    assert_eq!((bytes, calls), (50, 3), "{}", run.dump());
}

#[test]
fn a_reused_fd_number_attributes_writes_to_the_right_file() {
    let d = Scratch::new();
    let a = d.join("a");
    let b = d.join("b");
    // Both get the same fd number: the first is closed before the second opens.
    let run = trace_effects(&d, &["write", &a, "1", "5", "+", "write", &b, "1", "7"]);
    assert_eq!(run.writes_to(&a).1, 5, "{}", run.dump());
    assert_eq!(run.writes_to(&b).1, 7, "{}", run.dump());
}

/// After a file's fd is closed, the number is reused by an fd pilot does not follow by path (an
/// eventfd, a memfd): what is written to it is not a write to the closed file.
#[test]
fn writes_to_a_reused_eventfd_are_not_attributed_to_the_closed_file() {
    let d = Scratch::new();
    let a = d.join("a");
    let run = trace_effects(&d, &["write", &a, "1", "5", "+", "eventfd-write"]);
    assert_eq!(run.fact("eventfd", "fd"), run.fact("write", "fd"), "the eventfd reused the file's fd number");
    let (_, bytes, calls) = run.writes_to(&a);
    assert_eq!((bytes, calls), (5, 1), "only the file's own write is a write to it\n{}", run.dump());
}

#[test]
fn writes_to_a_reused_memfd_are_not_attributed_to_the_closed_file() {
    let d = Scratch::new();
    let a = d.join("a");
    let run = trace_effects(&d, &["write", &a, "1", "5", "+", "memfd-write", "100"]);
    assert_eq!(run.fact("memfd", "fd"), run.fact("write", "fd"), "the memfd reused the file's fd number");
    let (_, bytes, calls) = run.writes_to(&a);
    assert_eq!((bytes, calls), (5, 1), "only the file's own write is a write to it\n{}", run.dump());
}

#[test]
fn shell_redirection_after_cd_is_attributed_to_the_file() {
    let d = Scratch::new();
    d.mkdir("sub");
    // `cd` to an absolute path: pilot reads the root shell's cwd from /proc after starting it.
    let run = trace_sh(&d, &format!("cd {} && echo hello > out.txt", d.join("sub")));
    run.assert_exit(0);
    let f = d.join("sub/out.txt");
    let o = run.at("open", &f);
    check!(run, o, flag_names, Some(WCT.into()));
    let (w, bytes, _) = run.writes_to(&f);
    assert!(!w.is_empty(), "{}", run.dump());
    assert_eq!(bytes, 6, "{}", run.dump());
    run.at("chdir", &d.join("sub"));
}

// ---- path syscalls --------------------------------------------------------------------------

#[test]
fn unlink_success_and_failure_are_told_apart() {
    let d = Scratch::new();
    let present = d.file("present", "x");
    let missing = d.join("missing");
    let run = trace_effects(&d, &["unlink", &present, "+", "unlink", &missing]);
    let ok = run.at("unlink", &present);
    check!(run, ok, syscall, Some("unlink".into()));
    check!(run, ok, ret, Some(0));
    check!(run, ok, error, None);
    let bad = run.at("unlink", &missing);
    check!(run, bad, ret, Some(-2));
    check!(run, bad, error, Some("ENOENT".into()));
}

#[test]
fn rm_of_a_missing_file_is_a_failed_unlink() {
    let d = Scratch::new();
    // Absolute: a relative path given to a root that exits at once races with pilot reading the
    // root's cwd (see relative_paths_of_a_short_lived_root_resolve_against_its_cwd).
    let run = trace_cmd(&d, &["/bin/rm", "-f", &d.join("ghost.txt")]);
    run.assert_exit(0);
    let e = run.at("unlink", &d.join("ghost.txt"));
    check!(run, e, ret, Some(-2));
    check!(run, e, error, Some("ENOENT".into()));
    check!(run, e, syscall, Some("unlinkat".into()));
}

#[test]
fn unlinkat_is_resolved_against_its_dirfd() {
    let d = Scratch::new();
    let sub = d.mkdir("sub");
    d.file("sub/victim", "x");
    let run = trace_effects(&d, &["unlinkat", &sub, "victim"]);
    let e = run.at("unlink", &d.join("sub/victim"));
    check!(run, e, syscall, Some("unlinkat".into()));
    check!(run, e, ret, Some(0));
}

#[test]
fn unlinkat_with_removedir_is_an_rmdir() {
    let d = Scratch::new();
    d.mkdir("sub/gone");
    let run = trace_effects(&d, &["unlinkat-removedir", &d.join("sub"), "gone"]);
    let e = run.at("rmdir", &d.join("sub/gone"));
    check!(run, e, syscall, Some("unlinkat".into()));
    check!(run, e, ret, Some(0));
    run.none("an unlink event for the rmdir", |e| e.kind == "unlink");
}

#[test]
fn rmdir_and_its_failure_on_a_non_empty_directory() {
    let d = Scratch::new();
    let empty = d.mkdir("empty");
    let full = d.mkdir("full");
    d.file("full/f", "x");
    let run = trace_effects(&d, &["rmdir", &empty, "+", "rmdir", &full]);
    let ok = run.at("rmdir", &empty);
    check!(run, ok, syscall, Some("rmdir".into()));
    check!(run, ok, ret, Some(0));
    let bad = run.at("rmdir", &full);
    check!(run, bad, ret, Some(-39));
    check!(run, bad, error, Some("ENOTEMPTY".into()));
}

#[test]
fn mkdir_and_mkdirat_record_the_mode() {
    let d = Scratch::new();
    let run = trace_effects(&d, &["mkdir", &d.join("one"), "750", "+", "mkdirat", &d.join("one"), "two", "700", "+", "mkdir", &d.join("one"), "755"]);
    let one = run.one("mkdir of one", |e| e.is("mkdir", &d.join("one")) && e.ret == Some(0));
    check!(run, one, mode, Some(0o750));
    check!(run, one, syscall, Some("mkdir".into()));
    let two = run.at("mkdir", &d.join("one/two"));
    check!(run, two, mode, Some(0o700));
    check!(run, two, syscall, Some("mkdirat".into()));
    let again = run.find("second mkdir of one", |e| e.is("mkdir", &d.join("one")) && e.ret != Some(0));
    check!(run, again, ret, Some(-17));
    check!(run, again, error, Some("EEXIST".into()));
}

#[test]
fn rename_records_both_paths() {
    let d = Scratch::new();
    let a = d.file("a", "x");
    d.mkdir("dir");
    let run = trace_effects_rel(&d, &["rename", "a", "dir/b"]);
    let e = run.at("rename", &a);
    check!(run, e, path2, Some(d.join("dir/b")));
    check!(run, e, syscall, Some("rename".into()));
    check!(run, e, ret, Some(0));
    check!(run, e, flag_names, None);
}

#[test]
fn renameat_is_resolved_against_its_dirfds() {
    let d = Scratch::new();
    let sub = d.mkdir("sub");
    d.file("sub/old", "x");
    let run = trace_effects(&d, &["renameat", &sub, "old", "new"]);
    let e = run.at("rename", &d.join("sub/old"));
    check!(run, e, path2, Some(d.join("sub/new")));
    check!(run, e, syscall, Some("renameat".into()));
}

#[test]
fn renameat2_noreplace_records_its_flag_and_failure() {
    let d = Scratch::new();
    let a = d.file("a", "x");
    let b = d.file("b", "y");
    let c = d.join("c");
    let run = trace_effects(&d, &["renameat2-noreplace", &a, &b, "+", "renameat2-noreplace", &a, &c]);
    let refused = run.find("refused rename a -> b", |e| e.is("rename", &a) && e.path2.as_deref() == Some(&b));
    check!(run, refused, ret, Some(-17));
    check!(run, refused, error, Some("EEXIST".into()));
    check!(run, refused, flags, Some(1));
    check!(run, refused, flag_names, Some("RENAME_NOREPLACE".into()));
    check!(run, refused, syscall, Some("renameat2".into()));
    let done = run.find("rename a -> c", |e| e.is("rename", &a) && e.path2.as_deref() == Some(&c));
    check!(run, done, ret, Some(0));
    check!(run, done, flag_names, Some("RENAME_NOREPLACE".into()));
}

#[test]
fn renameat2_exchange_is_named() {
    let d = Scratch::new();
    let a = d.file("a", "x");
    let b = d.file("b", "y");
    let run = trace_effects(&d, &["renameat2-exchange", &a, &b]);
    let e = run.at("rename", &a);
    check!(run, e, path2, Some(b.clone()));
    check!(run, e, flags, Some(2));
    check!(run, e, flag_names, Some("RENAME_EXCHANGE".into()));
    check!(run, e, ret, Some(0));
}

#[test]
fn truncate_and_ftruncate_record_the_new_length() {
    let d = Scratch::new();
    let f = d.file("t", "0123456789");
    let g = d.file("u", "0123456789");
    let run = trace_effects(&d, &["truncate", &f, "3", "+", "ftruncate", &g, "1"]);
    let t = run.at("truncate", &f);
    check!(run, t, syscall, Some("truncate".into()));
    check!(run, t, bytes, Some(3));
    check!(run, t, ret, Some(0));
    let ft = run.at("truncate", &g);
    check!(run, ft, syscall, Some("ftruncate".into()));
    check!(run, ft, bytes, Some(1));
}

#[test]
fn chmod_and_fchmodat_record_the_mode() {
    let d = Scratch::new();
    let a = d.file("a", "x");
    d.file("c", "x");
    let run = trace_effects(&d, &["chmod", &a, "600", "+", "fchmodat", &d.s(), "c", "604"]);
    let ea = run.at("chmod", &a);
    check!(run, ea, mode, Some(0o600));
    check!(run, ea, syscall, Some("chmod".into()));
    check!(run, ea, ret, Some(0));
    let ec = run.at("chmod", &d.join("c"));
    check!(run, ec, mode, Some(0o604));
    check!(run, ec, syscall, Some("fchmodat".into()));
}

/// fchmod through an fd the program opened read-only (as `chmod`-like tools and Python's
/// os.fchmod on a file opened "r" do): the event must still name the file.
#[test]
fn fchmod_on_a_read_only_fd_names_the_file() {
    let d = Scratch::new();
    let b = d.file("b", "x");
    let run = trace_effects(&d, &["fchmod", &b, "640"]);
    let e = run.find("fchmod", |e| e.kind == "chmod" && e.syscall.as_deref() == Some("fchmod"));
    check!(run, e, path, Some(b.clone()));
    check!(run, e, mode, Some(0o640));
    check!(run, e, ret, Some(0));
}

/// The fd number of a closed file is reused by a read-only open: an fchmod through it is on the
/// new file, never on the closed one.
#[test]
fn fchmod_through_a_reused_fd_number_does_not_name_the_closed_file() {
    let d = Scratch::new();
    let a = d.join("a");
    let b = d.file("b", "x");
    let run = trace_effects(&d, &["write", &a, "1", "5", "+", "fchmod", &b, "600"]);
    let e = run.find("fchmod", |e| e.kind == "chmod" && e.syscall.as_deref() == Some("fchmod"));
    assert_ne!(e.path.as_deref(), Some(a.as_str()), "fchmod of b reported as a chmod of a\n{}", run.dump());
    check!(run, e, path, Some(b.clone()));
}

/// chmod of /proc/self/fd/N (how tar and glibc change a file through an O_PATH fd) changes the
/// file that fd refers to: the event names that file, not a /proc path.
#[test]
fn chmod_through_proc_self_fd_names_the_file() {
    let d = Scratch::new();
    let f = d.file("f", "x");
    let run = trace_effects(&d, &["chmod-proc-fd", &f, "640"]);
    let e = run.find("chmod", |e| e.kind == "chmod");
    check!(run, e, ret, Some(0));
    check!(run, e, mode, Some(0o640));
    check!(run, e, path, Some(f.clone()));
}

#[test]
fn chown_lchown_and_fchownat_record_uid_and_gid() {
    let d = Scratch::new();
    let a = d.file("a", "x");
    d.file("c", "x");
    let l = d.join("l");
    std::os::unix::fs::symlink(&a, &l).unwrap();
    let run = trace_effects(&d, &["chown", &a, "1234", "5678", "+", "lchown", &l, "4321", "-1", "+", "fchownat", &d.s(), "c", "7", "8"]);
    let ea = run.at("chown", &a);
    check!(run, ea, uid, Some(1234));
    check!(run, ea, gid, Some(5678));
    check!(run, ea, syscall, Some("chown".into()));
    let el = run.at("chown", &l);
    check!(run, el, uid, Some(4321));
    check!(run, el, gid, Some(-1));
    check!(run, el, syscall, Some("lchown".into()));
    let ec = run.at("chown", &d.join("c"));
    check!(run, ec, uid, Some(7));
    check!(run, ec, gid, Some(8));
    check!(run, ec, syscall, Some("fchownat".into()));
}

#[test]
fn fchown_on_a_read_only_fd_names_the_file() {
    let d = Scratch::new();
    let b = d.file("b", "x");
    let run = trace_effects(&d, &["fchown", &b, "-1", "42"]);
    let e = run.find("fchown", |e| e.kind == "chown" && e.syscall.as_deref() == Some("fchown"));
    check!(run, e, path, Some(b.clone()));
    check!(run, e, uid, Some(-1));
    check!(run, e, gid, Some(42));
}

#[test]
fn link_and_linkat_record_existing_then_new() {
    let d = Scratch::new();
    let a = d.file("a", "x");
    d.file("sub/x", "x");
    let run = trace_effects_rel(&d, &["link", "a", "hard", "+", "linkat", &d.join("sub"), "x", "y"]);
    let e = run.at("link", &a);
    check!(run, e, path2, Some(d.join("hard")));
    check!(run, e, syscall, Some("link".into()));
    check!(run, e, ret, Some(0));
    let e2 = run.at("link", &d.join("sub/x"));
    check!(run, e2, path2, Some(d.join("sub/y")));
    check!(run, e2, syscall, Some("linkat".into()));
}

#[test]
fn symlink_records_the_link_and_the_target_as_written() {
    let d = Scratch::new();
    d.mkdir("sub");
    let run = trace_effects_rel(&d, &["symlink", "../target", "sub/lnk", "+", "symlinkat", "/etc/hostname", &d.join("sub"), "abs"]);
    let e = run.at("symlink", &d.join("sub/lnk"));
    check!(run, e, path2, Some("../target".into()));
    check!(run, e, syscall, Some("symlink".into()));
    check!(run, e, ret, Some(0));
    let e2 = run.at("symlink", &d.join("sub/abs"));
    check!(run, e2, path2, Some("/etc/hostname".into()));
    check!(run, e2, syscall, Some("symlinkat".into()));
}

#[test]
fn mknod_and_mknodat_are_recorded() {
    let d = Scratch::new();
    let run = trace_effects(&d, &["mknod", &d.join("fifo1"), "+", "mknodat", &d.s(), "fifo2"]);
    let e = run.at("mknod", &d.join("fifo1"));
    check!(run, e, ret, Some(0));
    check!(run, e, syscall, Some("mknod".into()));
    assert_eq!(e.mode.map(|m| m & 0o7777), Some(0o600), "{}", run.dump());
    let e2 = run.at("mknod", &d.join("fifo2"));
    check!(run, e2, syscall, Some("mknodat".into()));
    assert_eq!(e2.mode.map(|m| m & 0o7777), Some(0o600), "{}", run.dump());
}

#[test]
fn xattr_changes_by_path_are_recorded() {
    let d = Scratch::new();
    let f = d.file("x", "x");
    let run = trace_effects(
        &d,
        &["setxattr", &f, "user.pilot", "one", "+", "lsetxattr", &f, "user.other", "two", "+", "removexattr", &f, "user.pilot", "+", "lremovexattr", &f, "user.other"],
    );
    for sc in ["setxattr", "lsetxattr", "removexattr", "lremovexattr"] {
        let e = run.find(&format!("{sc} on {f}"), |e| e.is("xattr", &f) && e.syscall.as_deref() == Some(sc));
        check!(run, e, ret, Some(0));
    }
}

#[test]
fn xattr_changes_through_a_read_only_fd_name_the_file() {
    let d = Scratch::new();
    let g = d.file("y", "y");
    let run = trace_effects(&d, &["fsetxattr", &g, "user.pilot", "three", "+", "fremovexattr", &g, "user.pilot"]);
    for sc in ["fsetxattr", "fremovexattr"] {
        let e = run.find(sc, |e| e.kind == "xattr" && e.syscall.as_deref() == Some(sc));
        check!(run, e, path, Some(g.clone()));
        check!(run, e, ret, Some(0));
    }
}

#[test]
fn a_failed_removexattr_names_its_errno() {
    let d = Scratch::new();
    let f = d.file("x", "x");
    let run = trace_effects(&d, &["removexattr", &f, "user.never-set"]);
    let e = run.at("xattr", &f);
    check!(run, e, ret, Some(-61));
    check!(run, e, error, Some("ENODATA".into()));
}

/// `rm -r` walks the tree with directory fds (openat + unlinkat relative to them).
#[test]
fn rm_r_of_a_tree_names_every_file_and_directory() {
    let d = Scratch::new();
    d.file("tree/a/b/f1", "1");
    d.file("tree/a/f2", "2");
    d.file("tree/f3", "3");
    let run = trace_cmd(&d, &["/bin/rm", "-r", &d.join("tree")]);
    run.assert_exit(0);
    for f in ["tree/a/b/f1", "tree/a/f2", "tree/f3"] {
        let e = run.at("unlink", &d.join(f));
        check!(run, e, ret, Some(0));
    }
    for dir in ["tree/a/b", "tree/a", "tree"] {
        let e = run.at("rmdir", &d.join(dir));
        check!(run, e, ret, Some(0));
    }
    run.none("a path resolved through /proc or an unknown fd", |e| e.resolved_via.is_some());
    assert_eq!(run.of_kind("unlink").len() + run.of_kind("rmdir").len(), 6, "{}", run.dump());
}

/// Python's shutil.rmtree opens each directory with os.open(O_RDONLY) (no O_DIRECTORY) and
/// removes its entries with unlinkat(dirfd, name): the paths must be the tree's, never those
/// of a directory that fd number referred to earlier.
#[test]
fn python_shutil_rmtree_names_the_files_it_deletes() {
    let d = Scratch::new();
    d.file("tree/a/b/f1", "1");
    d.file("tree/a/f2", "2");
    d.file("tree/f3", "3");
    let tree = d.join("tree");
    let run = trace_cmd(&d, &[PYTHON, "-c", &format!("import shutil; shutil.rmtree({tree:?})")]);
    run.assert_exit(0);
    let removals = run.all(|e| e.kind == "unlink" || e.kind == "rmdir");
    let outside: Vec<String> =
        removals.iter().filter(|e| !e.path().starts_with(&tree)).map(|e| format!("{} {}", e.kind, e.path())).collect();
    assert!(outside.is_empty(), "removals reported outside {tree}: {outside:#?}\n{}", run.dump());
    for f in ["tree/a/b/f1", "tree/a/f2", "tree/f3"] {
        check!(run, run.at("unlink", &d.join(f)), ret, Some(0));
    }
    for dir in ["tree/a/b", "tree/a", "tree"] {
        check!(run, run.at("rmdir", &d.join(dir)), ret, Some(0));
    }
}

// ---- cwd, dirfd, chroot ---------------------------------------------------------------------

#[test]
fn chdir_then_relative_paths_resolve_against_the_new_cwd() {
    let d = Scratch::new();
    d.mkdir("sub");
    d.file("sub/rel", "x");
    let run = trace_effects_rel(&d, &["chdir", "sub", "+", "unlink", "rel", "+", "open", "rel2", "O_WRONLY|O_CREAT", "644", "+", "mkdir", "../sibling", "755"]);
    let c = run.at("chdir", &d.join("sub"));
    check!(run, c, ret, Some(0));
    check!(run, c, syscall, Some("chdir".into()));
    run.at("unlink", &d.join("sub/rel"));
    run.at("open", &d.join("sub/rel2"));
    run.at("mkdir", &d.join("sibling"));
}

#[test]
fn a_failed_chdir_leaves_the_cwd_unchanged() {
    let d = Scratch::new();
    let run = trace_effects_rel(&d, &["chdir", "nowhere", "+", "unlink", "rel"]);
    let c = run.at("chdir", &d.join("nowhere"));
    check!(run, c, ret, Some(-2));
    check!(run, c, error, Some("ENOENT".into()));
    run.at("unlink", &d.join("rel"));
}

#[test]
fn fchdir_then_relative_paths_resolve_against_the_directory() {
    let d = Scratch::new();
    let sub = d.mkdir("deep/er");
    let run = trace_effects(&d, &["fchdir", &sub, "+", "mkdir", "made", "700"]);
    let c = run.find("fchdir", |e| e.kind == "chdir" && e.syscall.as_deref() == Some("fchdir"));
    check!(run, c, path, Some(sub.clone()));
    check!(run, c, ret, Some(0));
    run.at("mkdir", &d.join("deep/er/made"));
}

#[test]
fn paths_after_chroot_are_under_the_new_root() {
    let d = Scratch::new();
    let jail = d.mkdir("jail");
    let run = trace_effects_rel(&d, &["chroot", "jail", "+", "open", "/inside", "O_WRONLY|O_CREAT", "644", "+", "chdir", "/", "+", "mkdir", "made", "755"]);
    let c = run.at("chroot", &jail);
    check!(run, c, ret, Some(0));
    check!(run, c, syscall, Some("chroot".into()));
    run.at("open", &d.join("jail/inside"));
    run.at("chdir", &jail);
    run.at("mkdir", &d.join("jail/made"));
}
